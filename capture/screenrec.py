"""录屏: a continuous video (with the page's audio) of the page-mode viewport, one part per window.

Headless Chromium has no screen to grab, so page mode runs the browser
headed on a private Xvfb display the size of the viewport (the window made
fullscreen, no toolbar), with its sound going to a private PulseAudio
server whose only sink is a null sink. One ffmpeg grabs the display
(``x11grab``) and the sink's monitor (``pulse``) for the whole capture and
writes H.264 + AAC as fragmented MP4 to a pipe; a key frame, and so a
fragment, about every half second.

We read that pipe box by box. The init section (``ftyp`` + ``moov``) starts
every part; each ``moof`` + ``mdat`` fragment goes, whole, into the part that
is open when it arrives. Just before the recorder seals a window (its
``before_seal`` hook), the open part is closed and joins that window's
exhibit; the next fragment starts the next part. So the parts are gap-free
by construction (every fragment is in exactly one part, in order, and
their media times run on), each part plays on its own, and each is hashed
while it is written. A part's facts: wall times of its cut, media start and
end (``ffprobe``), fragment sequence numbers, size, SHA-256, its streams.

Anything missing (Xvfb, ffmpeg's x11grab or libx264, PulseAudio) is said in
the exhibit instead: no audio is "no audio: <reason>" with the video still
recorded; no display or encoder means no video, and the browser runs
headless as before. The Xvfb, PulseAudio and ffmpeg processes get sessions
of their own, so a terminal's Ctrl-C (sent to the whole process group)
reaches only us and the capture ends the way it ends on a bound. If we are
killed, ffmpeg dies on its broken pipe, Xvfb (``-terminate``) when its last
client goes, PulseAudio after ``PULSE_IDLE_EXIT`` seconds without clients.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ledger.errors import EnvironmentProblem
from ledger.exhibit import ArtifactFile

from . import xvfb
from .environment import now_utc, rfc3339
from .recorder import Recorder, _Window

SCREEN_FPS = 15
#: frames between key frames (~0.53 s at 15 fps): a fragment ends at each, so a cut lags by at most this
KEYFRAME_FRAMES = 8
SINK = "evidence_rec"
AUDIO_RATE = 48000
START_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0
#: an orphaned PulseAudio (we were killed) exits after this many seconds without clients
PULSE_IDLE_EXIT = 10
ROLE = "screen-recording"
CHUNK = 1 << 20
TURNED_OFF = "turned off (--no-screen-record)"


@functools.lru_cache(maxsize=1)
def _ffmpeg_features() -> tuple[str | None, str | None]:
    """(ffmpeg path, None) when it can grab X11 and encode H.264, else (None, why not)."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        return None, "ffmpeg not installed (apt-get install ffmpeg)"
    try:
        devices = subprocess.run(
            [ffmpeg, "-hide_banner", "-devices"], capture_output=True, text=True, timeout=20
        ).stdout
        encoders = subprocess.run(
            [ffmpeg, "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=20
        ).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return None, f"cannot run ffmpeg: {e}"
    if " x11grab " not in devices:
        return None, "this ffmpeg has no x11grab input"
    if " libx264 " not in encoders:
        return None, "this ffmpeg has no libx264 encoder"
    return ffmpeg, None


def _tail(path: Path, n: int = 300) -> str:
    try:
        text = path.read_text("utf-8", "replace").strip()
    except OSError:
        return ""
    return " ".join(text[-n:].split())


class _Xvfb:
    """A private X display of exactly the viewport's size.

    Like ``interactive.VirtualDisplay``, but in a session of its own (Ctrl-C
    must not take the screen from under the browser) and with ``-terminate``
    (it exits when its last client does, should we be killed).
    """

    def __init__(self, width: int, height: int, log: Path):
        self.size = f"{width}x{height}x24"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        with open(self.log, "wb") as err:
            try:
                self.proc, display = xvfb.start_xvfb(self.size, extra=("-terminate",), stderr=err, own_session=True)
            except EnvironmentProblem as e:
                tail = _tail(self.log)
                raise EnvironmentProblem(f"{e}: {tail}" if tail else str(e)) from None
        return display

    def stop(self) -> None:
        xvfb.end(self.proc)
        self.proc = None


class _Pulse:
    """A private PulseAudio server: one null sink, a socket in our directory, no other modules."""

    def __init__(self, root: Path):
        self.root = root
        self.socket = root / "native"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        pulse = shutil.which("pulseaudio")
        if pulse is None:
            raise EnvironmentProblem("PulseAudio not installed (apt-get install pulseaudio)")
        self.root.mkdir(parents=True, exist_ok=True)
        if len(str(self.socket)) > 100:  # sun_path holds 108 bytes
            raise EnvironmentProblem(f"the PulseAudio socket path is too long: {self.socket}")
        script = self.root / "evidence.pa"
        script.write_text(
            f"load-module module-native-protocol-unix socket={self.socket} auth-anonymous=1\n"
            f"load-module module-null-sink sink_name={SINK} rate={AUDIO_RATE} "
            "sink_properties=device.description=evidence-chain-recording\n"
            f"set-default-sink {SINK}\n",
            "utf-8",
        )
        # Its state, cookie and runtime files go in our directory, not the user's home.
        env = {
            **os.environ, "HOME": str(self.root), "XDG_CONFIG_HOME": str(self.root),
            "XDG_RUNTIME_DIR": str(self.root), "PULSE_RUNTIME_PATH": str(self.root),
            "PULSE_STATE_PATH": str(self.root),
        }  # fmt: skip
        env.pop("DISPLAY", None)
        log = self.root / "pulseaudio.log"
        try:
            with open(log, "wb") as err:
                self.proc = subprocess.Popen(
                    [pulse, "-n", "-F", str(script), "--daemonize=no", "--use-pid-file=no",
                     f"--exit-idle-time={PULSE_IDLE_EXIT}", "--log-target=stderr", "--log-level=error"],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env,
                    start_new_session=True,
                )  # fmt: skip
        except OSError as e:
            raise EnvironmentProblem(f"cannot start PulseAudio: {e.strerror or e}") from e
        end = time.monotonic() + START_TIMEOUT
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise EnvironmentProblem(
                    f"PulseAudio exited with status {self.proc.returncode}: {_tail(log)}"
                )
            if self.socket.exists() and self._answers():
                return f"unix:{self.socket}"
            time.sleep(0.05)
        self.stop()
        raise EnvironmentProblem(f"PulseAudio did not start within {START_TIMEOUT:g} s")

    def _answers(self) -> bool:
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(str(self.socket))
            except OSError:
                return False
        return True

    def stop(self) -> None:
        xvfb.end(self.proc)
        self.proc = None


@dataclass
class _Part:
    n: int
    path: Path
    wall_start: str
    f: IO[bytes]
    digest: Any = field(default_factory=hashlib.sha256)
    size: int = 0
    fragments: list[int] = field(default_factory=list)

    def write(self, data: bytes) -> None:
        self.f.write(data)
        self.digest.update(data)
        self.size += len(data)


def _read_exact(f: IO[bytes], n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = f.read(n - len(out))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def _mfhd_sequence(moof: bytes) -> int | None:
    # moof header (8) then its first child, mfhd: size, 'mfhd', version+flags, sequence_number.
    if len(moof) >= 24 and moof[12:16] == b"mfhd":
        return int(struct.unpack(">I", moof[20:24])[0])
    return None


def _tracks(moof: bytes) -> set[int]:
    """Track IDs of a moof's trafs (each traf starts with its tfhd: size, 'tfhd', version+flags, track_ID)."""
    ids, at = set(), 8
    while at + 8 <= len(moof):
        size = int(struct.unpack(">I", moof[at : at + 4])[0])
        if size < 8:
            break
        if moof[at + 4 : at + 8] == b"traf" and moof[at + 12 : at + 16] == b"tfhd" and at + 24 <= len(moof):
            ids.add(int(struct.unpack(">I", moof[at + 20 : at + 24])[0]))
        at += size
    return ids


def probe(path: Path) -> dict[str, Any]:
    """Media start and end (ms) and the streams of a part, from its packets as ffprobe reads them.

    From the packets, not the container's duration: for a fragmented MP4
    whose first fragment starts later than 0, ffprobe's "duration" is the
    end time, not the length.
    """
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        return {"probe": "ffprobe not installed"}
    try:
        out = subprocess.run(
            [ffprobe, "-v", "error", "-of", "json", "-show_entries",
             "stream=index,codec_type,codec_name:packet=stream_index,pts_time,duration_time", str(path)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        data = json.loads(out.stdout or "{}")
        spans = [
            (float(p["pts_time"]), float(p["pts_time"]) + float(p.get("duration_time") or 0))
            for p in data.get("packets") or []
            if p.get("pts_time") not in (None, "N/A")
        ]
        start, end = min(a for a, _ in spans), max(b for _, b in spans)
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, TypeError) as e:
        return {"probe": f"ffprobe could not read the part: {type(e).__name__}: {e}"}
    streams = [f"{s.get('codec_type')}/{s.get('codec_name')}" for s in data.get("streams") or []]
    return {
        "media_start_ms": round(start * 1000),
        "media_end_ms": round(end * 1000),
        "duration_ms": round((end - start) * 1000),
        "streams": streams,
        "audio": any(s.startswith("audio/") for s in streams),
    }


class ScreenRecording:
    """The display, the sound server, ffmpeg, and the parts; ``with`` it around the browser.

    ``env`` is what the browser must be launched with (DISPLAY, PULSE_SERVER),
    or None: no screen recording, the browser runs headless.
    """

    def __init__(self, rec: Recorder, width: int, height: int):
        self.rec = rec
        self.width, self.height = width, height
        self.dir = rec.workdir.parent / "screen"
        self.env: dict[str, str] | None = None
        self.audio = "no audio: not started"
        self.display: str | None = None
        self._xvfb: _Xvfb | None = None
        self._pulse: _Pulse | None = None
        self._ffmpeg: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self.lock = threading.Lock()
        self._init = b""
        self._part: _Part | None = None
        self._next = 0
        self._next_start = ""
        self._stopping = False
        self._ended: str | None = None  # why ffmpeg's output ended early, once it did
        self._first_fragment = threading.Event()
        self._track_count = 1
        self._settled = threading.Event()  # the first fragment arrived, or ffmpeg's output ended
        #: wall times: ffmpeg started; the first fragment arrived; the stop was asked for
        self.started = ""
        self.first_fragment = ""
        self.stopped = ""

    # -- start and stop -----------------------------------------------------------

    def __enter__(self) -> ScreenRecording:
        rec = self.rec
        if not rec.screen_record:
            self._facts(False, TURNED_OFF)
            return self
        try:
            ffmpeg, why = _ffmpeg_features()
            if ffmpeg is None:
                raise EnvironmentProblem(why or "no usable ffmpeg")
            self.dir.mkdir(parents=True, exist_ok=True)
            try:
                env = self._start(ffmpeg, sound=True)
                self.audio = f"audio: PulseAudio null sink {SINK} (a private server; its monitor is recorded)"
            except EnvironmentProblem as e:
                # The picture alone is still worth having: once more, without the sound server.
                self._reset()
                self.audio = f"no audio: {e}"
                rec.log("screen", f"the screen recording has no sound: {e}", level="warning")
                env = self._start(ffmpeg, sound=False)
        except (EnvironmentProblem, OSError) as e:
            self._reset()
            self._facts(False, str(e))
            rec.log("screen", f"no screen recording: {e}", level="warning")
            return self
        self.env = env
        self._facts(True, None)
        rec.before_seal.append(self.cut)
        rec.log("screen", f"recording display {self.display} ({self.width}x{self.height}); {self.audio}")
        return self

    def _start(self, ffmpeg: str, *, sound: bool) -> dict[str, str]:
        """Display, sound server (``sound``) and ffmpeg, up to its first fragment: the browser's environment."""
        self._xvfb = _Xvfb(self.width, self.height, self.dir / "xvfb.log")
        self.display = self._xvfb.start()
        env = {"DISPLAY": self.display}
        if sound:
            self._pulse = _Pulse(self.dir / "pulse")
            env["PULSE_SERVER"] = self._pulse.start()
        self._start_ffmpeg(ffmpeg, env.get("PULSE_SERVER"))
        # The browser (and so the page) starts only once picture and sound are being recorded:
        # PulseAudio delivers a null sink's first sound a second or two after ffmpeg connects.
        if not self.wait_started(START_TIMEOUT):
            raise EnvironmentProblem(self._ended or f"ffmpeg recorded nothing within {START_TIMEOUT:g} s")
        return env

    def _reset(self) -> None:
        """Undo a start that failed: processes ended, the half-made part gone, ready to start again."""
        self._stopping = True
        self._close_processes()
        if self._reader is not None:
            self._reader.join(STOP_TIMEOUT)
        with self.lock:
            if self._part is not None:
                self._part.f.close()
                self._part.path.unlink(missing_ok=True)
        self._xvfb = self._pulse = self._ffmpeg = self._reader = self._part = None
        self._init, self._next, self._ended, self._stopping = b"", 0, None, False
        self._first_fragment.clear()
        self._settled.clear()

    def _facts(self, recorded: bool, reason: str | None) -> None:
        facts: dict[str, Any] = {"recorded": recorded}
        if recorded:
            facts.update(
                media_zero_wall=self.started,
                media_time="system clock at grab time less media_zero_wall (picture and sound alike)",
                video=f"ffmpeg x11grab of a private Xvfb display, {self.width}x{self.height}, {SCREEN_FPS} fps, "
                "H.264 (libx264) in fragmented MP4; the browser window fullscreen on it",
                audio=self.audio,
                parts="one per window, role screen-recording, in order: each fragment of the one "
                "recording is in exactly one part, so part k+1 starts where part k ends",
            )
        else:
            facts["reason"] = reason
        self.rec.facts["screen_recording"] = facts

    def _start_ffmpeg(self, ffmpeg: str, pulse: str | None) -> None:
        # x11grab and pulse stamp their packets with the system clock. ffmpeg would move each
        # input to start at 0 on its own (sound opens later than the picture: out of sync);
        # -copyts keeps the clock, and both are moved by the same t0 instead, so media time t
        # is wall time t0 + t, and the mp4 keeps each track's start (delay_moov: an edit list).
        t0 = time.time()
        quick = ["-probesize", "32", "-analyzeduration", "0"]
        cmd = [
            ffmpeg, "-hide_banner", "-loglevel", "error", "-nostats",
            # A short queue of raw pictures (3.7 MB each): when the encoder falls behind, the grab
            # waits (fewer pictures, each stamped when taken) instead of memory filling with
            # pictures that a stop would then throw away.
            *quick, "-thread_queue_size", str(KEYFRAME_FRAMES), "-f", "x11grab", "-framerate", str(SCREEN_FPS),
            "-video_size", f"{self.width}x{self.height}", "-draw_mouse", "0", "-i", f"{self.display}.0+0,0",
        ]  # fmt: skip
        if pulse is not None:
            # Sound must never wait (the server would drop it): a long queue of small packets.
            cmd += [
                *quick,
                "-thread_queue_size",
                "1024",
                "-f",
                "pulse",
                "-sample_rate",
                str(AUDIO_RATE),
                "-channels",
                "2",
                "-i",
                f"{SINK}.monitor",
            ]
        cmd += [
            "-map", "0:v", *(["-map", "1:a"] if pulse is not None else []), "-copyts",
            "-vf", f"setpts=PTS-{t0:.6f}/TB", *(["-af", f"asetpts=PTS-{t0:.6f}/TB"] if pulse is not None else []),
            "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
            "-g", str(KEYFRAME_FRAMES), "-keyint_min", str(KEYFRAME_FRAMES), "-sc_threshold", "0",
            *(["-c:a", "aac", "-b:a", "128k"] if pulse is not None else []),
            # A fragment per key frame, each self-contained (offsets from its moof), no index at the end.
            "-f", "mp4", "-movflags", "frag_keyframe+empty_moov+delay_moov+default_base_moof+skip_trailer",
            "pipe:1",
        ]  # fmt: skip
        env = dict(os.environ)
        if pulse is not None:
            env["PULSE_SERVER"] = pulse
        self._log = self.dir / "ffmpeg.log"
        self._track_count = 2 if pulse is not None else 1
        self._next_start = self.started = rfc3339(t0)
        try:
            with open(self._log, "wb") as err:
                self._ffmpeg = subprocess.Popen(
                    cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=env,
                    start_new_session=True,
                )  # fmt: skip
        except OSError as e:
            raise EnvironmentProblem(f"cannot start ffmpeg: {e.strerror or e}") from e
        self._reader = threading.Thread(target=self._read, name="screen-recording", daemon=True)
        self._reader.start()

    def stop(self) -> None:
        """End the recording (``q`` on ffmpeg's stdin: it writes its last fragment); the last part stays open."""
        p = self._ffmpeg
        if p is None:
            return
        self._stopping = True
        self.stopped = rfc3339(now_utc())
        try:
            assert p.stdin is not None
            p.stdin.write(b"q")
            p.stdin.close()
        except OSError:
            pass
        try:
            p.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.rec.log(
                "screen", f"ffmpeg did not stop within {STOP_TIMEOUT:g} s; terminated", level="warning"
            )
            xvfb.end(p)
        if self._reader is not None:
            self._reader.join(STOP_TIMEOUT)
        self._ffmpeg = None

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._close_processes()

    def _close_processes(self) -> None:
        xvfb.end(self._ffmpeg)
        if self._pulse is not None:
            self._pulse.stop()
        if self._xvfb is not None:
            self._xvfb.stop()

    def wait_started(self, timeout: float) -> bool:
        """True once the first fragment arrived (the recording is running); False if it did not in time."""
        self._settled.wait(timeout)
        return self._first_fragment.is_set()

    # -- ffmpeg's output, box by box ---------------------------------------------------

    def _read(self) -> None:
        p = self._ffmpeg
        assert p is not None and p.stdout is not None
        f = p.stdout
        init = bytearray()
        moof: bytes | None = None
        fragments = False
        why: str | None = None
        try:
            while True:
                head = _read_exact(f, 8)
                if not head:
                    break
                if len(head) < 8:
                    why = "ffmpeg's output ended inside a box header"
                    break
                size, kind = struct.unpack(">I4s", head)
                if size == 1:
                    big = _read_exact(f, 8)
                    head += big
                    size = struct.unpack(">Q", big)[0] if len(big) == 8 else 0
                if size < len(head):
                    why = f"ffmpeg wrote a box of unusable size {size} ({kind!r})"
                    break
                if kind == b"moof":
                    moof = head + _read_exact(f, size - len(head))
                    fragments = True
                elif kind == b"mdat" and moof is not None:
                    if not self._fragment(moof, head, f, size - len(head)):
                        why = "ffmpeg's output ended inside a fragment"
                        break
                    moof = None
                elif not fragments:
                    init += head + _read_exact(f, size - len(head))  # ftyp, moov: the init section
                    self._init = bytes(init)
                else:
                    _read_exact(f, size - len(head))  # nothing else is expected; not part of any fragment
        except (OSError, ValueError) as e:
            why = f"reading ffmpeg's output failed: {e}"
        self._settled.set()
        code = p.wait()
        if why is None and not self._stopping:
            why = f"ffmpeg exited with status {code}: {_tail(self._log)}"
        if why is not None and not self._stopping:
            self._ended = why
            with self.rec.lock:
                self.rec.facts.get("screen_recording", {})["ended_early"] = why
            self.rec.log("screen", f"the screen recording ended early: {why}", level="warning")

    def _fragment(self, moof: bytes, head: bytes, f: IO[bytes], left: int) -> bool:
        with self.lock:
            part = self._part
            if part is None:
                name = f"screenrec-{self._next:06d}.mp4"
                part = _Part(self._next, self.dir / name, self._next_start, open(self.dir / name, "wb"))
                part.write(self._init)
                self._part = part
            part.write(moof)
            part.write(head)
            while left > 0:
                chunk = f.read(min(CHUNK, left))
                if not chunk:
                    return False
                part.write(chunk)
                left -= len(chunk)
            seq = _mfhd_sequence(moof)
            if seq is not None:
                part.fragments.append(seq)
        # Started once a fragment carries every track (ffmpeg numbers them 1, 2 in -map order).
        if not self._first_fragment.is_set() and len(_tracks(moof)) >= self._track_count:
            self.first_fragment = rfc3339(now_utc())
            self._first_fragment.set()
            self._settled.set()
        return True

    # -- a part per window -------------------------------------------------------------

    def cut(self, w: _Window) -> None:
        """``Recorder.before_seal``: the open part ends here and joins window ``w``."""
        with self.lock:
            part = self._part
            if part is None:
                return  # no fragment since the last cut: nothing to add to this window
            self._part = None
            self._next += 1
            part.f.close()
            # After the stop the part ended when the stop was asked for, not at this later seal.
            cut_at = self.stopped if self._ffmpeg is None and self.stopped else rfc3339(now_utc())
            self._next_start = cut_at
        entry: dict[str, Any] = {
            "part": part.n,
            "name": part.path.name,
            "sha256": part.digest.hexdigest(),
            "size": part.size,
            "wall_start": part.wall_start,
            "wall_end": cut_at,
            "fragments": [part.fragments[0], part.fragments[-1]] if part.fragments else None,
            **probe(part.path),
        }
        if part.n == 0:
            entry["ffmpeg_started"], entry["first_fragment_arrived"] = self.started, self.first_fragment
        if self._ended is not None:
            entry["ended_early"] = self._ended
        # Into the window's directory: sealed with it, removed with it.
        dest = w.dir / part.path.name
        os.replace(part.path, dest)
        w.files.append(ArtifactFile(dest.name, dest, "video/mp4", ROLE))
        w.extra.setdefault("screen_parts", []).append(entry)
