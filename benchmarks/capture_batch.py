"""capture_many over 100 local listing pages: pages per minute, sealing included.

One browser, a fresh context per page, one ledger append for the batch.

    .venv/bin/python benchmarks/capture_batch.py [--pages N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "capture"))

from _common import line  # noqa: E402
from capture_fixtures import load_serve  # noqa: E402

from capture import capture_many  # noqa: E402
from ledger.log import Ledger  # noqa: E402


def main(pages: int) -> None:
    serve = load_serve()
    with serve.ShopServer(https_port=None) as shop, tempfile.TemporaryDirectory() as tmp:
        led = Ledger.init(Path(tmp) / "home", unencrypted=True, origin="bench.example/log")
        urls = [shop.url(f"/item/123?page={i}") for i in range(pages)]
        marks: list[float] = []
        t = time.perf_counter()
        result = capture_many(
            urls, case="BENCH", ledger=led, progress=lambda *a: marks.append(time.perf_counter())
        )
        total = time.perf_counter() - t
        seal = total - (marks[-1] - t)
        led.close()
    assert not result.failures, result.failures[:3]
    print(f"{pages} pages of the suspect-shop listing, {len(result.exhibits)} exhibits sealed in one append")
    line("batch wall time (launch + capture + seal)", total, "s")
    line("throughput", pages / total * 60, "pages/min")
    line("per page (capture only, mean)", (marks[-1] - t) / pages * 1000, "ms")
    line("sealing the batch (store + one append)", seal * 1000, "ms")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=100)
    main(ap.parse_args().pages)
