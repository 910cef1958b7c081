"""Tamper suite: random single mutations of a real case file, each must be detected.

    .venv/bin/python benchmarks/tamper.py [--mutations 1000] [--seed 1]

Builds a ledger with a case of several exhibits (WARC, screenshots, DOM, log),
older checkpoints, an earlier export and a key rotation, exports it, then
applies one mutation at a time (flip a byte in a file or in the raw ZIP,
delete or reorder a record, swap an artifact between exhibits, re-sign with
another key, roll back the checkpoint) or one forgery with every digest and
derived file recomputed (drop an exhibit and the export record, drop the
export record, add a file listed in datapackage.json in any folder, replace
the CDXJ index, add a forged WARC, a second WARC for an exhibit's URL, swap in
the older export record) and verifies with the genuine log key pinned. Prints
how many were detected and how many named the damaged item; lists any that
were not.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "verify"))

from case_fixtures import MUTATIONS, build_case, detected, mutate  # noqa: E402

from evidence.case import export_case  # noqa: E402
from ledger.log import Ledger  # noqa: E402


def make_case(work: Path, exhibits: int = 5) -> tuple[Path, list[str], list[str]]:
    led = Ledger.init(work / "home", unencrypted=True, origin="tamper.example/log")
    build_case(led, work, "CASE-T", exhibits=2)
    export_case(led, "CASE-T", work / "earlier.wacz")  # an older export record the forger may swap in
    old = [led.checkpoint().note]
    led.rotate_key()
    build_case(led, work / "more", "CASE-T", exhibits=exhibits - 2)
    old.append(led.checkpoint().note)
    out = work / "case.wacz"
    export_case(led, "CASE-T", out)
    trust = list(led.config.trusted_vkeys)
    led.close()
    return out, trust, old


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mutations", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as td:
        work = Path(td)
        case, trust, old = make_case(work)
        t0 = time.perf_counter()
        found = named = 0
        misses: list[str] = []
        kinds: Counter[str] = Counter()
        for i in range(args.mutations):
            kind = MUTATIONS[i % len(MUTATIONS)]
            dst = work / f"m{i % 4}.wacz"
            m = mutate(case, dst, rng, kind, old_notes=old)
            ok, nm, msg = detected(dst, m, trust)
            kinds[kind] += 1
            found += ok
            named += ok and nm
            if not ok or not nm:
                misses.append(f"{'UNDETECTED' if not ok else 'unnamed'} {kind} {m.target} (datapackage fixed: {m.fixed_datapackage}): {msg}")
        dt = time.perf_counter() - t0
    print(f"mutations: {args.mutations} ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))})")
    print(f"detected:  {found}/{args.mutations} ({100 * found / args.mutations:.1f}%)")
    print(f"named the damaged item: {named}/{args.mutations}")
    print(f"time: {dt:.1f} s ({1000 * dt / args.mutations:.1f} ms per mutated case file)")
    for line in misses[:30]:
        print("  " + line)
    return 0 if found == args.mutations else 1


if __name__ == "__main__":
    sys.exit(main())
