"""Hostile and broken pages for capture tests, served by the suspect-shop server.

Each route is a function that writes a whole response on the handler. Routes
that never finish poll ``STOP`` so server shutdown is not held up by them.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import importlib.util
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
STOP = threading.Event()
BIG_SIZE = 50 * 1024 * 1024
GBK_PAGE = "<!DOCTYPE html><html><head><meta charset=gbk><title>国标编码页面</title></head><body><h1>淘优选 GBK 编码的商品页</h1></body></html>"


def load_serve() -> Any:
    spec = importlib.util.spec_from_file_location(
        "suspect_shop_serve", ROOT / "examples" / "suspect-shop" / "serve.py"
    )
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _html(h: Any, body: str, status: int = 200, extra: list[tuple[str, str]] | None = None) -> None:
    h.send_bytes(body.encode("utf-8"), "text/html; charset=utf-8", status=status, extra=extra)


def _wait_forever() -> None:
    end = time.monotonic() + 120
    while not STOP.is_set() and time.monotonic() < end:
        time.sleep(0.1)


def never_ending_document(h: Any) -> None:
    """Sends the start of a page, then nothing more, never closing."""
    h.send_response(200)
    h.send_header("Content-Type", "text/html; charset=utf-8")
    h.send_header("Transfer-Encoding", "chunked")
    h.end_headers()
    part = "<!DOCTYPE html><html><head><title>永不结束</title></head><body><h1>加载中的页面</h1>".encode()
    h.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
    h.wfile.flush()
    _wait_forever()


def stalled_image(h: Any) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "image/png")
    h.send_header("Content-Length", "100000")
    h.end_headers()
    h.wfile.write(b"\x89PNG\r\n\x1a\n")
    h.wfile.flush()
    _wait_forever()


def page_with_stalled_image(h: Any) -> None:
    _html(h, "<!DOCTYPE html><title>图片加载不完</title><h1>商品图片</h1><img src='/stall.png'>")


def redirect_loop(h: Any) -> None:
    h.send_bytes(
        b"",
        "text/html",
        status=302,
        extra=[("Location", "/loop-b" if h.path.startswith("/loop-a") else "/loop-a")],
    )


def big_page(h: Any) -> None:
    """50 MiB of HTML, mostly one comment (fast to parse), streamed in blocks."""
    head = b"<!DOCTYPE html><html><head><title>big</title></head><body><h1>\xe5\xa4\xa7\xe9\xa1\xb5\xe9\x9d\xa2</h1><!--"
    tail = b"--><p>end</p></body></html>"
    block = (b"0123456789abcdef" * 64 + b"\n") * 1024
    n_blocks, rest = divmod(BIG_SIZE - len(head) - len(tail), len(block))
    h.send_response(200)
    h.send_header("Content-Type", "text/html; charset=utf-8")
    h.send_header("Content-Length", str(BIG_SIZE))
    h.end_headers()
    h.wfile.write(head)
    for _ in range(n_blocks):
        h.wfile.write(block)
    h.wfile.write(block[:rest])
    h.wfile.write(tail)


def big_page_sha256() -> str:
    """SHA-256 of what ``big_page`` sends, computed without holding it."""

    class Sink:
        def __init__(self) -> None:
            self.h = hashlib.sha256()
            self.wfile = self
            self.path = "/big"

        def write(self, b: bytes) -> None:
            self.h.update(b)

        def send_response(self, *a: Any) -> None: ...
        def send_header(self, *a: Any) -> None: ...
        def end_headers(self) -> None: ...

    s = Sink()
    big_page(s)
    return s.h.hexdigest()


def infinite_scroll(h: Any) -> None:
    _html(
        h,
        """<!DOCTYPE html><title>无限滚动</title><body style="margin:0">
<div id="feed"></div>
<script>
let n = 0;
function more() { for (let i = 0; i < 10; i++) { const d = document.createElement('div');
  d.style.height = '120px'; d.textContent = '商品 ' + (n++); feed.appendChild(d); } }
more();
addEventListener('scroll', () => { if (innerHeight + scrollY >= document.body.scrollHeight - 400) more(); });
</script>""",
    )


def dialogs(h: Any) -> None:
    _html(
        h,
        """<!DOCTYPE html><title>弹窗</title><h1>弹窗页面</h1>
<script>
addEventListener('beforeunload', (e) => { e.preventDefault(); e.returnValue = '确定离开？'; });
alert('恭喜您中奖了！');
confirm('是否继续？');
</script>""",
    )


def popup(h: Any) -> None:
    _html(
        h,
        "<!DOCTYPE html><title>主页面</title><h1>主页面</h1><script>window.open('/item/123', '_blank');</script>",
    )


def download(h: Any) -> None:
    body = b"%PDF-1.4\n% fake invoice\n" + "发票 INV-2026-017".encode() + b"\n%%EOF\n"
    h.send_bytes(
        body, "application/pdf", extra=[("Content-Disposition", 'attachment; filename="invoice.pdf"')]
    )


def server_error(h: Any) -> None:
    _html(h, "<!DOCTYPE html><title>500 服务器错误</title><h1>服务器内部错误</h1>", status=500)


def gbk_page(h: Any) -> None:
    body = gzip.compress(GBK_PAGE.encode("gbk"), mtime=0)
    h.send_bytes(body, "text/html; charset=gbk", extra=[("Content-Encoding", "gzip")])


def chinese(text: str) -> Callable[[Any], None]:
    def route(h: Any) -> None:
        _html(
            h,
            "<!DOCTYPE html><html lang=zh-CN><head><meta charset=utf-8><title>t</title></head>"
            f"<body style='font-size:64px;margin:40px'>{text}</body></html>",
        )

    return route


ROUTES: dict[str, Callable[[Any], None]] = {
    "/never-ending": never_ending_document,
    "/stall.png": stalled_image,
    "/stalled-image": page_with_stalled_image,
    "/loop-a": redirect_loop,
    "/loop-b": redirect_loop,
    "/big": big_page,
    "/infinite": infinite_scroll,
    "/dialogs": dialogs,
    "/popup": popup,
    "/download": download,
    "/error-500": server_error,
    "/gbk": gbk_page,
    "/zh-a": chinese("假冒商品销售证据"),
    "/zh-b": chinese("正品行货全国联保"),
}


class BrowserThread:
    """One Chromium for many tests, driven from its own event-loop thread."""

    def __init__(self) -> None:
        from capture.browser import Browser

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.browser = self.call(Browser().__aenter__())

    def call(self, coro: Any, timeout: float = 300) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def capture(self, url: str, workdir: Path, **options: Any) -> Any:
        from capture.options import CaptureOptions
        from capture.session import capture_into

        meta = {k: options.pop(k) for k in ("case", "operator", "note") if k in options}
        opts = CaptureOptions.from_kwargs(options)
        workdir.mkdir(parents=True, exist_ok=True)
        return self.call(capture_into(self.browser, url, workdir, options=opts, **meta))

    def close(self) -> None:
        try:
            self.call(self.browser.__aexit__(None, None, None), timeout=60)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
