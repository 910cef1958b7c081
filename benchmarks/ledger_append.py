"""Append throughput on SQLite against baselines measured in the same run.

    .venv/bin/python benchmarks/ledger_append.py [--records 100000] [--single 300]

Baselines: bare Ed25519 signing of the same record bytes (the bound: every
record must be signed in chain order), and raw sqlite3 inserting the same rows
in one transaction. Targets (issue 2): >= 20,000 records/s and >= 0.6 of the
bare signing rate.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import line  # noqa: E402
from evidence.record import RECORD_DOMAIN, Draft, unsigned_bytes  # noqa: E402
from ledger.log import Ledger  # noqa: E402


def drafts(n: int) -> list[Draft]:
    return [
        Draft(
            "exhibit",
            {
                "manifest": {"sha256": f"{i:064x}", "size": 4096},
                "artifacts": [{"name": "page.warc.gz", "sha256": f"{i + 1:064x}"}],
                "url": f"https://shop.example/item/{i}",
            },
            "SAMR-2026-017",
        )
        for i in range(n)
    ]


def bench_home(home: Path | None, records: int, *, checkpoint: bool = False) -> tuple[Path, tempfile.TemporaryDirectory | None]:
    """A ledger of ``records`` records at ``home`` (built once, reused when it exists), else in a temp dir."""
    tmp = None
    if home is None:
        tmp = tempfile.TemporaryDirectory()
        home = Path(tmp.name) / "home"
    if not (home / "config.json").exists():
        led = Ledger.init(home, unencrypted=True, origin="bench.example/log")
        t = time.perf_counter()
        batch = 20_000
        for i in range(0, records - 1, batch):
            led.append_many(drafts(min(batch, records - 1 - i)))
        if checkpoint:
            led.checkpoint()
        print(f"# built {led.size():,} records in {time.perf_counter() - t:.1f} s")
        led.close()
    return home, tmp


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--single", type=int, default=300)
    args = ap.parse_args()
    n = args.records
    with tempfile.TemporaryDirectory() as tmp:
        led = Ledger.init(Path(tmp) / "home", unencrypted=True, origin="bench.example/log")
        ds = drafts(n)

        t = time.perf_counter()
        for i in range(0, n, args.batch):
            led.append_many(ds[i : i + args.batch])
        ours = n / (time.perf_counter() - t)

        recs = list(led.records(start=1))
        messages = [RECORD_DOMAIN + unsigned_bytes(r.raw) for r in recs]
        key = led.key
        t = time.perf_counter()
        for m in messages:
            key.sign(m)
        bare_sign = n / (time.perf_counter() - t)

        rows = [(r.index, r.leaf, r.kind, r.case, r.time, r.key_id, r.raw) for r in recs]
        db = sqlite3.connect(Path(tmp) / "raw.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE records (idx BIGINT PRIMARY KEY, leaf BLOB, kind TEXT, case_id TEXT, time TEXT, key_id TEXT, body BLOB)")
        t = time.perf_counter()
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT INTO records VALUES (?,?,?,?,?,?,?)", rows)
        db.execute("COMMIT")
        raw_insert = n / (time.perf_counter() - t)
        db.close()

        single = drafts(args.single)
        t = time.perf_counter()
        for d in single:
            led.append_many([d])
        singles = args.single / (time.perf_counter() - t)
        led.close()

    print(f"# ledger append, {n:,} records in batches of {args.batch:,} (SQLite, WAL, synchronous=FULL)")
    line("batched append (ours)", ours, "records/s", "target >= 20,000")
    line("baseline: bare Ed25519 signing", bare_sign, "sigs/s")
    line("baseline: raw sqlite3 insert, one transaction", raw_insert, "rows/s")
    line("ratio ours / bare signing", ours / bare_sign, "x", "target >= 0.6")
    line("ratio ours / raw insert", ours / raw_insert, "x")
    line("single durable appends (own transaction each)", singles, "appends/s")


if __name__ == "__main__":
    main()
