"""A livestream capture a face can start, watch and stop: the web app's ``/livestream``.

    run = LiveRun.start(led_factory, LiveRequest(url, case, duration=600), user="li")
    run.status()            # windows sealed, frames, latest frame names, state
    run.stop()              # ends it as Ctrl-C ends `evidence livestream`: open window sealed, end record
    run.frame("frame-0000007.png")   # (sha256, bytes) of one frame of this capture, by name

The capture runs in a thread of the calling process, with its own ledger
connection. It is ``capture.livestream``'s capture, started through the same
steps as ``capture_livestream`` but keeping the job, so that a stop from
another thread reaches its recorder (signals reach only the main thread).

Frames are listed as the recorder hashes them (every tick, and each window
just before it is sealed); a frame is served by name from this capture's list
only: from its window's directory while the window is open (its SHA-256
checked), from the artifact store once sealed.
"""

from __future__ import annotations

import io
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import TYPE_CHECKING, Any

from PIL import Image

from capture.frames import Sampler
from capture.livestream import MODES, LiveJob, check_request
from capture.recorder import FRAME_INTERVAL_RANGE, MAX_DURATION, WINDOW_RANGE, Limits
from ledger.digest import sha256_hex
from ledger.errors import EvidenceError, UsageError

if TYPE_CHECKING:
    from ledger.log import Ledger

#: how many of the latest frames a status lists
LATEST = 6
#: a frame served from an open window is at most this large (frames are small PNGs)
MAX_FRAME = 32 << 20
#: width of the thumbnails a status page shows (a 1080p PNG a second is too much to poll)
THUMB_WIDTH = 320


@dataclass(frozen=True)
class LiveRequest:
    url: str
    case: str
    duration: float
    frame_interval: float = 1.0
    window: float = 10.0
    mode: str = "auto"
    dedupe: bool = False
    max_bytes: int | None = None
    operator: str | None = None
    note: str | None = None
    screen_record: bool = True

    def limits(self) -> Limits:
        return Limits(self.duration, self.max_bytes, None, self.frame_interval, self.window)


def _number(form: dict[str, str], name: str, default: float | None, label: str) -> float | None:
    v = (form.get(name) or "").strip()
    if not v:
        return default
    try:
        n = float(v)
    except ValueError:
        raise UsageError(f"{label} must be a number of seconds, not {v!r}") from None
    if n != n or n in (float("inf"), float("-inf")):
        raise UsageError(f"{label} must be a number of seconds, not {v!r}")
    return n


def request_from_form(form: dict[str, str], operator: str | None) -> LiveRequest:
    """A form's fields (url, case, duration, window, frame_interval, mode, dedupe, note, officers) checked."""
    url, case = (form.get("url") or "").strip(), (form.get("case") or "").strip()
    if not url or not case:
        raise UsageError("give a stream or room URL and a case id")
    duration = _number(form, "duration", 600.0, "the duration")
    assert duration is not None
    if not 0 < duration <= MAX_DURATION:
        raise UsageError(f"the duration must be more than 0 and at most {MAX_DURATION} seconds, not {duration:g}")
    mode = (form.get("mode") or "auto").strip()
    if mode not in MODES:
        raise UsageError(f"the mode must be one of {', '.join(MODES)}, not {mode!r}")
    officers = (form.get("officers") or "").strip()
    interval = _number(form, "frame_interval", 1.0, "the frame interval")
    window = _number(form, "window", 10.0, "the window length")
    assert interval is not None and window is not None
    # Checked here in the form's words: the capture's own checks name the CLI's flags.
    for value, (lo, hi), label in ((interval, FRAME_INTERVAL_RANGE, "the frame interval"),
                                   (window, WINDOW_RANGE, "the window length")):
        if not lo <= value <= hi:
            raise UsageError(f"{label} must be between {lo:g} and {hi:g} seconds, not {value:g}")
    return LiveRequest(
        url, case, duration, interval, window, mode, bool(form.get("dedupe")),
        None, officers or operator, (form.get("note") or "").strip() or None, not form.get("no_screen_record"),
    )


@dataclass
class _Frame:
    sha256: str
    path: Path | None  # in the open window; None once its window is sealed (read from the store)
    window: int


