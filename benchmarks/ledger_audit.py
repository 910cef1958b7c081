"""Audit and inclusion-proof cost on a large ledger.

    .venv/bin/python benchmarks/ledger_audit.py [--records 1000000] [--home DIR]

Builds (or reuses, with --home) a SQLite ledger of N records, then measures:
the full audit in records/s against bare Ed25519 verification of the same
records (a sample, measured in the same run) on one core and on both cores
(one process per core, as the audit uses), target ratio >= 0.8 (issue 18).
The both-core baseline is run right before and right after the audit and
their mean taken, since other work on the machine moves it by the minute;
CPU seconds per record (all processes) are compared too, which load moves
less. Then an inclusion proof for one record: milliseconds and rows read (target
< 10 ms, O(log n) rows).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import line, peak_rss_mib  # noqa: E402
from benchmarks.ledger_append import bench_home, ratio_line  # noqa: E402
from ledger import merkle  # noqa: E402
from ledger.keys import public_from_raw  # noqa: E402
from ledger.log import Ledger  # noqa: E402
from ledger.record import parse_record  # noqa: E402
from verify.ledger import audit_store  # noqa: E402


def bare_verify(keys: dict[str, bytes], msgs: list[tuple[str, bytes, bytes]]) -> float:
    """Verifies/s of ``msgs`` (key id, signature, message), nothing else."""
    pubs = {k: public_from_raw(v) for k, v in keys.items()}
    items = [(pubs[k], sig, m) for k, sig, m in msgs]
    t = time.perf_counter()
    for pub, sig, m in items:
        pub.verify(sig, m)
    return len(items) / (time.perf_counter() - t)


def _own_cpu() -> float:
    """User + system CPU s of this process and its reaped children."""
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def _bare_cpu(keys: dict[str, bytes], msgs: list[tuple[str, bytes, bytes]]) -> float:
    """CPU s of this worker for bare_verify of ``msgs``."""
    t = time.process_time()
    bare_verify(keys, msgs)
    return time.process_time() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--home", type=Path, help="reuse/keep the ledger here")
    ap.add_argument("--sample", type=int, default=50_000, help="records for the bare-verify baseline")
    args = ap.parse_args()
    home, tmp = bench_home(args.home, args.records, checkpoint=True)
    led = Ledger.open(home)
    n = led.size()

    sample = [parse_record(s.body) for s in led.store.iter_records(end=min(n, args.sample))]
    keys = led.store.keys()
    msgs = [(r.key_id, r.sig, r.signed_message()) for r in sample]
    del sample
    cores = os.cpu_count() or 1
    ctx = multiprocessing.get_context("spawn")
    bare = bare_verify(keys, msgs)
    with ctx.Pool(cores) as pool:
        pool.map(abs, range(cores))  # started and imported before the clock runs

        def bare_all() -> tuple[float, float]:
            """(verifies/s, CPU s per verify) of bare verify on every core."""
            t = time.perf_counter()
            cpu = pool.starmap(_bare_cpu, [(keys, msgs[i::cores]) for i in range(cores)])
            wall = time.perf_counter() - t
            return len(msgs) / wall, sum(cpu) / len(msgs)

        # Bare verify right before and right after the audit: other work on the
        # machine changes by the minute, so the baseline is their mean.
        before, cpu_before = bare_all()
        c0 = _own_cpu()
        t = time.perf_counter()
        res = audit_store(led.store, led.config.trusted_vkeys)
        audit_rate = n / (time.perf_counter() - t)
        audit_cpu = (_own_cpu() - c0) / n  # the audit's pool is reaped when it returns
        after, cpu_after = bare_all()
    assert res.ok, res.problems[:3]
    bare_mean = (before + after) / 2
    bare_cpu = (cpu_before + cpu_after) / 2

    cp = led.store.latest_checkpoint()
    rng = random.Random(7)
    times, rows = [], []
    for _ in range(50):
        idx = rng.randrange(cp.size)
        led.store.rows_read = 0
        t = time.perf_counter()
        proof = led.store.inclusion_proof(idx, cp.size)
        times.append((time.perf_counter() - t) * 1000)
        rows.append(led.store.rows_read)
        merkle.verify_inclusion(led.store.record(idx).leaf, idx, cp.size, proof, cp.root)
    times.sort()
    led.close()

    print(f"# ledger audit and proofs, {n:,} records (SQLite)")
    line("audit (ours, both cores)", audit_rate, "records/s")
    line("baseline: bare Ed25519 verify, one core", bare, "verifies/s", f"(sample of {min(n, args.sample):,}, before the rest)")
    line(f"baseline: bare Ed25519 verify, {cores} processes", bare_mean, "verifies/s",
         f"mean of {before:,.0f} before and {after:,.0f} after the audit")
    ratio_line("ratio audit / bare verify, one core", audit_rate / bare)
    ratio_line(f"ratio audit / bare verify, {cores} processes (wall)", audit_rate / bare_mean, "target >= 0.8")
    line("audit CPU per record (all processes)", audit_cpu * 1e6, "us")
    line("bare verify CPU per verify", bare_cpu * 1e6, "us", "Ed25519 verify alone, same pool")
    ratio_line("ratio bare CPU / audit CPU", bare_cpu / audit_cpu, "the wall ratio on otherwise idle cores")
    line("inclusion proof, median", times[len(times) // 2], "ms", "target < 10 ms")
    line("inclusion proof, max of 50", times[-1], "ms")
    line("rows read per proof, max", max(rows), "rows", f"log2(n) = {n.bit_length()}")
    line("peak RSS of this process", peak_rss_mib(), "MiB")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
