"""The clean-environment check recorded before each capture: clock offset, outbound IP, profile."""

from __future__ import annotations

import email.utils
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from capture.environment import anchor_clock, clock_check, http_date_clock, outbound_ip
from capture.options import CaptureOptions
from evidence.errors import UsageError


class Reference:
    """A local server whose Date header is ``skew`` seconds off, and an IP echo."""

    def __init__(self) -> None:
        self.skew = 0.0
        self.echo = b"203.0.113.7\n"
        ref = self

        class Handler(BaseHTTPRequestHandler):
            def date_time_string(self, timestamp=None):  # noqa: ANN001 - the stdlib signature
                return email.utils.formatdate(time.time() + ref.skew, usegmt=True)

            def do_GET(self) -> None:  # noqa: N802
                body = ref.echo if self.path.startswith("/ip") else b"ok"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"


@pytest.fixture(scope="module")
def ref() -> Iterator[Reference]:
    r = Reference()
    yield r
    r.server.shutdown()


@pytest.fixture(autouse=True)
def _reset(ref: Reference) -> None:
    ref.skew, ref.echo = 0.0, b"203.0.113.7\n"


def test_clock_within_limit_gives_no_warning(ref):
    facts, warnings = clock_check(time_source=ref.url(), anchor=None, max_offset=2.0)
    assert warnings == []
    assert facts["source"] == "http-date" and facts["within_limit"] is True
    assert abs(facts["offset_ms"]) <= 1500 and facts["max_offset_ms"] == 2000


def test_clock_off_by_more_than_limit_warns(ref):
    ref.skew = -30.0  # the reference is 30 s behind: our clock is ahead
    facts, warnings = clock_check(time_source=ref.url(), anchor=None, max_offset=2.0)
    assert facts["within_limit"] is False and -31500 <= facts["offset_ms"] <= -28500
    assert len(warnings) == 1 and "ahead of" in warnings[0] and ref.url() in warnings[0]
    ref.skew = 10.0
    facts, warnings = clock_check(time_source=ref.url(), anchor=None, max_offset=2.0)
    assert facts["offset_ms"] > 8000 and "behind" in warnings[0]
    # A generous limit accepts the same offset.
    assert clock_check(time_source=ref.url(), anchor=None, max_offset=60)[1] == []


def test_unreachable_time_source_warns(closed_port):
    facts, warnings = clock_check(time_source=f"http://127.0.0.1:{closed_port}/", anchor=None, max_offset=2)
    assert facts["reachable"] is False and facts["within_limit"] is None
    assert warnings and "not checked" in warnings[0]
    # With nothing configured and no anchor, the record says so without a warning.
    facts, warnings = clock_check(time_source=None, anchor=None, max_offset=2)
    assert facts["source"] is None and warnings == []


def test_anchor_reference():
    ok = anchor_clock({"gen_time": "2026-03-01T10:00:00Z", "record_time": "2026-03-01T10:00:00.400000Z"})
    assert ok["offset_ms"] == -400 and ok["clock_after_gen_time"] is True
    anchor = {"gen_time": "2026-03-01T10:00:00Z", "record_time": "2026-03-01T10:00:09.000000Z", "record_index": 7}
    facts, warnings = clock_check(time_source=None, anchor=anchor, max_offset=2)
    assert facts["source"] == "rfc3161-anchor" and facts["anchor_record"] == 7
    assert facts["offset_ms"] == -9000 and "2026-03-01T10:00:00Z" in warnings[0]
    # A clock set back before the anchor's genTime is caught whatever the offset was then.
    future = {"gen_time": "2999-01-01T00:00:00Z", "record_time": "2999-01-01T00:00:00Z"}
    assert any("earlier than the last RFC 3161 anchor" in w for w in clock_check(time_source=None, anchor=future, max_offset=2)[1])


def test_http_date_clock_without_date(ref, monkeypatch):
    import capture.environment as env

    class Headers(dict):
        def get(self, k, d=None):
            return None

    monkeypatch.setattr(env, "_fetch", lambda *a: (Headers(), b"", time.time(), time.time(), "direct"))
    assert "no usable Date" in http_date_clock(ref.url())["error"]


def test_outbound_ip(ref, closed_port):
    assert outbound_ip(ref.url("/ip")) | {} == {
        "checked": True, "endpoint": ref.url("/ip"), "reachable": True, "route": "direct", "ip": "203.0.113.7"
    }
    ref.echo = json.dumps({"origin": "10.0.0.2, 198.51.100.4"}).encode()
    assert outbound_ip(ref.url("/ip"))["ip"] == "198.51.100.4"
    ref.echo = b"<html>blocked</html>"
    assert "did not answer with an IP" in outbound_ip(ref.url("/ip"))["error"]
    gone = outbound_ip(f"http://127.0.0.1:{closed_port}/ip")
    assert gone["reachable"] is False and gone["error"]
    assert outbound_ip(None) == {"checked": False, "reason": "no IP echo endpoint configured"}


def test_options_are_checked():
    for bad in ({"time_source": "ftp://x/"}, {"ip_echo": "not a url"}, {"max_clock_offset": 0}, {"max_clock_offset": -1}):
        with pytest.raises(UsageError):
            CaptureOptions(**bad)


@pytest.mark.browser
def test_capture_records_the_check(browser, shop, ref, tmp_path):
    ref.skew = 25.0
    pc = browser.capture(shop.url("/item/123"), tmp_path / "c", time_source=ref.url(), ip_echo=ref.url("/ip"), max_clock_offset=3)
    check = pc.info["environment_check"]
    assert check["clock"]["within_limit"] is False and check["clock"]["max_offset_ms"] == 3000
    assert any("system clock is" in w for w in pc.warnings)
    assert check["outbound_ip"]["ip"] == "203.0.113.7"
    assert check["fresh_profile"] is True and check["extensions"]["none"] is True
    assert check["hostname"] and check["browser"].startswith("Chromium") and check["fonts"]["chinese"]
    env = json.loads((tmp_path / "c" / "environment.json").read_text("utf-8"))
    assert env["check"]["clock"]["offset_ms"] == check["clock"]["offset_ms"]
    log = (tmp_path / "c" / "capture-log.jsonl").read_text("utf-8")
    assert '"step": "clock"' in log and '"step": "outbound-ip"' in log
    ref.skew = 0.0
    pc = browser.capture(shop.url("/item/123"), tmp_path / "d", time_source=ref.url())
    assert pc.info["environment_check"]["clock"]["within_limit"] is True and pc.warnings == []


@pytest.mark.browser
def test_anchor_is_the_default_reference(home, shop, monkeypatch):
    from capture import capture_page
    from capture.page import latest_anchor

    assert latest_anchor(home) is None
    home.checkpoint()
    rec = home.append_anchors(
        [{"type": "rfc3161", "checkpoint_size": 1, "tsa": "http://tsa.test/", "time": "2026-01-01T00:00:00Z", "token_sha256": "ab" * 32}]
    )[0]
    anchor = latest_anchor(home)
    assert anchor["record_index"] == rec.index and anchor["record_time"] == rec.time
    ex = capture_page(shop.url("/zh-b"), case="C-A", ledger=home)
    clock = ex.manifest["info"]["environment_check"]["clock"]
    assert clock["source"] == "rfc3161-anchor" and clock["anchor_record"] == rec.index
    # The fake anchor's genTime is months before its record was written: far outside the limit.
    assert clock["within_limit"] is False and ex.manifest["info"]["warnings"]
