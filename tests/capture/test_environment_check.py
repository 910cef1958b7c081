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
from ledger.errors import UsageError


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


# -- proxy credentials: redacted wherever the proxy is recorded --------------------------

from capture.environment import check_proxy, environment, proxy_environment, redact_argv, redact_proxy  # noqa: E402

PW = "Zq7S3cr3t@W0rd:Xy9"
#: pieces of PW in every form it could be written in (8+ characters: no chance match in binary data)
PW_FORMS = ("Zq7S3cr3t", "W0rd:Xy9", "W0rd%3AXy9", "W0rd%3aXy9")


def _secret_forms() -> list[bytes]:
    import base64

    forms = [f.encode() for f in PW_FORMS]
    for cred in (f"user:{PW}".encode(), PW.encode()):
        b = base64.b64encode(cred)
        forms += [b, b.rstrip(b"=")[:16]]
    return forms


def _leaks(data: bytes) -> list[bytes]:
    return [f for f in _secret_forms() if f in data]


@pytest.mark.parametrize(
    "value, kept",
    [
        (f"user:{PW}@proxy.corp:3128", "***@proxy.corp:3128"),
        (f"http://user:{PW}@proxy.corp:3128", "http://***@proxy.corp:3128"),
        (f"http://user:{PW}@proxy.corp:3128/", "http://***@proxy.corp:3128/"),
        (f"HTTPS://user:{PW}@proxy.corp", "HTTPS://***@proxy.corp"),
        (f"socks5://u:{PW}@h:1080", "socks5://***@h:1080"),
        (f"socks5h://u:{PW}@[::1]:1080", "socks5h://***@[::1]:1080"),
        ("http://user:Zq7S3cr3t%40W0rd%3AXy9@proxy.corp:3128", "http://***@proxy.corp:3128"),
        ("http://Zq7S3cr3t%40W0rd%3AXy9@proxy.corp", "http://***@proxy.corp"),
        ("user:Zq7S3cr3t%40W0rd%3AXy9@proxy.corp:3128", "***@proxy.corp:3128"),
        # no '@' left between password and host, only its encoding: still not kept
        ("http://user:Zq7S3cr3t%40W0rd:Xy9%40proxy.corp:3128", "http://***@proxy.corp:3128"),
        ("user:Zq7S3cr3t,W0rd:Xy9@proxy.corp:3128", "***@proxy.corp:3128"),
        (f"localhost,127.0.0.1,user:{PW}@corp.example", "***@corp.example"),
        (f"http=user:{PW}@p1:80;https=user:{PW}@p2:443", "***@p2:443"),
        (f"  http://user:{PW}@proxy.corp:3128", "  http://***@proxy.corp:3128"),
    ],
)
def test_redact_proxy_removes_every_shape_of_credentials(value, kept):
    out = redact_proxy(value)
    assert out == kept
    assert not _leaks(out.encode())


@pytest.mark.parametrize("value", ["http://proxy.corp:3128", "socks5://127.0.0.1:1080", "proxy.corp:3128", "localhost,.corp.example,10.0.0.0/8", ""])
def test_redact_proxy_keeps_proxies_without_credentials(value):
    assert redact_proxy(value) == value
    assert redact_proxy(None) is None


def test_every_proxy_variable_is_recorded_redacted():
    environ = {
        "HTTPS_PROXY": f"user:{PW}@proxy.corp:3128",
        "https_proxy": f"http://user:{PW}@proxy.corp:3128",
        "HTTP_PROXY": "http://user:Zq7S3cr3t%40W0rd%3AXy9@proxy.corp:3128",
        "http_proxy": "http://proxy.corp:3128",
        "ALL_PROXY": f"socks5://u:{PW}@h:1080",
        "all_proxy": f"socks5://u:{PW}@h:1080",
        "FTP_PROXY": f"ftp://u:{PW}@h:21",
        "ftp_proxy": f"u:{PW}@h:21",
        "NO_PROXY": f"localhost,user:{PW}@corp.example",
        "no_proxy": "localhost,127.0.0.1",
        "SOCKS_SERVER": f"u:{PW}@h:1080",
        "RSYNC_PROXY": f"u:{PW}@h:873",
        "PATH": "/usr/bin",
        "PROXY_PASSWORD_NOT_A_PROXY_VAR": PW,
    }
    got = proxy_environment(environ)
    assert set(got) == set(environ) - {"PATH", "PROXY_PASSWORD_NOT_A_PROXY_VAR"}
    assert not _leaks(json.dumps(got).encode())
    # what carries no secret is recorded as it is
    assert got["http_proxy"] == "http://proxy.corp:3128" and got["no_proxy"] == "localhost,127.0.0.1"
    assert got["HTTPS_PROXY"] == "***@proxy.corp:3128" and got["NO_PROXY"] == "***@corp.example"


