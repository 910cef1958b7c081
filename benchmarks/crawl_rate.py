"""Crawl rate (pages/min, one browser) against `capture --urls` of the same pages.

Both capture the pages of one generated shop (tests/capture/crawl_shop.py) with
the same capture options and no politeness delay, each into a fresh ledger;
the baseline is `capture_many` over the very URLs the crawl visited, in the
same run. The crawl does more per page (links read from the sealed DOM, one
append transaction per page with its state, the crawl record at the end), so
the ratio shows what that costs.

    .venv/bin/python benchmarks/crawl_rate.py [--lists 2 --per-list 8]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests" / "capture"))

from _common import line  # noqa: E402
from crawl_shop import GeneratedShop  # noqa: E402

from capture import capture_many  # noqa: E402
from capture.crawl import crawl  # noqa: E402
from ledger.log import Ledger  # noqa: E402

OPTIONS = dict(settle_timeout=0.5, max_scroll_steps=0, mhtml=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--lists", type=int, default=2)
    ap.add_argument("--per-list", type=int, default=8)
    args = ap.parse_args()
    shop = GeneratedShop(args.lists, args.per_list, frame=False).start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            led = Ledger.init(Path(tmp) / "crawl", unencrypted=True, origin="bench.example/log")
            t = time.perf_counter()
            res = crawl(shop.url("/"), case="BENCH", ledger=led, delay=0, max_pages=10_000, **OPTIONS)
            crawl_s = time.perf_counter() - t
            urls = [r.payload["pages"] for r in led.records(case="BENCH") if r.kind == "crawl"][0]
            led.close()
            urls = [p["url"] for p in sorted(urls, key=lambda p: p["exhibit_index"])]
            led = Ledger.init(Path(tmp) / "batch", unencrypted=True, origin="bench.example/log")
            t = time.perf_counter()
            batch = capture_many(urls, case="BENCH", ledger=led, **OPTIONS)
            batch_s = time.perf_counter() - t
            led.close()
    finally:
        shop.stop()
    n = res.pages
    assert n == len(batch.exhibits) == len(urls), (n, len(batch.exhibits), len(urls))
    crawl_rate, batch_rate = n / crawl_s * 60, n / batch_s * 60
    print(f"{n} pages of a generated shop, one browser, no delay")
    line("crawl", crawl_rate, "pages/min", f"({crawl_s:.1f} s)")
    line("capture --urls, same pages (baseline)", batch_rate, "pages/min", f"({batch_s:.1f} s)")
    line("ratio crawl / baseline", crawl_rate / batch_rate, "x")


if __name__ == "__main__":
    main()
