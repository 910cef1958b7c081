"""CPU seconds per minute of media: livestream page mode (with and without 录屏) against ffmpeg, same source, same run.

The local live room (``examples/live-stream/serve.py``, channel
``shop-fmp4``: 320x180 at 10 fps, 1 s fMP4 segments, a page that plays it
through MSE with a DOM price tag and chat over it) is started on 127.0.0.1
and three recorders take it at the same time, each a process of its own:

* page + screen: page mode as the command runs it (Chromium headed on a
  private Xvfb, the screen and sound recorded by ffmpeg, a part per
  window; every response archived, screenshots at 1/s, frames decoded);
* page, no screen: the same with the screen recording off (Chromium headless);
* ffmpeg -c copy: ``ffmpeg -i index.m3u8 -t S -c copy`` of the room's stream
  (no browser, no hashing, no frames, no ledger).

CPU is user+system of each recorder and all its children (``os.wait4``:
Chromium, the Playwright driver, Xvfb, PulseAudio, ffmpeg), per minute of
media (S seconds recorded). Printed, never asserted. On a shared 2-core
machine the figures are inflated by other work; the ratios, measured in
one run, are what to read.

    .venv/bin/python benchmarks/livestream_page.py [--seconds 40] [--window 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples" / "live-stream"))

from _common import line, reap_cpu  # noqa: E402
from serve import LiveServer  # noqa: E402

from ledger.log import Ledger  # noqa: E402


def run_page(url: str, seconds: float, window: float, home: Path, screen: bool) -> None:
    """One page-mode capture in this process (``--run``): what ``evidence livestream --mode page`` does."""
    from capture.livepage import run_page as page
    from capture.recorder import Limits, Recorder

    led = Ledger.open(home)
    try:
        job = home / "job"
        job.mkdir()
        rec = Recorder(ledger=led, case="BENCH", url=url, mode="page", workdir=job / "windows",
                       limits=Limits(seconds, None, None, 1.0, window))  # fmt: skip
        rec.screen_record = screen
        page(rec)
        s = rec.close()
        print(
            f"windows={len(s.windows)} frames={s.frames} segments={s.segments} end={s.end_reason}", flush=True
        )
    finally:
        led.close()


def _start(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True
    )


def _page(url: str, seconds: int, window: float, tmp: Path, screen: bool) -> subprocess.Popen[bytes]:
    home = tmp / f"home-{'screen' if screen else 'plain'}-{time.monotonic_ns()}"
    Ledger.init(home, unencrypted=True, origin="bench.example/page").close()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return _start([sys.executable, str(Path(__file__).resolve()), "--run", url, str(seconds), str(window), str(home),
                   "on" if screen else "off"], env)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=40)
    ap.add_argument("--window", type=float, default=10.0)
    ap.add_argument(
        "--run", nargs=5, metavar=("URL", "SECONDS", "WINDOW", "HOME", "SCREEN"), help=argparse.SUPPRESS
    )
    a = ap.parse_args()
    if a.run:
        url, seconds, window, home, screen = a.run
        run_page(url, float(seconds), float(window), Path(home), screen == "on")
        return
    for tool in ("ffmpeg", "Xvfb", "pulseaudio"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed (scripts/setup installs it)")
    tmp = Path(tempfile.mkdtemp(prefix="bench-live-page-"))
    live = LiveServer(tmp / "room", channels=("shop-fmp4",), clip=False).start()
    try:
        procs = {
            "page + screen": _page(live.url("page", "shop-fmp4"), a.seconds, a.window, tmp, True),
            "page, no screen": _page(live.url("page", "shop-fmp4"), a.seconds, a.window, tmp, False),
            "ffmpeg -c copy": _start(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", live.url("index", "shop-fmp4"),
                                      "-t", str(a.seconds), "-c", "copy", "-f", "mp4", "-y", str(tmp / "ffmpeg.mp4")]),
        }  # fmt: skip
        cpu: dict[str, float] = {}
        said: dict[str, str] = {}
        deadline = time.monotonic() + a.seconds + 120
        for name, p in procs.items():
            cpu[name] = reap_cpu(p, deadline)
            said[name] = (p.stdout.read().decode(errors="replace").strip() if p.stdout else "")[-200:]
    finally:
        live.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    per_min = 60 / a.seconds
    base = cpu["ffmpeg -c copy"]
    print(f"CPU seconds per minute of media ({a.seconds} s recorded by each, at the same time, same room)")
    for name, c in cpu.items():
        extra = f"{name} / ffmpeg = {c / base:.1f}" if base and name != "ffmpeg -c copy" else ""
        line(name, c * per_min, "cpu-s/min", f"{extra}  {said[name]}".strip())
    plain, screen = cpu["page, no screen"], cpu["page + screen"]
    if plain:
        print(
            f"screen recording costs {(screen - plain) * per_min:.1f} cpu-s/min more ({screen / plain:.2f}x)"
        )


if __name__ == "__main__":
    main()
