"""Record a live stream as rolling, sealed windows of evidence.

    from capture.livestream import capture_livestream
    s = capture_livestream("https://live.example/room/7/index.m3u8", case="SAMR-2026-017",
                           duration=600, frame_interval=1.0)
    s.end_reason, s.windows, s.segments, s.frames

Several ways in, one recorder (``recorder.py``):

* ``hls`` (``.m3u8``): a direct fetcher polls the playlist and fetches every
  new segment; Low-Latency HLS parts are fetched as they are published, with
  blocking reloads; AES-128 segments are archived as served (ciphertext) with
  their key response, and decrypted only in memory to decode frames.
* ``dash`` (``.mpd``, ``dash.py``): a dynamic MPD reloaded at its
  ``minimumUpdatePeriod``; the best video representation and the audio.
* ``flv`` (HTTP-FLV, ``flv.py``) and ``progressive`` (``.mp4``/``.webm``): one
  streamed download kept as one part file per window.
* ``page``: Chromium plays it (``livepage.py``), every response is archived
  and a screenshot is taken at each interval.
* ``resolve``: a room page resolved to its stream by yt-dlp (``resolve.py``),
  then recorded as that stream's kind.

``auto`` goes by the URL's name, else by the first response's type or first
bytes. SIGINT and SIGTERM end the capture the same way a bound does.
``capture_rooms`` records several URLs at once, each its own session.
"""

from __future__ import annotations

import io
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ledger.errors import CaptureError, EvidenceError, UsageError

from . import dash, flv, hls
from .browser import find_chromium
from .fetch import Exchange, Fetcher, FetchFailed
from .frames import Sampler, joined
from .livepage import run_page
from .options import check_url
from .recorder import (
    WAIT_POLL_SECONDS,
    Limits,
    LivestreamSession,
    Parts,
    PartsRecorder,
    Progress,
    Recorder,
    decode_into,
    environment_file,
    get_hops,
    get_when_live,
    record_hops,
    seal_streamed,
    unlink,
)

if TYPE_CHECKING:
    from .resolve import Resolution

__all__ = [
    "LiveJob", "LivestreamSession", "Limits", "MODES", "RoomsResult", "capture_livestream", "capture_rooms",
    "check_request", "stream_kind",
]

MODES = ("auto", "hls", "dash", "progressive", "page", "flv", "resolve")
MEDIA_EXT = (".mp4", ".m4v", ".webm", ".mkv", ".mov", ".ogv", ".ts")
#: the first GET of a URL whose kind we cannot tell from its name reads at most this much
PROBE_BYTES = 2 * 1024 * 1024
#: consecutive failed playlist fetches before the capture gives up
MAX_PLAYLIST_ERRORS = 3
#: no new segment for this many target durations means the stream stalled
STALL_TARGETS = 3
#: a key response longer than this is not an AES-128 key (16 bytes) and is not read whole
MAX_KEY_BYTES = 4096
#: a progressive download is decoded at the end only up to this size
MAX_DECODE_BYTES = 4 * 1024 * 1024 * 1024
#: at most this many rooms in one --urls file
MAX_ROOMS = 64


# -- direct HLS ---------------------------------------------------------------


class _Keys:
    """AES-128 keys of an HLS stream: fetched once per URI, archived, kept in memory only."""

    def __init__(self, rec: Recorder, fetcher: Fetcher):
        self.rec = rec
        self.fetcher = fetcher
        self.keys: dict[str, bytes] = {}
        self.said: set[str] = set()

    def key(self, k: hls.Key) -> bytes | None:
        """The key bytes, or None when the stream cannot be decoded (and the capture says why)."""
        rec = self.rec
        if not k.decodable:
            what = f"{k.method}" + (f" (KEYFORMAT {k.keyformat})" if k.keyformat != "identity" else "")
            if what not in self.said:
                self.said.add(what)
                rec.facts["encryption"] = {
                    "method": k.method,
                    "keyformat": k.keyformat,
                    "decoded": False,
                    "why": "SAMPLE-AES and DRM key systems: segments archived as served, no frames decoded",
                }
                rec.log(
                    "key",
                    f"segments are encrypted with {what}: archived as served, not decoded",
                    level="warning",
                )
            return None
        assert k.uri is not None
        if k.uri in self.keys:
            return self.keys[k.uri]
        hops = get_hops(rec, self.fetcher, k.uri)
        if hops is None:
            rec.stop("network-error")
            return None
        ex = record_hops(rec, hops)
        try:
            if not ex.ok or ex.body is None or ex.size != 16:
                why = (
                    f"answered {ex.status_line}"
                    if not ex.ok
                    else f"returned {ex.size} bytes, not a 16-byte AES-128 key"
                )
                rec.log(
                    "key",
                    f"key {k.uri} {why}: the segments could not be decrypted; capture stopped",
                    level="error",
                    status=ex.status,
                )
                rec.stop("http-error")
                return None
            data = ex.body.read_bytes()
        finally:
            unlink(ex)
        self.keys[k.uri] = data
        rec.facts["encryption"] = {
            "method": "AES-128",
            "decoded": True,
            "how": "segments archived as served (ciphertext) with their key response; decrypted in memory only, to decode frames",
        }
        rec.add_info("keys", {"uri": k.uri, "sha256": ex.sha256, "size": ex.size, "method": k.method})
        rec.log("key", f"AES-128 key {k.uri} fetched and archived", sha256=ex.sha256)
        return data


