"""`/livestream` in a real Chromium against a real `evidence serve`, recording a real ffmpeg HLS
source: the window count rises, the latest frames load, the stop button seals the open window
and appends the end record as Ctrl-C does, the windows are exhibits, and `evidence audit` is OK.
The refusals (anonymous, no CSRF token, bad input, a frame that is not the capture's) have controls."""

from __future__ import annotations

import hashlib
import json
import re
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import sync_playwright

from capture.browser import find_chromium

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "evidence"))
sys.path.insert(0, str(ROOT / "tests" / "capture"))
from live_sources import VIDEO, X264, FileServer, ffmpeg, stop, wait_for  # noqa: E402
from web_fixtures import USERS, Client, Server, cli, make_home  # noqa: E402

pytestmark = pytest.mark.browser

CASE_L = "SAMR-LIVE-1"
#: long enough that, on a loaded machine, the stop comes before the stream's own end
SOURCE_SECONDS = 20


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Server]]:
    home = tmp_path_factory.mktemp("webl") / "home"
    make_home(home, CASE_L)
    server = Server(home)
    yield home, server
    errs = server.stop()
    assert "Traceback" not in errs, errs


@pytest.fixture
def hls(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "hls"
    root.mkdir()
    p = ffmpeg(
        "-re", *VIDEO, "-t", str(SOURCE_SECONDS), *X264,
        "-f", "hls", "-hls_time", "1", "-hls_list_size", "6", "-hls_flags", "temp_file",
        "-hls_segment_filename", str(root / "seg-%05d.ts"), str(root / "index.m3u8"),
    )  # fmt: skip
    files = FileServer(root).start()
    try:
        wait_for(root / "index.m3u8", text="#EXTINF")
        yield files.base + "/index.m3u8"
    finally:
        stop(p)
        files.stop()


def status(c: Client, run: str) -> dict[str, Any]:
    code, _, body = c.request(f"/api/livestream/{run}")
    assert code == 200, (code, body)
    return json.loads(body)


def test_anonymous_requests_are_refused(env: tuple[Path, Server]) -> None:
    _, server = env
    anon = Client(server.base)
    for path in ("/livestream", "/livestream/x", "/livestream/x/frames/frame-0000001.png"):
        code, headers, _ = anon.request(path)
        assert code == 303 and headers["location"].startswith("/login"), path
    code, _, body = anon.request("/api/livestream/x")
    assert code == 401 and json.loads(body)["error"]
    assert anon.request("/livestream", {"url": "http://127.0.0.1:1/x.m3u8", "case": CASE_L})[0] == 303
    # control: logged in, the pages answer (an unknown capture is a 404, not a login)
    c = Client(server.base)
    assert c.login("alice", USERS["alice"][0]) == 303
    assert c.request("/livestream")[0] == 200
    assert c.request("/api/livestream/x")[0] == 404


@pytest.mark.slow
def test_start_watch_stop_and_audit_in_a_real_browser(env: tuple[Path, Server], hls: str) -> None:
    home, server = env
    c = Client(server.base)
    assert c.login("alice", USERS["alice"][0]) == 303
    form = {"url": hls, "case": CASE_L, "duration": "120", "window": "2", "frame_interval": "1"}
    # no token, a bad duration, a mode that does not exist: refused, nothing started
    assert c.request("/livestream", form)[0] == 403
    for bad, words in (({"duration": "soon"}, b"number of seconds"), ({"window": "-1"}, b"window length"),
                       ({"frame_interval": "0.001"}, b"frame interval"),
                       ({"mode": "telepathy"}, b"mode"), ({"url": "file:///etc/passwd"}, b"http")):
        code, _, body = c.request("/livestream", {**form, **bad, "csrf": c.csrf()})
        assert code == 400 and words in body.lower(), (bad, code, body[-300:])
        assert b"--" not in body.split(b"<main", 1)[-1], (bad, body[-300:])  # the form's words, not the CLI's flags
    _, _, page_html = c.request("/livestream")
    assert b"none since the server started" in page_html

    dialogs: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(find_chromium()), args=["--no-sandbox"])
        page = browser.new_page()
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(server.base + "/login")
        page.fill("input[name=username]", "alice")
        page.fill("input[name=password]", USERS["alice"][0])
        page.click("button[type=submit]")
        page.wait_for_url(server.base + "/cases")
        page.goto(server.base + "/livestream")
        for name, value in form.items():
            page.fill(f"#live-form input[name={name}]", value)
        page.click("#live-form button[type=submit]")
        page.wait_for_url(re.compile(r".*/livestream/[0-9a-f]{32}$"))
        run = page.url.rsplit("/", 1)[1]

        # the window count rises as windows are sealed, and the latest frames load as images
        page.wait_for_function("() => Number(document.getElementById('window-count').textContent) >= 2", timeout=120_000)
        page.wait_for_function(
            "() => Array.from(document.querySelectorAll('#frames img')).some(i => i.complete && i.naturalWidth > 0)",
            timeout=60_000)
        assert page.inner_text("#live-state") == "recording"
        st = status(c, run)
        assert st["window_count"] >= 2 and st["latest_frames"], st

        # a frame of this capture is served by name; anything else is not
        name = st["latest_frames"][-1]
        code, headers, png = c.request(f"/livestream/{run}/frames/{urllib.parse.quote(name)}")
        assert code == 200 and headers["content-type"] == "image/png" and png.startswith(b"\x89PNG")
        assert headers["etag"] == f'"{hashlib.sha256(png).hexdigest()}"'
        code, headers, thumb = c.request(f"/livestream/{run}/frames/{urllib.parse.quote(name)}?thumb=1")
        assert code == 200 and headers["content-type"] == "image/jpeg" and thumb.startswith(b"\xff\xd8")
        assert headers["x-frame-sha256"] == hashlib.sha256(png).hexdigest()
        for other in ("frame-9999999.png", "..%2F..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "index.m3u8"):
            assert c.request(f"/livestream/{run}/frames/{other}")[0] == 404, other
        assert c.request(f"/livestream/{'0' * 32}/frames/{urllib.parse.quote(name)}")[0] == 404

        # a colleague who neither started it nor is one of its officers may not stop it (and sees no button)
        bob = Client(server.base)
        assert bob.login("bob", USERS["bob"][0]) == 303
        code, _, body = bob.request(f"/livestream/{run}/stop", {"csrf": bob.csrf()})
        assert code == 403 and b"started by alice" in body, (code, body[-300:])
        assert b'id="stop"' not in bob.request(f"/livestream/{run}")[2]
        assert status(c, run)["state"] == "recording"
        # stop without a token: refused, still recording; the button (with its token) stops it
        assert c.request(f"/livestream/{run}/stop", {})[0] == 403
        assert status(c, run)["state"] == "recording"
        sealed_before = status(c, run)["window_count"]
        page.click("#stop")
        page.wait_for_function("() => document.getElementById('live-state').textContent === 'done'", timeout=120_000)
        st = status(c, run)
        assert st["end_reason"] == "interrupted" and st["end_index"] is not None, st
        assert st["window_count"] >= sealed_before
        links = page.locator("#windows a.window-link")
        deadline = time.monotonic() + 30
        while links.count() != st["window_count"] and time.monotonic() < deadline:
            page.wait_for_timeout(300)
        assert links.count() == st["window_count"]
        assert page.locator("#stop").count() == 0
        assert "end record" in page.inner_text("#live-result")

        # the windows are exhibits of the case; the last one logs the stop as the CLI's Ctrl-C does
        links.last.click()
        page.wait_for_url(re.compile(r".*/exhibits/\d+$"))
        last = int(page.url.rsplit("/", 1)[1])
        assert last == st["windows"][-1]
        page.goto(server.base + f"/cases/{CASE_L}")
        assert "livestream" in page.inner_text(".timeline") and "interrupted" in page.inner_text(".timeline")
        assert not dialogs
        browser.close()

    # a sealed frame is still served (from the artifact store now) and the ledger audits clean
    code, _, png2 = c.request(f"/livestream/{run}/frames/{urllib.parse.quote(name)}")
    assert code == 200 and png2 == png
    log = json.loads(cli(home, "log", "--json").stdout)["records"]
    end = next(r for r in log if r["index"] == st["end_index"])
    assert end["kind"] == "livestream-end" and end["payload"]["windows"] == st["windows"]
    assert end["payload"]["ended_by"] == "interrupted"
    cli(home, "audit", check=0)


@pytest.mark.slow
def test_stopping_the_server_seals_its_livestream_captures(env: tuple[Path, Server], hls: str) -> None:
    home, _ = env
    s = Server(home)
    try:
        c = Client(s.base)
        assert c.login("alice", USERS["alice"][0]) == 303
        code, headers, _ = c.request("/livestream", {"url": hls, "case": CASE_L, "duration": "300", "window": "2",
                                                     "csrf": c.csrf()})
        assert code == 303
        run = headers["location"].rsplit("/", 1)[1]
        deadline = time.monotonic() + 120
        while status(c, run)["window_count"] < 1 and time.monotonic() < deadline:
            time.sleep(0.5)
        st = status(c, run)
        assert st["state"] == "recording" and st["window_count"] >= 1, st
    finally:
        errs = s.stop()  # SIGTERM, as a service manager stops it
    assert "Traceback" not in errs, errs
    log = json.loads(cli(home, "log", "--json").stdout)["records"]
    ends = [r for r in log if r["kind"] == "livestream-end" and r["payload"]["url"] == hls]
    assert len(ends) == 1, ends
    end = ends[0]["payload"]
    assert end["ended_by"] == "interrupted" and len(end["windows"]) >= st["window_count"], end
    cli(home, "audit", check=0)
