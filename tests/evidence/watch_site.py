"""A listing site whose pages a test changes between probes, and webhook receivers."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def item(title: str = "好货 A", price: str = "¥99.00", extra: str = "") -> str:
    return (f"<html><head><title>{title}</title></head><body><h1 class='t'>{title}</h1>"
            f"<span class='price'>{price}</span><p>库存充足，当日发货。</p>{extra}</body></html>")


class _ReusableServer(ThreadingHTTPServer):
    allow_reuse_address = True  # a test may start a site again on the port it had


class _Server:
    """A local HTTP server on a thread; handlers reach the owner as ``self.server.owner``."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], port: int = 0):
        self.srv = _ReusableServer(("127.0.0.1", port), handler)
        self.srv.owner = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.srv.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def stop(self) -> None:
        self.srv.shutdown()
        self.srv.server_close()


class _SiteHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        site: Site = self.server.owner  # type: ignore[attr-defined]
        status, headers, body = site.pages.get(self.path, (404, {}, "<html><body>no such page</body></html>"))
        data = body.encode("utf-8")
        self.send_response(status)
        for k, v in {"Content-Type": "text/html; charset=utf-8", **headers}.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a: object) -> None:
        pass


class Site(_Server):
    def __init__(self) -> None:
        self.pages: dict[str, tuple[int, dict[str, str], str]] = {}
        super().__init__(_SiteHandler)

    def set(self, path: str, body: str, status: int = 200) -> None:
        self.pages[path] = (status, {}, body)

    def redirect(self, path: str, to: str) -> None:
        self.pages[path] = (302, {"Location": to}, "")


class _HookHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        hook: Hook = self.server.owner  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with hook.lock:
            hook.received.append(json.loads(body))
            fail = hook.fail_first > 0
            hook.fail_first -= 1
        if hook.hold.is_set():
            hook.release.wait(120)
        self.send_response(500 if fail else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a: object) -> None:
        pass


class Hook(_Server):
    """Records every POST; answers 500 to the first ``fail_first``; with ``hold`` set, never answers until ``release``."""

    def __init__(self, fail_first: int = 0, hold: bool = False) -> None:
        self.received: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.fail_first = fail_first
        self.hold = threading.Event()
        self.release = threading.Event()
        if hold:
            self.hold.set()
        super().__init__(_HookHandler)

    def stop(self) -> None:
        self.release.set()
        super().stop()


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