def _decrypt(path: Path, key: bytes, iv: bytes) -> io.BytesIO:
    """AES-128-CBC with PKCS#7 padding (RFC 8216 4.3.2.4), into memory: plaintext never touches the disk."""
    dec = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    unpad = padding.PKCS7(128).unpadder()
    out = io.BytesIO()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 16):
            out.write(unpad.update(dec.update(chunk)))
    out.write(unpad.update(dec.finalize()) + unpad.finalize())
    out.seek(0)
    return out


class _Hls:
    """One HLS media playlist followed to its end, a bound, a stall or errors."""

    def __init__(self, rec: Recorder, fetcher: Fetcher):
        self.rec = rec
        self.fetcher = fetcher
        self.sampler = Sampler(int(rec.limits.frame_interval * 1000))
        self.keys = _Keys(rec, fetcher)
        self.inits: dict[str, Path] = {}
        self.last_seq = -1
        self.last_new = time.monotonic()
        #: LL-HLS: parts fetched of the segment being published, by its sequence number
        self.parts: dict[int, list[tuple[str, Path | None]]] = {}
        self.hinted: str | None = None

    def init(self, uri: str | None) -> Path | None:
        if uri and uri not in self.inits:
            ih = get_hops(self.rec, self.fetcher, uri)
            if ih is not None:
                iex = record_hops(self.rec, ih, segment={"seq": None, "init": True})
                if iex.ok and iex.body is not None:
                    self.inits[uri] = iex.body
                else:
                    unlink(iex)
        return self.inits.get(uri) if uri else None

    def decode(self, body: Path | io.BytesIO, seg: hls.Segment, where: str) -> None:
        rec = self.rec
        src: Path | io.BytesIO = body
        if seg.key is not None:
            key = self.keys.key(seg.key)
            if key is None:
                return
            assert isinstance(body, Path)
            try:
                src = _decrypt(body, key, seg.key.iv or seg.seq.to_bytes(16, "big"))
            except ValueError as e:
                rec.log("decode", f"cannot decrypt {where}: {e}", level="warning", url=where)
                return
        init = self.init(seg.init_uri)
        tmp = self.fetcher.tmpdir / "joined"
        if init is not None:
            if isinstance(src, io.BytesIO):
                src = io.BytesIO(init.read_bytes() + src.getvalue())
            else:
                src = joined(init, src, tmp)
        try:
            decode_into(rec, self.sampler, src, where, seq=seg.seq)  # type: ignore[arg-type]
        finally:
            if isinstance(src, Path) and src == tmp:
                src.unlink(missing_ok=True)

    def segment(self, seg: hls.Segment) -> None:
        """A whole segment: assembled from the parts already fetched, else fetched whole."""
        rec = self.rec
        if seg.key is not None and self.keys.key(seg.key) is None and seg.key.decodable:
            return  # the key could not be had: the capture stops before claiming segments it cannot open
        self.init(seg.init_uri)
        got = self.parts.pop(seg.seq, None)
        self.last_seq = seg.seq
        if got is not None and seg.parts and not any(p.byterange for p in seg.parts):
            have = {u for u, _ in got}
            for j, p in enumerate(seg.parts):
                if p.uri not in have and not rec.stopping:
                    got.append((p.uri, self._part(seg.seq, j, p.uri, p.duration_ms)))
            order = {p.uri: j for j, p in enumerate(seg.parts)}
            got.sort(key=lambda x: order.get(x[0], len(order)))
            bodies = [b for u, b in got if u in order]
            if len(bodies) == len(seg.parts) and all(b is not None for b in bodies):
                whole = self.fetcher.tmpdir / f"whole-{seg.seq}"
                with open(whole, "wb") as out:
                    for b in bodies:
                        assert b is not None
                        out.write(b.read_bytes())
                self.decode(whole, seg, seg.uri)
                whole.unlink(missing_ok=True)
            else:
                rec.log(
                    "segment",
                    f"segment {seg.seq}: not every part could be fetched; its frames are not decoded",
                    level="warning",
                )
            for _, b in got:
                if b is not None:
                    b.unlink(missing_ok=True)
            return
        for _, b in got or []:
            if b is not None:
                b.unlink(missing_ok=True)
        sh = get_hops(rec, self.fetcher, seg.uri)
        if sh is None:
            return
        sex = record_hops(rec, sh, segment={"seq": seg.seq, "duration_ms": seg.duration_ms, **_enc(seg)})
        self.last_new = time.monotonic()
        if sex.ok and sex.body is not None:
            self.decode(sex.body, seg, seg.uri)
        elif not sex.ok:
            rec.log(
                "segment",
                f"{sex.url} answered {sex.status_line} ({sex.size} bytes)",
                level="warning",
                status=sex.status,
            )
        unlink(sex)

    def _part(self, seq: int, j: int, uri: str, duration_ms: int | None) -> Path | None:
        """Fetch and archive one part as served; its body is kept until its segment is whole."""
        hops = get_hops(self.rec, self.fetcher, uri)
        if hops is None:
            return None
        ex = record_hops(self.rec, hops, segment={"seq": seq, "part": j, "duration_ms": duration_ms})
        self.last_new = time.monotonic()
        if ex.ok and ex.body is not None:
            return ex.body
        self.rec.log(
            "part", f"{ex.url} answered {ex.status_line} ({ex.size} bytes)", level="warning", status=ex.status
        )
        unlink(ex)
        return None

    def live_parts(self, pl: hls.MediaPlaylist) -> None:
        """LL-HLS: the parts of the segment being published, then the preload hint."""
        got = self.parts.setdefault(pl.next_seq, [])
        have = {u for u, _ in got}
        for p in pl.parts:
            if self.rec.stopping:
                return
            if p.uri not in have and not p.byterange:
                got.append((p.uri, self._part(pl.next_seq, len(got), p.uri, p.duration_ms)))
                have.add(p.uri)
        hint = pl.preload_hint
        if hint and hint not in have and not self.rec.stopping:
            # The server holds the request until the hinted part exists (RFC 8216bis 6.2.6).
            got.append((hint, self._part(pl.next_seq, len(got), hint, None)))

    def close(self) -> None:
        for p in self.inits.values():
            p.unlink(missing_ok=True)
        for got in self.parts.values():
            for _, b in got:
                if b is not None:
                    b.unlink(missing_ok=True)


