"""Hostile and broken pages: each is captured within bounds, or fails cleanly."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from capture_fixtures import BIG_SIZE, big_page_sha256
from warcio.archiveiterator import ArchiveIterator

from ledger.errors import CaptureError

pytestmark = pytest.mark.browser
BIN = Path(sys.executable).parent


def warc_check(pc) -> None:
    r = subprocess.run(
        [str(BIN / "warcio"), "check", str(pc.artifact("warc").path)], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stdout + r.stderr


def response_headers(pc, url):
    with open(pc.artifact("warc").path, "rb") as f:
        for rec in ArchiveIterator(f):
            if rec.rec_type == "response" and rec.rec_headers.get_header("WARC-Target-URI") == url:
                return rec.rec_headers, rec.http_headers
    raise AssertionError(f"no response record for {url}")


def test_never_ending_document(browser, shop, tmp_path):
    t = time.monotonic()
    pc = browser.capture(shop.url("/never-ending"), tmp_path, load_timeout=2, settle_timeout=1)
    assert time.monotonic() - t < 15
    assert pc.info["load_finished"] is False
    assert any("load did not finish within 2 s" in w for w in pc.warnings)
    assert pc.info["title"] == "永不结束"
    warc, http = response_headers(pc, shop.url("/never-ending"))
    assert warc.get_header("WARC-Truncated") == "time"  # what arrived is kept, and marked cut short
    warc_check(pc)


def test_stalled_subresource(browser, shop, tmp_path):
    pc = browser.capture(shop.url("/stalled-image"), tmp_path, load_timeout=2, settle_timeout=1)
    assert pc.info["status"] == 200 and pc.info["load_finished"] is False
    warc, _ = response_headers(pc, shop.url("/stall.png"))
    assert warc.get_header("WARC-Truncated") == "time"
    warc_check(pc)


def test_redirect_loop(browser, shop, tmp_path):
    pc = browser.capture(shop.url("/loop-a"), tmp_path, mhtml=False)
    assert any("redirect loop" in w for w in pc.warnings)
    assert len(pc.info["redirects"]) >= 19
    assert {r["status"] for r in pc.info["redirects"]} == {302}
    warc_check(pc)


def test_infinite_scroll_is_bounded(browser, shop, tmp_path):
    t = time.monotonic()
    pc = browser.capture(shop.url("/infinite"), tmp_path, max_scroll_steps=8, mhtml=False)
    assert time.monotonic() - t < 20
    assert any("scrolling stopped after 8 steps" in w for w in pc.warnings)
    net = json.loads(pc.artifact("network").path.read_text())
    assert net["scroll"]["steps"] == 8 and net["scroll"]["grew"] >= 1


def test_js_dialogs(browser, shop, tmp_path):
    pc = browser.capture(shop.url("/dialogs"), tmp_path, mhtml=False)
    assert [(d["type"], d["message"]) for d in pc.info["dialogs"]] == [
        ("alert", "恭喜您中奖了！"),
        ("confirm", "是否继续？"),
    ]
    assert pc.info["title"] == "弹窗" and pc.info["load_finished"] is True


def test_popup_is_recorded_and_closed(browser, shop, tmp_path):
    pc = browser.capture(shop.url("/popup"), tmp_path, mhtml=False)
    assert pc.info["final_url"] == shop.url("/popup") and pc.info["title"] == "主页面"
    assert pc.info["popups"] == [shop.url("/item/123")]
    assert any("pop-up" in w for w in pc.warnings)


def test_download_link_is_captured_as_resource(browser, shop, tmp_path):
    pc = browser.capture(shop.url("/download"), tmp_path, mhtml=False)
    dl = pc.artifact("download")
    assert dl.path.read_bytes().startswith(b"%PDF-1.4")
    assert pc.info["downloads"] == [{"url": shop.url("/download"), "filename": "invoice.pdf"}]
    with open(pc.artifact("warc").path, "rb") as f:
        recs = [
            (r.rec_type, r.rec_headers.get_header("WARC-Target-URI"), r.content_stream().read())
            for r in ArchiveIterator(f)
        ]
    # Stored once (issue 18): the exchange is a revisit record naming the artifact, with headers only.
    assert ("revisit", shop.url("/download"), b"") in recs
    assert not any(body == dl.path.read_bytes() for _, _, body in recs)
    warc_check(pc)


@pytest.mark.parametrize("path,status", [("/no-such-item", 404), ("/error-500", 500)])
def test_http_errors_are_captured(browser, shop, tmp_path, path, status):
    pc = browser.capture(shop.url(path), tmp_path, mhtml=False)
    assert pc.info["status"] == status
    assert f"the server answered HTTP {status}" in pc.warnings
    _, http = response_headers(pc, shop.url(path))
    assert http.get_statuscode() == str(status)


def test_dns_failure_is_capture_error(browser, tmp_path):
    with pytest.raises(CaptureError, match="DNS lookup failed"):
        browser.capture("http://no-such-host.invalid/item/123", tmp_path)


def test_refused_connection_is_capture_error(browser, tmp_path, closed_port):
    with pytest.raises(CaptureError, match="connection refused") as e:
        browser.capture(f"http://127.0.0.1:{closed_port}/", tmp_path)
    assert e.value.exit_code == 3 and "\n" not in str(e.value)


@pytest.mark.slow
def test_50_mb_page(browser, shop, tmp_path):
    pc = browser.capture(shop.url("/big"), tmp_path)
    net = json.loads(pc.artifact("network").path.read_text())
    page = next(e for e in net["exchanges"] if e["url"] == shop.url("/big"))
    assert page["body"]["size"] == BIG_SIZE and page["body"]["complete"] is True
    assert page["body"]["sha256"] == big_page_sha256()
    assert page["body"]["source"] == "stream"  # never read whole
    assert any("MHTML snapshot skipped" in w for w in pc.warnings)
    assert pc.artifact("dom").path.stat().st_size > BIG_SIZE - 1000
    warc, http = response_headers(pc, shop.url("/big"))
    assert http.get_header("Content-Length") == str(BIG_SIZE)
    warc_check(pc)
