"""The recorder of a livestream capture: windows, bounds, frames and sealing.

Every way in (HLS, DASH, HTTP-FLV, a progressive download, a page) hands
its exchanges, part files and frames to one ``Recorder``. Every ``window``
seconds it closes the window's WARC, log and frames and seals them as one
exhibit (``info.type = "livestream-window"``) linked to the previous window's
manifest digest. A crash or cut loses at most the open window; a
``livestream-end`` record closes the session with totals.

Below ``livestream.py`` (which picks the way in) and ``livepage.py``,
``dash.py`` and ``flv.py`` (ways in of their own): all of them import this,
it imports none of them.
"""

from __future__ import annotations

import io
import json
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.digest import sha256_file
from ledger.errors import UsageError
from ledger.exhibit import ArtifactFile

from .environment import environment, now_utc, rfc3339, tool_version
from .fetch import Exchange, Fetcher, FetchFailed, StreamWarc
from .frames import Sampler, WrittenFrame, png_file, same_picture, thumbnail, write_png

Progress = Callable[[dict[str, Any]], None]

#: --wait-live checks the URL this often
WAIT_POLL_SECONDS = 1.0

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
    "bad-manifest",
)
#: what ended the recording, in the end record: the stream itself, or a bound we set
ENDED_BY = {
    "duration": "bound",
    "max-bytes": "bound",
    "max-frames": "bound",
    "stream-ended": "stream-ended",
    "stalled": "stalled",
    "interrupted": "interrupted",
}


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


#: bounds of a capture's duration, frame interval and window, in seconds (the CLI and the web form check them)
MAX_DURATION = 7 * 86400
FRAME_INTERVAL_RANGE = (0.04, 3600)
WINDOW_RANGE = (1, 3600)


@dataclass(frozen=True)
class Limits:
    duration: float
    max_bytes: int | None
    max_frames: int | None
    frame_interval: float
    window: float

    def check(self) -> None:
        lo_f, hi_f = FRAME_INTERVAL_RANGE
        lo_w, hi_w = WINDOW_RANGE
        if not isinstance(self.duration, int | float) or not 0 < self.duration <= MAX_DURATION:
            raise UsageError(
                f"--duration must be more than 0 and at most {MAX_DURATION} seconds (7 days), not {self.duration!r}"
            )
        if not isinstance(self.frame_interval, int | float) or not lo_f <= self.frame_interval <= hi_f:
            raise UsageError(f"--frame-interval must be between {lo_f:g} and {hi_f:g} seconds, not {self.frame_interval!r}")
        if not isinstance(self.window, int | float) or not lo_w <= self.window <= hi_w:
            raise UsageError(f"--window must be between {lo_w:g} and {hi_w:g} seconds, not {self.window!r}")
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
        #: lists a way in adds to this window's info (keys fetched, parts, ...)
        self.extra: dict[str, list[Any]] = {}

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
        #: facts about the whole session (waiting for it to go live, encryption), in every window and the end record
        self.facts: dict[str, Any] = {}
        #: --wait-live on a download: until when a refused connection means "not live yet"
        self.wait_live_until: float | None = None
        #: saved login (``ledger.sessions.LoginSession``) the page-mode browser starts from
        self.login: Any = None
        #: page mode records the screen (``screenrec.py``) unless this is False (--no-screen-record)
        self.screen_record = True
        #: called with each window just before it is sealed, under the lock (a screen-recording part joins it)
        self.before_seal: list[Callable[[_Window], None]] = []
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

    def went_live(self, checks: int) -> None:
        """The stream answered after a wait: the duration and the first window count from now."""
        with self.lock:
            now = time.monotonic()
            waited = int((now - self.t0) * 1000)
            self.t0 = now
            self.deadline = now + self.limits.duration
            self.window.t0 = now
            self.window.started = now_utc()
            self.facts["wait_live"] = {"waited_ms": waited, "checks": checks + 1}
            self.log(
                "wait-live",
                f"the stream went live after {waited / 1000:.1f} s ({checks + 1} check(s))",
                waited_ms=waited,
                checks=checks + 1,
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
        for hook in self.before_seal:
            hook(w)
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
            **self.facts,
            **w.extra,
        }
        ex = self.ledger.seal_exhibit(self.case, files, info)
        self.extra_files = []
        self.prev_manifest = ex.manifest_sha256
        self.prev_record = ex.index
        self.result.windows.append(ex.index)
        self.result.window_manifests.append(ex.manifest_sha256)
        shutil.rmtree(w.dir, ignore_errors=True)
        if self.progress is not None:
            self._report(
                "window",
                window=w.n,
                record=ex.index,
                segments=len(w.segments),
                frames=len(w.frames),
                bytes=w.bytes,
            )

    def close(self, reason: str | None = None) -> LivestreamSession:
        """Seal the open window and append the ``livestream-end`` record."""
        if reason:
            self.stop(reason)
        with self.lock:
            r = self.result
            # Logged only now: a handler that logged itself could land in a
            # window this thread was in the middle of sealing, and be lost.
            for name, at in self.signals:
                self.window.log.append(
                    {"time": at, "step": "signal", "message": f"received {name}", "level": "warning"}
                )
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
                    "ended_by": ENDED_BY.get(r.end_reason, "error"),
                    **self.facts,
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
            self.window.log.append(
                {**data, "time": rfc3339(now_utc()), "step": step, "message": message, "level": level}
            )
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
                w.segments.append(
                    {**segment, "url": ex.url, "sha256": ex.sha256, "size": ex.size, "status": ex.status}
                )
                self.result.segments += 1
            cap = self.limits.max_bytes
            if ex.truncated == "length" or (cap is not None and self.result.bytes >= cap):
                self.stop("max-bytes")

    def add_info(self, key: str, item: Any) -> None:
        """One more entry of list ``key`` in the open window's info."""
        with self.lock:
            self.window.extra.setdefault(key, []).append(item)

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

    def _frame(
        self, write: Callable[[Path], WrittenFrame], thumb: bytes | None, kind: str, facts: dict[str, Any]
    ) -> bool:
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
                {
                    "name": name,
                    "sha256": wf.sha256,
                    "kind": kind,
                    "time": rfc3339(now_utc()),
                    "repeats": 0,
                    **facts,
                }
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


