"""What the web tests share: a real `evidence serve` on a free port, a cookie-keeping client, the CLI.

Imported by tests/evidence/test_web*.py (each keeps its own fixtures, so a module's
server and home are its own).
"""

from __future__ import annotations

import http.cookiejar
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

A, B = "李伟 Li Wei", "王芳 Wang Fang"
PASS = {A: "li-wei-own-pass", B: "wang-fang-own-pass"}
USERS = {"alice": ("alice-password-1", A), "bob": ("bob-password-22", B)}
HOME_PW = "home-pw"
CASE = "SAMR-WEB-1"
HOSTILE_TITLE = "<script>window.__xss=1</script>\"><img src=x onerror=\"window.__xss=2\">秒杀"


def _env(home: Path, **extra: str) -> dict[str, str]:
    e = dict(os.environ, EVIDENCE_HOME=str(home), EVIDENCE_KEY_PASSPHRASE=HOME_PW, COLUMNS="300")
    e.pop("EVIDENCE_OFFICER_PASSPHRASE", None)
    e.pop("EVIDENCE_OFFICER_PASSPHRASE_FILE", None)
    e.update(extra)
    return e


def cli(home: Path, *args: str, stdin: str | None = None, env: dict[str, str] | None = None, check: int | None = 0) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "evidence.cli", *args], input=stdin, capture_output=True, text=True,
                       env={**_env(home), **(env or {})}, timeout=300)
    assert "Traceback" not in p.stderr + p.stdout, p.stderr
    if check is not None:
        assert p.returncode == check, (p.returncode, p.stdout, p.stderr)
    return p


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, home: Path, *extra: str):
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "evidence.cli", "serve", "--port", str(self.port), *extra],
                                     env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise AssertionError(self.proc.stderr.read()) from None
                time.sleep(0.1)
        raise AssertionError("server did not start")

    def stop(self) -> str:
        self.proc.terminate()
        try:
            _, errs = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, errs = self.proc.communicate()
        return errs


class Client:
    """A cookie-keeping HTTP client that does not follow redirects."""

    def __init__(self, base: str):
        self.base = base
        self.jar = http.cookiejar.CookieJar()

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *a: Any, **k: Any) -> None:
                return None

        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), NoRedirect)

    def request(self, path: str, data: dict[str, str] | bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        body = urllib.parse.urlencode(data).encode() if isinstance(data, dict) else data
        req = urllib.request.Request(self.base + path, data=body, headers=headers or {})
        try:
            with self.opener.open(req, timeout=60) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def login(self, user: str, password: str) -> int:
        _, _, page = self.request("/login")
        token = re.search(rb'name="csrf" value="([^"]+)"', page).group(1).decode()
        status, _, _ = self.request("/login", {"csrf": token, "username": user, "password": password, "next": ""})
        return status

    def csrf(self) -> str:
        _, _, page = self.request("/capture")
        return re.search(rb'name="csrf" value="([^"]+)"', page).group(1).decode()


def make_home(home: Path, case: str = CASE) -> None:
    """A home with the two officers (own passphrases), case facts and the two web users bound to them."""
    cli(home, "init")
    for name, badge in ((A, "31010012345"), (B, "31010067890")):
        cli(home, "key", "add", "--officer", name, "--badge", badge, "--unit", "市场监管局",
            env={"EVIDENCE_OFFICER_PASSPHRASE": PASS[name]})
    cli(home, "case", "set", case, "--cause", "销售假冒商品", "--party", "某旗舰店 <b>bold</b>")
    for user, (pw, officer) in USERS.items():
        cli(home, "user", "add", user, "--password-stdin", "--officer", officer, stdin=pw + "\n")
