"""Append throughput against bare signing measured in the same run.

    .venv/bin/python benchmarks/ledger_append.py [--records 50000] [--batch 5000] [--rounds 3] [--db-url URL]

The bound is bare Ed25519 signing of the same record bytes: every record must
be signed in chain order, the rest can be precomputed or batched. Rounds
alternate our append and bare signing of the records just appended, so load
from other work on the machine falls on both alike; the figure is the median
of the per-round ratios. Targets (issue 18): >= 0.8 of bare signing on
SQLite, >= 0.6 on PostgreSQL (``--db-url``, a fresh schema is made and
dropped). On SQLite, raw sqlite3 inserting the same rows is a second baseline.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import line  # noqa: E402
from ledger.log import Ledger  # noqa: E402
from ledger.record import Draft  # noqa: E402


def drafts(n: int, start: int = 0) -> list[Draft]:
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
        for i in range(start, start + n)
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
            led.append_many(drafts(min(batch, records - 1 - i), i))
        if checkpoint:
            led.checkpoint()
        print(f"# built {led.size():,} records in {time.perf_counter() - t:.1f} s")
        led.close()
    return home, tmp


@contextmanager
def pg_schema(url: str) -> Iterator[str]:
    """A URL of ``url``'s database whose search_path is a new schema, dropped afterwards."""
    import sqlalchemy as sa  # only for --db-url: the SQLite run needs no server

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    eng = sa.create_engine(url)
    with eng.begin() as c:
        c.exec_driver_sql(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with eng.begin() as c:
            c.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        eng.dispose()


def measure(home: Path, db_url: str | None, n: int, batch: int, rounds: int) -> tuple[list[tuple[float, float, float, float]], list]:
    """Per round: (our wall s, bare wall s, our CPU s, bare CPU s) over the same batches.

    Each batch is appended, then the very bytes it signed are signed again
    bare, so both see the same moment's load from other work on the machine.
    """
    led = Ledger.init(home, unencrypted=True, origin="bench.example/log", db_url=db_url)
    led.append_many(drafts(100))  # warm: first statements, edge of the tree
    key = led.key
    out, recs = [], []
    for r in range(rounds):
        ds = drafts(n, (r + 1) * n)
        ow = bw = oc = bc = 0.0
        for i in range(0, n, batch):
            w, c = time.perf_counter(), time.process_time()
            recs = led.append_many(ds[i : i + batch])
            ow += time.perf_counter() - w
            oc += time.process_time() - c
            messages = [rec.signed_message() for rec in recs]
            w, c = time.perf_counter(), time.process_time()
            for m in messages:
                key.sign(m)
            bw += time.perf_counter() - w
            bc += time.process_time() - c
        out.append((ow, bw, oc, bc))
    led.close()
    return out, recs


def ratio_line(name: str, value: float, extra: str = "") -> None:
    print(f"{name:<48} {value:>14.2f} {'x':<10} {extra}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=50_000, help="records per round")
    ap.add_argument("--batch", type=int, default=5_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--single", type=int, default=200)
    ap.add_argument("--db-url", help="PostgreSQL URL (a schema is created in it and dropped)")
    args = ap.parse_args()
    n = args.records
    with tempfile.TemporaryDirectory() as tmp:
        if args.db_url:
            with pg_schema(args.db_url) as url:
                rounds, recs = measure(Path(tmp) / "home", url, n, args.batch, args.rounds)
            label = "PostgreSQL"
        else:
            rounds, recs = measure(Path(tmp) / "home", None, n, args.batch, args.rounds)
            label = "SQLite, WAL, synchronous=FULL"
        raw_insert = None
        if not args.db_url:
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
            led = Ledger.open(Path(tmp) / "home")
            t = time.perf_counter()
            for d in drafts(args.single):
                led.append_many([d])
            singles = args.single / (time.perf_counter() - t)
            led.close()

    ratios = [b / o for o, b, _, _ in rounds]
    cpu = [bc / oc for _, _, oc, bc in rounds]
    ours = statistics.median(n / o for o, _, _, _ in rounds)
    target = "0.6" if args.db_url else "0.8"
    print(f"# ledger append, {args.rounds} rounds of {n:,} records in batches of {args.batch:,} ({label})")
    line("batched append (ours), median round", ours, "records/s")
    line("baseline: bare Ed25519 signing, median round", statistics.median(n / b for _, b, _, _ in rounds), "sigs/s",
         "same records, interleaved batch by batch")
    ratio_line("ratio ours / bare signing (wall), median", statistics.median(ratios),
               f"target >= {target}; rounds {min(ratios):.2f}-{max(ratios):.2f}")
    ratio_line("ratio ours / bare signing (process CPU), median", statistics.median(cpu),
               f"rounds {min(cpu):.2f}-{max(cpu):.2f}; excludes fsync waits")
    if raw_insert is not None:
        line("baseline: raw sqlite3 insert, one transaction", raw_insert, "rows/s", "records table only")
        ratio_line("ratio ours / raw insert", ours / raw_insert)
        line("single durable appends (own transaction each)", singles, "appends/s")


if __name__ == "__main__":
    main()
