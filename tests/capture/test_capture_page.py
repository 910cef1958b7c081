"""Capturing the suspect-shop listing: WARC, screenshots, DOM, facts, TLS."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from capture_fixtures import GBK_PAGE, ROOT
from cryptography import x509
from warcio.archiveiterator import ArchiveIterator

pytestmark = pytest.mark.browser

SITE = ROOT / "examples" / "suspect-shop" / "site"
BIN = Path(sys.executable).parent


def records(warc: Path) -> list[dict[str, Any]]:
    out = []
    with open(warc, "rb") as f:
        for rec in ArchiveIterator(f):
            out.append(
                {
                    "type": rec.rec_type,
                    "uri": rec.rec_headers.get_header("WARC-Target-URI"),
                    "headers": rec.rec_headers,
                    "http": rec.http_headers,
                    "payload": rec.content_stream().read(),
                }
            )
    return out


def response(recs: list[dict[str, Any]], url: str) -> dict[str, Any]:
    return next(r for r in recs if r["type"] == "response" and r["uri"] == url)


@pytest.fixture(scope="module")
def listing(browser, shop, tmp_path_factory):
    """One capture of the listing through its short link, shared by the tests below."""
    return browser.capture(
        shop.url("/s/Xy7Kq"),
        tmp_path_factory.mktemp("listing"),
        case="SAMR-2026-017",
        operator="Li Wei",
        note="首次取证",
    )


def test_listing_facts(listing, shop):
    info = listing.info
    assert info["url"] == shop.url("/s/Xy7Kq")
    assert info["final_url"] == shop.url("/item/123")
    assert info["title"].startswith("【官方正品】华为 Mate 60 Pro")
    assert info["status"] == 200
    assert info["redirects"] == [{"url": shop.url("/s/Xy7Kq"), "status": 302, "location": "/item/123"}]
    assert info["server"] == {"ip": "127.0.0.1", "port": shop.http.server_address[1]}
    assert info["operator"] == "Li Wei" and info["case"] == "SAMR-2026-017" and info["note"] == "首次取证"
    assert info["started"].endswith("Z") and info["started"] <= info["ended"]
    assert info["time_source"] == "system-clock"
    assert info["viewport"]["width"] == 1366 and info["viewport"]["device"] == "desktop"
    assert info["browser"]["name"] == "Chromium"
    assert info["load_finished"] is True
    assert info["warnings"] == []
    roles = {a.role for a in listing.artifacts}
    assert roles == {
        "warc",
        "screenshot-full",
        "screenshot-viewport",
        "dom",
        "mhtml",
        "network",
        "environment",
        "capture-log",
    }
    assert listing.artifacts[0].role == "warc"
    # The manifest is canonical JSON: no floats anywhere in info.
    from ledger.canonical import canonical_json

    canonical_json(info)


def test_warc_passes_warcio_check_and_cdxj_indexer(listing, shop):
    warc = listing.artifact("warc").path
    check = subprocess.run([str(BIN / "warcio"), "check", "-v", str(warc)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "digest pass" in check.stdout and "fail" not in check.stdout
    idx = subprocess.run(
        [str(BIN / "cdxj-indexer"), str(warc)], capture_output=True, text=True, check=True
    ).stdout
    lines = [json.loads(line.split(" ", 2)[2]) for line in idx.splitlines()]
    by_url = {(d["url"], d.get("status")) for d in lines}
    assert (shop.url("/s/Xy7Kq"), "302") in by_url
    assert (shop.url("/item/123"), "200") in by_url
    assert (shop.url("/api/sold?item=123"), "200") in by_url  # the script's fetch()
    assert (shop.url("/img/detail-3.svg"), "200") in by_url  # lazy image, loaded by scrolling
    urns = {d["url"].rsplit(":http", 1)[0] for d in lines if d["url"].startswith("urn:")}
    assert {
        "urn:evidence-chain:screenshot-full",
        "urn:evidence-chain:screenshot-viewport",
        "urn:evidence-chain:dom",
        "urn:evidence-chain:mhtml",
        "urn:evidence-chain:capture-log",
    } <= urns


def test_warc_records(listing, shop):
    recs = records(listing.artifact("warc").path)
    info = recs[0]
    assert info["type"] == "warcinfo"
    fields = info["payload"].decode()
    for needle in (
        "software: evidence-chain",
        "browser: Chromium 1",
        "operator: Li Wei",
        "case: SAMR-2026-017",
        "capture-start: ",
        "os: ",
    ):
        assert needle in fields
    assert all(r["headers"].get_header("WARC-Block-Digest").startswith("sha256:") for r in recs)
    assert recs[1]["headers"].protocol == "WARC/1.1"
    page = response(recs, shop.url("/item/123"))
    assert page["headers"].get_header("WARC-IP-Address") == "127.0.0.1"
    assert page["headers"].get_header("WARC-Payload-Digest").startswith("sha256:")
    assert page["http"].statusline == "200 OK" and page["http"].protocol == "HTTP/1.1"
    # Chromium decoded the gzip body: the record holds the page as the server had it,
    # the header block says so, and the original header values are kept.
    assert page["payload"] == (SITE / "item" / "123.html").read_bytes()
    assert page["http"].get_header("Content-Encoding") is None
    assert page["http"].get_header("X-Archive-Orig-Content-Encoding") == "gzip"
    assert page["http"].get_header("Content-Length") == str(len(page["payload"]))
    assert int(page["http"].get_header("X-Archive-Orig-Content-Length")) == len(
        gzip.compress(page["payload"], mtime=0)
    )
    api = response(recs, shop.url("/api/sold?item=123"))
    assert json.loads(api["payload"])["item"] == "123"
    assert api["http"].get_header("X-Archive-Orig-Transfer-Encoding") == "chunked"
    redirect = response(recs, shop.url("/s/Xy7Kq"))
    assert (
        redirect["http"].statusline == "302 Found" and redirect["http"].get_header("Location") == "/item/123"
    )
    req = next(r for r in recs if r["type"] == "request" and r["uri"] == shop.url("/item/123"))
    assert (req["http"].protocol, req["http"].statusline) == ("GET", "/item/123 HTTP/1.1")
    assert req["headers"].get_header("WARC-Concurrent-To") == page["headers"].get_header("WARC-Record-ID")
    shot = next(r for r in recs if (r["uri"] or "").startswith("urn:evidence-chain:screenshot-full:"))
    assert (
        shot["type"] == "resource"
        and shot["payload"] == listing.artifact("screenshot-full").path.read_bytes()
    )
    log = next(r for r in recs if (r["uri"] or "").startswith("urn:evidence-chain:capture-log:"))
    assert log["type"] == "metadata" and log["payload"] == listing.artifact("capture-log").path.read_bytes()


def test_screens_dom_mhtml(listing):
    full = listing.artifact("screenshot-full").path.read_bytes()
    view = listing.artifact("screenshot-viewport").path.read_bytes()
    assert full[:8] == view[:8] == b"\x89PNG\r\n\x1a\n"
    w_full, h_full = int.from_bytes(full[16:20], "big"), int.from_bytes(full[20:24], "big")
    w_view, h_view = int.from_bytes(view[16:20], "big"), int.from_bytes(view[20:24], "big")
    assert (w_view, h_view) == (1366, 768)
    assert w_full == 1366 and h_full > 2000  # the whole listing, lazy images included
    dom = listing.artifact("dom").path.read_text("utf-8")
    assert dom.startswith("<!DOCTYPE html>")
    assert 'src="/img/detail-3.svg"' in dom  # set by script when scrolled into view
    assert 'id="sold">--<' not in dom  # the counter was filled in by script
    mhtml = listing.artifact("mhtml").path.read_text("utf-8")
    assert "Content-Type: multipart/related" in mhtml


def test_network_environment_and_log(listing, shop):
    net = json.loads(listing.artifact("network").path.read_text())
    chain = net["main_document"]["redirect_chain"]
    assert [h["status"] for h in chain] == [302, 200]
    assert net["main_document"]["response"]["status_line"] == "HTTP/1.1 200 OK"
    urls = {e["url"] for e in net["exchanges"]}
    assert shop.url("/api/sold?item=123") in urls
    page = next(e for e in net["exchanges"] if e["url"] == shop.url("/item/123"))
    assert page["body"]["sha256"] == hashlib.sha256((SITE / "item" / "123.html").read_bytes()).hexdigest()
    assert any("Content-Encoding" in t for t in page["transformations"])
    assert net["dns"]["hosts"][0]["browser_connected_to"] == [f"127.0.0.1:{shop.http.server_address[1]}"]
    env = json.loads(listing.artifact("environment").path.read_text())
    assert env["tool"]["name"] == "evidence-chain"
    assert env["browser"]["version"].startswith("1") and env["browser"]["command_line"]
    assert env["clock"]["source"] == "system clock"
    assert env["timezone"]["utc_offset"]
    assert env["profile"]["clean"] is True and env["profile"]["cookies_before"] == 0
    assert "proxy" in env and "environment" in env["proxy"]
    assert env["fonts"]["chinese"], "no CJK font: install fonts-noto-cjk"
    steps = [
        json.loads(line)["step"] for line in listing.artifact("capture-log").path.read_text().splitlines()
    ]
    for step in ("start", "profile", "navigate", "load", "scroll", "screenshot", "dom", "end"):
        assert step in steps


def test_chinese_renders(browser, shop, tmp_path):
    """Two pages differing only in their Chinese characters give different screenshots."""
    a = browser.capture(shop.url("/zh-a"), tmp_path / "a", mhtml=False)
    b = browser.capture(shop.url("/zh-b"), tmp_path / "b", mhtml=False)
    shot_a = a.artifact("screenshot-viewport").path.read_bytes()
    shot_b = b.artifact("screenshot-viewport").path.read_bytes()
    assert shot_a != shot_b


def test_gbk_page_is_recorded_byte_exact(browser, shop, tmp_path):
    pc = browser.capture(shop.url("/gbk"), tmp_path)
    page = response(records(pc.artifact("warc").path), shop.url("/gbk"))
    assert page["payload"] == GBK_PAGE.encode("gbk")
    assert pc.info["title"] == "国标编码页面"


def test_https_with_test_ca(browser, shop, tmp_path):
    pc = browser.capture(shop.url("/item/123", tls=True), tmp_path, trust_roots=(shop.ca_path,))
    tls = pc.info["tls"]
    assert tls["origin"] == shop.https_url
    assert tls["protocol"].startswith("TLS 1.")
    assert tls["validation"]["valid"] is True and tls["validation"]["self_signed"] is False
    assert tls["chain_length"] == 2
    assert (
        tls["certificate"]["issuer"].endswith("CN=Suspect Shop Test CA")
        or "Suspect Shop Test CA" in tls["certificate"]["issuer"]
    )
    pems = x509.load_pem_x509_certificates(pc.artifact("certificates").path.read_bytes())
    assert [c.subject.rfc4514_string() for c in pems] == ["CN=localhost,C=CN", "CN=Suspect Shop Test CA,C=CN"]
    assert pc.warnings == []
    recs = records(pc.artifact("warc").path)
    page = response(recs, shop.url("/item/123", tls=True))
    assert [v for k, v in page["headers"].headers if k == "WARC-Protocol"] == [
        "http/1.1",
        tls["protocol"].lower().replace(" ", "/"),
    ]


def test_https_untrusted_ca_is_stated(browser, shop, tmp_path):
    pc = browser.capture(shop.url("/item/123", tls=True), tmp_path, mhtml=False)
    assert pc.info["status"] == 200
    assert pc.info["tls"]["validation"]["valid"] is False
    assert any("does not validate" in w for w in pc.warnings)


def test_self_signed_certificate(browser, self_signed_shop, tmp_path):
    pc = browser.capture(self_signed_shop.url("/item/123", tls=True), tmp_path, mhtml=False)
    assert pc.info["status"] == 200 and pc.info["title"].startswith("【官方正品】")
    assert pc.info["tls"]["validation"]["self_signed"] is True
    assert any("self-signed certificate" in w for w in pc.warnings)
    assert pc.artifact("certificates").path.read_text().count("BEGIN CERTIFICATE") == 1
