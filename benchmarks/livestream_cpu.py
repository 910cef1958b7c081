"""CPU seconds per minute of media: `evidence livestream` against ffmpeg `-c copy` and yt-dlp, same source, same run.

For each way in (HLS, DASH, HTTP-FLV) a real-time ffmpeg source (320x180,
10 fps, 1 s segments) is started on 127.0.0.1 and three recorders take the
same stream at the same time, each in its own process group:

* ours: ``python -m evidence.cli livestream URL --duration S`` (WARC, frames
  at 1/s, sealed windows, ledger);
* ffmpeg: ``ffmpeg -i URL -t S -c copy`` (no hashing, no frames, no ledger);
* yt-dlp: ``python -m yt_dlp URL`` stopped with SIGINT after S seconds.

HTTP-FLV is served by ``ffmpeg -listen 1``, one client each: every recorder
gets its own source process fed the same lavfi input. CPU is user+system of
each recorder and its children (``os.wait4``); the figure is CPU seconds per
minute of media (S seconds recorded). Printed, never asserted.

``--baseline DIR`` records with a fourth recorder, ``evidence livestream`` run
from another tree (an older copy of this repository), at the same time on the
same source: a before/after ratio from one run, on a machine whose load would
make figures from two runs incomparable.

Our trees run from bytecode compiled before the run, as an installed package
does (``pip install`` compiles; yt-dlp's modules in site-packages are
compiled): with ``PYTHONDONTWRITEBYTECODE`` set, as on the development
machines, a source tree would otherwise compile ~60 of its modules again at
every start (~0.3 s of CPU). The bytecode is hash-checked against the source
at each import, so an edited file is never run stale. ``--from-source``
measures without it (it removes the packages' ``__pycache__``: under
``PYTHONDONTWRITEBYTECODE`` every start then compiles them).

    .venv/bin/python benchmarks/livestream_cpu.py [--seconds 40] [--modes hls,dash,flv] [--baseline DIR] [--from-source]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "capture"))
sys.path.insert(0, str(ROOT / "examples" / "live-stream"))

from _common import line, reap_cpu  # noqa: E402
from live_sources import (  # noqa: E402
    AUDIO,
    VIDEO,
    X264,
    FileServer,
    dash_source,
    flv_source,
    free_port,
    stop,
    wait_listening,
)
from serve import LiveServer  # noqa: E402

from ledger.log import Ledger  # noqa: E402


def _start(
    cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def _flv_again(port: int, seconds: int) -> subprocess.Popen[bytes]:
    """``flv_source``'s ffmpeg, started again whenever its one client has gone."""
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re", *VIDEO, "-re", *AUDIO,
           "-t", str(seconds), *X264, "-c:a", "aac", "-b:a", "64k", "-f", "flv", "-listen", "1",
           f"http://127.0.0.1:{port}/live.flv"]  # fmt: skip
    return subprocess.Popen(
        ["sh", "-c", 'while :; do "$@"; done', "sh", *cmd],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


PACKAGES = ("ledger", "capture", "verify", "evidence")


def _compile(tree: Path) -> None:
    """Bytecode for the tree's packages, as an install makes it; checked against the source's hash at import."""
    dirs = [str(tree / p) for p in PACKAGES if (tree / p).is_dir()]
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "checked-hash", *dirs],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip


def _uncompile(tree: Path) -> None:
    """No bytecode of the tree's packages (a cache: Python compiles the source again when it is gone)."""
    for p in PACKAGES:
        for d in (tree / p).rglob("__pycache__") if (tree / p).is_dir() else ():
            shutil.rmtree(d, ignore_errors=True)


def _ours(url: str, seconds: int, tmp: Path, tree: Path) -> subprocess.Popen[bytes]:
    home = tmp / f"home-{time.monotonic_ns()}"
    Ledger.init(home, unencrypted=True, origin="bench.example/live").close()
    env = dict(os.environ, EVIDENCE_HOME=str(home), PYTHONPATH=str(tree))
    return _start([sys.executable, "-m", "evidence.cli", "livestream", url, "--case", "BENCH",
                   "--duration", str(seconds), "--window", "10"], env, cwd=tree)  # fmt: skip
    # cwd too: ``python -m`` puts the working directory first on sys.path, before PYTHONPATH


