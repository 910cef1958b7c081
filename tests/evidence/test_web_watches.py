"""`/watches` in a real Chromium against a real `evidence serve`: add from the form, probe rounds by
`evidence watch run`, the history from the signed records (first sight, old -> new), pause, resume,
remove; and the refusals (anonymous, no CSRF token, bad input, hostile text), each with its control."""

from __future__ import annotations

import html
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, sync_playwright

from capture.browser import find_chromium

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "evidence"))
from watch_site import Site, item  # noqa: E402
from web_fixtures import USERS, Client, Server, cli, make_home  # noqa: E402

pytestmark = pytest.mark.browser

CASE_W = "SAMR-WATCH-1"
XSS = '<script>window.__xss=1</script>"><img src=x onerror="window.__xss=2">'
XSS_QUERY = '?q="><img/src=x/onerror=window.__xss=3><script>window.__xss=4</script>'


class _Pages(dict):
    """Site pages; any path under /hostile answers the hostile page (the browser re-encodes its query)."""

    def get(self, key: Any, default: Any = None) -> Any:
        if isinstance(key, str) and key.startswith("/hostile"):
            return super().get("/hostile", default)
        return super().get(key, default)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Site, Server]]:
    home = tmp_path_factory.mktemp("webw") / "home"
    make_home(home, CASE_W)
    site = Site()
    site.pages = _Pages()
    site.set("/item", item(price="¥99.00"))
    body = (f"<html><head><title>{html.escape(XSS)}</title></head><body><h1 class='t'>{html.escape(XSS)}</h1>"
            "<span class='price'>¥10.00</span></body></html>")
    site.set("/hostile", body)
    server = Server(home)
    yield home, site, server
    errs = server.stop()
    site.stop()
    assert "Traceback" not in errs, errs


def watch_list(home: Path) -> list[dict[str, Any]]:
    return json.loads(cli(home, "watch", "list", "--json").stdout)["watches"]


def probe_round(home: Path) -> dict[str, Any]:
    """One scheduler round, as an operator runs it: every due watch probed, its events captured."""
    return json.loads(cli(home, "watch", "run", "--for", "5s", "--json").stdout)


def login(page: Page, base: str, user: str = "alice") -> None:
    page.goto(base + "/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", USERS[user][0])
    page.click("button[type=submit]")
    page.wait_for_url(base + "/cases")


def no_script_ran(page: Page) -> None:
    page.wait_for_timeout(300)
    assert page.evaluate("window.__xss") is None, page.url
    assert page.locator("img[src=x]").count() == 0, page.url


def test_anonymous_and_forged_requests_are_refused(env: tuple[Path, Site, Server]) -> None:
    home, site, server = env
    anon = Client(server.base)
    for path in ("/watches", "/watches/1", "/livestream", "/livestream/x"):
        status, headers, _ = anon.request(path)
        assert status == 303 and headers["location"].startswith("/login"), (path, status)
    for path in ("/api/livestream/x",):
        status, _, body = anon.request(path)
        assert status == 401 and json.loads(body)["error"], path
    assert anon.request("/watches", {"url": site.url("/item"), "case": CASE_W, "every": "1h"})[0] == 303
    assert watch_list(home) == []  # the anonymous POST went to the login page, nothing added

    c = Client(server.base)
    assert c.login("alice", USERS["alice"][0]) == 303
    assert c.request("/watches")[0] == 200  # control: logged in
    form = {"url": site.url("/item?csrf-test"), "case": CASE_W, "every": "1h"}
    assert c.request("/watches", form)[0] == 403
    assert c.request("/watches", {**form, "csrf": "forged"})[0] == 403
    assert watch_list(home) == []
    # not http(s), a bad selector: one line on the form, nothing added
    for bad, words in (({"url": "ftp://shop.example/item"}, b"http:// or https://"),
                       ({"fields": "price=..[["}, b"not a valid CSS selector"),
                       ({"fields": "price"}, b"NAME=CSS")):
        status, _, body = c.request("/watches", {**form, **bad, "csrf": c.csrf()})
        assert status == 400 and words in body, (bad, status)
        assert body.count(b'id="error"') == 1
    assert watch_list(home) == []
    # control: the same form with its token adds the watch
    status, headers, _ = c.request("/watches", {**form, "fields": "price=.price", "csrf": c.csrf()})
    assert status == 303 and "added" in headers["location"]
    (w,) = watch_list(home)
    assert w["url"] == form["url"] and w["settings"]["fields"] == {"price": ".price"}
    # pause without a token: refused, still active; with it: paused
    assert c.request(f"/watches/{w['id']}/pause", {})[0] == 403
    assert watch_list(home)[0]["state"] == "active"
    assert c.request(f"/watches/{w['id']}/pause", {"csrf": c.csrf()})[0] == 303
    assert watch_list(home)[0]["state"] == "paused"
    assert c.request(f"/watches/{w['id']}/remove", {"csrf": ""})[0] == 403
    assert len(watch_list(home)) == 1
    assert c.request(f"/watches/{w['id']}/remove", {"csrf": c.csrf()})[0] == 303
    assert watch_list(home) == []
    assert c.request(f"/watches/{w['id']}/remove", {"csrf": c.csrf()})[0] == 400  # gone: "no watch N"


