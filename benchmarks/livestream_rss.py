"""A long livestream capture at 1 frame/s: memory over time, CPU per minute, frames lost.

The local live stream (``examples/live-stream``; ffmpeg, 1 s segments) is
recorded for ``--minutes`` (default 10) by ``evidence livestream`` in its own
process, while two baselines record the same stream in the same run:

* a bare fetch loop (Python, stdlib only): polls the playlist, writes each
  new segment to a file; no WARC, no hashing, no decoding, no ledger;
* ffmpeg reading the HLS stream, copying it to one file and writing one PNG
  per second (the nearest off-the-shelf equivalent of what we do).

Targets (issue 4): peak RSS at the end within 10 % of the peak at minute 1;
0 frames lost. Figures are printed, never asserted.

    .venv/bin/python benchmarks/livestream_rss.py [--minutes 10] [--size 640x360] [--fps 25]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples" / "live-stream"))

from _common import line  # noqa: E402
from serve import LiveServer  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")

BARE_LOOP = r"""
import sys, time, urllib.request, urllib.parse
url, out, end = sys.argv[1], sys.argv[2], time.monotonic() + float(sys.argv[3])
last = -1
while time.monotonic() < end:
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    seq = 0
    n = 0
    for ln in text.splitlines():
        if ln.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            seq = int(ln.split(":")[1])
        elif ln and not ln.startswith("#"):
            if seq + n > last:
                last = seq + n
                data = urllib.request.urlopen(urllib.parse.urljoin(url, ln), timeout=10).read()
                with open(f"{out}/{last:08d}.ts", "wb") as f:
                    f.write(data)
            n += 1
    time.sleep(0.5)
