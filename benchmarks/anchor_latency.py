"""Anchoring latency against the local TSA and witness, and records covered per anchor.

    .venv/bin/python benchmarks/anchor_latency.py [--n 30] [--seconds 30] [--interval 5]

Latency: one RFC 3161 round trip (request, openssl ts -reply, verify), and
a whole ``anchor_checkpoint`` (sign checkpoint, timestamp, verify, store
blobs, append the anchor record), both against the TSA of
tests/ledger/tsa_fixture.py on 127.0.0.1; the same for a witness.

Coverage: a writer appends 100 records/s while an anchorer runs every
``--interval`` seconds. Anchors are per checkpoint, not per record, so each
anchor covers every record appended since the previous one; the figure
scales linearly with the interval (10 min at 100/s = 60,000 records).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "ledger"))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from tsa_fixture import LocalTSA  # noqa: E402

from benchmarks._common import line  # noqa: E402
from ledger.anchors import (  # noqa: E402
    Witness,
    WitnessServer,
    anchor_checkpoint,
    load_roots,
    needs_anchor,
    timestamp,
)
from ledger.log import Ledger  # noqa: E402


def summary(name: str, samples: list[float]) -> None:
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    line(name, statistics.median(ms), "ms p50", f"p95 {p95:.1f} ms, n={len(ms)}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=30, help="samples per latency figure")
    ap.add_argument("--seconds", type=float, default=30.0, help="length of the 100 appends/s run")
    ap.add_argument("--interval", type=float, default=5.0, help="anchoring interval in that run")
    ap.add_argument("--rate", type=float, default=100.0, help="appends per second")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tsa = LocalTSA(Path(tmp) / "tsa").start()
        roots = load_roots([tsa.root_pem])
        led = Ledger.init(Path(tmp) / "home", unencrypted=True, origin="bench.example/log")
        witness = WitnessServer(
            "bench.example/witness", Ed25519PrivateKey.generate(), {led.origin: led.verifiers()}
        )
        witness.start()
        w = Witness(witness.url, witness.verifier)

        for hash_alg in ("sha256", "sha512"):
            samples = []
            for i in range(args.n):
                t = time.perf_counter()
                timestamp(tsa.url, f"note {i}".encode(), roots, hash_alg=hash_alg)
                samples.append(time.perf_counter() - t)
            summary(f"RFC 3161 request+verify ({hash_alg})", samples)

        for label, kwargs in (
            ("anchor_checkpoint, 1 TSA", {"tsa_urls": [tsa.url], "roots": roots}),
            ("anchor_checkpoint, 1 witness", {"witnesses": [w]}),
            ("anchor_checkpoint, TSA + witness", {"tsa_urls": [tsa.url], "roots": roots, "witnesses": [w]}),
        ):
            samples = []
            for i in range(args.n):
                led.append("custody", {"i": i})
                t = time.perf_counter()
                anchor_checkpoint(led, **kwargs)  # type: ignore[arg-type]
                samples.append(time.perf_counter() - t)
            summary(label, samples)

        # -- coverage at a steady append rate ---------------------------------------
        stop = threading.Event()
        appended = [0]

        def writer() -> None:
            period = 1.0 / args.rate
            nxt = time.perf_counter()
            while not stop.is_set():
                led.append("exhibit", {"n": appended[0]}, case="BENCH")
                appended[0] += 1
                nxt += period
                time.sleep(max(0.0, nxt - time.perf_counter()))

        covered: list[int] = []
        anchor_time: list[float] = []
        last_size = led.store.latest_checkpoint().size  # type: ignore[union-attr]
        th = threading.Thread(target=writer)
        t0 = time.perf_counter()
        th.start()
        while time.perf_counter() - t0 < args.seconds:
            time.sleep(args.interval)
            if not needs_anchor(led):
                continue
            t = time.perf_counter()
            [r] = anchor_checkpoint(led, tsa_urls=[tsa.url], roots=roots)
            anchor_time.append(time.perf_counter() - t)
            size = r.payload["checkpoint_size"]  # type: ignore[index]
            covered.append(size - last_size)
            last_size = size
        stop.set()
        th.join()
        elapsed = time.perf_counter() - t0
        rate = appended[0] / elapsed
        line("append rate achieved", rate, "records/s", f"{appended[0]} records in {elapsed:.1f}s")
        line("anchors made", len(covered), "anchors", f"one per {args.interval:g}s")
        line("records covered per anchor (median)", statistics.median(covered), "records", f"all: {covered}")
        line("anchor latency under load (median)", statistics.median(anchor_time) * 1000, "ms")
        line("records per anchor at 10 min, 100/s", 600 * args.rate, "records", "(linear in the interval)")
        line(
            "anchor records per hour at 10 min",
            6,
            "records",
            f"vs {3600 * args.rate:,.0f} records appended per hour",
        )
        witness.stop()
        tsa.stop()
        led.close()


if __name__ == "__main__":
    main()
