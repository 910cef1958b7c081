"""The scheduler's claim step, timed: lag from each watch's due time to its claim by ``find_due``.

Shared by watch_probe.py (1,000 watches) and watch_rss.py (the whole watch list).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from evidence.watch import percentile
from ledger.log import Ledger
from ledger.watches import NewWatch, WatchStore

#: run_scheduler's shortest wait between polls when it has capacity
POLL = 0.05


def find_due_lag(home: Path, due: int, *, pad: float) -> tuple[float, float, float]:
    """(p50 s, p99 s, insert s) for ``due`` watches falling due over 60 s, claimed 64 at a time.

    Due times begin ``pad`` seconds after the insert starts, so the insert's
    own duration is not counted as lag (give it room: 10,000 rows take seconds).
    """
    led = Ledger.init(home, unencrypted=True, origin="bench.example/due")
    try:
        ws = WatchStore(led.store)
        t_ins = time.time()
        start = t_ins + pad
        ws.add_many([NewWatch(f"https://shop.example/{i}", "BENCH", 3600, {}, random.uniform(0, 60)) for i in range(due)],
                    now=start)
        insert_s = time.time() - t_ins
        while time.time() < start:
            time.sleep(0.01)
        lags: list[float] = []
        while len(lags) < due:
            t0 = time.time()
            for w in ws.claim_due(t0, 64, lambda w, t0=t0: t0 + 3600):
                lags.append(t0 - w.next_due)
            time.sleep(POLL)
    finally:
        led.close()
    lags.sort()
    return percentile(lags, 0.5) or 0.0, percentile(lags, 0.99) or 0.0, insert_s