"""


@dataclass
class Watched:
    """A child process, its memory sampled each second, its CPU from wait4 at exit."""

    name: str
    proc: subprocess.Popen[bytes]
    started: float = field(default_factory=time.monotonic)
    hwm_minute1: int = 0
    #: VmHWM at the last sample: the process's own peak (wait4's ru_maxrss also counts reaped children)
    hwm_last: int = 0
    rss_samples: list[tuple[float, int]] = field(default_factory=list)
    #: RSS of the processes it started (Playwright driver, Chromium), sampled
    children_samples: list[tuple[float, int]] = field(default_factory=list)
    cpu: float = 0.0
    maxrss: int = 0
    rc: int | None = None

    def sample(self) -> None:
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return
        fields = {ln.split(":")[0]: ln.split()[1] for ln in status.splitlines() if ln.startswith(("VmRSS", "VmHWM"))}
        t = time.monotonic() - self.started
        if "VmRSS" in fields:
            self.rss_samples.append((t, int(fields["VmRSS"]) * 1024))
        if "VmHWM" in fields:
            self.hwm_last = int(fields["VmHWM"]) * 1024
            if t <= 60:
                self.hwm_minute1 = self.hwm_last
        kids = _descendants(self.proc.pid)
        if kids:
            self.children_samples.append((t, sum(_rss(k) for k in kids)))

    def reap(self) -> None:
        _, status, ru = os.wait4(self.proc.pid, 0)
        self.rc = os.waitstatus_to_exitcode(status)
        self.proc.returncode = self.rc
        self.cpu = ru.ru_utime + ru.ru_stime
        self.maxrss = ru.ru_maxrss * 1024

    def rss_last_minute(self) -> int:
        end = max((t for t, _ in self.rss_samples), default=0)
        return max((r for t, r in self.rss_samples if t >= end - 60), default=0)


def _descendants(pid: int) -> list[int]:
    parents: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parents[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        out += kids
        todo += kids
    return out


def _rss(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--size", default="640x360", help="picture size of the test stream")
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--window", type=float, default=10.0)
    ap.add_argument("--page", action="store_true", help="record the page that plays the stream (Chromium) instead of the playlist")
    args = ap.parse_args()
    seconds = args.minutes * 60
    work = Path(tempfile.mkdtemp(prefix="bench-live-"))
    home = work / "home"
    env = dict(os.environ, EVIDENCE_HOME=str(home), PYTHONPATH=str(ROOT))
    py = sys.executable
    subprocess.run([py, "-m", "evidence.cli", "init", "--no-passphrase"], env=env, check=True, capture_output=True)
    channel = "shop-fmp4" if args.page else "shop"
    live = LiveServer(channels=(channel,), clip=False, size=args.size, rate=args.fps).start(wait_segments=6)
    target = live.url("page", channel) if args.page else live.url("index", channel)
    playlist = live.url("index", channel)
    print(f"stream {args.size} @ {args.fps} fps, 1 s segments; recording {args.minutes:g} min of {target}; work dir {work}")
    try:
        ours = Watched(
            "evidence livestream",
            subprocess.Popen(
                [py, "-m", "evidence.cli", "livestream", target, "--case", "BENCH-RSS",
                 "--duration", str(seconds), "--frame-interval", "1", "--window", str(args.window), "--json"],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            ),
        )  # fmt: skip
        (work / "bare").mkdir()
        bare = Watched(
            "bare fetch loop",
            subprocess.Popen([py, "-c", BARE_LOOP, playlist, str(work / "bare"), str(seconds)]),
        )
        (work / "ffmpeg").mkdir()
        ff = Watched(
            "ffmpeg copy + 1 PNG/s",
            subprocess.Popen(
                ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i", playlist,
                 "-t", str(seconds), "-map", "0:v", "-c", "copy", str(work / "ffmpeg" / "stream.ts"),
                 "-map", "0:v", "-vf", "select='isnan(prev_selected_t)+gte(t-prev_selected_t\\,1)'", "-fps_mode", "vfr",
                 str(work / "ffmpeg" / "f-%06d.png")],
            ),
        )  # fmt: skip
        procs = [ours, bare, ff]
        out: dict[str, bytes] = {}

        def drain() -> None:
            assert ours.proc.stdout is not None and ours.proc.stderr is not None
            out["stdout"] = ours.proc.stdout.read()
            out["stderr"] = ours.proc.stderr.read()

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        t0 = time.monotonic()
        ours_end = 0.0
        while any(p.rc is None for p in procs):
            for p in procs:
                if p.rc is None:
                    # waitid(WNOWAIT) peeks; Popen.poll() would reap and lose the rusage.
                    if os.waitid(os.P_PID, p.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                        p.reap()
                    else:
                        p.sample()
                        if ours.rc is not None and time.monotonic() - ours_end > 10:
                            # ffmpeg's -t counts media time and it lags the live edge:
                            # stop it when we stop, so both cover the same stretch.
                            p.proc.send_signal(signal.SIGINT)
                        if time.monotonic() - t0 > seconds + 120:
                            p.proc.terminate()
            if ours.rc is not None and ours_end == 0.0:
                ours_end = time.monotonic()
            time.sleep(1.0)
        reader.join(10)
    finally:
        live.stop()
    minutes = args.minutes
    print()
    if ours.rc != 0:
        print(f"evidence livestream exited {ours.rc}: {out.get('stderr', b'').decode()[-2000:]}")
        return
    session = json.loads(out["stdout"])
    media_ms, seqs = _segments(env, py, session)
    expected = media_ms // 1000  # one frame per second of media received
    written = session["frames"] + session["duplicates"]
    gaps = sum(b - a - 1 for a, b in zip(seqs, seqs[1:]) if b > a + 1)
    audit = subprocess.run([py, "-m", "evidence.cli", "audit", "--json"], env=env, capture_output=True, text=True)
    ff_pngs = len(list((work / "ffmpeg").glob("f-*.png")))
    bare_segs = len(list((work / "bare").glob("*.ts")))

    print(f"evidence livestream: end {session['end_reason']}, {len(session['windows'])} windows, "
          f"{session['segments']} segments, {session['frames']} frames, {session['bytes'] / 1e6:.1f} MB")  # fmt: skip
    line("peak RSS at minute 1 (ours)", ours.hwm_minute1 / 2**20, "MiB")
    line(f"peak RSS at the end, minute {minutes:g} (ours)", ours.hwm_last / 2**20, "MiB",
         f"growth {100 * (ours.hwm_last - ours.hwm_minute1) / max(1, ours.hwm_minute1):+.1f} % (target < 10 %)")  # fmt: skip
    line("RSS high in the last minute (ours)", ours.rss_last_minute() / 2**20, "MiB")
    if ours.children_samples:
        first = max((r for t, r in ours.children_samples if t <= 60), default=0)
        last = max((r for t, r in ours.children_samples if t >= ours.children_samples[-1][0] - 60), default=0)
        line("RSS of our children (driver + Chromium), minute 1", first / 2**20, "MiB", "not ours; for context")
        line("RSS of our children, last minute", last / 2**20, "MiB", f"growth {100 * (last - first) / max(1, first):+.1f} %")
    if args.page:
        ours.name += " (+ driver, Chromium)"  # wait4 counts the descendants it reaped
    for p in procs:
        line(f"CPU per minute of stream: {p.name}", p.cpu / minutes, "s/min", f"total {p.cpu:.1f} s, wait4 maxrss {p.maxrss / 2**20:.0f} MiB")
    line("CPU ratio ours / bare fetch loop", ours.cpu / max(bare.cpu, 1e-6), "x")
    line("CPU ratio ours / ffmpeg copy + 1 PNG/s", ours.cpu / max(ff.cpu, 1e-6), "x")
    if args.page:
        # The page's player decides what is fetched; frames are screenshots plus decoded frames.
        line("frames written (screenshots + decoded)", written, "frames", f"{session['segments']} segments archived")
    else:
        line("frames expected (1/s of media received)", expected, "frames")
        line("frames written (stored + counted duplicates)", written, "frames", f"lost {max(0, expected - written)}")
        line("segment sequence gaps (ours)", gaps, "segments", f"{len(seqs)} media segments, seq {seqs[0] if seqs else '-'}..{seqs[-1] if seqs else '-'}")
    line("segments (bare fetch loop)", bare_segs, "segments")
    line("PNGs (ffmpeg)", ff_pngs, "frames")
    line("ledger audit", 0 if audit.returncode == 0 else 1, "failures", audit.stderr.strip()[:100])
    shutil.rmtree(work, ignore_errors=True)


def _segments(env: dict[str, str], py: str, session: dict) -> tuple[int, list[int]]:
    """Media milliseconds and sequence numbers of the segments the windows sealed."""
    code = (
        "import json, sys\nfrom ledger.log import Ledger\nled = Ledger.open()\nms, seqs = 0, []\n"
        "for i in json.loads(sys.argv[1]):\n"
        "    r = next(led.records(start=i))\n"
        "    m = json.loads(led.artifacts.open(r.payload['manifest']['sha256']).read())\n"
        "    for s in m['info']['segments']:\n"
        "        if s.get('seq') is not None and s.get('status') == 200:\n"
        "            ms += s['duration_ms']; seqs.append(s['seq'])\n"
        "print(json.dumps([ms, seqs]))\n"
    )
    p = subprocess.run([py, "-c", code, json.dumps(session["windows"])], env=env, capture_output=True, text=True, check=True)
    ms, seqs = json.loads(p.stdout)
    return ms, seqs


if __name__ == "__main__":
    main()
