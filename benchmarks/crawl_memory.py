"""Memory of our process over a 500-page crawl of a generated shop: flat, not growing with pages.

The shop (tests/capture/crawl_shop.py) is served from a separate process so
its buffers do not count. Our RSS is sampled after every page; the baseline
is the RSS after the first 50 pages of the same run (browser up, caches
warm), and the figure is the RSS at the end and its ratio to that baseline.
Chromium's and the Playwright driver's memory are not ours and not counted.

    .venv/bin/python benchmarks/crawl_memory.py [--pages 500]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
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

from capture.crawl import crawl  # noqa: E402
from ledger.log import Ledger  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")
WARM = 50


def rss_mib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * PAGE / 2**20


def serve(lists: int, per_list: int, q: multiprocessing.Queue[str]) -> None:
    shop = GeneratedShop(lists, per_list, frame=False).start()
    q.put(shop.base)
    while True:
        time.sleep(3600)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pages", type=int, default=500)
    args = ap.parse_args()
    per_list = 24
    lists = max(1, -(-(args.pages - 2) // (per_list + 1)))  # index + about + lists + items >= pages
    q: multiprocessing.Queue[str] = multiprocessing.Queue()
    server = multiprocessing.Process(target=serve, args=(lists, per_list, q), daemon=True)
    server.start()
    base = q.get(timeout=30)
    samples: list[float] = []

    def progress(done: int, _known: int, _url: str, _error: str | None) -> None:
        samples.append(rss_mib())
        if done % 50 == 0:
            print(f"  {done:>5} pages  rss {samples[-1]:8.1f} MiB", flush=True)

    try:
        with tempfile.TemporaryDirectory() as tmp:
            led = Ledger.init(Path(tmp) / "home", unencrypted=True, origin="bench.example/log")
            t = time.perf_counter()
            res = crawl(base + "/", case="BENCH", ledger=led, delay=0, max_pages=args.pages,
                        settle_timeout=0.5, max_scroll_steps=0, mhtml=False, progress=progress)
            took = time.perf_counter() - t
            led.close()
    finally:
        server.kill()
    warm = samples[min(WARM, len(samples)) - 1]
    print(f"{res.pages} pages crawled in {took:.0f} s, one browser")
    line(f"rss after {min(WARM, len(samples))} pages (baseline)", warm, "MiB")
    line(f"rss after {len(samples)} pages", samples[-1], "MiB")
    line("peak rss over the crawl", max(samples), "MiB")
    line("ratio end / baseline", samples[-1] / warm, "x")


if __name__ == "__main__":
    main()