def _enc(seg: hls.Segment) -> dict[str, Any]:
    return {"encryption": seg.key.summary()} if seg.key is not None else {}


def run_hls(rec: Recorder, fetcher: Fetcher, url: str, first: list[Exchange] | None = None) -> None:
    """Poll a playlist and archive every segment until a bound, the end, a stall or errors."""
    hops = first or get_hops(rec, fetcher, url)
    if hops is None:
        rec.stop("network-error")
        return
    ex = record_hops(rec, hops)
    if not ex.ok:
        unlink(ex)
        rec.log("playlist", f"{ex.url} answered {ex.status_line or 'nothing'}", level="error")
        rec.stop("http-error")
        return
    try:
        pl: hls.MediaPlaylist | hls.MasterPlaylist | None = hls.parse(
            ex.body.read_text("utf-8", "replace") if ex.body else "", ex.url
        )
    finally:
        unlink(ex)
    playlist_url = ex.url
    if isinstance(pl, hls.MasterPlaylist):
        v = pl.best()
        rec.log(
            "variant",
            f"chose the highest-bandwidth variant {v.uri}",
            bandwidth=v.bandwidth,
            resolution=v.resolution,
        )
        playlist_url = v.uri
        pl = None
    h = _Hls(rec, fetcher)
    errors = 0
    reload_url = playlist_url
    try:
        while not rec.stopping:
            if pl is None:
                hops = get_hops(rec, fetcher, reload_url)
                ok = False
                if hops is not None:
                    ex = record_hops(rec, hops)
                    if ex.ok:
                        try:
                            parsed = hls.parse(
                                ex.body.read_text("utf-8", "replace") if ex.body else "", ex.url
                            )
                            if isinstance(parsed, hls.MediaPlaylist):
                                pl, ok = parsed, True
                            else:
                                rec.log(
                                    "playlist",
                                    f"{ex.url} is a master playlist where a media playlist was expected",
                                    level="error",
                                )
                        except CaptureError as e:
                            rec.log("playlist", str(e), level="error")
                    else:
                        rec.log(
                            "playlist", f"{ex.url} answered {ex.status_line}", level="error", status=ex.status
                        )
                    unlink(ex)
                if not ok:
                    errors += 1
                    if rec.stopping:
                        break
                    if errors >= MAX_PLAYLIST_ERRORS:
                        rec.stop("network-error" if hops is None else "http-error")
                        break
                    rec.wait(1.0)
                    continue
                errors = 0
            assert isinstance(pl, hls.MediaPlaylist)
            target_s = pl.target_duration_ms / 1000
            new = [s for s in pl.segments if s.seq > h.last_seq]
            if new and h.last_seq >= 0 and new[0].seq > h.last_seq + 1:
                rec.log(
                    "playlist",
                    f"segments {h.last_seq + 1}..{new[0].seq - 1} left the playlist before they could be fetched",
                    level="warning",
                )
            if h.last_seq < 0 and pl.parts and len(new) > 1:
                # LL-HLS: start at the live edge, as a player does; older segments are history, not live.
                new = new[-1:]
            for seg in new:
                if rec.stopping:
                    break
                h.segment(seg)
                rec.tick()
            low_latency = bool(pl.part_target_ms and (pl.parts or pl.preload_hint))
            if low_latency and not rec.stopping and not pl.ended:
                h.live_parts(pl)
                rec.tick()
            if rec.stopping:
                break
            if pl.ended and (not pl.segments or h.last_seq >= pl.segments[-1].seq):
                rec.log("playlist", "#EXT-X-ENDLIST: the stream has ended")
                rec.stop("stream-ended")
                break
            if time.monotonic() - h.last_new > STALL_TARGETS * target_s:
                rec.log(
                    "playlist",
                    f"no new segment for {time.monotonic() - h.last_new:.1f} s ({STALL_TARGETS} target durations)",
                    level="warning",
                )
                rec.stop("stalled")
                break
            if low_latency and pl.can_block_reload:
                # Blocking reload: the server answers when the next part exists, no polling delay.
                nxt = len(h.parts.get(pl.next_seq, []))
                reload_url = hls.blocking_url(playlist_url, pl.next_seq, nxt)
            else:
                # RFC 8216 6.3.4: reload after one target duration, half of it when nothing changed.
                reload_url = playlist_url
                wait = pl.part_target_ms / 1000 if low_latency else (target_s if new else target_s / 2)
                rec.wait(wait)
            pl = None
    finally:
        h.close()


