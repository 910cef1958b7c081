"""Record a live stream as rolling, sealed windows of evidence.

    from capture.livestream import capture_livestream
    s = capture_livestream("https://live.example/room/7/index.m3u8", case="SAMR-2026-017",
                           duration=600, frame_interval=1.0)
    s.end_reason, s.windows, s.segments, s.frames

Three ways in, one recorder:

* ``.m3u8``: a direct HLS fetcher polls the playlist and fetches every new
  segment; each HTTP exchange goes into the WARC as it completes.
* a progressive ``.mp4``/``.webm``: one streamed download; the bytes of each
  window are kept as a part file so a window is provable on its own, and the
  whole body becomes a single WARC response record when the download ends.
* anything else is a page: Chromium plays it (``livepage.py``), every response
  is archived and a screenshot is taken at each interval.

Every ``window`` seconds the recorder closes the window's WARC, log and frames
and seals them as one exhibit (``info.type = "livestream-window"``) linked to
the previous window's manifest digest. A crash or cut loses at most the open
window; a ``livestream-end`` record closes the session with totals. SIGINT and
SIGTERM end the capture the same way a bound does.
"""

from __future__ import annotations

import io
import json
import shutil
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from evidence.digest import sha256_file
from evidence.errors import CaptureError, EvidenceError, UsageError
from evidence.exhibit import ArtifactFile

from . import hls
from .environment import environment, now_utc, rfc3339, tool_version
from .fetch import Exchange, Fetcher, FetchFailed, StreamWarc
from .frames import Sampler, WrittenFrame, png_file, same_picture, thumbnail, write_png
from .options import check_url

Progress = Callable[[dict[str, Any]], None]

MEDIA_EXT = (".mp4", ".m4v", ".webm", ".mkv", ".mov", ".ogv", ".flv", ".ts")
#: the first GET of a URL whose kind we cannot tell from its name reads at most this much
PROBE_BYTES = 2 * 1024 * 1024
#: consecutive failed playlist fetches before the capture gives up
MAX_PLAYLIST_ERRORS = 3
#: no new segment for this many target durations means the stream stalled
STALL_TARGETS = 3
#: a progressive download is decoded at the end only up to this size
MAX_DECODE_BYTES = 4 * 1024 * 1024 * 1024

END_REASONS = (
    "duration",
    "stream-ended",
    "stalled",
    "http-error",
    "network-error",
    "max-bytes",
    "max-frames",
    "interrupted",
    "failed",
)


@dataclass
class LivestreamSession:
    """What a capture produced; every window listed here is already in the ledger."""

    session: str
    url: str
    mode: str
    case: str
    started: str
    ended: str = ""
    end_reason: str = ""
    windows: list[int] = field(default_factory=list)
    window_manifests: list[str] = field(default_factory=list)
    end_index: int | None = None
    segments: int = 0
    exchanges: int = 0
    frames: int = 0
    duplicates: int = 0
    bytes: int = 0
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "session": self.session,
            "url": self.url,
            "mode": self.mode,
            "case": self.case,
            "started": self.started,
            "ended": self.ended,
            "end_reason": self.end_reason,
            "windows": self.windows,
            "end_record": self.end_index,
            "segments": self.segments,
            "exchanges": self.exchanges,
            "frames": self.frames,
            "duplicates": self.duplicates,
            "bytes": self.bytes,
            "errors": self.errors,
        }


@dataclass(frozen=True)
class Limits:
    duration: float
    max_bytes: int | None
    max_frames: int | None
    frame_interval: float
    window: float

    def check(self) -> None:
        if not isinstance(self.duration, int | float) or not 0 < self.duration <= 7 * 86400:
            raise UsageError(f"--duration must be more than 0 and at most 604800 seconds (7 days), not {self.duration!r}")
        if not isinstance(self.frame_interval, int | float) or not 0.04 <= self.frame_interval <= 3600:
            raise UsageError(f"--frame-interval must be between 0.04 and 3600 seconds, not {self.frame_interval!r}")
        if not isinstance(self.window, int | float) or not 1 <= self.window <= 3600:
            raise UsageError(f"--window must be between 1 and 3600 seconds, not {self.window!r}")
        for name in ("max_bytes", "max_frames"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v <= 0):
                raise UsageError(f"--{name.replace('_', '-')} must be a positive whole number, not {v!r}")


