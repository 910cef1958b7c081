"""Full-page screenshots of tall pages: tiles stitched as they come, memory bounded.

Captures the fixture's banded page at 8,000 px (one ordinary screenshot: the
same-run baseline), 40,000 px and 100,000 px (tiles of 8,192 px stitched into
one PNG) and prints, for each, the capture time (and its ratio to the
baseline) and our process's peak RSS above its start; bounded memory shows as
a 100,000 px peak no higher than the 40,000 px one.

    .venv/bin/python benchmarks/tall_screenshot.py
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "capture"))

from _common import line  # noqa: E402
from capture_fixtures import load_serve  # noqa: E402
from hard_fixtures import HardShop  # noqa: E402

from capture.browser import Browser  # noqa: E402
from capture.options import CaptureOptions  # noqa: E402
from capture.session import capture_into  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * PAGE


class Peak:
    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss())
            time.sleep(0.005)

    def __enter__(self) -> Peak:
        self.t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.t.join()


async def main() -> None:
    shop = HardShop(load_serve())
    opts = CaptureOptions(max_scroll_steps=0, mhtml=False)
    results: dict[int, tuple[float, int, int, int]] = {}
    try:
        async with Browser() as browser:
            with tempfile.TemporaryDirectory() as tmp:
                # Warm-up: imports, first context, PIL loaded.
                await capture_into(browser, shop.url("/tall?h=1000"), Path(tmp) / "warm", options=opts)
                base = rss()
                for height in (8_000, 40_000, 100_000):
                    t = time.perf_counter()
                    with Peak() as p:
                        pc = await capture_into(browser, shop.url(f"/tall?h={height}"), Path(tmp) / str(height), options=opts)
                    took = time.perf_counter() - t
                    shot = pc.info["full_screenshot"]
                    size = pc.artifact("screenshot-full").path.stat().st_size
                    results[height] = (took, max(0, p.peak - base), shot["tiles"], size)
    finally:
        shop.stop()
    t0 = results[8_000][0]
    m40 = results[40_000][1]
    for height, (took, mem, tiles, size) in results.items():
        tag = "baseline, one screenshot" if height == 8_000 else f"{tiles} tiles stitched"
        line(f"capture of a {height:,} px page ({tag})", took, "s", f"x{took / t0:.2f} of baseline")
        # Bounded memory: the peak does not grow from 40,000 to 100,000 px.
        ratio = f"x{mem / max(m40, 1):.2f} of the 40,000 px peak" if height != 8_000 else ""
        line(f"  peak RSS above start, {height:,} px", mem / 2**20, "MiB", ratio)
        line(f"  screenshot-full.png, {height:,} px", size / 2**20, "MiB")


if __name__ == "__main__":
    asyncio.run(main())