# -- progressive download -------------------------------------------------------


def run_progressive(rec: Recorder, fetcher: Fetcher, url: str) -> None:
    """One streamed GET; each window seals its part; the full response record closes it."""
    assert isinstance(rec, PartsRecorder)
    parts = Parts(rec, url)
    rec.parts = parts
    hops = get_when_live(rec, fetcher, url, parts.write)
    if hops is None:
        return
    ex = seal_streamed(rec, hops, "download complete")
    if ex.body is not None and ex.size and ex.size <= MAX_DECODE_BYTES and 200 <= ex.status < 300:
        # Decoded frames come last: a file whose index sits at its end cannot be
        # decoded while it is still arriving.
        decode_into(rec, Sampler(int(rec.limits.frame_interval * 1000)), ex.body, ex.url, final=True)
    for h in hops:
        unlink(h)


# -- entry point ----------------------------------------------------------------


def stream_kind(url: str) -> str:
    path = urlsplit(url).path.lower()
    if path.endswith(".m3u8"):
        return "hls"
    if path.endswith(".mpd"):
        return "dash"
    if path.endswith(".flv"):
        return "flv"
    if path.endswith(MEDIA_EXT):
        return "progressive"
    return "unknown"


def kind_of_response(ex: Exchange) -> str:
    """What a first response is, by its type and, when that says nothing useful, its first bytes."""
    ct = (ex.header("content-type") or "").split(";")[0].strip().lower()
    head = b""
    if ex.body is not None and ex.size:
        with open(ex.body, "rb") as f:
            head = f.read(512)
    if hls.looks_like_playlist(ex.url, ct) or head.lstrip(b"\xef\xbb\xbf").startswith(b"#EXTM3U"):
        return "hls"
    if dash.looks_like_mpd(ct, head):
        return "dash"
    if ct in ("video/x-flv", "video/flv") or head.startswith(b"FLV\x01"):
        return "flv"
    if ct.split("/")[0] in ("video", "audio"):
        return "progressive"
    return "page"


