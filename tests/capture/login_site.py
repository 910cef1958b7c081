"""A members-only shop on 127.0.0.1 for session tests: a login form, a session cookie, a members page.

``POST /login`` (user alice, password open-sesame-42) sets ``sid=<random secret>``
and sends the browser to ``/members``. ``/members`` shows "Welcome alice" to
a valid sid and the login form to anyone else (as real platforms do: a
lapsed login gives HTTP 200 and a login page). The members page also sets
a cookie of its own and fetches ``/api/price`` with an ``Authorization``
header (its token from the session's local storage, as single-page shops
keep them), so all three credential headers cross the wire. The server keeps
what it received (``seen``) so a test can show the secrets really were in
the browser's traffic.
"""

from __future__ import annotations

import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

USER, PASSWORD = "alice", "open-sesame-42"
MARKER = "Welcome alice"

LOGIN_PAGE = """<!DOCTYPE html><html><head><meta charset=utf-8><title>Shop login</title>
<style>input{display:block;width:90vw;height:40vh;font-size:40px}</style></head><body>
<form method=post action=/login><input name=user autofocus><input name=password type=password>
<button type=submit>登录</button></form><p>Please log in</p></body></html>"""


class LoginSite:
    def __init__(self) -> None:
        self.sids: set[str] = set()
        self.page_cookie = "pc-" + secrets.token_hex(16)
        self.api_token = "tok-" + secrets.token_hex(16)
        #: every Cookie / Authorization header value received, in order
        self.seen: list[tuple[str, str, str]] = []
        self.members_served = threading.Event()
        self.login_form_served = threading.Event()
        #: after this many member pages the logins lapse (None: never)
        self.expire_after: int | None = None
        self.member_pages = 0
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def _send(self, body: str, status: int = 200, headers: list[tuple[str, str]] | None = None) -> None:
                data = body.encode("utf-8")
                self.send_response(status)
                for k, v in headers or []:
                    self.send_header(k, v)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _sid(self) -> str | None:
                for part in (self.headers.get("Cookie") or "").split(";"):
                    k, _, v = part.strip().partition("=")
                    if k == "sid" and v in site.sids:
                        return v
                return None

            def _note(self) -> None:
                for h in ("Cookie", "Authorization"):
                    if self.headers.get(h):
                        site.seen.append((self.path, h, self.headers[h]))

            def do_GET(self) -> None:  # noqa: N802
                self._note()
                path = self.path.split("?")[0]
                if path == "/login":
                    site.login_form_served.set()
                    return self._send(LOGIN_PAGE)
                if path == "/members":
                    if self._sid() is None:
                        return self._send(LOGIN_PAGE)
                    site.member_pages += 1
                    if site.expire_after is not None and site.member_pages >= site.expire_after:
                        site.sids.clear()
                    site.members_served.set()
                    body = (f"<!DOCTYPE html><html><head><meta charset=utf-8><title>会员中心</title></head><body>"
                            f"<h1>{MARKER}</h1><p>我的订单 · 会员价 <span id=price>…</span></p><script>"
                            "fetch('/api/price', {headers: {Authorization: 'Bearer ' + localStorage.getItem('token')}})"
                            ".then(r => r.text()).then(t => document.getElementById('price').textContent = t);"
                            "</script></body></html>")
                    return self._send(body, headers=[("Set-Cookie", f"seen={site.page_cookie}; Path=/")])
                if path == "/api/price":
                    ok = self.headers.get("Authorization") == f"Bearer {site.api_token}"
                    data = ("¥ 88.00" if ok else "denied").encode("utf-8")
                    self.send_response(200 if ok else 401)
                    self.send_header("Content-Type", "text/plain; charset=utf-8")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return None
                if path == "/h5":  # a mobile page: laid out at the device's width
                    return self._send('<!DOCTYPE html><html><head><meta charset=utf-8><meta name=viewport '
                                      'content="width=device-width, initial-scale=1"><title>H5 商品</title></head>'
                                      '<body style="margin:0"><div style="height:1500px">H5 商品 price 12.00</div></body></html>')
                if path == "/public":
                    return self._send("<!DOCTYPE html><html><head><title>公开页</title></head><body><p>公开商品 price 12.00</p></body></html>")
                return self._send("not found", 404)

            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(n).decode("utf-8"))
                if form.get("user") == [USER] and form.get("password") == [PASSWORD]:
                    sid = site.new_sid()
                    self.send_response(303)
                    self.send_header("Set-Cookie", f"sid={sid}; Path=/; HttpOnly")
                    self.send_header("Location", "/members")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self._send(LOGIN_PAGE, 403)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def new_sid(self) -> str:
        sid = "sid-" + secrets.token_hex(16)
        self.sids.add(sid)
        return sid

    def start(self) -> LoginSite:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def storage_state(self, sid: str) -> dict[str, Any]:
        """What Playwright's storage_state() holds after a login here."""
        return {"cookies": [{"name": "sid", "value": sid, "domain": "127.0.0.1", "path": "/", "expires": -1,
                             "httpOnly": True, "secure": False, "sameSite": "Lax"}],
                "origins": [{"origin": self.url(""), "localStorage": [{"name": "token", "value": self.api_token}]}]}