class _Window:
    def __init__(self, n: int, root: Path, info: dict[str, str]):
        self.n = n
        self.dir = root / f"w{n:06d}"
        self.dir.mkdir(parents=True)
        self.started = now_utc()
        self.t0 = time.monotonic()
        self.warc_name = f"window-{n:06d}.warc.gz"
        self.warc = StreamWarc(self.dir / self.warc_name, {**info, "window": str(n)})
        self.segments: list[dict[str, Any]] = []
        self.frames: list[dict[str, Any]] = []
        self.files: list[ArtifactFile] = []
        self.log: list[dict[str, Any]] = []
        self.exchanges = 0
        self.bytes = 0
        self.repeats_of_previous = 0

    @property
    def empty(self) -> bool:
        return not (self.exchanges or self.frames or self.log or self.repeats_of_previous or self.files)


class Recorder:
    """The session's windows, bounds and log; safe to call from several threads."""

    def __init__(
        self,
        *,
        ledger: Any,
        case: str,
        url: str,
        mode: str,
        workdir: Path,
        limits: Limits,
        dedupe: bool = False,
        operator: str | None = None,
        note: str | None = None,
        progress: Progress | None = None,
    ):
        self.ledger = ledger
        self.case = case
        self.url = url
        self.mode = mode
        self.workdir = workdir
        self.limits = limits
        self.dedupe = dedupe
        self.operator = operator
        self.note = note
        self.progress = progress
        self.lock = threading.RLock()
        self.stopped = threading.Event()
        self.stop_reason: str | None = None
        self.signals: list[tuple[str, str]] = []  # (name, time) noted by the signal handler
        self.t0 = time.monotonic()
        self.deadline = self.t0 + limits.duration
        self.result = LivestreamSession(str(uuid.uuid4()), url, mode, case, rfc3339(now_utc()))
        self.prev_manifest: str | None = None
        self.prev_record: int | None = None
        self.frame_seq = 0
        self.last_thumb: bytes | None = None
        self.extra_files: list[ArtifactFile] = []  # added to the next sealed window (environment, ...)
        self._last_report = 0.0
        self.window = self._open(0)

    # -- window lifecycle ------------------------------------------------------

    def _open(self, n: int) -> _Window:
        return _Window(
            n,
            self.workdir,
            {
                "operator": self.operator or "",
                "case": self.case,
                "note": self.note or "",
                "isPartOf": self.case,
                "livestream-session": self.result.session,
                "livestream-url": self.url,
                "time-source": "system clock of the capturing machine",
            },
        )

    def tick(self) -> None:
        """Seal the window if its time is up; stop at the deadline. Call often."""
        now = time.monotonic()
        if now >= self.deadline:
            self.stop("duration")
        with self.lock:
            if now - self.window.t0 >= self.limits.window:
                self._roll()
        if self.progress is not None and now - self._last_report >= 1.0:
            self._last_report = now
            self._report("tick")

    def _report(self, event: str, **facts: Any) -> None:
        assert self.progress is not None
        r = self.result
        self.progress(
            {
                "event": event,
                "elapsed": round(time.monotonic() - self.t0, 1),
                "windows": len(r.windows),
                "total_frames": r.frames,
                "total_bytes": r.bytes,
                "total_segments": r.segments,
                **facts,
            }
        )

    def _roll(self) -> None:
        w = self.window
        self._seal(w)
        self.window = self._open(w.n + 1)

    def _seal(self, w: _Window) -> None:
        ended = now_utc()
        if w.empty:
            w.warc.close()
            shutil.rmtree(w.dir, ignore_errors=True)
            return
        log_name = f"window-{w.n:06d}.log.jsonl"
        log_path = w.dir / log_name
        with open(log_path, "w", encoding="utf-8") as f:
            for e in w.log:
                f.write(json.dumps(e, ensure_ascii=False, sort_keys=True) + "\n")
        w.warc.metadata(
            f"urn:evidence-chain:livestream-log:{self.result.session}:{w.n}",
            log_path,
            "application/x-ndjson",
            rfc3339(ended),
        )
        w.warc.close()
        files = [
            ArtifactFile(w.warc_name, w.warc.path, "application/warc", "warc"),
            *self.extra_files,
            *w.files,
            ArtifactFile(log_name, log_path, "application/x-ndjson", "capture-log"),
        ]
        info: dict[str, Any] = {
            "type": "livestream-window",
            "session": self.result.session,
            "window": w.n,
            "prev_window": self.prev_manifest,
            "prev_window_record": self.prev_record,
            "url": self.url,
            "mode": self.mode,
            "case": self.case,
            "operator": self.operator,
            "note": self.note,
            "started": rfc3339(w.started),
            "ended": rfc3339(ended),
            "time_source": "system-clock",
            "tool": tool_version(),
            "frame_interval_ms": int(self.limits.frame_interval * 1000),
            "window_ms": int(self.limits.window * 1000),
            "exchanges": w.exchanges,
            "bytes": w.bytes,
            "segments": w.segments,
            "frames": w.frames,
            "dedupe": _DEDUPE if self.dedupe else None,
            "repeats_of_previous": w.repeats_of_previous,
            "events": [e for e in w.log if e.get("level") in ("warning", "error")],
        }
        ex = self.ledger.seal_exhibit(self.case, files, info)
        self.extra_files = []
        self.prev_manifest = ex.manifest_sha256
        self.prev_record = ex.index
        self.result.windows.append(ex.index)
        self.result.window_manifests.append(ex.manifest_sha256)
        shutil.rmtree(w.dir, ignore_errors=True)
        if self.progress is not None:
            self._report("window", window=w.n, record=ex.index, segments=len(w.segments), frames=len(w.frames), bytes=w.bytes)

    def close(self, reason: str | None = None) -> LivestreamSession:
        """Seal the open window and append the ``livestream-end`` record."""
        if reason:
            self.stop(reason)
        with self.lock:
            r = self.result
            # Logged only now: a handler that logged itself could land in a
            # window this thread was in the middle of sealing, and be lost.
            for name, at in self.signals:
                self.window.log.append({"time": at, "step": "signal", "message": f"received {name}", "level": "warning"})
            r.end_reason = self.stop_reason or "failed"
            self.log("end", f"capture ended: {r.end_reason}", reason=r.end_reason)
            self._seal(self.window)
            r.ended = rfc3339(now_utc())
            rec = self.ledger.append(
                "livestream-end",
                {
                    "session": r.session,
                    "url": r.url,
                    "mode": r.mode,
                    "started": r.started,
                    "ended": r.ended,
                    "end_reason": r.end_reason,
                    "windows": r.windows,
                    "last_window": self.prev_manifest,
                    "segments": r.segments,
                    "exchanges": r.exchanges,
                    "frames": r.frames,
                    "duplicates": r.duplicates,
                    "bytes": r.bytes,
                    "errors": len(r.errors),
                    "operator": self.operator,
                    "tool": tool_version(),
                },
                case=self.case,
            )
            r.end_index = rec.index
        if self.progress is not None:
            self.progress({"event": "end", **r.to_json()})
        return r

    # -- what goes into a window ----------------------------------------------

    def signalled(self, name: str) -> None:
        """From a signal handler: note it and stop, taking no lock (this thread may hold it)."""
        self.signals.append((name, rfc3339(now_utc())))
        if self.stop_reason is None:
            self.stop_reason = "interrupted"
        self.stopped.set()

    def stop(self, reason: str) -> None:
        with self.lock:
            if self.stop_reason is None:
                self.stop_reason = reason
                self.log("stop", f"stopping: {reason}", reason=reason)
        self.stopped.set()

    @property
    def stopping(self) -> bool:
        return self.stopped.is_set()

    def log(self, step: str, message: str, /, level: str = "info", **data: Any) -> None:
        with self.lock:
            self.window.log.append({**data, "time": rfc3339(now_utc()), "step": step, "message": message, "level": level})
            if level == "error":
                self.result.errors.append(message)

    def bytes_left(self) -> int | None:
        if self.limits.max_bytes is None:
            return None
        return max(0, self.limits.max_bytes - self.result.bytes)

    def exchange(self, ex: Exchange, *, segment: dict[str, Any] | None = None, counted: bool = False) -> None:
        """Archive one HTTP exchange in the open window (its body is streamed from disk)."""
        with self.lock:
            w = self.window
            w.warc.fetched(ex)
            w.exchanges += 1
            self.result.exchanges += 1
            if not counted:
                w.bytes += ex.size
                self.result.bytes += ex.size
            for n in ex.notes:
                self.log("warc", f"{ex.url}: {n}")
            if segment is not None:
                w.segments.append({**segment, "url": ex.url, "sha256": ex.sha256, "size": ex.size, "status": ex.status})
                self.result.segments += 1
            cap = self.limits.max_bytes
            if ex.truncated == "length" or (cap is not None and self.result.bytes >= cap):
                self.stop("max-bytes")

    def add_file(self, af: ArtifactFile) -> None:
        """A file that belongs to the open window (a progressive part, the environment)."""
        with self.lock:
            self.window.files.append(af)

    def frame_image(self, image: Any, kind: str, **facts: Any) -> bool:
        """Store a decoded frame (a Pillow image) unless it repeats the last one."""
        thumb = thumbnail(image) if self.dedupe else None
        return self._frame(lambda p: write_png(image, p), thumb, kind, facts)

    def frame_png(self, data: bytes, kind: str, **facts: Any) -> bool:
        """Store a PNG the browser made (a screenshot)."""
        thumb = None
        if self.dedupe:
            from PIL import Image

            with Image.open(io.BytesIO(data)) as im:
                thumb = thumbnail(im)

        def write(p: Path) -> WrittenFrame:
            p.write_bytes(data)
            return png_file(p)

        return self._frame(write, thumb, kind, facts)

    def _frame(self, write: Callable[[Path], WrittenFrame], thumb: bytes | None, kind: str, facts: dict[str, Any]) -> bool:
        with self.lock:
            w = self.window
            if thumb is not None and same_picture(self.last_thumb, thumb):
                if w.frames:
                    w.frames[-1]["repeats"] += 1
                else:
                    w.repeats_of_previous += 1
                self.result.duplicates += 1
                return False
            if self.limits.max_frames is not None and self.result.frames >= self.limits.max_frames:
                self.stop("max-frames")
                return False
            self.frame_seq += 1
            name = f"{'screen' if kind == 'screenshot' else 'frame'}-{self.frame_seq:07d}.png"
            wf = write(w.dir / name)
            self.last_thumb = thumb
            w.files.append(ArtifactFile(name, wf.path, "image/png", kind))
            w.frames.append(
                {"name": name, "sha256": wf.sha256, "kind": kind, "time": rfc3339(now_utc()), "repeats": 0, **facts}
            )
            self.result.frames += 1
            if self.limits.max_frames is not None and self.result.frames >= self.limits.max_frames:
                self.stop("max-frames")
            return True

    def wait(self, seconds: float) -> None:
        """Sleep up to ``seconds``, sealing windows on time and waking on stop."""
        end = time.monotonic() + seconds
        while not self.stopping:
            self.tick()
            left = end - time.monotonic()
            if left <= 0:
                return
            self.stopped.wait(min(left, 0.2))


