"""Fairness of concurrent writers on SQLite: append latency p50 and p99.

    .venv/bin/python benchmarks/ledger_writers.py [--writers 8] [--calls 60] [--batch 50]

N writer processes append batches to one SQLite ledger at once. The figure is
the spread of one append call's latency (p99 / p50; target <= 20). Same-run
baselines: the same load with writer turns off (SQLite's own busy handler,
sleep-and-retry, as before issue 18), and one writer alone (no waiting).
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import line  # noqa: E402
from ledger.log import Ledger  # noqa: E402
from ledger.record import Draft  # noqa: E402
from ledger.store import Store  # noqa: E402
from verify.ledger import audit_store  # noqa: E402


def writer(home: str, calls: int, batch: int, tag: int, turns: bool, q: Any, ready: Any, go: Any) -> None:
    Store.writer_turns = turns
    led = Ledger.open(home)
    ready.release()
    go.wait()  # timed from here: interpreter start and imports are not appends
    lat = []
    for c in range(calls):
        drafts = [Draft("custody", {"writer": tag, "i": c * batch + k}) for k in range(batch)]
        t = time.perf_counter()
        led.append_many(drafts)
        lat.append(time.perf_counter() - t)
    led.close()
    q.put(lat)


def run(home: Path, writers: int, calls: int, batch: int, turns: bool) -> tuple[list[float], float, bool]:
    Ledger.init(home, unencrypted=True, origin="writers.example/log").close()
    ctx = multiprocessing.get_context("spawn")
    q, ready, go = ctx.Queue(), ctx.Semaphore(0), ctx.Event()
    procs = [ctx.Process(target=writer, args=(str(home), calls, batch, t, turns, q, ready, go)) for t in range(writers)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.acquire()
    t = time.perf_counter()
    go.set()
    lats = [x for _ in procs for x in q.get()]
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - t
    with Ledger.open(home) as led:
        ok = led.size() == 1 + writers * calls * batch and audit_store(led.store, led.config.trusted_vkeys).ok
    return sorted(lats), writers * calls * batch / elapsed, ok


def pct(xs: list[float], p: float) -> float:
    return xs[min(len(xs) - 1, int(len(xs) * p))] * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--writers", type=int, default=8)
    ap.add_argument("--calls", type=int, default=40, help="append calls per writer")
    ap.add_argument("--batch", type=int, default=50, help="records per append call")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        alone, _, _ = run(Path(tmp) / "alone", 1, args.calls, args.batch, True)
        fair, fair_rate, fair_ok = run(Path(tmp) / "turns", args.writers, args.calls, args.batch, True)
        busy, busy_rate, busy_ok = run(Path(tmp) / "busy", args.writers, args.calls, args.batch, False)
    n = args.writers
    print(f"# {n} SQLite writer processes x {args.calls} appends of {args.batch} records "
          f"(audit {'clean' if fair_ok and busy_ok else 'FAILED'})")
    line("writer turns (flock): append p50", statistics.median(fair) * 1000, "ms")
    line("writer turns (flock): append p99", pct(fair, 0.99), "ms")
    line("writer turns (flock): p99 / p50", pct(fair, 0.99) / (statistics.median(fair) * 1000), "x", "target <= 20")
    line("writer turns (flock): sustained", fair_rate, "records/s")
    line("baseline: SQLite busy handler only: p50", statistics.median(busy) * 1000, "ms")
    line("baseline: SQLite busy handler only: p99", pct(busy, 0.99), "ms")
    line("baseline: SQLite busy handler only: p99 / p50", pct(busy, 0.99) / (statistics.median(busy) * 1000), "x")
    line("baseline: SQLite busy handler only: sustained", busy_rate, "records/s")
    line("baseline: one writer alone: append p50", statistics.median(alone) * 1000, "ms")
    line("ratio turns p50 / alone p50", statistics.median(fair) / statistics.median(alone), "x", f"({n} writers share the lock)")


if __name__ == "__main__":
    main()
