"""Fleet scaling: probes per minute with 1 then 2 Celery workers (concurrency 1 each),
same machine, same run, its own redis-server, a local listing fixture.

N watches are probed once untimed (first sight: a full capture each), then each
round sends N probe tasks (nothing changed since: a light page load and a signed
probe record each) and times until the N probe records are in the ledger.
Workers are `evidence worker --engine celery` processes started through the CLI;
the per-host rate limit is off (one local host).

    .venv/bin/python benchmarks/watch_fleet.py [--probes N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "evidence"))

from _common import line  # noqa: E402
from fleet_fixtures import CountingSite, Redis, Worker, wait_for  # noqa: E402

from evidence.fleet import PROBE_TASK, Settings, make_app  # noqa: E402
from evidence.watch import WatchSpec, add_watches  # noqa: E402
from ledger.log import Ledger  # noqa: E402


def probes(home: Path) -> int:
    with Ledger.open(home) as led:
        return sum(1 for r in led.records() if r.kind == "probe")


def send_round(app, ids: list[int]) -> None:
    for wid in ids:
        app.send_task(PROBE_TASK, kwargs={"watch": wid, "queue": "bench"}, queue="bench")


def timed_round(app, home: Path, ids: list[int]) -> float:
    before = probes(home)
    t = time.perf_counter()
    send_round(app, ids)
    wait_for(lambda: probes(home) >= before + len(ids), f"{len(ids)} probe records", 1800, every=0.1)
    return time.perf_counter() - t


def main(n: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="watch-fleet-"))
    (tmp / "redis").mkdir()
    redis, site = Redis(tmp / "redis"), CountingSite()
    home = tmp / "home"
    led = Ledger.init(home, unencrypted=True, origin="bench.example/fleet")
    ids = add_watches(led, [WatchSpec.build(site.url(f"/item/{i}"), "BENCH-1", "1d") for i in range(n)])
    led.close()
    env = {"EVIDENCE_HOST_RATE": "off"}
    app = make_app(Settings.from_env({"EVIDENCE_BROKER_URL": redis.url, "EVIDENCE_HOST_RATE": "off"}), sender=True)
    workers: list[Worker] = []
    try:
        workers.append(Worker(home, redis.url, "--queues", "bench", log=tmp / "w1.log", **env))
        workers[0].ready()
        send_round(app, ids)  # first sight of each listing: probe + full capture, not timed
        wait_for(lambda: probes(home) >= n, "the untimed first round", 3600)
        wait_for(lambda: workers[0].text().count("exhibit record") >= n, "the first-sight captures", 3600)
        one = timed_round(app, home, ids)
        workers.append(Worker(home, redis.url, "--queues", "bench", log=tmp / "w2.log", **env))
        workers[1].ready()
        two = timed_round(app, home, ids)
    finally:
        for w in workers:
            w.stop()
        site.stop()
        redis.stop()
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 0
    print(f"watch_fleet: {n} probes per round, local fixture, CPU limit {cpus} core(s) (os.sched_getaffinity), "
          f"redis-server and Chromium on the same machine")
    line("probes/min, 1 Celery worker (concurrency 1)", n / one * 60, "probes/min", f"({one:.1f} s)")
    line("probes/min, 2 Celery workers (concurrency 1 each)", n / two * 60, "probes/min", f"({two:.1f} s)")
    line("ratio 2 workers / 1 worker", one / two, "x", f"(ideal 2.0x; bounded by {cpus} core(s))")
    subprocess.run(["rm", "-rf", str(tmp)], check=False)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--probes", type=int, default=50, help="probe tasks per timed round")
    main(ap.parse_args().probes)