_DEDUPE = {
    "method": "grayscale thumbnail, 96 px wide; same if no pixel differs by more than 10 of 255 levels",
    "counted_in": "frames[].repeats (and repeats_of_previous for repeats at a window's start)",
}


# -- direct HLS ---------------------------------------------------------------


def _record_hops(rec: Recorder, hops: list[Exchange], *, segment: dict[str, Any] | None = None) -> Exchange:
    for ex in hops[:-1]:
        rec.exchange(ex)
        _unlink(ex)
    rec.exchange(hops[-1], segment=segment)
    return hops[-1]


def _unlink(ex: Exchange) -> None:
    if ex.body is not None:
        ex.body.unlink(missing_ok=True)


def _get(rec: Recorder, fetcher: Fetcher, url: str, **kw: Any) -> list[Exchange] | None:
    try:
        return fetcher.get(url, max_body=rec.bytes_left(), **kw)
    except FetchFailed as e:
        rec.log("fetch", f"no response: {e}", level="error", url=url)
        return None


def _decode(rec: Recorder, sampler: Sampler | None, path: Path, where: str, *, final: bool = False, **facts: Any) -> None:
    """Decode ``path`` into frames; ``final`` decodes after the stream ended, so only max_frames stops it."""
    if sampler is None or (rec.stopping and not final):
        return
    cap = rec.limits.max_frames
    try:
        for d in sampler.frames(path):
            rec.frame_image(d.image, "frame", pts=d.pts, time_base=d.time_base, media_ms=d.time_ms, source=where, **facts)
            if (cap is not None and rec.result.frames >= cap) or (rec.stopping and not final):
                return
    except Exception as e:  # a damaged segment must not end the capture; the bytes are archived anyway
        rec.log("decode", f"cannot decode {where}: {type(e).__name__}: {e}", level="warning", url=where)


