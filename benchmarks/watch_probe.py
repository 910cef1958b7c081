"""Watch probes against full captures of the same pages, and the scheduler's dispatch lag.

1. N local listing pages (default 100): probes per minute (light page load +
   signed probe record, concurrency 2, one browser; the second round, when
   nothing changed, as a watch list spends most of its time) against
   `capture_many` pages per minute of the same URLs in the same run.
2. 1,000 watches falling due over 60 s: the lag from each due time to its claim
   by ``find_due`` (the scheduler's own step, what a task-queue engine would do
   before sending), polled as ``run_scheduler`` polls when it has capacity.

    .venv/bin/python benchmarks/watch_probe.py [--watches N] [--due 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "evidence"))

from _common import line  # noqa: E402
from _watchlag import POLL, find_due_lag  # noqa: E402
from watch_site import Site, item  # noqa: E402

from capture import capture_many  # noqa: E402
from capture.browser import Browser  # noqa: E402
from evidence.watch import PROBE_OPTIONS, WatchSpec, add_watches, record_probe, run_probe  # noqa: E402
from ledger.log import Ledger  # noqa: E402
from ledger.watches import WatchStore  # noqa: E402


async def probe_round(led: Ledger, ws: WatchStore, concurrency: int) -> float:
    gate = asyncio.Semaphore(concurrency)
    watches = ws.all()
    async with Browser() as b:
        async def one(w):
            async with gate:
                record_probe(led, ws, w, await run_probe(b, w, PROBE_OPTIONS))

        t = time.perf_counter()
        await asyncio.gather(*(one(w) for w in watches))
        return time.perf_counter() - t


def main(n: int, due: int) -> None:
    site = Site()
    for i in range(n):
        site.set(f"/item/{i}", item(title=f"好货 {i}", price=f"¥{i}.00"))
    urls = [site.url(f"/item/{i}") for i in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        led = Ledger.init(Path(tmp) / "home", unencrypted=True, origin="bench.example/log")
        add_watches(led, [WatchSpec.build(u, "BENCH", "1h", fields={"title": ".t", "price": ".price"}) for u in urls])
        ws = WatchStore(led.store)
        asyncio.run(probe_round(led, ws, 2))  # first sight: state for the round that is measured
        probe_s = asyncio.run(probe_round(led, ws, 2))
        t = time.perf_counter()
        batch = capture_many(urls, case="BENCH-CAPTURE", ledger=led)
        capture_s = time.perf_counter() - t
        assert not batch.failures, batch.failures[:3]
        led.close()

        lag50, lag99, insert_s = find_due_lag(Path(tmp) / "home2", due, pad=10)
    site.stop()
    print(f"{n} local listing pages, 2 concurrent page loads, one Chromium; CPU: {os.cpu_count()} cores (shared)")
    line("probes (light load + signed probe record)", n / probe_s * 60, "probes/min")
    line("capture --urls (capture_many, same pages)", n / capture_s * 60, "pages/min", "(baseline, same run)")
    line("ratio probe / capture", capture_s / probe_s, "x")
    print(f"{due} watches falling due over 60 s, claimed by find_due (SQLite ledger; inserted in {insert_s:.2f} s)")
    line("dispatch lag p50", lag50 * 1000, "ms")
    line("dispatch lag p99", lag99 * 1000, "ms")
    line("poll interval (baseline)", POLL * 1000, "ms")
    line("ratio p99 / poll interval", lag99 / POLL, "x")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--watches", type=int, default=100)
    ap.add_argument("--due", type=int, default=1000)
    a = ap.parse_args()
    main(a.watches, a.due)
