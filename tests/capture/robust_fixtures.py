"""Pages that try to hang, split or cut short a capture, and their well-behaved twins.

Served on 127.0.0.1 by the suspect-shop server (``serve``) with these routes.
Every route takes its variant from the query string, so one route covers
the delays and with/without-Content-Length cases. Stalling routes hold the
connection open until ``RELEASE`` is set (at server shutdown) or 30 s pass.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

RELEASE = threading.Event()
PARTIAL = ("<!DOCTYPE html><html><head><title>部分到达</title></head><body><h1>只到了一部分的页面</h1><p>"
           + "货" * 700 + "</p>").encode()  # a little over 2 KB
DECLARED = 100_000


def _q(h: Any, name: str, default: str = "") -> str:
    return parse_qs(urlsplit(h.path).query).get(name, [default])[0]


def _html(h: Any, body: str) -> None:
    h.send_bytes(body.encode("utf-8"), "text/html; charset=utf-8", extra=[("Cache-Control", "no-store")])


def _hold() -> None:
    end = time.monotonic() + 30
    while not RELEASE.is_set() and time.monotonic() < end:
        time.sleep(0.05)


# -- renderer main thread ----------------------------------------------------------

SPIN = {
    "inline": "<script>while (true) {}</script>",
    "timer": "<script>setTimeout(() => { while (true) {} }, 100);</script>",
    "interval": "<script>setInterval(() => { while (true) {} }, 100);</script>",
    "raf": "<script>requestAnimationFrame(() => { while (true) {} });</script>",
    "after-load": "<script>addEventListener('load', () => { while (true) {} });</script>",
    "none": "",
}


def spin(h: Any) -> None:
    """``?how=inline|timer|interval|raf|after-load|none``: a script that never yields."""
    script = SPIN[_q(h, "how", "none")]
    _html(
        h,
        "<!DOCTYPE html><html><head><meta charset=utf-8><title>卡死页面</title></head>"
        f"<body><h1>卡死之前的内容</h1>{script}<p id=after>脚本之后的内容</p></body></html>",
    )


# -- navigation ---------------------------------------------------------------------


def nav(h: Any) -> None:
    """``?by=script|meta|push|none&delay=MS``: the first document moves on by itself."""
    by, delay = _q(h, "by", "none"), int(_q(h, "delay", "0"))
    head = ""
    script = ""
    if by == "script":
        script = f"<script>setTimeout(() => {{ location.href = '/robust/second'; }}, {delay});</script>"
    elif by == "meta":
        head = f"<meta http-equiv=refresh content='{delay / 1000:g};url=/robust/second'>"
    elif by == "push":
        script = (
            "<script>setTimeout(() => { history.pushState({}, '', '/robust/pushed');"
            f" document.title = '改写后'; document.querySelector('h1').textContent = '改写后的页面'; }}, {delay});</script>"
        )
    _html(
        h,
        f"<!DOCTYPE html><html><head><meta charset=utf-8>{head}<title>第一页</title></head>"
        f"<body><h1>第一个文档</h1>{script}</body></html>",
    )


def second(h: Any) -> None:
    _html(
        h,
        "<!DOCTYPE html><html><head><meta charset=utf-8><title>第二页</title></head>"
        "<body><h1>第二个文档</h1></body></html>",
    )


def nav_loop(h: Any) -> None:
    """Navigates to itself again 30 ms after each load, for ever: faster than a snapshot round."""
    n = int(_q(h, "n", "0"))
    _html(
        h,
        f"<!DOCTYPE html><html><head><meta charset=utf-8><title>循环 {n}</title></head>"
        f"<body><h1>循环第 {n} 次</h1>"
        f"<script>setTimeout(() => {{ location.href = '/robust/loop?n={n + 1}'; }}, 30);</script></body></html>",
    )


# -- bodies cut short -------------------------------------------------------------


def _partial(h: Any, content_type: str, data: bytes, *, length: bool, then: Callable[[], None]) -> None:
    h.send_response(200)
    h.send_header("Content-Type", content_type)
    h.send_header("Cache-Control", "no-store")
    if length:
        h.send_header("Content-Length", str(DECLARED))
    else:
        h.send_header("Transfer-Encoding", "chunked")
    h.end_headers()
    h.wfile.write(data if length else b"%x\r\n%s\r\n" % (len(data), data))
    h.wfile.flush()
    then()


def _close(h: Any) -> Callable[[], None]:
    def go() -> None:
        h.close_connection = True

    return go


def stalled_document(h: Any) -> None:
    """``?length=1|0``: headers and about 2 KB of the page, then nothing."""
    _partial(h, "text/html; charset=utf-8", PARTIAL, length=_q(h, "length", "1") == "1", then=_hold)


def cut_document(h: Any) -> None:
    """About 2 KB of a declared 100 KB page, then the connection closes."""
    _partial(h, "text/html; charset=utf-8", PARTIAL, length=True, then=_close(h))


PNG_START = b"\x89PNG\r\n\x1a\n" + b"\0" * 1000


def stalled_image(h: Any) -> None:
    _partial(h, "image/png", PNG_START, length=_q(h, "length", "1") == "1", then=_hold)


def page_with_image(h: Any) -> None:
    """``?img=stall|fine&length=1|0``: a page whose one image stalls, or not."""
    img = f"/robust/stall.png?length={_q(h, 'length', '1')}" if _q(h, "img") == "stall" else "/robust/fine.png"
    _html(
        h,
        "<!DOCTYPE html><html><head><meta charset=utf-8><title>商品图片</title></head>"
        f"<body><h1>商品图片</h1><img src='{img}'></body></html>",
    )


def fine_image(h: Any) -> None:
    import base64

    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    )
    h.send_bytes(png, "image/png")


ROUTES: dict[str, Callable[[Any], None]] = {
    "/robust/spin": spin,
    "/robust/nav": nav,
    "/robust/second": second,
    "/robust/pushed": nav,
    "/robust/loop": nav_loop,
    "/robust/stalled": stalled_document,
    "/robust/cut": cut_document,
    "/robust/stall.png": stalled_image,
    "/robust/fine.png": fine_image,
    "/robust/image": page_with_image,
}