def resolve_room(url: str, login: Any = None) -> str:
    """``--mode resolve``: a room page to the URL of its stream (``resolve.py``, yt-dlp's extractors).

    Runs before anything is recorded, so a page with no stream is one line
    (exit 2) and nothing sealed. The returned URL carries the resolution:
    the job puts its facts into every window and the end record, and the
    page fetches the resolver made into the first window's WARC.
    """
    # Imported here, not at the top: yt-dlp's extractors are ~0.25 s of start-up CPU
    # that every other mode (a direct stream, page) would pay for nothing.
    from .resolve import ResolvedUrl, resolve

    return ResolvedUrl(resolve(url, login))


def _resolved(rec: Recorder, r: Resolution) -> None:
    """A resolved room's facts into the exhibit and its page fetches into the first window's WARC."""
    try:
        rec.facts["resolved"] = r.facts
        f = r.facts
        rec.log(
            "resolve",
            f"{f['room_url']} resolved by yt-dlp {f['version']} ({f['extractor']}) to {f['recorded_url']}",
            extractor=f["extractor"],
            fetches=len(r.exchanges),
        )
        for ex in r.exchanges:
            rec.exchange(ex)
    finally:
        r.close()


@contextmanager
def _signals(stop: Callable[[str], None], stopping: Callable[[], bool]) -> Iterator[None]:
    """SIGINT/SIGTERM end the capture like a bound; a second Ctrl-C aborts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        if stopping() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop(signal.Signals(signum).name)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _check_login(login: Any, mode: str) -> None:
    # Only the page-mode browser carries a saved login; the direct stream fetcher sends no cookies.
    # The resolver of --mode resolve sends them too, to the room page (not to the stream).
    if login is not None and mode not in ("page", "resolve"):
        raise UsageError(
            "--session is used by the browser of page mode and the resolver: give --mode page or resolve"
        )


def check_request(
    url: str, case: Any, limits: Limits, mode: str, wait_live: float | None, login: Any = None
) -> tuple[str, str, str]:
    """Check a livestream request before anything is recorded: (url, case, kind) or UsageError."""
    url = check_url(url)
    if not isinstance(case, str) or not case.strip():
        raise UsageError("a livestream capture needs a case id (--case)")
    limits.check()
    if mode not in MODES:
        raise UsageError(f"--mode must be one of {', '.join(MODES)}, not {mode!r}")
    if wait_live is not None and (not isinstance(wait_live, int | float) or not 0 < wait_live <= 7 * 86400):
        raise UsageError(f"--wait-live must be more than 0 and at most 604800 seconds, not {wait_live!r}")
    if mode == "resolve":
        url = resolve_room(url, login)
        mode = "auto"
    kind = stream_kind(url) if mode == "auto" else mode
    if kind == "page":
        find_chromium()
    return url, case.strip(), kind


def capture_livestream(
    url: str,
    *,
    case: str,
    duration: float,
    frame_interval: float = 1.0,
    window: float = 10.0,
    max_bytes: int | None = None,
    max_frames: int | None = None,
    dedupe: bool = False,
    operator: str | None = None,
    note: str | None = None,
    ledger: Any = None,
    home: Path | str | None = None,
    progress: Progress | None = None,
    mode: str = "auto",
    wait_live: float | None = None,
    login: Any = None,
    screen_record: bool = True,
) -> LivestreamSession:
    """Record ``url`` for ``duration`` seconds into rolling sealed windows of ``case``.

    ``mode`` is one of ``MODES``; ``auto`` goes by the URL's name, else by the
    first response. ``wait_live`` waits up to that many seconds for the stream
    to start (playlist there, MPD dynamic, FLV source answering) and records
    ``duration`` seconds from then. Raises UsageError for bad arguments and
    EnvironmentProblem (no browser, no PyAV) before anything is recorded;
    once recording has started, problems end the capture cleanly and are in
    the windows' logs and ``end_reason``. ``login``: a saved session
    (``ledger.sessions.LoginSession``) the page-mode browser starts from.
    ``screen_record=False``: page mode records no screen video (``screenrec.py``).
    """
    limits = Limits(duration, max_bytes, max_frames, frame_interval, window)
    _check_login(login, mode)
    url, case, kind = check_request(url, case, limits, mode, wait_live, login)
    Sampler(1)  # PyAV missing: say so before anything is recorded
    owned = ledger is None
    if ledger is None:
        from ledger.log import Ledger

        ledger = Ledger.open(home)
    try:
        with tempfile.TemporaryDirectory(prefix="evidence-live-") as tmp:
            job = LiveJob(
                url, kind, Path(tmp), ledger, case, limits, dedupe, operator, note, progress, wait_live, login,
                screen_record,
            )
            with _signals(job.signalled, job.stopping):
                return job.run()
    finally:
        if owned:
            ledger.close()


@dataclass
class RoomsResult:
    """Several rooms recorded at once: a session per room that started, an error line per room that did not."""

    sessions: list[LivestreamSession]
    failed: list[tuple[str, str]]

    def to_json(self) -> dict[str, Any]:
        return {
            "rooms": [s.to_json() for s in self.sessions],
            "failed": [{"url": u, "error": e} for u, e in self.failed],
        }


def read_rooms(path: Path) -> list[str]:
    """One URL per line; blank lines and ``#`` comments are skipped."""
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read --urls {path}: {getattr(e, 'strerror', None) or e}") from None
    urls = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    if not urls:
        raise UsageError(f"--urls {path} lists no URL")
    if len(urls) > MAX_ROOMS:
        raise UsageError(f"--urls {path} lists {len(urls)} URLs; at most {MAX_ROOMS} rooms at once")
    return urls


