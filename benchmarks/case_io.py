"""Case-file export and verification of a large case: time, throughput, peak memory.

    .venv/bin/python benchmarks/case_io.py [--gib 2] [--exhibits 2]

Builds a ledger whose case holds one exhibit with a WARC of ``--gib`` GiB of
incompressible data (plus small exhibits), then runs, each in its own
process so peak RSS is that step's alone:

* baseline: ``hashlib.sha256`` over the big WARC in 1 MiB reads (what
  ``sha256sum`` costs; a verifier must read every byte at least once), and
  over the whole case file once it is written (issue 18's verify baseline);
* export: ``export_case`` (streams artifacts into the ZIP, hashing as it copies);
* verify: ``verify_case`` with the log key pinned (every file's SHA-256, every
  WARC record's digests, proofs and signatures).

Prints each step's seconds, MB/s, CPU seconds, peak RSS, and the ratios
against the baseline. The machine is shared: ``--rounds`` (default 3)
repeats baseline, export, baseline, verify in turn, and each round's ratios
are against that round's own baselines, measured just before; the summary
gives the median and the best round's ratio, and CPU seconds (which load
barely moves) beside wall time. Memory must not grow with the case: compare
peak RSS at 1 GiB and at 2 GiB (or 5 GiB) runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

STEP = textwrap.dedent(
    """
    import hashlib, json, resource, sys, time
    sys.path[:0] = [{root!r}, {root!r} + "/tests/verify"]
    step, work = sys.argv[1], sys.argv[2]
    t = time.perf_counter()
    if step == "baseline-copy":
        # What any export must at least do: read the WARC once and write it durably.
        import os
        src, dst = work + "/big/page.warc.gz", work + "/copy.tmp"
        with open(src, "rb") as f, open(dst, "wb") as g:
            while chunk := f.read(1 << 20):
                g.write(chunk)
            g.flush()
            os.fdatasync(g.fileno())
        n = os.path.getsize(src)
        os.unlink(dst)
    elif step == "baseline-3sha":
        # The floor of a verify that checks a WARC's file digest and each record's block and
        # payload digests: three SHA-256 passes over (nearly) the same bytes, one thread each.
        import os, threading
        target = work + "/case.wacz"
        def one():
            h = hashlib.sha256()
            with open(target, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
        lanes = [threading.Thread(target=one) for _ in range(3)]
        for x in lanes: x.start()
        for x in lanes: x.join()
        n = os.path.getsize(target)
    elif step.startswith("baseline"):
        target = work + ("/case.wacz" if step == "baseline-case" else "/big/page.warc.gz")
        h = hashlib.sha256()
        with open(target, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        n = __import__("os").path.getsize(target)
    elif step == "export":
        from ledger.log import Ledger
        from evidence.case import export_case
        led = Ledger.open(work + "/home")
        c = time.perf_counter()
        s = export_case(led, "BIG", work + "/case.wacz")
        call = time.perf_counter() - c
        led.close()
        n = s.bytes
    else:
        from verify.case import verify_case
        trust = json.load(open(work + "/trust.json"))
        c = time.perf_counter()
        r = verify_case(work + "/case.wacz", trust=trust)
        call = time.perf_counter() - c
        assert r.ok, r.first_failure
        n = sum(f["bytes"] for f in r.files.values())
    dt = time.perf_counter() - t
    if step.startswith("baseline"):
        call = dt
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({{"seconds": dt, "call": call, "bytes": n, "cpu": ru.ru_utime + ru.ru_stime, "rss_mib": ru.ru_maxrss / 1024}}))
    """
)


def build(work: Path, gib: float, exhibits: int) -> None:
    sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "verify")]
    from case_fixtures import build_case, make_exhibit_files

    from ledger.log import Ledger

    led = Ledger.init(work / "home", unencrypted=True, origin="bench.example/log")
    files = make_exhibit_files(work / "big", 0, "http://shop.example/big", warc_extra=int(gib * (1 << 30)))
    led.seal_exhibit("BIG", files, {"url": "http://shop.example/big", "operator": "bench"})
    build_case(led, work / "small", "BIG", exhibits=exhibits)
    (work / "trust.json").write_text(json.dumps(led.config.trusted_vkeys))
    led.close()


def step(name: str, work: Path) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", STEP.format(root=str(ROOT)), name, str(work)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gib", type=float, default=2.0)
    ap.add_argument("--exhibits", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="baseline/export/baseline/verify rounds (default 3)")
    ap.add_argument("--dir", type=Path, default=None, help="work directory (default: a temporary one)")
    args = ap.parse_args()
    rounds: list[dict[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory(dir=args.dir) as td:
        work = Path(td)
        build(work, args.gib, args.exhibits)
        for _ in range(max(1, args.rounds)):
            # Each export writes a fresh file: replacing the last one would time its deletion too.
            (work / "case.wacz").unlink(missing_ok=True)
            r = {"base": step("baseline", work), "copy": step("baseline-copy", work), "export": step("export", work)}
            r["base_case"] = step("baseline-case", work)
            r["three"] = step("baseline-3sha", work)
            r["verify"] = step("verify", work)
            rounds.append(r)
        size = (work / "case.wacz").stat().st_size
    mb = 1e6
    print(f"case file: {size / mb:,.0f} MB ({args.gib} GiB WARC + {args.exhibits} small exhibits), {len(rounds)} round(s)")
    for n, r in enumerate(rounds, 1):
        for key, label in (("base", "baseline sha256 of the WARC"), ("copy", "baseline durable copy of it"),
                           ("export", "export_case"), ("base_case", "baseline sha256 of the case"),
                           ("three", "baseline 3 x sha256, 3 threads"), ("verify", "verify_case (pinned key)")):
            x = r[key]
            print(f"  round {n}: {label:<28} {x['seconds']:>6.2f} s {x['bytes'] / mb / x['seconds']:>6.0f} MB/s "
                  f"cpu {x['cpu']:>5.2f} s  peak RSS {x['rss_mib']:>5.0f} MiB")
        print(f"  round {n}: export / baseline {r['export']['seconds'] / r['base']['seconds']:.2f}x;  "
              f"verify speed / SHA-256 of the case {r['base_case']['seconds'] / r['verify']['seconds']:.2f}")

    def ratios(f: Callable[[dict[str, dict[str, float]]], float]) -> tuple[float, list[float]]:
        vals = [f(r) for r in rounds]
        return statistics.median(vals), vals

    exp_med, exp_all = ratios(lambda r: r["export"]["seconds"] / r["base"]["seconds"])
    ver_med, ver_all = ratios(lambda r: r["base_case"]["seconds"] / r["verify"]["seconds"])
    expc_med, _ = ratios(lambda r: r["export"]["call"] / r["base"]["seconds"])
    verc_med, _ = ratios(lambda r: r["base_case"]["seconds"] / r["verify"]["call"])
    expu_med, _ = ratios(lambda r: r["export"]["cpu"] / r["base"]["cpu"])
    veru_med, _ = ratios(lambda r: r["verify"]["cpu"] / r["base_case"]["cpu"])
    print(f"export time / baseline: median {exp_med:.2f}x, best {min(exp_all):.2f}x (target <= 3)")
    print(f"verify speed / SHA-256 speed of the case file: median {ver_med:.2f}, best {max(ver_all):.2f} (target >= 0.6)")
    copy_med, _ = ratios(lambda r: r["export"]["seconds"] / r["copy"]["seconds"])
    three_med, _ = ratios(lambda r: r["base_case"]["seconds"] / r["three"]["seconds"])
    print(f"floors, same rounds: a durable copy of the WARC is {statistics.median(r['copy']['seconds'] / r['base']['seconds'] for r in rounds):.2f}x "
          f"its SHA-256 (export {copy_med:.2f}x the copy); three SHA-256 passes on three threads (the file, block and "
          f"payload digests verify checks) reach {three_med:.2f} of one pass's speed (verify "
          f"{statistics.median(r['three']['seconds'] / r['verify']['seconds'] for r in rounds):.2f} of that)")
    print(f"without imports and ledger open (the call alone): export {expc_med:.2f}x the WARC's SHA-256; "
          f"verify speed {verc_med:.2f} of the case's SHA-256 (medians)")
    print(f"CPU seconds (both cores add up): export {expu_med:.2f}x the baseline's; "
          f"verify {veru_med:.2f}x the case baseline's (medians)")
    base_rss = max(r["base"]["rss_mib"] for r in rounds)
    ver_rss = max(r["verify"]["rss_mib"] for r in rounds)
    print(f"peak RSS, verify minus baseline process: {ver_rss - base_rss:.0f} MiB "
          f"({(ver_rss - base_rss) / (size / (1 << 20)) * 100:.2f}% of the case size)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