def test_environment_record_has_no_credentials(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", f"user:{PW}@proxy.corp:3128")
    monkeypatch.setenv("no_proxy", f"localhost,user:{PW}@corp.example")
    argv = ["/usr/bin/chromium", f"--proxy-server=http://user:{PW}@proxy.corp:3128", "--proxy-server", f"u:{PW}@h:1"]
    env = environment({"name": "Chromium", "command_line": argv}, f"http://user:{PW}@proxy.corp:3128", {})
    text = json.dumps(env)
    assert not _leaks(text.encode()), text
    assert env["proxy"]["browser_proxy"] == "http://***@proxy.corp:3128"
    assert env["proxy"]["environment"]["HTTPS_PROXY"] == "***@proxy.corp:3128"
    assert env["browser"]["command_line"] == ["/usr/bin/chromium", "--proxy-server=http://***@proxy.corp:3128", "--proxy-server", "***@h:1"]
    assert redact_argv(["chromium", "--headless"]) == ["chromium", "--headless"]
    # the check's route names the proxy it went through, redacted
    from capture.environment import _opener

    assert _opener(f"http://user:{PW}@proxy.corp:3128")[1] == "through the browser's proxy http://***@proxy.corp:3128"


@pytest.mark.parametrize(
    "value",
    ["http://proxy.corp:3128", "https://proxy.corp", "socks5://127.0.0.1:1080", "socks4://h:1080",
     f"http://user:{PW}@proxy.corp:3128", "http://[::1]:3128", "HTTP://Proxy.Corp:3128/"],
)
def test_check_proxy_accepts_proxy_urls(value):
    assert check_proxy(value) == value


@pytest.mark.parametrize(
    "value",
    [
        f"user:{PW}@proxy.corp:3128",  # no scheme
        "proxy.corp:3128",
        f"ftp://user:{PW}@proxy.corp:21",
        f"http://user:{PW}@proxy.corp:99999",
        "http://user:Zq7S3cr3t%40W0rd:Xy9%40proxy.corp:3128",  # the port is a piece of the password
        f"http://user:{PW}@[::1:3128",
        f"http://user:{PW}@:3128",
        f"http://user:{PW}@proxy.corp:0",
        f"http://user:{PW}@proxy.corp:3128/path",
        f"http://user:{PW}@proxy.corp:3128?x=1",
        f"http://user:{PW}@proxy corp:3128",
        f"http://user:{PW}@proxy.corp:3128\x1b",
        "",
    ],
)
def test_malformed_proxy_is_a_usage_error_that_keeps_the_secret(value):
    with pytest.raises(UsageError) as e:
        check_proxy(value)
    assert "proxy must look like" in str(e.value)
    assert not _leaks(str(e.value).encode()), str(e.value)
    with pytest.raises(UsageError):
        CaptureOptions(proxy=value)


def test_capture_page_refuses_a_malformed_proxy_before_any_browser(home, monkeypatch):
    import capture.page

    started = []
    monkeypatch.setattr(capture.page, "Browser", lambda *a, **k: started.append(a) or pytest.fail("a browser was started"))
    with pytest.raises(UsageError, match="no scheme"):
        capture.page.capture_page("http://127.0.0.1:1/", case="C-1", ledger=home, proxy=f"user:{PW}@h:3128")
    assert started == [] and home.size() == 1


def _cli(home, *args, env=None, timeout=300):
    import os
    import subprocess
    import sys

    e = dict(os.environ, EVIDENCE_HOME=str(home), COLUMNS="200")
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "evidence.cli", *args], capture_output=True, text=True, env=e, timeout=timeout)


def test_cli_malformed_proxy_fails_before_the_browser_starts(tmp_path):
    home = tmp_path / "home"
    assert _cli(home, "init", "--no-passphrase").returncode == 0
    marker = tmp_path / "chromium-was-started"
    fake = tmp_path / "chromium"
    fake.write_text(f"#!/bin/sh\ntouch '{marker}'\nsleep 30\n")
    fake.chmod(0o755)
    for bad in (f"user:{PW}@127.0.0.1:3128", f"http://user:{PW}@127.0.0.1:99999", "ftp://127.0.0.1:21"):
        started = time.monotonic()
        p = _cli(home, "capture", "http://127.0.0.1:1/", "--case", "C-1", "--proxy", bad, env={"EVIDENCE_CHROMIUM": str(fake)})
        elapsed = time.monotonic() - started
        assert p.returncode == 2, (p.stdout, p.stderr)
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and "proxy must look like" in lines[0], p.stderr
        assert not _leaks((p.stdout + p.stderr).encode()) and "Traceback" not in p.stderr
        assert not marker.exists()
        # an interpreter start and an import, nothing more (the fake browser would sleep 30 s)
        assert elapsed < 15
    # control: a well-formed proxy does get as far as starting the (fake) browser
    p = _cli(home, "capture", "http://127.0.0.1:1/", "--case", "C-1", "--proxy", "http://127.0.0.1:3128",
             env={"EVIDENCE_CHROMIUM": str(fake)}, timeout=120)
    assert marker.exists(), (p.returncode, p.stderr)


