#!/usr/bin/env python3
"""Live stream: a local stand-in for a live-commerce room ("直播间").

Debian's ffmpeg generates each channel in real time (``-re``): a test
pattern with a burned-in wall clock and stream time, and a "PRICE ... CNY"
overlay that changes every second (channel ``shop``, MPEG-TS segments;
``shop-fmp4``, the same picture as fragmented MP4) or every four seconds
over a still background (``still``, for dedupe). ffmpeg writes one-second
segments into a directory; this server publishes them as a live HLS
playlist (a sliding window of the last ``LIST_SIZE`` segments) as they
appear.

    python examples/live-stream/serve.py [--port N]

Routes (``TOKEN`` is a scenario, optionally with ``.anything`` appended so
each caller gets its own state, which starts at its first playlist request):

    /hls/CHANNEL/TOKEN/index.m3u8   live media playlist
    /hls/CHANNEL/TOKEN/master.m3u8  two variants of the same media playlist
    /hls/CHANNEL/TOKEN/FILE         segment or init section
    /page/CHANNEL/TOKEN             a page that plays the stream (MSE, fMP4 channels)
    /clip.mp4?rate=BYTES_PER_S      a short progressive MP4, sent at that rate

Scenarios: ``live`` (forever), ``end-N`` (``#EXT-X-ENDLIST`` after N new
segments), ``stall-N`` (the playlist stops growing after N new segments),
``error-N`` (the playlist answers 503 after N new segments), ``badseg-N``
(new segment N answers 500), ``drop-N`` (new segment N is cut off halfway).

Every response body the server sends is logged with its SHA-256 in
``served`` so tests can compare what was archived with what was sent.

Chromium has no HLS player, and hls.js is not available offline: the page
feeds the fMP4 segments to a ``<video>`` through Media Source Extensions
with a small inline script, the way hls.js does for fMP4 streams. Over the
video it draws a DOM price tag and a chat that change every second, so a
screenshot shows more than the media alone.
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

LIST_SIZE = 5
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"
CHANNELS = {
    "shop": {"fmp4": False, "still": False},
    "shop-fmp4": {"fmp4": True, "still": False},
    "still": {"fmp4": False, "still": True},
}
_SEG = re.compile(r"^seg-(\d{6})\.(ts|m4s)$")
_TOKEN = re.compile(r"^(live|end|stall|error|badseg|drop)(?:-(\d+))?(?:\.[A-Za-z0-9_-]+)?$")
TYPES = {".m3u8": "application/vnd.apple.mpegurl", ".ts": "video/mp2t", ".m4s": "video/iso.segment", ".mp4": "video/mp4"}


def _filters(still: bool) -> str:
    price_every = 4 if still else 1
    price = f"PRICE %{{eif\\:99+mod(trunc(t/{price_every})*7\\,50)\\:d}}.00 CNY"
    parts = [
        f"drawtext=fontfile={FONT}:text='{price}':x=8:y=h-30:fontsize=20:fontcolor=yellow:box=1:boxcolor=red@0.8"
    ]
    if not still:
        clock = "%{localtime\\:%H\\\\\\:%M\\\\\\:%S} t=%{pts\\:hms}"
        parts.insert(
            0, f"drawtext=fontfile={FONT}:text='{clock}':x=8:y=8:fontsize=16:fontcolor=white:box=1:boxcolor=black@0.6"
        )
    return ",".join(parts)


def _die_with_parent() -> None:
    # ffmpeg -re on a lavfi source never ends: if whoever started it is killed
    # (a test run cut short), the kernel stops it too (Linux PR_SET_PDEATHSIG).
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class Channel:
    """One ffmpeg process writing a live HLS stream (1 s segments) into a directory."""

    def __init__(self, root: Path, name: str, *, fmp4: bool = False, still: bool = False, size: str = "320x180", rate: int = 10):
        self.name = name
        self.dir = root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.fmp4 = fmp4
        self.still = still
        self.size = size
        self.rate = rate
        self.proc: subprocess.Popen[bytes] | None = None
        self._cache: tuple[float, list[tuple[int, int, str]]] = (0.0, [])

    def start(self) -> Channel:
        src = f"color=c=0x1d3557:size={self.size}:rate={self.rate}" if self.still else f"testsrc2=size={self.size}:rate={self.rate}"
        ext = "m4s" if self.fmp4 else "ts"
        cmd = [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re",
            "-f", "lavfi", "-i", src, "-vf", _filters(self.still),
            # Baseline H.264 with a key frame every segment: every segment decodes on
            # its own, and the page's MSE codec string (avc1.42c01e) is true.
            "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-profile:v", "baseline",
            "-g", str(self.rate), "-keyint_min", str(self.rate), "-sc_threshold", "0", "-pix_fmt", "yuv420p",
            "-f", "hls", "-hls_time", "1", "-hls_list_size", "0",
            "-hls_flags", "independent_segments+temp_file",
            "-hls_segment_type", "fmp4" if self.fmp4 else "mpegts",
            "-hls_segment_filename", str(self.dir / f"seg-%06d.{ext}"),
            str(self.dir / "ffmpeg.m3u8"),
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=_die_with_parent)
        return self

    def published(self) -> list[tuple[int, int, str]]:
        """(seq, duration_ms, file) of every complete segment ffmpeg has listed so far."""
        p = self.dir / "ffmpeg.m3u8"
        try:
            mtime = p.stat().st_mtime
        except FileNotFoundError:
            return []
        if mtime == self._cache[0]:
            return self._cache[1]
        out: list[tuple[int, int, str]] = []
        dur = 0
        for ln in p.read_text("utf-8", "replace").splitlines():
            if ln.startswith("#EXTINF:"):
                dur = round(float(ln[8:].split(",")[0]) * 1000)
            elif (m := _SEG.match(ln.strip())) is not None:
                out.append((int(m.group(1)), dur, ln.strip()))
        self._cache = (mtime, out)
        return out

    def wait_for(self, n: int, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while len(self.published()) < n:
            if self.proc is not None and self.proc.poll() is not None:
                err = self.proc.stderr.read().decode("utf-8", "replace") if self.proc.stderr else ""
                raise RuntimeError(f"ffmpeg for channel {self.name} exited {self.proc.returncode}: {err.strip()}")
            if time.monotonic() > end:
                raise RuntimeError(f"channel {self.name}: fewer than {n} segments after {timeout:g} s")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Served:
    path: str
    status: int
    size: int
    sha256: str
    complete: bool = True


@dataclass
class _State:
    first: int
    drops: set[int] = field(default_factory=set)


def make_clip(path: Path, seconds: int = 6, size: str = "320x180", rate: int = 10) -> Path:
    """A short MP4 with the moving price overlay, for progressive-download captures."""
    subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}", "-vf", _filters(False),
            "-c:v", "libx264", "-preset", "ultrafast", "-g", str(rate), "-pix_fmt", "yuv420p",
            "-movflags", "+faststart", str(path),
        ],
        check=True,
    )  # fmt: skip
    return path


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        u = urlsplit(self.path)
        parts = u.path.strip("/").split("/")
        live: LiveServer = self.server.live
        try:
            if parts[0] == "hls" and len(parts) == 4 and parts[1] in live.channels:
                live.hls(self, live.channels[parts[1]], parts[2], parts[3])
            elif parts[0] == "page" and len(parts) == 3 and parts[1] in live.channels:
                self.send(200, PAGE.replace("$PLAYLIST", f"/hls/{parts[1]}/{parts[2]}/index.m3u8").encode(), "text/html; charset=utf-8")
            elif u.path == "/clip.mp4" and live.clip is not None:
                rate = int(parse_qs(u.query).get("rate", ["0"])[0] or 0)
                live.send_clip(self, rate)
            else:
                self.send(404, b"not found\n", "text/plain")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def send(self, status: int, body: bytes, ctype: str, *, cut: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Access-Control-Allow-Origin", "*")
        self.end_headers()
        sent = body if cut is None else body[:cut]
        self.wfile.write(sent)
        self.wfile.flush()
        self.server.live.log(self.path, status, sent, complete=cut is None)
        if cut is not None:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    live: LiveServer

    def handle_error(self, request: object, client_address: tuple) -> None:
        # Recorders hang up on keep-alive connections and cut downloads short on purpose.
        pass


class LiveServer:
    """The channels and the HTTP server on 127.0.0.1."""

    def __init__(
        self,
        root: Path | None = None,
        channels: tuple[str, ...] = tuple(CHANNELS),
        port: int = 0,
        clip: bool = True,
        size: str = "320x180",
        rate: int = 10,
    ):
        self._tmp = None if root is not None else tempfile.mkdtemp(prefix="live-stream-")
        self.root = Path(root or self._tmp)  # type: ignore[arg-type]
        self.channels = {n: Channel(self.root, n, size=size, rate=rate, **CHANNELS[n]) for n in channels}
        self.clip = make_clip(self.root / "clip.mp4") if clip else None
        self.served: list[Served] = []
        self._states: dict[tuple[str, str], _State] = {}
        self._lock = threading.Lock()
        self.httpd = _Server(("127.0.0.1", port), _Handler)
        self.httpd.live = self
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, kind: str, channel: str = "shop", scenario: str = "live", *, fresh: bool = True) -> str:
        """URL of a playlist (``index``/``master``) or ``page``; ``fresh`` gives it its own state."""
        token = f"{scenario}.{uuid.uuid4().hex[:8]}" if fresh else scenario
        if kind == "page":
            return f"{self.base}/page/{channel}/{token}"
        return f"{self.base}/hls/{channel}/{token}/{kind}.m3u8"

    def start(self, wait_segments: int = 3) -> LiveServer:
        for c in self.channels.values():
            c.start()
        self._thread.start()
        for c in self.channels.values():
            c.wait_for(wait_segments)
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        for c in self.channels.values():
            c.stop()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log(self, path: str, status: int, body: bytes, complete: bool = True) -> None:
        with self._lock:
            self.served.append(Served(path, status, len(body), hashlib.sha256(body).hexdigest(), complete))

    def served_by_path(self) -> dict[str, list[Served]]:
        with self._lock:
            out: dict[str, list[Served]] = {}
            for s in self.served:
                out.setdefault(s.path, []).append(s)
            return out

    # -- routes ------------------------------------------------------------------

    def hls(self, h: _Handler, ch: Channel, token: str, name: str) -> None:
        m = _TOKEN.match(token)
        if m is None:
            h.send(404, b"unknown scenario\n", "text/plain")
            return
        scenario, n = m.group(1), int(m.group(2) or 0)
        pub = ch.published()
        with self._lock:
            st = self._states.get((ch.name, token))
            if st is None:
                st = self._states[(ch.name, token)] = _State(pub[-1][0] if pub else 0)
        limit = st.first + n if scenario in ("end", "stall", "error") else None
        if name in ("index.m3u8", "master.m3u8"):
            if name == "master.m3u8":
                body = (
                    "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=150000,RESOLUTION=160x90\nindex.m3u8?low\n"
                    "#EXT-X-STREAM-INF:BANDWIDTH=400000,RESOLUTION=320x180\nindex.m3u8\n"
                )
                h.send(200, body.encode(), TYPES[".m3u8"])
                return
            latest = pub[-1][0] if pub else -1
            if scenario == "error" and limit is not None and latest > limit:
                h.send(503, b"stream unavailable\n", "text/plain")
                return
            visible = [s for s in pub if limit is None or s[0] <= limit][-LIST_SIZE:]
            ended = scenario == "end" and limit is not None and latest >= limit
            h.send(200, self.playlist(ch, visible, ended).encode(), TYPES[".m3u8"])
            return
        path = ch.dir / name
        if not (name == "init.mp4" or _SEG.match(name)) or not path.is_file():
            h.send(404, b"no such segment\n", "text/plain")
            return
        data = path.read_bytes()
        seq = int(_SEG.match(name).group(1)) if name != "init.mp4" else None  # type: ignore[union-attr]
        ctype = TYPES[path.suffix]
        if scenario == "badseg" and seq == st.first + n:
            h.send(500, b"segment encoder failed\n", "text/plain")
        elif scenario == "drop" and seq == st.first + n:
            h.send(200, data, ctype, cut=len(data) // 2)
        else:
            h.send(200, data, ctype)

    @staticmethod
    def playlist(ch: Channel, segs: list[tuple[int, int, str]], ended: bool) -> str:
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:7" if ch.fmp4 else "#EXT-X-VERSION:3",
            "#EXT-X-TARGETDURATION:1",
            f"#EXT-X-MEDIA-SEQUENCE:{segs[0][0] if segs else 0}",
        ]
        if ch.fmp4:
            lines.append('#EXT-X-MAP:URI="init.mp4"')
        for _seq, ms, name in segs:
            lines += [f"#EXTINF:{ms / 1000:.3f},", name]
        if ended:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"

    def send_clip(self, h: _Handler, rate: int) -> None:
        assert self.clip is not None
        data = self.clip.read_bytes()
        h.send_response(200)
        h.send_header("Content-Type", "video/mp4")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        step = max(1, rate // 10) if rate else len(data)
        for i in range(0, len(data), step):
            h.wfile.write(data[i : i + step])
            h.wfile.flush()
            if rate:
                time.sleep(step / rate)
        self.log(h.path, 200, data)


PAGE = """<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>直播间 · 限时特价 Live room</title>
<style>
body { margin: 0; background: #111; color: #eee; font: 16px sans-serif; }
#stage { position: relative; width: 640px; height: 360px; }
video { width: 640px; height: 360px; background: #000; }
#price { position: absolute; right: 12px; top: 12px; background: #c00; color: #fff; padding: 6px 12px; font-size: 24px; }
#chat { position: absolute; right: 8px; bottom: 8px; margin: 0; padding: 0; list-style: none; font-size: 14px; }
#chat li { background: rgba(0,0,0,.55); margin-top: 2px; padding: 2px 6px; }
</style></head>
<body>
<div id="stage"><video id="v" muted playsinline></video><div id="price">¥199.00</div><ul id="chat"></ul></div>
<p id="status">connecting</p>
<script>
const PLAYLIST = new URL("$PLAYLIST", location.href);
const v = document.getElementById("v");
const say = t => { document.getElementById("status").textContent = t; };
const sleep = ms => new Promise(r => setTimeout(r, ms));
let tick = 0;
setInterval(() => {
  tick += 1;
  document.getElementById("price").textContent = "¥" + (199 - (tick % 20)) + ".00 仅剩" + (50 - tick % 50) + "件";
  const li = document.createElement("li");
  li.textContent = "买家" + (1000 + tick) + ": 还有货吗? (" + new Date().toLocaleTimeString() + ")";
  const chat = document.getElementById("chat");
  chat.appendChild(li);
  while (chat.children.length > 4) chat.removeChild(chat.firstChild);
}, 1000);
function append(sb, buf) {
  return new Promise((ok, bad) => {
    sb.addEventListener("updateend", ok, { once: true });
    sb.addEventListener("error", bad, { once: true });
    sb.appendBuffer(buf);
  });
}
async function get(url) {
  const r = await fetch(url, { cache: "no-store" });
  if (!r.ok) throw new Error(url + " HTTP " + r.status);
  return r.arrayBuffer();
}
const ms = new MediaSource();
v.src = URL.createObjectURL(ms);
ms.addEventListener("sourceopen", async () => {
  const sb = ms.addSourceBuffer('video/mp4; codecs="avc1.42c01e"');
  let last = -1, init = null, started = false;
  for (;;) {
    let text = null;
    try {
      const r = await fetch(PLAYLIST, { cache: "no-store" });
      if (r.ok) text = await r.text(); else say("playlist HTTP " + r.status);
    } catch (e) { say("playlist: " + e); }
    if (text !== null) {
      let seq = 0, map = null, ended = false;
      const segs = [];
      for (const raw of text.split("\\n")) {
        const ln = raw.trim();
        if (ln.startsWith("#EXT-X-MEDIA-SEQUENCE:")) seq = parseInt(ln.split(":")[1], 10);
        else if (ln.startsWith("#EXT-X-MAP:")) map = /URI="([^"]+)"/.exec(ln)[1];
        else if (ln === "#EXT-X-ENDLIST") ended = true;
        else if (ln && !ln.startsWith("#")) segs.push([seq + segs.length, ln]);
      }
      try {
        if (map && init === null) { init = map; await append(sb, await get(new URL(map, PLAYLIST))); }
        for (const [n, uri] of segs) {
          if (n > last) { last = n; await append(sb, await get(new URL(uri, PLAYLIST))); }
        }
      } catch (e) { say("segment: " + e); }
      if (!started && sb.buffered.length) {
        started = true;
        v.currentTime = sb.buffered.start(0);
        v.play().catch(e => say("play: " + e));
        say("playing");
      }
      if (started && sb.buffered.length && v.currentTime - sb.buffered.start(0) > 30 && !sb.updating) {
        // evict what was played long ago, as players do, or the buffer grows for the whole stream
        await new Promise(ok => { sb.addEventListener("updateend", ok, { once: true }); sb.remove(0, v.currentTime - 10); });
      }
      if (ended) { if (!sb.updating) ms.endOfStream(); say("ended"); break; }
    }
    await sleep(500);
  }
});
</script>
</body></html>
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=8090)
    args = ap.parse_args()
    with LiveServer(port=args.port) as live:
        print(f"live stream on {live.base}")
        print(f"  HLS  {live.url('index', fresh=False)}")
        print(f"  page {live.url('page', 'shop-fmp4', fresh=False)}")
        print(f"  MP4  {live.base}/clip.mp4?rate=200000")
        print("Ctrl-C stops.")
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