@pytest.mark.slow
def test_add_probe_history_pause_resume_remove_in_a_real_browser(env: tuple[Path, Site, Server]) -> None:
    home, site, server = env
    site.set("/item", item(price="¥99.00"))
    url = site.url("/item")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(find_chromium()), args=["--no-sandbox"])
        page = browser.new_page()
        login(page, server.base)
        page.goto(server.base + "/watches")
        before = len(watch_list(home))

        # a bad duration: one line on the form, the typed values kept, nothing added
        page.fill("#watch-form input[name=url]", url)
        page.fill("#watch-form input[name=case]", CASE_W)
        page.fill("#watch-form input[name=every]", "ten minutes")
        page.fill("#watch-form textarea[name=fields]", "title=.t\nprice=.price")
        page.click("#watch-form button[type=submit]")
        assert "--every must be" in page.inner_text("#error")
        assert page.input_value("#watch-form input[name=url]") == url
        assert len(watch_list(home)) == before
        # control: a good one is added
        page.fill("#watch-form input[name=every]", "1h")
        page.click("#watch-form button[type=submit]")
        assert "added" in page.inner_text("#message")
        w = next(x for x in watch_list(home) if x["url"] == url)
        row = page.locator(f"tr.watch[data-id='{w['id']}']")
        assert row.locator(".state").inner_text() == "active" and CASE_W in row.inner_text()

        # first probe round: first sight, sealed as an exhibit
        first = probe_round(home)
        assert first["probes"] >= 1 and first["exhibits"] >= 1, first
        site.set("/item", item(price="¥59.00"))
        # pause and resume from the buttons; resuming makes the next probe due now
        page.goto(server.base + "/watches")
        row.locator("button.pause").click()
        assert "paused" in page.inner_text("#message")
        assert row.locator(".state").inner_text() == "paused"
        assert probe_round(home)["probes"] == 0  # a paused watch is not probed
        row.locator("button.resume").click()
        assert row.locator(".state").inner_text() == "active"
        second = probe_round(home)
        assert second["probes"] == 1 and second["events"] >= 1, second

        # the history from the signed records: first sight, then the change old -> new, each with its exhibit
        page.goto(server.base + "/watches")
        assert "change" in page.inner_text("#events") and "¥99.00 -> ¥59.00" in page.inner_text("#events")
        page.click(f"tr.watch[data-id='{w['id']}'] a.watch-url")
        page.wait_for_url(server.base + f"/watches/{w['id']}")
        kinds = page.locator("#timeline tr.event td.kind").all_inner_texts()
        assert kinds[:2] == ["first-seen", "change"], kinds
        assert "price=¥99.00" in page.inner_text("#timeline tr.first-seen")
        change = page.locator("#timeline tr.change")
        assert change.locator("del.old").inner_text() == "¥99.00" and change.locator("ins.new").inner_text() == "¥59.00"
        assert page.locator("#timeline a.exhibit-link").count() == 2
        assert page.inner_text("#watch-title") == "好货 A"
        change.locator("a.exhibit-link").click()
        page.wait_for_selector("#page-url")
        assert page.inner_text("#page-url") == url

        # the case page's records timeline carries the probes and their events
        page.goto(server.base + f"/cases/{CASE_W}")
        assert page.locator(".probe").count() >= 2
        assert "¥99.00 -> ¥59.00" in page.inner_text(".timeline")
        assert "change" in page.inner_text("#case-watch-events")

        # remove: the row goes, its signed history stays
        page.goto(server.base + "/watches")
        page.locator(f"tr.watch[data-id='{w['id']}'] button.remove").click()
        assert "removed" in page.inner_text("#message")
        assert page.locator(f"tr.watch[data-id='{w['id']}']").count() == 0
        assert not any(x["id"] == w["id"] for x in watch_list(home))
        page.goto(server.base + f"/watches/{w['id']}")
        assert "removed" in page.inner_text("#watch-state")
        assert page.locator("#timeline tr.change").count() == 1
        browser.close()


@pytest.mark.slow
def test_hostile_url_title_and_field_are_shown_as_text(env: tuple[Path, Site, Server]) -> None:
    home, site, server = env
    url = site.url("/hostile" + XSS_QUERY)
    dialogs: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(find_chromium()), args=["--no-sandbox"])
        page = browser.new_page()
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        login(page, server.base)
        page.goto(server.base + "/watches")
        page.fill("#watch-form input[name=url]", url)
        page.fill("#watch-form input[name=case]", CASE_W)
        page.fill("#watch-form input[name=every]", "1h")
        page.fill("#watch-form textarea[name=fields]", "t=.t")
        page.fill("#watch-form textarea[name=keywords]", XSS)
        page.click("#watch-form button[type=submit]")
        assert "added" in page.inner_text("#message")
        w = next(x for x in watch_list(home) if x["url"] == url)
        assert probe_round(home)["probes"] >= 1

        page.goto(server.base + "/watches")
        assert "<script>window.__xss=4</script>" in page.inner_text(f"tr.watch[data-id='{w['id']}'] .watch-url")
        no_script_ran(page)
        page.goto(server.base + f"/watches/{w['id']}")
        assert page.inner_text("#watch-title") == XSS
        assert page.inner_text("#watch-fields .value") == XSS
        assert "onerror=window.__xss=3" in page.inner_text("#watch-url")
        assert XSS in page.inner_text("#timeline")  # first sight names the field value
        no_script_ran(page)
        page.goto(server.base + f"/cases/{CASE_W}")
        assert XSS in page.inner_text(".timeline")
        no_script_ran(page)
        # the bad input path shows the typed hostile URL as text too
        page.goto(server.base + "/watches")
        page.fill("#watch-form input[name=url]", "javascript:" + XSS)
        page.fill("#watch-form input[name=case]", CASE_W)
        page.click("#watch-form button[type=submit]")
        assert "http:// or https://" in page.inner_text("#error")
        no_script_ran(page)
        assert not dialogs
        browser.close()
