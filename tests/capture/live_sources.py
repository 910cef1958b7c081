"""Real-time live sources made by ffmpeg on 127.0.0.1, for the livestream tests and benchmarks.

* ``dash_source``: ``ffmpeg -re -f dash`` writing a dynamic MPD (SegmentTimeline,
  or ``duration``-numbered with ``timeline=False``) with video and audio;
* ``aes_source``: ``ffmpeg -re -f hls -hls_key_info_file`` (AES-128);
* ``flv_source``: ``ffmpeg -re -f flv -listen 1 http://127.0.0.1:PORT/live.flv`` (one client);
* ``LowLatency``: a small server publishing ffmpeg-made MPEG-TS segments as
  Low-Latency HLS parts on a real-time clock, with blocking reloads.

``FileServer`` serves a directory the way a CDN would (Content-Type by
extension) and can be told to answer some paths differently (404, rewritten).
Every ffmpeg dies with the test process (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import ctypes
import http.server
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

TYPES = {
    ".mpd": "application/dash+xml",
    ".m4s": "video/iso.segment",
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
    ".key": "application/octet-stream",
    ".mp4": "video/mp4",
}
VIDEO = ["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=10"]
AUDIO = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
#: a key frame every second: each 1 s segment decodes on its own
X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "10", "-keyint_min", "10",
        "-sc_threshold", "0", "-pix_fmt", "yuv420p"]  # fmt: skip


def have_ffmpeg() -> bool:
    return shutil.which("ffmpeg") is not None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def ffmpeg(*args: str, delay: float = 0) -> subprocess.Popen[bytes]:
    """ffmpeg with ``args``, started ``delay`` seconds from now (a room that goes live later).

    Started from the calling thread: PR_SET_PDEATHSIG fires when the thread
    that forked exits, so a delay is a ``sleep`` before ``exec``, not a timer thread.
    """
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", *args]
    if delay:
        cmd = ["sh", "-c", f'sleep {delay}; exec "$@"', "sh", *cmd]
    return subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=_die_with_parent
    )


def stop(p: subprocess.Popen[bytes]) -> None:
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def wait_for(path: Path, timeout: float = 20, text: str | None = None) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and (text is None or text in path.read_text("utf-8", "replace")):
            return
        time.sleep(0.1)
    raise AssertionError(f"{path} did not appear in {timeout} s")


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self.server.owner.handle(self)

    def send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.wfile.write(body)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    owner: Any

    def handle_error(self, request: object, client_address: tuple) -> None:
        pass  # clients that hang up mid-response are part of the tests


class FileServer:
    """Serves ``root``; ``routes`` maps a path to a function answering it instead."""

    def __init__(self, root: Path):
        self.root = root
        self.routes: dict[str, Callable[[_Handler], None]] = {}
        self.requests: list[str] = []
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.owner = self
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> FileServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def handle(self, h: _Handler) -> None:
        self.requests.append(h.path)
        path = urlsplit(h.path).path
        route = self.routes.get(path)
        if route is not None:
            route(h)
            return
        f = self.root / path.lstrip("/")
        if ".." in path or not f.is_file():
            h.send(404, b"not found", "text/plain")
            return
        h.send(200, f.read_bytes(), TYPES.get(f.suffix, "application/octet-stream"))


def dash_source(root: Path, *, timeline: bool = True, seconds: int = 120) -> subprocess.Popen[bytes]:
    """A dynamic MPD with 1 s segments (video + audio) written in real time into ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    p = ffmpeg(
        "-re", *VIDEO, "-re", *AUDIO, "-t", str(seconds), *X264, "-c:a", "aac", "-b:a", "64k",
        "-f", "dash", "-seg_duration", "1", "-window_size", "5", "-extra_window_size", "100",
        "-use_template", "1", "-use_timeline", "1" if timeline else "0", str(root / "live.mpd"),
    )  # fmt: skip
    wait_for(root / "live.mpd", text="dynamic")
    return p


KEY = bytes(range(16))