def capture_rooms(
    urls: list[str],
    *,
    case: str,
    duration: float,
    concurrency: int | None = None,
    ledger: Any = None,
    home: Path | str | None = None,
    mode: str = "auto",
    wait_live: float | None = None,
    progress: Progress | None = None,
    **kw: Any,
) -> RoomsResult:
    """Record every URL at once (at most ``concurrency`` at a time), each its own windows and end record.

    SIGINT/SIGTERM stop every room; each seals its open window and appends
    its end record. Arguments are checked for every room before any starts.
    """
    limits = Limits(
        duration,
        kw.get("max_bytes"),
        kw.get("max_frames"),
        kw.get("frame_interval", 1.0),
        kw.get("window", 10.0),
    )
    _check_login(kw.get("login"), mode)
    checked = []
    for n, u in enumerate(urls, 1):
        try:
            checked.append(check_request(u, case, limits, mode, wait_live, kw.get("login")))
        except UsageError as e:
            raise UsageError(f"room {n}: {e}") from None
    if concurrency is None:
        concurrency = len(urls)
    if not isinstance(concurrency, int) or not 1 <= concurrency <= MAX_ROOMS:
        raise UsageError(f"--concurrency must be between 1 and {MAX_ROOMS}, not {concurrency!r}")
    Sampler(1)
    owned = ledger is None
    if ledger is None:
        from ledger.log import Ledger

        ledger = Ledger.open(home)
    jobs: list[LiveJob] = []
    stop = threading.Event()
    sessions: dict[int, LivestreamSession] = {}
    failed: list[tuple[int, str, str]] = []

    def signalled(name: str) -> None:
        stop.set()
        for j in list(jobs):
            j.signalled(name)

    def one(n: int, url: str, case_: str, kind: str, tmp: Path) -> None:
        if stop.is_set():
            failed.append((n, url, "not started: the capture was interrupted"))
            return
        room_progress = None if progress is None else (lambda e: progress({**e, "room": n}))
        job = LiveJob(
            url,
            kind,
            tmp / f"room-{n}",
            ledger,
            case_,
            limits,
            kw.get("dedupe", False),
            kw.get("operator"),
            kw.get("note"),
            room_progress,
            wait_live,
            kw.get("login"),
            kw.get("screen_record", True),
        )
        job.tmp.mkdir()
        jobs.append(job)
        try:
            sessions[n] = job.run()
        except EvidenceError as e:
            failed.append((n, url, str(e)))

    try:
        with (
            tempfile.TemporaryDirectory(prefix="evidence-rooms-") as tmp,
            ThreadPoolExecutor(concurrency, "room") as pool,
        ):
            with _signals(signalled, stop.is_set):
                futures = [pool.submit(one, n, u, c, k, Path(tmp)) for n, (u, c, k) in enumerate(checked)]
                # Waits in short steps so that the main thread runs the signal handler promptly.
                while not all(f.done() for f in futures):
                    time.sleep(0.2)
                for f in futures:
                    f.result()
    finally:
        if owned:
            ledger.close()
    return RoomsResult([sessions[n] for n in sorted(sessions)], [(u, e) for _, u, e in sorted(failed)])


