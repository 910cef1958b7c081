"""10,000 watches through the real CLI: RSS over a long `evidence watch run`, probe rate,
scheduler lag, and whether the ledger append is the bottleneck.

1. A local listing site (tests/evidence/watch_site.py, in this process) with N
   pages (default 10,000); N watches in one JSONL file, imported with one
   `evidence watch import` into a fresh SQLite home (`evidence init
   --no-passphrase`). The import spreads first probes over up to 5 minutes,
   so with `--every 10m` the scheduler has work queued for the whole run.
2. `python -m evidence watch run --for MINUTES --json` as a subprocess; every
   15 s its RSS (VmRSS) and its descendants' (the Playwright driver and
   Chromium: RSS summed and PSS summed, as shared pages count once in PSS)
   are read from /proc. The Python process is the one that must stay flat.
   Within 30 minutes no watch is probed twice: every probe is a first sight,
   so each one is followed by a full capture sealed as an exhibit (the
   figures say how many). ``--hot H``: the first H rows get ``--hot-every``
   (default 1m) and the other watches' due times are moved past the run's end
   in the database after the import (they stay active rows find_due scans),
   so after the H first-sight captures the run is light repeated probes.
3. ``find_due`` (the scheduler's claim step) with N watches in the table
   falling due over 60 s: dispatch lag p50/p99, as watch_probe.py measures
   for 1,000.
4. Ledger appends of probe-sized records, one per transaction as
   ``record_probe`` appends them, on a fresh SQLite home in the same run:
   the records/s the run needed against the records/s the ledger gives.

    .venv/bin/python benchmarks/watch_rss.py [--watches 10000] [--minutes 30] [--every 10m] [--concurrency 2]
                                             [--hot H --hot-every 1m]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "evidence"))

from _common import line  # noqa: E402
from _watchlag import find_due_lag  # noqa: E402
from watch_site import Site, item  # noqa: E402

from ledger.log import Ledger  # noqa: E402
from ledger.record import Draft  # noqa: E402
from ledger.store import watches  # noqa: E402
from ledger.watches import WatchStore  # noqa: E402

SAMPLE_EVERY = 15.0


def cli(env: dict[str, str], *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([sys.executable, "-m", "evidence", *args], env=env, capture_output=True, text=True,
                       timeout=timeout, cwd=ROOT)
    if p.returncode != 0:
        raise SystemExit(f"evidence {' '.join(args[:2])} failed ({p.returncode}): {p.stderr.strip()[-500:]}")
    return p


# -- /proc ------------------------------------------------------------------------


def _status_kib(pid: int, key: str = "VmRSS") -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for ln in f:
                if ln.startswith(key + ":"):
                    return int(ln.split()[1])
    except OSError:
        pass
    return 0


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for ln in f:
                if ln.startswith("Pss:"):
                    return int(ln.split()[1])
    except OSError:
        pass
    return 0


def descendants(root: int) -> list[tuple[int, str]]:
    """(pid, comm) of every process below ``root``, from the ppid field of /proc/*/stat."""
    kids: dict[int, list[tuple[int, str]]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        # comm may hold spaces and parentheses: the fields after it follow the last ')'
        comm = s[s.index("(") + 1:s.rindex(")")]
        ppid = int(s[s.rindex(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append((int(d), comm))
    out, todo = [], [root]
    while todo:
        for pid, comm in kids.get(todo.pop(), []):
            out.append((pid, comm))
            todo.append(pid)
    return out


def sample(pid: int) -> dict[str, float]:
    kids = descendants(pid)
    chrome = [p for p, c in kids if "chrom" in c.lower() or "headless" in c.lower()]
    return {
        "py": _status_kib(pid) / 1024,
        "kids_rss": sum(_status_kib(p) for p, _ in kids) / 1024,
        "kids_pss": sum(_pss_kib(p) for p, _ in kids) / 1024,
        "chrome_rss": sum(_status_kib(p) for p in chrome) / 1024,
        "nkids": len(kids),
    }


# -- the parts --------------------------------------------------------------------


def append_rate(tmp: Path, n: int) -> float:
    """Probe-sized records appended one transaction each (as record_probe does): records/s."""
    led = Ledger.init(tmp / "home-append", unencrypted=True, origin="bench.example/append")
    payload = {"url": "http://127.0.0.1:1/item/1", "status": 200, "final_url": "http://127.0.0.1:1/item/1",
               "fields": {"title": "好货 1", "price": "¥1.00"}, "text_sha256": "0" * 64, "text_simhash": "0" * 16,
               "phash": "0" * 16, "watch": 1, "previous_probe": None, "events": []}
    led.append("probe", payload, "BENCH")  # key loaded, tables warm
    t = time.perf_counter()
    for i in range(n):
        led.append_many([Draft("probe", {**payload, "watch": i}, "BENCH")])
    s = time.perf_counter() - t
    led.close()
    return n / s


def run_watch(env: dict[str, str], minutes: float, concurrency: int, log: Path
              ) -> tuple[dict, list[tuple[float, dict[str, float]]], float]:
    args = [sys.executable, "-m", "evidence", "watch", "run", "--for", f"{int(minutes * 60)}s",
            "--concurrency", str(concurrency), "--json"]
    with open(log, "wb") as err:
        proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, start_new_session=True)
    samples: list[tuple[float, dict[str, float]]] = []
    t0 = time.monotonic()
    deadline = t0 + minutes * 60 + 600  # browser start and the probes in flight at the end
    try:
        nxt = t0
        while proc.poll() is None:
            now = time.monotonic()
            if now >= nxt:
                s = sample(proc.pid)
                if s["py"]:
                    samples.append((now - t0, s))
                nxt += SAMPLE_EVERY
            if now > deadline:
                raise SystemExit("watch run did not stop after --for; killed")
            time.sleep(0.2)
        out = proc.stdout.read() if proc.stdout else b""
    finally:
        # Whatever is left of its session (Chromium, if the run died): by pid, this run's only.
        left = [p for p, _ in descendants(proc.pid)] if proc.poll() is None else []
        if proc.poll() is None:
            with_pg = True
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                with_pg = False
            proc.wait(30)
            if not with_pg:
                for p in left:
                    try:
                        os.kill(p, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"watch run exit {proc.returncode}: {log.read_text()[-800:]}")
    return json.loads(out), samples, wall


def park_cold(home: Path, hot: int, until: float) -> None:
    """Watches after the first ``hot`` (by id) fall due only after ``until``."""
    with Ledger.open(home) as led:
        first = min(w.id for w in WatchStore(led.store).all())
        with led.store._write() as conn:
            conn.execute(watches.update().where(watches.c.id >= first + hot).values(next_due=until))


def main(n: int, minutes: float, every: str, concurrency: int, appends: int, hot: int, hot_every: str) -> None:
    load0 = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="watch-rss-"))
    site = Site()
    try:
        for i in range(n):
            site.set(f"/item/{i}", item(title=f"好货 {i}", price=f"¥{i}.00"))
        home = tmp / "home"
        env = dict(os.environ, EVIDENCE_HOME=str(home), COLUMNS="200")
        env.pop("EVIDENCE_DB_URL", None)  # one machine: SQLite
        cli(env, "init", "--no-passphrase", "--origin", "bench.example/watch-rss")
        jsonl = tmp / "watches.jsonl"
        with open(jsonl, "w", encoding="utf-8") as f:
            for i in range(n):
                f.write(json.dumps({"url": site.url(f"/item/{i}"), "case": "BENCH-WATCH",
                                    "every": hot_every if i < hot else every,
                                    "fields": {"title": ".t", "price": ".price"}}, ensure_ascii=False) + "\n")
        t = time.perf_counter()
        imported = json.loads(cli(env, "watch", "import", str(jsonl), "--json").stdout)["imported"]
        import_s = time.perf_counter() - t
        assert imported == n, imported
        if hot:
            park_cold(home, hot, time.time() + minutes * 60 + 3600)

        stats, samples, wall = run_watch(env, minutes, concurrency, tmp / "run.log")
        with Ledger.open(home) as led:
            kinds: dict[str, int] = {}
            for r in led.records():
                kinds[r.kind] = kinds.get(r.kind, 0) + 1
            records = led.size()
            probed = sum(1 for w in WatchStore(led.store).all() if w.last_probe_idx is not None)
        load1 = os.getloadavg()

        p50, p99, insert_s = find_due_lag(tmp / "home-due", n, pad=30)
        rate = append_rate(tmp, appends)
    finally:
        site.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    run_s = minutes * 60
    py = [s["py"] for _, s in samples]
    near1 = min(samples, key=lambda ts: abs(ts[0] - 60))[1]  # the sample nearest 1 min
    at1 = near1["py"]
    end = py[-1] if py else float("nan")
    needed = records / run_s
    mode = f"{hot} hot every {hot_every}, the rest parked past the run" if hot else "import spread"
    print(f"watch_rss: {n:,} watches (local fixture, every {every}, {mode}), `evidence watch run --for "
          f"{minutes:g}m --concurrency {concurrency}` (SQLite home, one Chromium); CPU: {os.cpu_count()} cores shared, "
          f"load average {load0[0]:.1f} at start, {load1[0]:.1f} after the run")
    line("watches imported (one `evidence watch import`)", imported, "watches", f"({import_s:.1f} s incl. CLI start, "
         f"selector check, {imported / import_s:,.0f}/s)")
    line("minutes of `watch run --for`", minutes, "min", f"(wall {wall / 60:.1f} min incl. browser start/stop)")
    line("probes done", stats["probes"], "probes", f"({probed:,} watches probed once or more; "
         f"{stats['failures']} failures)")
    line("probes/min", stats["probes"] / minutes, "probes/min")
    line("events / exhibits (first sight: full capture each)", stats["events"], "events", f"/ {stats['exhibits']} exhibits")
    line("exhibits/min", stats["exhibits"] / minutes, "exhibits/min")
    line("light probes (no event, no capture)", stats["probes"] - stats["exhibits"], "probes")
    line("scheduler lag p50 (due -> claim, in the run)", stats["lag_p50_s"] or 0.0, "s",
         f"(a backlog: {n:,} first probes fall due within 5 min, {stats['probes']:,} were done)"
         if stats["probes"] < n and not hot else "")
    line("scheduler lag p99 (due -> claim, in the run)", stats["lag_p99_s"] or 0.0, "s")
    line("python RSS at 1 min", at1, "MiB")
    line("python RSS at the end", end, "MiB", f"({len(samples)} samples every {SAMPLE_EVERY:g} s; max {max(py):.1f})")
    line("python RSS growth 1 min -> end", (end - at1) / at1 * 100, "%")
    line("children RSS peak (Playwright driver + Chromium)", max(s["kids_rss"] for _, s in samples), "MiB",
         f"(RSS summed over up to {max(int(s['nkids']) for _, s in samples)} processes)")
    line("children PSS peak (shared pages counted once)", max(s["kids_pss"] for _, s in samples), "MiB")
    line("Chromium processes RSS peak", max(s["chrome_rss"] for _, s in samples), "MiB")
    line("children PSS at 1 min / at the end",
         near1["kids_pss"], "MiB", f"/ {samples[-1][1]['kids_pss']:.1f} MiB")
    print(f"find_due with {n:,} watches in the table falling due over 60 s (SQLite; inserted in {insert_s:.2f} s)")
    line("dispatch lag p50", p50 * 1000, "ms")
    line("dispatch lag p99", p99 * 1000, "ms")
    line("ratio p99 / poll interval (50 ms)", p99 * 1000 / 50, "x")
    print(f"ledger append: {records:,} records in the run ({', '.join(f'{v} {k}' for k, v in sorted(kinds.items()))})")
    line("records/s the run appended", needed, "records/s")
    line("records/s one append per transaction (same run)", rate, "records/s", f"({appends} probe records)")
    line("share of run time spent appending (estimate)", needed / rate * 100, "%", "(records x 1/append rate / run time)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--watches", type=int, default=10_000)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--every", default="10m", help="each watch's interval (the import spreads first probes)")
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--appends", type=int, default=500, help="records of the append baseline")
    ap.add_argument("--hot", type=int, default=0, help="only this many watches fall due in the run (see above)")
    ap.add_argument("--hot-every", default="1m")
    a = ap.parse_args()
    main(a.watches, a.minutes, a.every, a.concurrency, a.appends, a.hot, a.hot_every)