@dataclass
class LiveRun:
    id: str
    user: str
    request: LiveRequest
    opener: Callable[[], Ledger]
    state: str = "starting"  # starting, recording, stopping, done, failed
    started: float = field(default_factory=time.time)
    windows: list[int] = field(default_factory=list)
    frames: dict[str, _Frame] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    total_frames: int = 0
    total_bytes: int = 0
    end_index: int | None = None
    end_reason: str | None = None
    error: str | None = None
    _job: LiveJob | None = None
    _stop_asked: bool = False
    _hooked: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    @classmethod
    def start(cls, opener: Callable[[], Ledger], req: LiveRequest, *, user: str) -> LiveRun:
        """Check the request now (bad input raises, nothing starts), then record in a thread."""
        limits = req.limits()
        url, case, kind = check_request(req.url, req.case, limits, req.mode, None)
        Sampler(1)  # PyAV missing: said now
        run = cls(uuid.uuid4().hex, user, req, opener)
        run._thread = threading.Thread(target=run._run, args=(url, case, kind, limits), daemon=True,
                                       name=f"livestream-{run.id[:8]}")
        run._thread.start()
        return run

    def _run(self, url: str, case: str, kind: str, limits: Limits) -> None:
        r = self.request
        try:
            with self.opener() as led, TemporaryDirectory(prefix="evidence-live-") as tmp:
                job = LiveJob(url, kind, Path(tmp), led, case, limits, r.dedupe, r.operator, r.note, self._progress,
                           None, None, r.screen_record)
                with self._lock:
                    self._job = job
                    if self._stop_asked:
                        job.signalled("stop (web)")
                    elif self.state == "starting":
                        self.state = "recording"
                session = job.run()
            self.end_index, self.end_reason = session.end_index, session.end_reason
            self.windows = list(session.windows)
            self.state = "done"
        except EvidenceError as e:
            self.error, self.state = str(e), "failed"
        except Exception as e:  # noqa: BLE001 - a job reports, the server goes on
            self.error, self.state = f"internal error: {type(e).__name__}: {e}", "failed"

    def may_stop(self, user: str, officer: str | None) -> bool:
        """Whoever started the capture may stop it, and so may a user bound to an officer it names."""
        named = {o.strip() for o in (self.request.operator or "").split(",") if o.strip()}
        return user == self.user or (officer is not None and officer in named)

    def stop(self) -> None:
        """End the capture as Ctrl-C ends `evidence livestream`: the open window sealed, the end record appended."""
        with self._lock:
            if self.state not in ("starting", "recording"):
                return
            self._stop_asked = True
            self.state = "stopping"
            if self._job is not None:
                self._job.signalled("stop (web)")

    def wait(self, timeout: float | None = None) -> bool:
        """Until the capture has ended (its end record appended) or ``timeout``; True if it has."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.state in ("done", "failed")

    # -- what the recorder reports (its own thread) ---------------------------

    def _progress(self, e: dict[str, Any]) -> None:
        rec = self._job.rec if self._job is not None else None
        if rec is not None and not self._hooked:
            rec.before_seal.append(self._sealing)
            self._hooked = True
        if e.get("event") in ("tick", "window"):
            self.total_frames, self.total_bytes = int(e.get("total_frames") or 0), int(e.get("total_bytes") or 0)
        if e.get("event") == "window" and e.get("record") is not None:
            self.windows.append(int(e["record"]))
            with self._lock:
                for f in self.frames.values():
                    if f.window == e.get("window"):
                        f.path = None  # sealed: its directory is gone, its bytes are in the store
        if rec is not None:
            with rec.lock:
                w = rec.window
                self._note(w.n, w.dir, w.frames)

    def _sealing(self, w: Any) -> None:
        self._note(w.n, w.dir, w.frames)

    def _note(self, n: int, where: Path, frames: list[dict[str, Any]]) -> None:
        with self._lock:
            for fr in frames:
                name = str(fr.get("name"))
                if name not in self.frames:
                    self.frames[name] = _Frame(str(fr.get("sha256")), where / name, n)
                    self.order.append(name)

    # -- for the face ---------------------------------------------------------

    def status(self) -> dict[str, Any]:
        with self._lock:
            latest = self.order[-LATEST:]
        return {
            "id": self.id, "state": self.state, "url": self.request.url, "case": self.request.case,
            "elapsed": round(time.time() - self.started, 1), "windows": list(self.windows),
            "window_count": len(self.windows), "frames": self.total_frames, "bytes": self.total_bytes,
            "latest_frames": latest, "end_index": self.end_index, "end_reason": self.end_reason, "error": self.error,
        }

    def frame(self, name: str, led: Ledger) -> tuple[str, bytes] | None:
        """One frame of this capture by its name in the capture's list (else None), checked against its SHA-256."""
        with self._lock:
            f = self.frames.get(name)
        if f is None:
            return None
        if f.path is not None:
            try:
                data = f.path.read_bytes()[: MAX_FRAME + 1]
            except OSError:
                data = b""  # sealed meanwhile: its directory is gone
            if data and sha256_hex(data) == f.sha256:
                return f.sha256, data
        try:
            with led.artifacts.open(f.sha256) as fh:
                data = fh.read(MAX_FRAME + 1)
        except (EvidenceError, OSError):
            return None
        if sha256_hex(data) != f.sha256:
            return None
        return f.sha256, data


def thumbnail(png: bytes, width: int = THUMB_WIDTH) -> bytes:
    """A JPEG at most ``width`` pixels wide of a frame (for display only: the evidence is the PNG)."""
    with Image.open(io.BytesIO(png)) as im:
        im = im.convert("RGB")
        if im.width > width:
            im = im.resize((width, max(1, round(im.height * width / im.width))), Image.Resampling.BILINEAR)
        out = io.BytesIO()
        im.save(out, "JPEG", quality=80)
    return out.getvalue()