class CountingProxy:
    """An HTTP proxy on 127.0.0.1 for plain-HTTP GETs; remembers the Proxy-Authorization it saw."""

    def __init__(self) -> None:
        import urllib.request

        self.auth: list[str | None] = []
        me = self
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                me.auth.append(self.headers.get("Proxy-Authorization"))
                try:
                    with direct.open(self.path, timeout=10) as r:
                        status, headers, body = r.status, r.headers, r.read()
                except Exception as e:  # noqa: BLE001 - any upstream failure is a 502 here
                    status, headers, body = getattr(e, "code", 502), getattr(e, "headers", {}) or {}, b""
                self.send_response(status)
                for k in ("Date", "Content-Type"):
                    if headers.get(k):
                        self.send_header(k, headers[k])
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _inflate(data: bytes) -> bytes:
    """``data`` and, if it is gzip (a WARC is one member per record), every member inflated."""
    import zlib

    if not data.startswith(b"\x1f\x8b"):
        return data
    out, rest = [data], data
    while rest.startswith(b"\x1f\x8b"):
        d = zlib.decompressobj(31)
        out.append(d.decompress(rest))
        rest = d.unused_data
    return b"".join(out)


@pytest.mark.browser
def test_capture_through_a_proxy_with_credentials_records_no_password(tmp_path, shop, ref):
    import base64
    import zipfile
    from urllib.parse import quote

    proxy = CountingProxy()
    try:
        home = tmp_path / "home"
        assert _cli(home, "init", "--no-passphrase").returncode == 0
        port = proxy.port
        env = {
            "HTTPS_PROXY": f"user:{PW}@127.0.0.1:{port}",
            "http_proxy": f"http://user:{quote(PW, safe='')}@127.0.0.1:{port}",
            "ALL_PROXY": f"socks5://user:{PW}@127.0.0.1:{port}",
            "no_proxy": f"localhost,user:{PW}@corp.example",
        }
        ref.skew = 0.0
        p = _cli(home, "capture", shop.url("/item/123"), "--case", "C-PROXY", "--operator", "Li Wei",
                 "--proxy", f"http://user:{PW}@127.0.0.1:{port}", "--time-source", ref.url(), "--ip-echo", ref.url("/ip"),
                 "--json", env=env)
        assert p.returncode == 0, (p.stdout, p.stderr)
        assert not _leaks((p.stdout + p.stderr).encode())
        # the environment check really went through the proxy, with the credentials
        assert f"Basic {base64.b64encode(f'user:{PW}'.encode()).decode()}" in proxy.auth
        wacz = tmp_path / "case.wacz"
        p = _cli(home, "export", "C-PROXY", "-o", str(wacz), env=env)
        assert p.returncode == 0, p.stderr
        assert not _leaks((p.stdout + p.stderr).encode())
        envs = []
        with zipfile.ZipFile(wacz) as z:
            for name in z.namelist():
                data = z.read(name)
                leaks = _leaks(_inflate(data)) + _leaks(name.encode())
                assert not leaks, (name, leaks)
                if name.endswith("environment.json"):
                    envs.append(json.loads(data))
        # what went into the home (ledger database, artifact store) holds no password either
        for f in home.rglob("*"):
            if f.is_file():
                assert not _leaks(_inflate(f.read_bytes())), f
        # and the proxy is still on the record, redacted
        assert envs, "no environment.json in the case file"
        for e in envs:
            assert e["proxy"]["browser_proxy"] == f"http://***@127.0.0.1:{port}"
            assert e["proxy"]["environment"]["HTTPS_PROXY"] == f"***@127.0.0.1:{port}"
            assert e["proxy"]["environment"]["no_proxy"] == "***@corp.example"
            assert e["check"]["clock"]["route"] == f"through the browser's proxy http://***@127.0.0.1:{port}"
    finally:
        proxy.close()