def run_hls(rec: Recorder, fetcher: Fetcher, url: str, first: list[Exchange] | None = None) -> None:
    """Poll a playlist and archive every segment until a bound, the end, a stall or errors."""
    sampler = Sampler(int(rec.limits.frame_interval * 1000))
    hops = first or _get(rec, fetcher, url)
    if hops is None:
        rec.stop("network-error")
        return
    ex = _record_hops(rec, hops)
    if not ex.ok:
        _unlink(ex)
        rec.log("playlist", f"{ex.url} answered {ex.status_line or 'nothing'}", level="error")
        rec.stop("http-error")
        return
    try:
        pl = hls.parse(ex.body.read_text("utf-8", "replace") if ex.body else "", ex.url)
    finally:
        _unlink(ex)
    playlist_url = ex.url
    if isinstance(pl, hls.MasterPlaylist):
        v = pl.best()
        rec.log("variant", f"chose the highest-bandwidth variant {v.uri}", bandwidth=v.bandwidth, resolution=v.resolution)
        playlist_url = v.uri
        pl = None
    last_seq = -1
    last_new = time.monotonic()
    errors = 0
    inits: dict[str, Path] = {}
    tmp = fetcher.tmpdir
    while not rec.stopping:
        if pl is None:
            hops = _get(rec, fetcher, playlist_url)
            ok = False
            if hops is not None:
                ex = _record_hops(rec, hops)
                if ex.ok:
                    try:
                        parsed = hls.parse(ex.body.read_text("utf-8", "replace") if ex.body else "", ex.url)
                        if isinstance(parsed, hls.MediaPlaylist):
                            pl, ok = parsed, True
                        else:
                            rec.log("playlist", f"{ex.url} is a master playlist where a media playlist was expected", level="error")
                    except CaptureError as e:
                        rec.log("playlist", str(e), level="error")
                else:
                    rec.log("playlist", f"{ex.url} answered {ex.status_line}", level="error", status=ex.status)
                _unlink(ex)
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
        assert pl is not None
        target_s = pl.target_duration_ms / 1000
        new = [s for s in pl.segments if s.seq > last_seq]
        if new and last_seq >= 0 and new[0].seq > last_seq + 1:
            rec.log("playlist", f"segments {last_seq + 1}..{new[0].seq - 1} left the playlist before they could be fetched", level="warning")
        for seg in new:
            if rec.stopping:
                break
            init_path = None
            if seg.init_uri and seg.init_uri not in inits:
                ih = _get(rec, fetcher, seg.init_uri)
                if ih is not None:
                    iex = _record_hops(rec, ih, segment={"seq": None, "init": True})
                    if iex.ok and iex.body is not None:
                        inits[seg.init_uri] = iex.body
                    else:
                        _unlink(iex)
            if seg.init_uri:
                init_path = inits.get(seg.init_uri)
            sh = _get(rec, fetcher, seg.uri)
            last_seq = seg.seq
            if sh is None:
                continue
            facts = {"seq": seg.seq, "duration_ms": seg.duration_ms}
            sex = _record_hops(rec, sh, segment=facts)
            last_new = time.monotonic()
            if sex.ok and sex.body is not None:
                src = sex.body
                if init_path is not None:
                    src = _joined(init_path, sex.body, tmp / "joined")
                _decode(rec, sampler, src, seg.uri, seq=seg.seq)
                if src != sex.body:
                    src.unlink(missing_ok=True)
            elif not sex.ok:
                rec.log("segment", f"{sex.url} answered {sex.status_line} ({sex.size} bytes)", level="warning", status=sex.status)
            _unlink(sex)
            rec.tick()
        if rec.stopping:
            break
        if pl.ended and (not pl.segments or last_seq >= pl.segments[-1].seq):
            rec.log("playlist", "#EXT-X-ENDLIST: the stream has ended")
            rec.stop("stream-ended")
            break
        if time.monotonic() - last_new > STALL_TARGETS * target_s:
            rec.log(
                "playlist",
                f"no new segment for {time.monotonic() - last_new:.1f} s ({STALL_TARGETS} target durations)",
                level="warning",
            )
            rec.stop("stalled")
            break
        # RFC 8216 6.3.4: reload after one target duration, half of it when nothing changed.
        rec.wait(target_s if new else target_s / 2)
        pl = None
    for p in inits.values():
        p.unlink(missing_ok=True)


