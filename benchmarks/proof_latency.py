"""Inclusion-proof latency against the same walk done with bare sqlite3.

    .venv/bin/python benchmarks/proof_latency.py [--leaves 200000] [--proofs 2000] [--home DIR]

Builds (or reuses, with --home) a SQLite ledger of N leaves, then times
``Store.inclusion_proof`` for random indices against a baseline that reads
the same node rows (``records.leaf`` for level 0, ``nodes.hash`` above) with
one plain sqlite3 query per node, on a connection of its own. Both must give
the same proof. Target (issue 18): ours <= 2x the baseline, median and p99.
``--leaves 1000000`` gives the full figure.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import line  # noqa: E402
from benchmarks.ledger_append import bench_home  # noqa: E402
from ledger import merkle  # noqa: E402
from ledger.log import Ledger  # noqa: E402


def bare_source(db: sqlite3.Connection) -> merkle.NodeSource:
    def node(level: int, idx: int) -> bytes:
        if level == 0:
            row = db.execute("SELECT leaf FROM records WHERE idx = ?", (idx,)).fetchone()
        else:
            row = db.execute("SELECT hash FROM nodes WHERE level = ? AND idx = ?", (level, idx)).fetchone()
        return bytes(row[0])

    return node


def percentile(sorted_us: list[float], p: float) -> float:
    return sorted_us[min(len(sorted_us) - 1, int(len(sorted_us) * p))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--leaves", type=int, default=200_000)
    ap.add_argument("--proofs", type=int, default=2000)
    ap.add_argument("--home", type=Path, help="reuse/keep the ledger here")
    args = ap.parse_args()
    home, tmp = bench_home(args.home, args.leaves)
    led = Ledger.open(home)
    store = led.store
    n = store.size()
    if not store.url.startswith("sqlite:///"):
        raise SystemExit("the baseline needs a SQLite ledger")
    db = sqlite3.connect(store.url.removeprefix("sqlite:///"))
    bare = bare_source(db)

    rng = random.Random(18)
    indices = [rng.randrange(n) for _ in range(args.proofs)]
    for idx in indices[:50]:  # warm both page caches and the statement caches
        store.inclusion_proof(idx, n)
        merkle.inclusion_proof(idx, n, bare)
    ours_us, bare_us, rows = [], [], []
    # Interleaved, so drift (page cache, CPU frequency) hits both alike.
    for idx in indices:
        store.rows_read = 0
        t = time.perf_counter()
        proof = store.inclusion_proof(idx, n)
        ours_us.append((time.perf_counter() - t) * 1e6)
        rows.append(store.rows_read)
        t = time.perf_counter()
        want = merkle.inclusion_proof(idx, n, bare)
        bare_us.append((time.perf_counter() - t) * 1e6)
        if proof != want:
            raise SystemExit(f"proofs differ for index {idx}")
    ours_us.sort()
    bare_us.sort()
    db.close()
    led.close()

    print(f"# inclusion proofs, {n:,} leaves (SQLite), {len(indices):,} random indices")
    line("ours, median", percentile(ours_us, 0.5), "µs")
    line("ours, p99", percentile(ours_us, 0.99), "µs")
    line("baseline: bare sqlite3 walk, median", percentile(bare_us, 0.5), "µs")
    line("baseline: bare sqlite3 walk, p99", percentile(bare_us, 0.99), "µs")
    line("ratio ours / bare, median", percentile(ours_us, 0.5) / percentile(bare_us, 0.5), "x", "target <= 2")
    line("ratio ours / bare, p99", percentile(ours_us, 0.99) / percentile(bare_us, 0.99), "x", "target <= 2")
    line("node rows per proof, max", max(rows), "rows", f"log2(n) = {n.bit_length()}")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