def aes_source(root: Path, *, seconds: int = 120) -> subprocess.Popen[bytes]:
    """AES-128 HLS with 1 s segments; the key is served at /key.bin."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "key.bin").write_bytes(KEY)
    (root / "keyinfo").write_text(f"/key.bin\n{root / 'key.bin'}\n", "utf-8")
    p = ffmpeg(
        "-re", *VIDEO, "-t", str(seconds), *X264,
        "-f", "hls", "-hls_time", "1", "-hls_list_size", "6", "-hls_flags", "temp_file",
        "-hls_key_info_file", str(root / "keyinfo"), "-hls_segment_filename", str(root / "seg-%05d.ts"),
        str(root / "index.m3u8"),
    )  # fmt: skip
    wait_for(root / "index.m3u8", text="#EXTINF")
    return p


def flv_source(port: int, *, seconds: int = 120, delay: float = 0) -> subprocess.Popen[bytes]:
    """HTTP-FLV served by ffmpeg itself to one client; the stream starts when it connects."""
    args = (
        "-re", *VIDEO, "-re", *AUDIO, "-t", str(seconds), *X264, "-c:a", "aac", "-b:a", "64k",
        "-f", "flv", "-listen", "1", f"http://127.0.0.1:{port}/live.flv",
    )  # fmt: skip
    return ffmpeg(*args, delay=delay)


def wait_listening(port: int, timeout: float = 20) -> None:
    """Until something listens on 127.0.0.1:port, read from /proc/net/tcp: a probe connection would use up ffmpeg's one client."""
    want = f"0100007F:{port:04X}"
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for ln in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            f = ln.split()
            if f[1] == want and f[3] == "0A":  # 0A: LISTEN
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on port {port} after {timeout} s")


def flv_tags(data: bytes) -> list[tuple[int, int]]:
    """(type, timestamp ms) of every FLV tag; AssertionError if the stream is not a clean FLV (E.4.1)."""
    assert data[:3] == b"FLV", "no FLV header"
    pos = int.from_bytes(data[5:9], "big")
    assert int.from_bytes(data[pos : pos + 4], "big") == 0
    pos += 4
    prev = 0
    tags = []
    while pos + 11 <= len(data):
        kind, size = data[pos], int.from_bytes(data[pos + 1 : pos + 4], "big")
        ts = int.from_bytes(data[pos + 4 : pos + 7], "big") | (data[pos + 7] << 24)
        end = pos + 11 + size
        if end + 4 > len(data):
            break  # the last tag, cut when the capture stopped
        assert kind in (8, 9, 18), f"bad tag type {kind} at {pos}"
        prev = int.from_bytes(data[end : end + 4], "big")
        assert prev == 11 + size, f"PreviousTagSize mismatch at {pos}"
        tags.append((kind, ts))
        pos = end + 4
    return tags