def _joined(init: Path, seg: Path, dest: Path) -> Path:
    from .frames import joined

    return joined(init, seg, dest)


# -- progressive download -------------------------------------------------------


class _Parts:
    """The bytes of each window as a part file, so a window proves its share of the download."""

    def __init__(self, rec: Recorder, url: str):
        self.rec = rec
        self.url = url
        self.offset = 0
        self.f: Any = None
        self.window = -1
        self.path: Path | None = None
        self.start = 0

    def write(self, data: bytes) -> bool:
        w = self.rec.window
        if self.f is None or self.window != w.n:
            self.open(w.n)
        self.f.write(data)
        self.offset += len(data)
        self.rec.result.bytes += len(data)
        w.bytes += len(data)
        self.rec.tick()
        return not self.rec.stopping

    def open(self, n: int) -> None:
        self.close()
        self.window = n
        self.start = self.offset
        w = self.rec.window
        name = f"media-{n:06d}.part"
        self.path = w.dir / name
        self.f = open(self.path, "wb")
        # Added now so the part is sealed with the window even if the download dies.
        self.rec.add_file(ArtifactFile(name, self.path, "application/octet-stream", "media-part"))
        w.segments.append({"part": name, "url": self.url, "offset": self.start})

    def close(self) -> None:
        if self.f is not None:
            self.f.close()
            self.f = None


