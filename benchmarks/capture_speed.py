"""One capture of the suspect-shop listing vs a bare Playwright goto + full-page screenshot.

Same run, same browser build, same flags, same local server: the figure that
matters is the ratio (target <= 1.3). Both sides get a fresh context per page;
"warm" reuses one launched browser, "cold" includes launching it.

The capture waits until the page's own clock is ``post_load_wait`` (1 s) past
its load event before it is complete (``snapshots.after_load``): a floor of
load + 1 s that a bare screenshot does not have. A third warm figure, taken in
the same rounds with ``post_load_wait=0``, shows what the capture costs above
that floor.

    .venv/bin/python benchmarks/capture_speed.py [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "capture"))

from _common import line  # noqa: E402
from capture_fixtures import load_serve  # noqa: E402

from capture.browser import FLAGS, Browser, find_chromium, want_sandbox  # noqa: E402
from capture.options import CaptureOptions  # noqa: E402
from capture.session import capture_into  # noqa: E402


async def bare_page(browser, url: str) -> None:
    ctx = await browser.new_context(viewport={"width": 1366, "height": 768})
    page = await ctx.new_page()
    await page.goto(url, wait_until="load")
    await page.screenshot(full_page=True, type="png")
    await ctx.close()


async def bare_cold(url: str) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(
            executable_path=str(find_chromium()), args=list(FLAGS), chromium_sandbox=want_sandbox()
        )
        await bare_page(b, url)
        await b.close()


async def ours_cold(url: str, tmp: Path, opts: CaptureOptions) -> None:
    async with Browser() as b:
        await capture_into(b, url, Path(tempfile.mkdtemp(dir=tmp)), options=opts)


async def main(rounds: int) -> None:
    serve = load_serve()
    opts = CaptureOptions()
    no_wait = CaptureOptions(post_load_wait=0)
    with serve.ShopServer() as shop, tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        url = shop.url("/item/123")
        bare_t: list[float] = []
        ours_t: list[float] = []
        floorless_t: list[float] = []
        async with Browser() as b:
            await bare_page(b.browser, url)  # warm-up both paths once
            await capture_into(b, url, Path(tempfile.mkdtemp(dir=tmp)), options=opts)
            for _ in range(rounds):
                t = time.perf_counter()
                await bare_page(b.browser, url)
                bare_t.append(time.perf_counter() - t)
                t = time.perf_counter()
                pc = await capture_into(b, url, Path(tempfile.mkdtemp(dir=tmp)), options=opts)
                ours_t.append(time.perf_counter() - t)
                t = time.perf_counter()
                await capture_into(b, url, Path(tempfile.mkdtemp(dir=tmp)), options=no_wait)
                floorless_t.append(time.perf_counter() - t)
        cold_bare: list[float] = []
        cold_ours: list[float] = []
        for _ in range(max(1, rounds // 2)):
            t = time.perf_counter()
            await bare_cold(url)
            cold_bare.append(time.perf_counter() - t)
            t = time.perf_counter()
            await ours_cold(url, tmp, opts)
            cold_ours.append(time.perf_counter() - t)
    mb, mo, mf = statistics.median(bare_t), statistics.median(ours_t), statistics.median(floorless_t)
    cb, co = statistics.median(cold_bare), statistics.median(cold_ours)
    print(
        f"suspect-shop listing, {rounds} rounds (median); {len(pc.artifacts)} artifacts, "
        f"{pc.info['exchanges']} exchanges"
    )
    line("bare goto + full-page screenshot (warm)", mb * 1000, "ms")
    line("evidence capture (warm browser)", mo * 1000, "ms", f"ratio {mo / mb:.2f} (target <= 1.3)")
    line("evidence capture, post_load_wait=0 (warm)", mf * 1000, "ms", f"ratio {mf / mb:.2f} (without the floor)")
    line("bare, including browser launch (cold)", cb * 1000, "ms")
    line("evidence capture, including launch (cold)", co * 1000, "ms", f"ratio {co / cb:.2f} (target <= 1.3)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=6)
    asyncio.run(main(ap.parse_args().rounds))