class LowLatency:
    """LL-HLS (RFC 8216bis): ffmpeg-made 1 s MPEG-TS segments published as 4 parts each, on a real-time clock.

    Segment ``i``'s part ``j`` becomes available at ``t0 + i + (j + 1) / 4`` s;
    a segment is listed whole once its last part is out. Blocking reloads
    (``_HLS_msn``/``_HLS_part``) and the preload-hinted part are held until
    they exist. Part files are written to ``root/parts`` before they are
    published: the test compares the archive against them.
    """

    PARTS = 4

    def __init__(self, root: Path, seconds: int = 40):
        self.root = root
        self.seconds = seconds
        self.server = FileServer(root)
        self.server.routes["/ll/index.m3u8"] = self.playlist
        self.blocking: list[tuple[int, int]] = []
        self.t0 = 0.0

    def start(self) -> LowLatency:
        seg = self.root / "segs"
        seg.mkdir(parents=True, exist_ok=True)
        p = ffmpeg(
            *VIDEO, "-t", str(self.seconds), *X264, "-f", "hls", "-hls_time", "1", "-hls_list_size", "0",
            "-hls_segment_filename", str(seg / "s%05d.ts"), str(seg / "all.m3u8"),
        )  # fmt: skip
        assert p.wait(60) == 0, p.stderr.read() if p.stderr else ""
        parts = self.root / "ll"
        parts.mkdir(exist_ok=True)
        self.count = 0
        for f in sorted(seg.glob("s*.ts")):
            data = f.read_bytes()
            shutil.copyfile(f, parts / f"s{self.count}.ts")
            # Cut on 188-byte TS packet boundaries, as a packager cuts parts.
            packets = len(data) // 188
            bounds = [round(packets * k / self.PARTS) * 188 for k in range(self.PARTS)] + [len(data)]
            for j in range(self.PARTS):
                (parts / f"s{self.count}.p{j}.ts").write_bytes(data[bounds[j] : bounds[j + 1]])
            self.count += 1
        for j in range(self.count):
            self.server.routes[f"/ll/s{j}.ts"] = self._file(j, None)
            for k in range(self.PARTS):
                self.server.routes[f"/ll/s{j}.p{k}.ts"] = self._file(j, k)
        self.t0 = time.monotonic()
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.base + "/ll/index.m3u8"

    def published(self) -> int:
        """Parts published so far, counted from the first part of segment 0."""
        return min(self.count * self.PARTS, int((time.monotonic() - self.t0) * self.PARTS))

    def _wait_part(self, msn: int, part: int, timeout: float = 3.0) -> None:
        if part >= self.PARTS:
            msn, part = msn + 1, 0
        end = time.monotonic() + timeout
        while self.published() <= msn * self.PARTS + part and time.monotonic() < end:
            time.sleep(0.02)

    def _file(self, seg: int, part: int | None) -> Callable[[_Handler], None]:
        def serve(h: _Handler) -> None:
            if part is None:
                ready = self.published() >= (seg + 1) * self.PARTS
            else:
                self._wait_part(seg, part)
                ready = self.published() > seg * self.PARTS + part
            if not ready:
                h.send(404, b"not yet", "text/plain")
                return
            name = f"s{seg}.ts" if part is None else f"s{seg}.p{part}.ts"
            h.send(200, (self.root / "ll" / name).read_bytes(), "video/mp2t")

        return serve

    def playlist(self, h: _Handler) -> None:
        q = parse_qs(urlsplit(h.path).query)
        if "_HLS_msn" in q:
            msn, part = int(q["_HLS_msn"][0]), int(q.get("_HLS_part", ["0"])[0])
            self.blocking.append((msn, part))
            self._wait_part(msn, part)
        n = self.published()
        whole, partial = divmod(n, self.PARTS)
        first = max(0, whole - 6)
        lines = [
            "#EXTM3U", "#EXT-X-VERSION:9", "#EXT-X-TARGETDURATION:1",
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.75",
            "#EXT-X-PART-INF:PART-TARGET=0.25", f"#EXT-X-MEDIA-SEQUENCE:{first}",
        ]  # fmt: skip
        for i in range(first, whole):
            if i >= whole - 3:
                lines += [f'#EXT-X-PART:DURATION=0.25,URI="s{i}.p{k}.ts"' for k in range(self.PARTS)]
            lines += ["#EXTINF:1.0,", f"s{i}.ts"]
        if whole >= self.count:
            lines.append("#EXT-X-ENDLIST")
        else:
            lines += [f'#EXT-X-PART:DURATION=0.25,URI="s{whole}.p{k}.ts"' for k in range(partial)]
            nxt = (whole, partial) if partial < self.PARTS else (whole + 1, 0)
            lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="s{nxt[0]}.p{nxt[1]}.ts"')
        h.send(200, ("\n".join(lines) + "\n").encode(), TYPES[".m3u8"])


def env_for(home: Path) -> dict[str, str]:
    root = Path(__file__).resolve().parents[2]
    return dict(os.environ, EVIDENCE_HOME=str(home), COLUMNS="200", PYTHONPATH=str(root))
