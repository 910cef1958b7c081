"""Peak memory of our process while capturing a 50 MiB page.

Target: the peak stays within 2x the page size above the baseline (browser
launched, one small page captured). The page is served from a separate
process so the server's buffers do not count. Memory of the Playwright
driver (Node) and of Chromium is printed for context; it is not ours.

    .venv/bin/python benchmarks/capture_memory.py
"""

from __future__ import annotations

import asyncio
import multiprocessing
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
from capture_fixtures import BIG_SIZE, ROUTES, load_serve  # noqa: E402

from capture.browser import Browser  # noqa: E402
from capture.options import CaptureOptions  # noqa: E402
from capture.session import capture_into  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss(pid: int | str = "self") -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d.name))
            except (OSError, ValueError, IndexError):
                pass
    return out


class Sampler:
    def __init__(self) -> None:
        self.peak = 0
        self.driver_peak = 0
        self._stop = threading.Event()
        self.drivers = children(os.getpid())
        self.t = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss())
            self.driver_peak = max(self.driver_peak, sum(rss(p) for p in self.drivers))
            time.sleep(0.005)

    def __enter__(self) -> Sampler:
        self.t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.t.join()


def serve_forever(port_q: multiprocessing.Queue[int]) -> None:
    shop = load_serve().ShopServer(routes=ROUTES, https_port=None).start()
    port_q.put(shop.http.server_address[1])
    threading.Event().wait()


async def main() -> None:
    q: multiprocessing.Queue[int] = multiprocessing.Queue()
    server = multiprocessing.Process(target=serve_forever, args=(q,), daemon=True)
    server.start()
    port = q.get(timeout=30)
    base = f"http://127.0.0.1:{port}"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            async with Browser() as b:
                opts = CaptureOptions()
                await capture_into(b, base + "/item/123", Path(tmp) / "warm", options=opts)
                baseline = rss()
                with Sampler() as s:
                    t = time.perf_counter()
                    pc = await capture_into(b, base + "/big", Path(tmp) / "big", options=opts)
                    took = time.perf_counter() - t
                warc = pc.artifact("warc").path.stat().st_size
    finally:
        server.kill()
    mib = 1024 * 1024
    delta = s.peak - baseline
    print(f"50 MiB page ({BIG_SIZE:,} bytes); capture took {took:.1f} s, WARC {warc / mib:.1f} MiB (gzip)")
    line("baseline RSS (browser up, one page captured)", baseline / mib, "MiB")
    line("peak RSS during the 50 MiB capture", s.peak / mib, "MiB")
    line("peak above baseline", delta / mib, "MiB", f"{delta / BIG_SIZE:.2f}x page size (target <= 2.0)")
    line("Playwright driver (Node) peak, not ours", s.driver_peak / mib, "MiB")


if __name__ == "__main__":
    asyncio.run(main())