class _PartsRecorder(Recorder):
    """Closes the current part file before its window is sealed, recording its size and digest."""

    parts: _Parts | None = None

    def _roll(self) -> None:
        if self.parts is not None and self.parts.f is not None:
            self._finish_part()
        super()._roll()

    def close(self, reason: str | None = None) -> LivestreamSession:
        with self.lock:
            if self.parts is not None and self.parts.f is not None:
                self._finish_part()
        return super().close(reason)

    def _finish_part(self) -> None:
        assert self.parts is not None and self.parts.path is not None
        self.parts.close()
        wf = sha256_file(self.parts.path)
        seg = self.window.segments[-1]
        seg.update(size=wf[1], sha256=wf[0])
        self.result.segments += 1


def run_progressive(rec: Recorder, fetcher: Fetcher, url: str) -> None:
    """One streamed GET; each window seals its part; the full response record closes it."""
    assert isinstance(rec, _PartsRecorder)
    parts = _Parts(rec, url)
    rec.parts = parts
    try:
        hops = fetcher.get(url, max_body=rec.bytes_left(), on_chunk=parts.write)
    except FetchFailed as e:
        rec.log("fetch", f"no response: {e}", level="error", url=url)
        rec.stop("network-error")
        return
    ex = hops[-1]
    with rec.lock:
        if parts.f is not None:
            rec._finish_part()
        for h in hops:
            # The final body's bytes were counted part by part as they arrived.
            rec.exchange(h, counted=h is ex)
    if not (200 <= ex.status < 300):
        rec.log("fetch", f"{ex.url} answered {ex.status_line}", level="error", status=ex.status)
        rec.stop("http-error")
    elif ex.complete:
        rec.log("fetch", f"download complete: {ex.size} bytes")
        if not rec.stopping:
            rec.stop("stream-ended")
    elif ex.truncated == "disconnect":
        rec.log("fetch", f"connection lost after {ex.size} bytes: {'; '.join(ex.notes)}", level="error")
        rec.stop("network-error")
    if ex.body is not None and ex.size and ex.size <= MAX_DECODE_BYTES and 200 <= ex.status < 300:
        # Decoded frames come last: a file whose index sits at its end cannot be
        # decoded while it is still arriving.
        _decode(rec, Sampler(int(rec.limits.frame_interval * 1000)), ex.body, ex.url, final=True)
    for h in hops:
        _unlink(h)


