"""A generated shop for crawl tests and benchmarks: list pages, item pages, a frame, a login wall.

    shop = GeneratedShop(lists=2, per_list=3).start()
    shop.url("/")            # index -> /list?page=1.. -> /item/N
    shop.hits["/item/1"]     # requests per path (query included)
    shop.expired = True      # from now on every page is the login page (no LOGGED_IN marker)
    shop.expire_after = 3    # or: after three more documents
    shop.stop()

Every page is small and static (no timers, no outside resources) so a
capture is as fast as a capture can be. Links carry fragments, duplicates,
``mailto:``/``javascript:`` and links to ``other`` (another server) that a
crawl must list and never follow.
"""

from __future__ import annotations

import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

LOGGED_IN = "欢迎回来，买家"


class GeneratedShop:
    def __init__(self, lists: int = 2, per_list: int = 3, other: str = "http://127.0.0.1:9/", frame: bool = True,
                 flood: int = 0):
        self.lists, self.per_list, self.other, self.frame = lists, per_list, other, frame
        self.flood = flood  # extra links on the index (to /x/N, pages that do not exist), as a hostile page has
        self.hits: Counter[str] = Counter()
        self.expired = False
        #: documents served (frames and favicons aside) before ``expired`` turns on by itself; None: never
        self.expire_after: int | None = None
        self._served = 0
        self._lock = threading.Lock()
        shop = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_a: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                with shop._lock:
                    shop.hits[self.path] += 1
                    if shop.expire_after is not None and self.path not in ("/favicon.ico", "/frame"):
                        shop._served += 1
                        if shop._served > shop.expire_after:
                            shop.expired = True
                status, body = shop.page(self.path)
                data = body.encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def pages(self) -> int:
        """Pages a crawl reaches by links: index, about, lists, items, and the notice linked from the frame."""
        return 2 + self.lists + self.lists * self.per_list + (1 if self.frame else 0)

    def start(self) -> GeneratedShop:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def _doc(self, title: str, body: str) -> str:
        who = "<p>请先登录</p>" if self.expired else f"<p class=user>{LOGGED_IN}</p>"
        return (f"<!DOCTYPE html><html><head><meta charset=utf-8><title>{title}</title></head>"
                f"<body>{who}{body}</body></html>")

    def page(self, path: str) -> tuple[int, str]:
        p = urlsplit(path)
        if self.expired:
            return 200, self._doc("登录", "<form><input name=user><input type=password></form>")
        if p.path == "/":
            frame = "<iframe src=/frame></iframe>" if self.frame else ""
            return 200, self._doc("优选小店", (
                "<a href='/list?page=1'>全部商品</a> <a href='/about#team'>关于</a> <a href='/about'>关于我们</a> "
                f"<a href='{self.other}ad?x=1'>广告</a> <a href='mailto:shop@example.invalid'>邮件</a> "
                f"<a href='javascript:void(0)'>收藏</a> <a href='#top'>顶部</a>{frame}"
                + "".join(f"<a href='/x/{i}'>{i}</a>" for i in range(self.flood))
            ))
        if p.path == "/about":
            return 200, self._doc("关于", "<p>个体工商户</p><a href='/'>首页</a>")
        if p.path == "/frame" and self.frame:
            return 200, self._doc("店铺公告", "<a href='/about' target=_top>关于</a> <a href='notice' target=_top>公告</a>")
        if p.path == "/notice" and self.frame:  # linked only from inside the frame
            return 200, self._doc("公告", "<p>本店公告</p>")
        if p.path == "/list":
            try:
                n = int(parse_qs(p.query).get("page", ["1"])[0])
            except ValueError:
                n = 0
            if not 1 <= n <= self.lists:
                return 404, self._doc("无此页", "")
            first = (n - 1) * self.per_list + 1
            items = " ".join(f"<a href='/item/{i}#reviews'>商品 {i}</a> <a href='/item/{i}'>详情</a>"
                             for i in range(first, first + self.per_list))
            nxt = f"<a href='/list?page={n + 1}'>下一页</a>" if n < self.lists else ""
            return 200, self._doc(f"商品列表 {n}", f"{items} {nxt} <a href='/'>首页</a>")
        if p.path.startswith("/item/"):
            try:
                i = int(p.path.rsplit("/", 1)[1])
            except ValueError:
                i = 0
            if not 1 <= i <= self.lists * self.per_list:
                return 404, self._doc("无此商品", "")
            rel = i % (self.lists * self.per_list) + 1
            return 200, self._doc(f"商品 {i}", (
                f"<h1>商品 {i}</h1><p class=price>¥{100 + i}.00</p><a href='/item/{rel}'>相关商品</a> "
                f"<a href='{self.other}item/{i}'>比价</a> <a href='/'>首页</a>"
            ))
        return 404, self._doc("无此页", "")
