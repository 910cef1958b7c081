"""Parts of capture that need no browser: URL and option checks, header repair, TLS check."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from capture.browser import find_chromium
from capture.network import Hop, _reencode
from capture.options import CaptureOptions, check_url
from capture.tls import validate
from capture.warc import _parse_headers_text, fix_for_body, request_headers, response_headers
from ledger.errors import EnvironmentProblem, UsageError


@pytest.mark.parametrize(
    "url,msg",
    [
        ("", "needs a URL"),
        ("ftp://example.com/", "only http"),
        ("javascript:alert(1)", "only http"),
        ("http:///nohost", "no host"),
        ("http://exa mple.com/", "white space"),
        ("http://example.com:99999/", "not a valid URL"),
        ("http://[::1/", "not a valid URL"),
    ],
)
def test_bad_urls(url, msg):
    with pytest.raises(UsageError, match=msg):
        check_url(url)


def test_good_urls():
    assert check_url(" https://shop.example/item/123 ") == "https://shop.example/item/123"
    assert check_url("http://[::1]:8080/") == "http://[::1]:8080/"


def test_options():
    with pytest.raises(UsageError, match="unknown capture option"):
        CaptureOptions.from_kwargs({"zoom": 2})
    with pytest.raises(UsageError, match="viewport_width"):
        CaptureOptions(viewport_width=5)
    with pytest.raises(UsageError, match="load_timeout"):
        CaptureOptions(load_timeout=0)
    with pytest.raises(UsageError, match="trust root file"):
        CaptureOptions(trust_roots=("/no/such/ca.pem",))
    with pytest.raises(UsageError, match="proxy"):
        CaptureOptions(proxy="not a proxy")
    d = CaptureOptions(load_timeout=2.5).to_json()
    assert d["load_timeout_ms"] == 2500 and not any(isinstance(v, float) for v in d.values())


def test_missing_browser_is_environment_problem(monkeypatch, tmp_path):
    monkeypatch.setenv("EVIDENCE_CHROMIUM", str(tmp_path / "no-chromium"))
    with pytest.raises(EnvironmentProblem, match="EVIDENCE_CHROMIUM") as e:
        find_chromium()
    assert e.value.exit_code == 3
    monkeypatch.delenv("EVIDENCE_CHROMIUM")
    monkeypatch.setattr("capture.browser.CANDIDATES", (tmp_path / "a", tmp_path / "b"))
    with pytest.raises(EnvironmentProblem, match="install the Debian package 'chromium'"):
        find_chromium()


def test_headers_text_keeps_order_and_duplicates():
    line, headers = _parse_headers_text(
        "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nX-Long: one\r\n two\r\nSet-Cookie: b=2\r\n\r\n"
    )
    assert line == "HTTP/1.1 200 OK"
    assert headers == [("Set-Cookie", "a=1"), ("X-Long", "one two"), ("Set-Cookie", "b=2")]


def test_decoded_body_headers_are_repaired():
    headers = [("Content-Type", "text/html"), ("Content-Encoding", "gzip"), ("Content-Length", "120")]
    out, notes = fix_for_body(headers, 300, status=200, method="GET", body_known=True)
    assert out == [
        ("Content-Type", "text/html"),
        ("X-Archive-Orig-Content-Encoding", "gzip"),
        ("X-Archive-Orig-Content-Length", "120"),
        ("Content-Length", "300"),
    ]
    assert len(notes) == 2
    chunked, notes = fix_for_body(
        [("Transfer-Encoding", "chunked")], 5, status=200, method="GET", body_known=True
    )
    assert chunked == [("X-Archive-Orig-Transfer-Encoding", "chunked"), ("Content-Length", "5")]
    # An encoding Chromium does not decode is left alone; HEAD and 304 are never touched.
    odd, _ = fix_for_body(
        [("Content-Encoding", "compress"), ("Content-Length", "5")],
        5,
        status=200,
        method="GET",
        body_known=True,
    )
    assert odd == [("Content-Encoding", "compress"), ("Content-Length", "5")]
    same = [("Content-Length", "120"), ("Content-Encoding", "gzip")]
    assert fix_for_body(same, 0, status=304, method="GET", body_known=True) == (same, [])
    assert fix_for_body(same, 0, status=200, method="HEAD", body_known=True) == (same, [])


def test_h2_headers_are_rebuilt_and_say_so():
    hop = Hop("1", 0, "https://x.example/", "GET", "Document", None, None, 0.0, {})
    hop.response = {
        "status": 404,
        "statusText": "",
        "protocol": "h2",
        "headers": {"content-type": "text/html", "set-cookie": "a=1\nb=2"},
    }
    line, headers, notes = response_headers(hop)
    assert line == "HTTP/1.1 404 Not Found"
    # Repeated headers split back; Set-Cookie values are credentials, kept as their digests.
    digest = {v: "sha256:" + hashlib.sha256(v.encode()).hexdigest() for v in ("a=1", "b=2")}
    assert headers == [("content-type", "text/html"), ("set-cookie", digest["a=1"]), ("set-cookie", digest["b=2"])]
    assert "h2" in notes[0] and "set-cookie value replaced by its SHA-256 (a credential)" in notes


def test_renderer_text_is_reencoded_with_the_page_charset():
    page = "<meta charset=gbk><title>国标</title>"
    data, note = _reencode(page, {"headers": {"Content-Type": "text/html"}})
    assert data == page.encode("gbk") and "gbk" in note
    data, _ = _reencode("中文", {"headers": {"Content-Type": "text/plain; charset=UTF-8"}})
    assert data == "中文".encode()


def test_tls_validation(serve, tmp_path):
    ca, cert, _ = serve.make_test_ca(tmp_path / "ca")
    chain = [
        c.public_bytes(serialization.Encoding.DER) for c in x509.load_pem_x509_certificates(cert.read_bytes())
    ]
    now = dt.datetime.now(dt.UTC)
    assert validate(chain, "localhost", now, (ca,))["valid"] is True
    assert validate(chain, "127.0.0.1", now, (ca,))["valid"] is True
    wrong_host = validate(chain, "shop.example", now, (ca,))
    assert wrong_host["valid"] is False and wrong_host["error"]
    untrusted = validate(chain, "localhost", now)
    assert untrusted["valid"] is False and untrusted["self_signed"] is False
    expired = validate(chain, "localhost", now + dt.timedelta(days=400), (ca,))
    assert expired["valid"] is False
    ss_cert, _ = serve.make_self_signed(tmp_path / "ss")
    ss = [x509.load_pem_x509_certificate(ss_cert.read_bytes()).public_bytes(serialization.Encoding.DER)]
    result = validate(ss, "localhost", now)
    assert result["self_signed"] is True and result["valid"] is False
    assert validate([], "localhost", now)["valid"] is False


def test_proxy_credentials_in_request_headers_are_replaced_by_their_digest():
    secret = "Basic dXNlcjpzM2NyZXQ="
    hop = Hop("1", 0, "http://x.example/a?b=1", "GET", "Document", None, None, 0.0, {})
    hop.raw_request_headers = {"Host": "x.example", "Proxy-Authorization": secret, "Accept": "*/*"}
    line, headers, notes = request_headers(hop)
    assert line == "GET /a?b=1 HTTP/1.1"
    got = dict(headers)
    assert got["Proxy-Authorization"].startswith("sha256:") and secret not in repr(headers)
    assert got["Accept"] == "*/*" and any("Proxy-Authorization" in n for n in notes)
    # Control: without the credential nothing is replaced and nothing is said.
    hop.raw_request_headers = {"Host": "x.example", "Accept": "*/*"}
    _, headers, notes = request_headers(hop)
    assert dict(headers) == {"Host": "x.example", "Accept": "*/*"} and notes == []
