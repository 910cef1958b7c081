"""`evidence serve` in a real Chromium: log in, capture, attest, record, export, verify; and its refusals.

The server is the real CLI command on a free port over a real home with two
registered officers (own passphrases) and two web users bound to them. Every
refusal has its control: the same request with the missing piece put back
succeeds.
"""

from __future__ import annotations

import io
import json
import re
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import sync_playwright

from capture.browser import find_chromium

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "capture"))
sys.path.insert(0, str(ROOT / "tests" / "evidence"))
from capture_fixtures import load_serve  # noqa: E402
from web_fixtures import CASE, HOSTILE_TITLE, PASS, USERS, A, B, Client, Server, cli, make_home  # noqa: E402

pytestmark = pytest.mark.browser


def _hostile(h: Any) -> None:
    body = f"<!doctype html><html><head><meta charset=utf-8><title>{HOSTILE_TITLE}</title></head><body><h1>低价 ¥9.9</h1></body></html>"
    data = body.encode()
    h.send_response(200)
    h.send_header("Content-Type", "text/html; charset=utf-8")
    h.send_header("Content-Length", str(len(data)))
    h.end_headers()
    h.wfile.write(data)


@pytest.fixture(scope="module")
def web_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Any]]:
    home = tmp_path_factory.mktemp("web") / "home"
    make_home(home)
    shop = load_serve().ShopServer(routes={"/hostile": _hostile}).start()
    yield home, shop
    shop.stop()


@pytest.fixture(scope="module")
def server(web_home: tuple[Path, Any]) -> Iterator[Server]:
    s = Server(web_home[0])
    yield s
    errs = s.stop()
    assert "Traceback" not in errs, errs


def test_anonymous_requests_go_to_login(server: Server) -> None:
    c = Client(server.base)
    for path in ("/cases", f"/cases/{CASE}", "/exhibits/0", "/capture", "/verify", "/replay/0/http/x/"):
        status, headers, _ = c.request(path)
        assert status == 303 and headers["location"].startswith("/login"), (path, status)
    status, _, body = c.request("/api/jobs/x")
    assert status == 401 and json.loads(body)["error"]
    assert c.request("/static/app.css")[0] == 200
    status, headers, _ = c.request("/login")
    assert status == 200 and "default-src 'self'" in headers["content-security-policy"]
    # control: the same pages once logged in
    assert c.login("alice", USERS["alice"][0]) == 303
    cookie = next(ck for ck in c.jar if ck.name == "evidence_session")
    assert cookie.has_nonstandard_attr("HttpOnly") and cookie.get_nonstandard_attr("SameSite", "").lower() == "strict"
    assert c.request("/cases")[0] == 200


def test_post_without_csrf_token_is_refused(server: Server) -> None:
    c = Client(server.base)
    assert c.login("alice", USERS["alice"][0]) == 303
    form = {"urls": "http://127.0.0.1:1/none", "case": "CSRF-TEST"}
    assert c.request("/capture", form)[0] == 403
    assert c.request("/capture", {**form, "csrf": "forged"})[0] == 403
    assert c.request(f"/cases/{CASE}/export", {"csrf": ""})[0] == 403
    status, _, _ = c.request("/verify", b"--x\r\n", {"Content-Type": "multipart/form-data; boundary=x"})
    assert status == 403
    # a login form posted without its token
    anon = Client(server.base)
    assert anon.request("/login", {"username": "alice", "password": USERS["alice"][0]})[0] == 403
    # an unknown device or session is refused before any job starts
    for bad, word in (({"device": "Nokia 3310 Imaginary"}, b"device"), ({"session": "nobody"}, b"session")):
        status, _, body = c.request("/capture", {**form, **bad, "csrf": c.csrf()})
        assert status == 400 and word in body.lower(), (status, body[-300:])
    # control: with the token the capture is accepted (it fails later: nothing listens there)
    status, headers, _ = c.request("/capture", {**form, "csrf": c.csrf()})
    assert status == 303 and headers["location"].startswith("/jobs/")


def test_failed_logins_are_rate_limited(web_home: tuple[Path, Any]) -> None:
    s = Server(web_home[0])
    try:
        c = Client(s.base)
        assert c.login("bob", "wrong password") == 401
        for _ in range(4):
            assert c.login("bob", "wrong password") == 401
        # the right password no longer helps for a while
        assert c.login("bob", USERS["bob"][0]) == 429
        # the limit is per address too: from the same address, guessing another name is refused
        assert Client(s.base).login("alice", USERS["alice"][0]) == 429
    finally:
        s.stop()
    s = Server(web_home[0])
    try:  # control: a fresh server (limits in memory) lets bob in at once
        assert Client(s.base).login("bob", USERS["bob"][0]) == 303
    finally:
        s.stop()