def record_hops(rec: Recorder, hops: list[Exchange], *, segment: dict[str, Any] | None = None) -> Exchange:
    for ex in hops[:-1]:
        rec.exchange(ex)
        unlink(ex)
    rec.exchange(hops[-1], segment=segment)
    return hops[-1]


def unlink(ex: Exchange) -> None:
    if ex.body is not None:
        ex.body.unlink(missing_ok=True)


def get_hops(rec: Recorder, fetcher: Fetcher, url: str, **kw: Any) -> list[Exchange] | None:
    try:
        return fetcher.get(url, max_body=rec.bytes_left(), **kw)
    except FetchFailed as e:
        rec.log("fetch", f"no response: {e}", level="error", url=url)
        return None


def decode_into(
    rec: Recorder, sampler: Sampler | None, path: Path, where: str, *, final: bool = False, **facts: Any
) -> None:
    """Decode ``path`` into frames; ``final`` decodes after the stream ended, so only max_frames stops it."""
    if sampler is None or (rec.stopping and not final):
        return
    cap = rec.limits.max_frames
    try:
        for d in sampler.frames(path):
            rec.frame_image(
                d.image, "frame", pts=d.pts, time_base=d.time_base, media_ms=d.time_ms, source=where, **facts
            )
            if (cap is not None and rec.result.frames >= cap) or (rec.stopping and not final):
                return
    except Exception as e:  # a damaged segment must not end the capture; the bytes are archived anyway
        rec.log("decode", f"cannot decode {where}: {type(e).__name__}: {e}", level="warning", url=where)


def seal_streamed(rec: PartsRecorder, hops: list[Exchange], ended: str) -> Exchange:
    """Close a streamed GET's last part, archive its exchanges, and say how the stream ended.

    ``ended`` is the log line for a body that arrived whole (its size follows).
    """
    ex = hops[-1]
    with rec.lock:
        if rec.parts is not None and rec.parts.f is not None:
            rec._finish_part()
        for h in hops:
            # The final body's bytes were counted part by part as they arrived.
            rec.exchange(h, counted=h is ex)
    if not (200 <= ex.status < 300):
        rec.log("fetch", f"{ex.url} answered {ex.status_line}", level="error", status=ex.status)
        rec.stop("http-error")
    elif ex.complete:
        rec.log("fetch", f"{ended}: {ex.size} bytes")
        if not rec.stopping:
            rec.stop("stream-ended")
    elif ex.truncated == "disconnect":
        rec.log("fetch", f"connection lost after {ex.size} bytes: {'; '.join(ex.notes)}", level="error")
        rec.stop("network-error")
    return ex


def get_when_live(
    rec: Recorder, fetcher: Fetcher, url: str, on_chunk: Callable[[bytes], bool]
) -> list[Exchange] | None:
    """The streamed GET of a download; with --wait-live a refused connection is tried again until the wait ends.

    Only a refused or failed connection is "not live yet": an HTTP-FLV source
    such as ``ffmpeg -listen 1`` serves one client, so no probe may use it up.
    """
    until = rec.wait_live_until
    checks = 0
    live = False

    def chunk(data: bytes) -> bool:
        nonlocal live
        if until is not None and not live:
            live = True
            rec.went_live(checks)
        return on_chunk(data)

    while True:
        try:
            hops = fetcher.get(url, max_body=rec.bytes_left(), on_chunk=chunk)
        except FetchFailed as e:
            checks += 1
            if until is not None and time.monotonic() < until and not rec.stopping:
                rec.stopped.wait(WAIT_POLL_SECONDS)
                continue
            rec.log("fetch", f"no response: {e}", level="error", url=url)
            if until is not None:
                rec.log("wait-live", f"not live after {checks} check(s)", level="error", checks=checks)
            rec.stop("network-error")
            return None
        return hops


# -- a stream kept as per-window part files ------------------------------------


class Parts:
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


class PartsRecorder(Recorder):
    """Closes the current part file before its window is sealed, recording its size and digest."""

    parts: Parts | None = None

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


def environment_file(rec: Recorder, browser: dict[str, Any]) -> None:
    path = rec.workdir / "environment.json"
    env = environment(browser, None, {"livestream": True})
    path.write_text(json.dumps(env, ensure_ascii=False, indent=1, sort_keys=True), "utf-8")
    rec.extra_files.append(ArtifactFile("environment.json", path, "application/json", "environment"))