# -- entry point ----------------------------------------------------------------


def stream_kind(url: str) -> str:
    path = urlsplit(url).path.lower()
    if path.endswith(".m3u8"):
        return "hls"
    if path.endswith(MEDIA_EXT):
        return "progressive"
    return "unknown"


@contextmanager
def _signals(rec: Recorder) -> Iterator[None]:
    """SIGINT/SIGTERM end the capture like a bound; a second Ctrl-C aborts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        if rec.stopping and signum == signal.SIGINT:
            raise KeyboardInterrupt
        rec.signalled(signal.Signals(signum).name)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


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
) -> LivestreamSession:
    """Record ``url`` for ``duration`` seconds into rolling sealed windows of ``case``.

    ``mode`` is ``auto`` (by the URL's name, else by the first response's
    type), ``hls``, ``progressive`` or ``page``. Raises UsageError for bad
    arguments and EnvironmentProblem (no browser) before anything is
    recorded; once recording has started, problems end the capture cleanly
    and are in the windows' logs and ``end_reason``.
    """
    url = check_url(url)
    if not isinstance(case, str) or not case.strip():
        raise UsageError("a livestream capture needs a case id (--case)")
    case = case.strip()
    limits = Limits(duration, max_bytes, max_frames, frame_interval, window)
    limits.check()
    if mode not in ("auto", "hls", "progressive", "page"):
        raise UsageError(f"--mode must be auto, hls, progressive or page, not {mode!r}")
    kind = stream_kind(url) if mode == "auto" else mode
    if kind in ("page", "unknown"):
        from .browser import find_chromium

        if kind == "page":
            find_chromium()
    Sampler(1)  # PyAV missing: say so before anything is recorded
    owned = ledger is None
    if ledger is None:
        from ledger.log import Ledger

        ledger = Ledger.open(home)
    try:
        with tempfile.TemporaryDirectory(prefix="evidence-live-") as tmp:
            return _capture(url, kind, Path(tmp), ledger, case, limits, dedupe, operator, note, progress)
    finally:
        if owned:
            ledger.close()


def _capture(
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
) -> LivestreamSession:
    bodies = tmp / "bodies"
    bodies.mkdir()
    fetcher = Fetcher(bodies)
    first: list[Exchange] | None = None
    if kind == "unknown":
        # Neither name nor mode says what this is: ask the server, and keep the answer.
        try:
            first = fetcher.get(url, max_body=PROBE_BYTES)
        except FetchFailed as e:
            fetcher.close()
            raise CaptureError(f"cannot reach {e}; nothing was recorded") from None
        ct = first[-1].header("content-type")
        if hls.looks_like_playlist(first[-1].url, ct):
            kind = "hls"
        elif (ct or "").split("/")[0].strip().lower() in ("video", "audio"):
            kind = "progressive"
        else:
            kind = "page"
            from .browser import find_chromium

            find_chromium()
    cls = _PartsRecorder if kind == "progressive" else Recorder
    rec = cls(
        ledger=ledger,
        case=case,
        url=url,
        mode=kind,
        workdir=tmp / "windows",
        limits=limits,
        dedupe=dedupe,
        operator=operator,
        note=note,
        progress=progress,
    )
    failure: BaseException | None = None
    with _signals(rec):
        try:
            rec.log("start", f"recording {url} as {kind} for up to {limits.duration:g} s", mode=kind)
            if kind != "page":
                _environment(rec, {})
            if first is not None and kind != "hls":
                for ex in first:
                    rec.exchange(ex)
                    _unlink(ex)
                first = None
            if kind == "hls":
                run_hls(rec, fetcher, url, first)
            elif kind == "progressive":
                run_progressive(rec, fetcher, url)
            else:
                from .livepage import run_page

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
        raise CaptureError(f"livestream capture of {url} failed: {type(failure).__name__}: {failure} ({where})") from failure
    return session


def _environment(rec: Recorder, browser: dict[str, Any]) -> None:
    path = rec.workdir / "environment.json"
    env = environment(browser, None, {"livestream": True})
    path.write_text(json.dumps(env, ensure_ascii=False, indent=1, sort_keys=True), "utf-8")
    rec.extra_files.append(ArtifactFile("environment.json", path, "application/json", "environment"))