class LiveJob:
    """One capture from its first request to its end record.

    Public for faces that run a capture in a thread and stop it from another
    (the web app): ``signalled(name)`` ends it as Ctrl-C does.
    """

    def __init__(
        self,
        url: str,
        kind: str,
        tmp: Path,
        ledger: Any,
        case: str,
        limits: Limits,
        dedupe: bool,
        operator: str | None,
        note: str | None,
        progress: Progress | None,
        wait_live: float | None,
        login: Any = None,
        screen_record: bool = True,
    ):
        self.url, self.kind, self.tmp, self.ledger, self.case = url, kind, tmp, ledger, case
        self.login = login
        self.screen_record = screen_record
        self.limits, self.dedupe, self.operator, self.note, self.progress = (
            limits,
            dedupe,
            operator,
            note,
            progress,
        )
        self.wait_live = wait_live
        self.rec: Recorder | None = None
        #: a signal before the recorder exists (still waiting for the stream to go live)
        self.early_stop: str | None = None
        self.stop_event = threading.Event()

    def signalled(self, name: str) -> None:
        if self.rec is not None:
            self.rec.signalled(name)
        else:
            self.early_stop = name
            self.stop_event.set()

    def stopping(self) -> bool:
        return self.rec.stopping if self.rec is not None else self.stop_event.is_set()

    def run(self) -> LivestreamSession:
        # A resolved room's URL carries its resolution; from here on it is a plain str (JSON, WARC).
        # (getattr, not isinstance: resolve.py and yt-dlp are only imported by --mode resolve)
        resolution: Resolution | None = getattr(self.url, "resolution", None)
        self.url = str(self.url)
        url, tmp, limits = self.url, self.tmp, self.limits
        bodies = tmp / "bodies"
        bodies.mkdir()
        fetcher = Fetcher(bodies)
        first: list[Exchange] | None = None
        waited: dict[str, Any] | None = None
        t_wait = time.monotonic()
        kind = self.kind
        if self.wait_live is not None and kind in ("hls", "dash", "unknown"):
            waited, kind, first = self._wait(fetcher, kind)
            if kind == "page":
                find_chromium()
        if kind == "unknown":
            # Neither name nor mode says what this is: ask the server, and keep the answer.
            try:
                first = fetcher.get(url, max_body=PROBE_BYTES)
            except FetchFailed as e:
                fetcher.close()
                raise CaptureError(f"cannot reach {e}; nothing was recorded") from None
            kind = kind_of_response(first[-1])
            if kind == "page":
                find_chromium()
        cls = PartsRecorder if kind in ("progressive", "flv") else Recorder
        rec = cls(
            ledger=self.ledger,
            case=self.case,
            url=url,
            mode=kind,
            workdir=tmp / "windows",
            limits=limits,
            dedupe=self.dedupe,
            operator=self.operator,
            note=self.note,
            progress=self.progress,
        )
        self.rec = rec
        rec.screen_record = self.screen_record
        if self.login is not None:
            rec.login = self.login
            rec.facts["session"] = self.login.facts()
        if self.early_stop is not None:
            rec.signalled(self.early_stop)
        if self.wait_live is not None:
            if waited is not None:
                rec.facts["wait_live"] = waited
                rec.log(
                    "wait-live",
                    f"the stream went live after {waited['waited_ms'] / 1000:.1f} s ({waited['checks']} check(s))",
                    **waited,
                )
            elif kind in ("progressive", "flv"):
                rec.wait_live_until = t_wait + self.wait_live
        failure: BaseException | None = None
        try:
            rec.log("start", f"recording {url} as {kind} for up to {limits.duration:g} s", mode=kind)
            if kind != "page":
                environment_file(rec, {})
            if resolution is not None:
                _resolved(rec, resolution)
            if first is not None and kind not in ("hls", "dash"):
                for ex in first:
                    rec.exchange(ex)
                    unlink(ex)
                first = None
            if kind == "hls":
                run_hls(rec, fetcher, url, first)
            elif kind == "dash":
                dash.run_dash(rec, fetcher, url, first)
            elif kind == "progressive":
                run_progressive(rec, fetcher, url)
            elif kind == "flv":
                flv.run_flv(rec, fetcher, url)
            else:
                run_page(rec)
        except KeyboardInterrupt:
            rec.stop("interrupted")
        except EvidenceError as e:
            rec.log("capture", str(e), level="error")
            failure = e
        except Exception as e:  # seal what we have before saying what went wrong
            rec.log("capture", f"{type(e).__name__}: {e}", level="error")
            failure = e
        finally:
            fetcher.close()
        if failure is not None and rec.stop_reason is None:
            rec.stop("failed")
        try:
            session = rec.close()
        except OSError as e:
            # The disk under the open window went away (full, removed): what is sealed stays valid.
            raise CaptureError(
                f"livestream capture of {url}: the open window could not be sealed ({e}); "
                f"windows sealed as records {rec.result.windows}, no end record"
            ) from e
        if failure is not None and session.end_reason == "failed":
            where = f"windows sealed as records {session.windows}, end record {session.end_index}"
            if isinstance(failure, EvidenceError):
                failure.args = (f"{failure} ({where})",)
                raise failure
            raise CaptureError(
                f"livestream capture of {url} failed: {type(failure).__name__}: {failure} ({where})"
            ) from failure
        return session

    def _wait(self, fetcher: Fetcher, kind: str) -> tuple[dict[str, Any], str, list[Exchange] | None]:
        """Poll until the playlist is there / the MPD is dynamic; nothing is recorded while waiting.

        Returns the wait's facts, the kind, and the answer that showed the
        stream live (kept as the capture's first exchange).
        """
        assert self.wait_live is not None
        t0 = time.monotonic()
        until = t0 + self.wait_live
        checks = 0
        last = "no check yet"
        while True:
            checks += 1
            hops: list[Exchange] | None = None
            try:
                hops = fetcher.get(self.url, max_body=PROBE_BYTES)
                ex = hops[-1]
                last = ex.status_line
                k = kind_of_response(ex) if kind == "unknown" else kind
                if ex.ok and _is_live(ex, k):
                    facts = {
                        "waited_ms": int((time.monotonic() - t0) * 1000),
                        "checks": checks,
                        "timeout_ms": int(self.wait_live * 1000),
                    }
                    return facts, k, hops
            except FetchFailed as e:
                last = str(e)
            for h in hops or []:
                unlink(h)
            if time.monotonic() >= until or self.stop_event.is_set():
                fetcher.close()
                why = "interrupted" if self.stop_event.is_set() else f"not live after {self.wait_live:g} s"
                raise CaptureError(
                    f"{self.url}: {why} ({checks} check(s), last: {last}); nothing was recorded"
                )
            self.stop_event.wait(min(WAIT_POLL_SECONDS, max(0.0, until - time.monotonic())))


def _is_live(ex: Exchange, kind: str) -> bool:
    text = ex.body.read_text("utf-8", "replace") if ex.body is not None and ex.size else ""
    try:
        if kind == "hls":
            pl = hls.parse(text, ex.url)
            return isinstance(pl, hls.MasterPlaylist) or bool(pl.segments)
        if kind == "dash":
            return dash.parse(text, ex.url).dynamic
    except CaptureError:
        return False
    return kind in ("progressive", "flv", "page")