def _tampered(src: Path, dest: Path) -> str:
    """A copy with one byte of one screenshot changed (ZIP rewritten as a forger would)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w") as zout:
        victim = next(n for n in zin.namelist() if n.endswith(".png"))
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == victim:
                data = data[:-20] + bytes([data[-20] ^ 1]) + data[-19:]
            zout.writestr(info, data)
    return victim


@pytest.mark.slow
def test_whole_workflow_in_a_real_browser(server: Server, web_home: tuple[Path, Any], tmp_path: Path) -> None:
    home, shop = web_home
    dialogs: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(find_chromium()), args=["--no-sandbox"])
        page = browser.new_context(accept_downloads=True).new_page()
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(server.base + "/cases")
        assert page.url.startswith(server.base + "/login")
        page.fill("input[name=username]", "alice")
        page.fill("input[name=password]", "not her password")
        page.click("button[type=submit]")
        assert "wrong user name or password" in page.inner_text("#error")
        page.fill("input[name=username]", "alice")
        page.fill("input[name=password]", USERS["alice"][0])
        page.click("button[type=submit]")
        page.wait_for_url(server.base + "/cases")

        # capture the example shop and a hostile page from the form, co-signed by alice's officer
        page.goto(server.base + f"/capture?case={CASE}")
        hostile_url = shop.url("/hostile") + '?q="><img/src=x/onerror=window.__xss=3><script>window.__xss=4</script>'
        page.fill("textarea[name=urls]", shop.url("/") + "\n" + hostile_url)
        page.fill("input[name=passphrase]", PASS[A])
        page.fill("input[name=proves]", "销售假冒商品")
        page.click("#capture-form button[type=submit]")
        page.wait_for_selector("#exhibit-link", timeout=120_000)
        first = int(page.inner_text("#exhibit-link").split()[-1])
        page.click("#exhibit-link")
        page.wait_for_selector("img.zoomable")
        # every screenshot loads (a broken image never reaches a natural width)
        page.wait_for_function("Array.from(document.querySelectorAll('img.zoomable')).every(i => i.complete && i.naturalWidth > 100)",
                               timeout=30_000)
        assert A in page.inner_text("#attestations")

        # the hostile page is the next exhibit: wait until it is sealed, then look at it everywhere
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            page.goto(server.base + f"/cases/{CASE}")
            if page.locator(".exhibit").count() >= 2:
                break
            time.sleep(1)
        assert HOSTILE_TITLE in page.inner_text(".exhibits")
        assert "<b>bold</b>" in page.inner_text(".facts")
        hostile = int(page.locator(".exhibit", has_text="秒杀").get_attribute("href").rsplit("/", 1)[1])
        page.goto(server.base + f"/exhibits/{hostile}")
        assert page.inner_text("#page-title") == HOSTILE_TITLE
        assert "onerror" in page.inner_text("#page-url")
        page.goto(server.base + "/cases?q=hostile")
        assert page.locator("table.list tbody tr").count() == 1
        for path in ("/cases", f"/cases/{CASE}", f"/exhibits/{hostile}"):
            page.goto(server.base + path)
            page.wait_for_timeout(300)
            assert page.evaluate("window.__xss") is None, path
            assert page.locator("img[src=x]").count() == 0
        # the replay frame holds the archived page, scripts off
        frame = page.frame_locator("iframe.replay")
        assert "低价" in frame.locator("h1").inner_text()
        assert not dialogs

        # extraction record as DOCX
        page.goto(server.base + f"/exhibits/{first}")
        with page.expect_download() as dl:
            page.click("#record-docx")
        docx = tmp_path / "record.docx"
        dl.value.save_as(docx)
        assert zipfile.is_zipfile(docx) and "word/document.xml" in zipfile.ZipFile(docx).namelist()

        # bob attests as his own officer; a wrong passphrase is refused, nothing appended
        page.click("header button[type=submit]")
        page.wait_for_url(re.compile(r".*/login"))
        page.fill("input[name=username]", "bob")
        page.fill("input[name=password]", USERS["bob"][0])
        page.click("button[type=submit]")
        page.wait_for_url(server.base + "/cases")
        before = len(json.loads(cli(home, "log", "--json").stdout)["records"])
        page.goto(server.base + f"/exhibits/{first}")
        page.fill("#attest-form input[name=passphrase]", "wrong")
        page.click("#attest-form button[type=submit]")
        assert page.locator("#error").count() == 1
        assert len(json.loads(cli(home, "log", "--json").stdout)["records"]) == before
        # bob cannot attest as alice's officer, even with her passphrase, by editing the form
        page.goto(server.base + f"/exhibits/{first}")
        page.evaluate(f"""() => {{ const f = document.getElementById('attest-form');
            const i = document.createElement('input'); i.name = 'officer'; i.value = {json.dumps(A)}; f.append(i); }}""")
        page.fill("#attest-form input[name=passphrase]", PASS[A])
        page.click("#attest-form button[type=submit]")
        assert f"only as {B}" in page.inner_text("#error")
        assert len(json.loads(cli(home, "log", "--json").stdout)["records"]) == before
        # control: his own passphrase
        page.goto(server.base + f"/exhibits/{first}")
        page.fill("#attest-form input[name=passphrase]", PASS[B])
        page.click("#attest-form button[type=submit]")
        page.wait_for_selector("#message")
        assert B in page.inner_text("#attestations") and A in page.inner_text("#attestations")

        # export the case file from the case page
        page.goto(server.base + f"/cases/{CASE}")
        with page.expect_download(timeout=120_000) as dl:
            page.click("#export")
        case_file = tmp_path / "case.wacz"
        dl.value.save_as(case_file)
        assert cli(home, "verify", str(case_file), check=0).returncode == 0

        # upload it on /verify: VALID; a tampered copy: INVALID naming the damaged file
        page.goto(server.base + "/verify")
        page.set_input_files("input[type=file]", str(case_file))
        page.click("#verify-form button[type=submit]")
        assert page.inner_text("#verdict") == "VALID / 有效"
        with page.expect_download() as dl:
            page.click("#report-link")
        report = Path(dl.value.path()).read_text("utf-8")
        assert CASE in report and "内容完整且自洽" in report  # intact; keys self-declared (no --trust on the web)
        # pinning the log key the sender published: VALID with keys pinned; a path instead of a key
        # is refused as a key (the server reads no file of its own for it)
        vkey = next((home / "keys").glob("*.vkey")).read_text().strip()
        for pinned, expect in ((vkey, "keys pinned"), (str(home / "keys"), "UNUSABLE")):
            page.goto(server.base + "/verify")
            page.set_input_files("input[type=file]", str(case_file))
            page.fill("textarea[name=trust]", pinned)
            page.click("#verify-form button[type=submit]")
            assert expect in page.inner_text("main"), pinned
        bad = tmp_path / "tampered.wacz"
        victim = _tampered(case_file, bad)
        page.goto(server.base + "/verify")
        page.set_input_files("input[type=file]", str(bad))
        page.click("#verify-form button[type=submit]")
        assert page.inner_text("#verdict") == "INVALID / 无效"
        assert victim in page.inner_text("#first-failure")
        # not a zip at all: the verifier's own refusal, on the page
        junk = tmp_path / "junk.wacz"
        junk.write_bytes(b"this is not a zip file" * 10)
        page.goto(server.base + "/verify")
        page.set_input_files("input[type=file]", str(junk))
        page.click("#verify-form button[type=submit]")
        assert page.inner_text("#verdict") == "UNUSABLE / 无法校验" and page.inner_text("#error")
        assert not dialogs
        browser.close()


def test_upload_over_the_limit_is_refused_without_keeping_it(web_home: tuple[Path, Any], tmp_path: Path) -> None:
    s = Server(web_home[0], "--upload-limit", "1000")
    try:
        c = Client(s.base)
        assert c.login("alice", USERS["alice"][0]) == 303
        token = c.csrf()

        def upload(size: int) -> tuple[int, bytes]:
            buf = io.BytesIO()
            buf.write(b"--BOUND\r\nContent-Disposition: form-data; name=\"case_file\"; filename=\"c.wacz\"\r\n"
                      b"Content-Type: application/octet-stream\r\n\r\n" + b"x" * size + b"\r\n--BOUND--\r\n")
            status, _, body = c.request(f"/verify?csrf={token}", buf.getvalue(),
                                        {"Content-Type": "multipart/form-data; boundary=BOUND"})
            return status, body

        status, body = upload(50_000)
        assert status == 413 and b"larger than the limit" in body
        # control: a small (bad) file is read and refused by the verifier, shown on the page
        status, body = upload(500)
        assert status == 400 and b"UNUSABLE" in body
        tmp_left = [p for p in Path("/tmp").glob("evidence-serve-*/verify-*")]
        assert not tmp_left, tmp_left
    finally:
        s.stop()


def test_user_commands_refuse_bad_input(web_home: tuple[Path, Any]) -> None:
    home = web_home[0]
    assert "exists already" in cli(home, "user", "add", "alice", "--password-stdin", stdin="another-password\n", check=2).stderr
    assert "officer" in cli(home, "user", "add", "carol", "--password-stdin", "--officer", "nobody", stdin="carol-password\n", check=2).stderr
    assert "characters" in cli(home, "user", "add", "carol", "--password-stdin", stdin="short\n", check=2).stderr
    assert "--password-stdin" in cli(home, "user", "add", "carol", check=2).stderr
    users = json.loads(cli(home, "user", "list", "--json").stdout)["users"]
    assert [u["name"] for u in users] == ["alice", "bob"]
    assert "hash" not in json.dumps(users)
    stored = json.loads((home / "users.json").read_text())
    assert stored["users"]["alice"]["hash"].startswith("$argon2id$")
    assert oct((home / "users.json").stat().st_mode & 0o777) == "0o600"