def record(urls: dict[str, str], seconds: int, tmp: Path, baseline: Path | None) -> dict[str, float | None]:
    """Start the recorders at once; CPU seconds of each (None if it could not record)."""
    out = tmp / f"out-{time.monotonic_ns()}"
    out.mkdir()
    procs = {
        "ours": _ours(urls["ours"], seconds, tmp, ROOT),
        "ffmpeg -c copy": _start(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", urls["ffmpeg -c copy"], "-t", str(seconds),
                                  "-c", "copy", "-f", "mpegts", str(out / "ffmpeg.ts")]),
        # --retry-sleep: time for a restarted FLV source to listen (no effect on HLS and DASH)
        "yt-dlp": _start([sys.executable, "-m", "yt_dlp", "--quiet", "--no-part", "--no-progress", "--retry-sleep", "1",
                          "-o", str(out / "ytdlp.%(ext)s"), urls["yt-dlp"]]),
    }  # fmt: skip
    if baseline is not None:
        procs["baseline"] = _ours(urls["baseline"], seconds, tmp, baseline)
    time.sleep(seconds + 1)
    # yt-dlp records a live stream until it ends: Ctrl-C, as a user would
    try:
        os.killpg(procs["yt-dlp"].pid, signal.SIGINT)
    except ProcessLookupError:
        pass
    cpu: dict[str, float | None] = {}
    deadline = time.monotonic() + 60
    for name, p in procs.items():
        cpu[name] = reap_cpu(p, deadline)
    sizes = {f.name: f.stat().st_size for f in out.iterdir()}
    for name in ("ffmpeg -c copy", "yt-dlp"):
        if not any(n.startswith(name.split()[0].replace("-", "")) and s > 0 for n, s in sizes.items()):
            cpu[name] = None  # it recorded nothing: no figure
    return cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=40)
    ap.add_argument("--modes", default="hls,dash,flv")
    ap.add_argument("--baseline", type=Path, help="another tree's evidence livestream, recorded alongside")
    ap.add_argument(
        "--from-source", action="store_true", help="run our trees without compiling their bytecode first"
    )
    a = ap.parse_args()
    names = ["ours", "ffmpeg -c copy", "yt-dlp"] + (["baseline"] if a.baseline else [])
    if shutil.which("ffmpeg") is None:
        sys.exit("ffmpeg is needed")
    tmp = Path(tempfile.mkdtemp(prefix="bench-live-cpu-"))
    per_min = 60 / a.seconds
    for tree in (ROOT, *([a.baseline] if a.baseline else [])):
        (_uncompile if a.from_source else _compile)(tree)
    print(
        f"CPU seconds per minute of media ({a.seconds} s recorded per recorder; 320x180, 10 fps, 1 s segments; "
        f"our trees {'from source' if a.from_source else 'from compiled bytecode, as installed'})"
    )
    try:
        for mode in a.modes.split(","):
            procs: list[subprocess.Popen[bytes]] = []
            server = None
            live = None
            if mode == "hls":
                live = LiveServer(tmp / "hls", channels=("shop",), clip=False).start()
                urls = {k: live.url("index") for k in names}
            elif mode == "dash":
                procs.append(dash_source(tmp / "dash", seconds=a.seconds + 60))
                server = FileServer(tmp).start()
                urls = {k: server.base + "/dash/live.mpd" for k in names}
            else:
                urls = {}
                for k in names:
                    port = free_port()
                    # yt-dlp's generic extractor opens the URL once to look at it, then again to
                    # download: ffmpeg -listen 1 serves one client, so its source is restarted
                    # after each one (a restarted source starts its media at 0 again)
                    src = (
                        _flv_again(port, a.seconds + 60)
                        if k == "yt-dlp"
                        else flv_source(port, seconds=a.seconds + 60)
                    )
                    procs.append(src)
                    urls[k] = f"http://127.0.0.1:{port}/live.flv"
                for u in urls.values():
                    wait_listening(int(u.split(":")[2].split("/")[0]))
            try:
                cpu = record(urls, a.seconds, tmp, a.baseline)
            finally:
                for p in procs:
                    if p.args[0] == "sh":
                        os.killpg(p.pid, signal.SIGTERM)  # the loop and the ffmpeg it runs
                        p.wait()
                    else:
                        stop(p)
                if server is not None:
                    server.stop()
                if live is not None:
                    live.stop()
            ours = cpu["ours"]
            # The command's start-up (imports of every command group) is paid once per capture:
            # measured alone in the same run, so the steady state can be read off.
            start = _start(
                [sys.executable, "-m", "evidence.cli", "--help"], dict(os.environ, PYTHONPATH=str(ROOT))
            )
            _, _, ru = os.wait4(start.pid, 0)
            start.returncode = 0
            cpu["ours minus start-up"] = ours - (ru.ru_utime + ru.ru_stime) if ours is not None else None
            for name, c in cpu.items():
                if c is None:
                    print(f"{mode + ': ' + name:<48} {'n/a':>14} {'':<10} (recorded nothing)")
                    continue
                ratio = (
                    f"ours/{name} = {ours / c:.2f}"
                    if name not in ("ours", "ours minus start-up") and ours and c
                    else ""
                )
                if name == "ours minus start-up" and c is not None and cpu.get("yt-dlp"):
                    ratio = f"/yt-dlp = {c / cpu['yt-dlp']:.2f}"
                if name == "baseline" and cpu.get("yt-dlp"):
                    ratio += f"; baseline/yt-dlp = {c / cpu['yt-dlp']:.2f}"
                line(f"{mode}: {name}", c * per_min, "cpu-s/min", ratio)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
