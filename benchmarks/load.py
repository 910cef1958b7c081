"""Several writer processes appending to one ledger (SQLite and PostgreSQL).

    .venv/bin/python benchmarks/load.py [--writers 8] [--appends 2000] [--batch 50] [--pg URL]

Each writer appends its records in batches; the figures are sustained
records/s over the whole run and the latency of one append call (p50/p99).
After the run the ledger must be one linear chain with no gap and audit clean.
PostgreSQL is used when --pg or EVIDENCE_TEST_PG_URL is given.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import line  # noqa: E402
from ledger.log import Ledger  # noqa: E402
from ledger.record import Draft  # noqa: E402
from verify.ledger import audit_store  # noqa: E402


def writer(home: str, n: int, batch: int, tag: int, q: multiprocessing.Queue, ready: Any, go: Any) -> None:
    led = Ledger.open(home)
    ready.release()
    go.wait()  # timed from here: interpreter start and imports are not appends
    lat = []
    for i in range(0, n, batch):
        drafts = [Draft("custody", {"writer": tag, "i": i + k}) for k in range(min(batch, n - i))]
        t = time.perf_counter()
        led.append_many(drafts)
        lat.append(time.perf_counter() - t)
    led.close()
    q.put(lat)


def run(label: str, home: Path, db_url: str | None, writers: int, n: int, batch: int) -> None:
    Ledger.init(home, unencrypted=True, db_url=db_url, origin="load.example/log").close()
    ctx = multiprocessing.get_context("spawn")
    q, ready, go = ctx.Queue(), ctx.Semaphore(0), ctx.Event()
    procs = [ctx.Process(target=writer, args=(str(home), n, batch, t, q, ready, go)) for t in range(writers)]
    t0 = time.perf_counter()
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
    with_start = time.perf_counter() - t0
    with Ledger.open(home) as led:
        size = led.size()
        led.checkpoint()
        res = audit_store(led.store, led.config.trusted_vkeys)
    lats.sort()
    total = writers * n
    print(f"# {label}: {writers} writers x {n:,} appends in batches of {batch} -> {size - 1:,} records, audit {'clean' if res.ok else 'FAILED'}")
    line(f"{label}: sustained", total / elapsed, "records/s", f"(all writers ready; {total / with_start:,.0f}/s incl. process start)")
    line(f"{label}: append call p50", statistics.median(lats) * 1000, "ms")
    line(f"{label}: append call p99", lats[int(len(lats) * 0.99) - 1] * 1000, "ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--writers", type=int, default=8)
    ap.add_argument("--appends", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--pg", default=os.environ.get("EVIDENCE_TEST_PG_URL"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run("sqlite", Path(tmp) / "sqlite", None, args.writers, args.appends, args.batch)
        if args.pg:
            import sqlalchemy as sa

            schema = f"load_{uuid.uuid4().hex[:8]}"
            eng = sa.create_engine(args.pg)
            with eng.begin() as c:
                c.exec_driver_sql(f"CREATE SCHEMA {schema}")
            sep = "&" if "?" in args.pg else "?"
            try:
                run("postgresql", Path(tmp) / "pg", f"{args.pg}{sep}options={quote(f'-csearch_path={schema}')}", args.writers, args.appends, args.batch)
            finally:
                with eng.begin() as c:
                    c.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")


if __name__ == "__main__":
    main()
