"""capture_page / capture_many: exhibits sealed in the ledger, or nothing at all."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from capture_fixtures import ROOT

from capture import capture_many, capture_page
from ledger.errors import CaptureError, UsageError

pytestmark = pytest.mark.browser


def store_is_sound(led) -> list[str]:
    """Every blob under a digest path hashes to its name; return the digests."""
    digests = list(led.artifacts)
    for d in digests:
        led.artifacts.check(d)
    return digests


def test_capture_page_seals_an_exhibit(home, shop):
    size0 = home.size()
    ex = capture_page(
        shop.url("/s/Xy7Kq"), case="SAMR-2026-017", operator="Li Wei", note="短链接", ledger=home
    )
    assert ex.index == size0 and home.size() == size0 + 1
    assert ex.record.kind == "exhibit" and ex.case == "SAMR-2026-017"
    assert ex.manifest["info"]["final_url"] == shop.url("/item/123")
    roles = {a["role"] for a in ex.manifest["artifacts"]}
    assert {
        "warc",
        "screenshot-full",
        "screenshot-viewport",
        "dom",
        "mhtml",
        "network",
        "environment",
        "capture-log",
    } <= roles
    # The manifest's digest is in the record, and every artifact is in the store.
    assert ex.record.payload["manifest"]["sha256"] == ex.manifest_sha256
    with home.artifacts.open(ex.manifest_sha256) as f:
        assert hashlib.sha256(f.read()).hexdigest() == ex.manifest_sha256
    for a in ex.artifacts:
        assert a.sha256 in home.artifacts
        home.artifacts.check(a.sha256)


def test_unreachable_appends_nothing(home, closed_port):
    size0, blobs0 = home.size(), set(home.artifacts)
    with pytest.raises(CaptureError):
        capture_page(f"http://127.0.0.1:{closed_port}/item/1", case="C1", ledger=home)
    assert home.size() == size0 and set(home.artifacts) == blobs0


def test_bad_input_is_usage_error(home):
    with pytest.raises(UsageError, match="only http"):
        capture_page("file:///etc/passwd", case="C1", ledger=home)
    with pytest.raises(UsageError, match="case"):
        capture_page("http://127.0.0.1/", case=" ", ledger=home)
    with pytest.raises(UsageError, match="unknown capture option"):
        capture_page("http://127.0.0.1/", case="C1", ledger=home, viewport="big")


def test_capture_many_reports_failures_and_appends_once(home, shop, closed_port):
    urls = [shop.url("/item/123"), f"http://127.0.0.1:{closed_port}/x", "not a url", shop.url("/", tls=True)]
    seen = []
    size0 = home.size()
    result = capture_many(
        urls, case="C2", operator="Li Wei", ledger=home, progress=lambda *a: seen.append(a), mhtml=False
    )
    assert [s[:3] for s in seen] == [(i + 1, 4, urls[i]) for i in range(4)]
    assert [s[3] is None for s in seen] == [True, False, False, True]
    assert [u for u, _ in result.failures] == [urls[1], urls[2]]
    assert "connection refused" in result.failures[0][1]
    assert [e.index for e in result.exhibits] == [size0, size0 + 1]
    assert [e.manifest["info"]["url"] for e in result.exhibits] == [urls[0], urls[3]]
    assert home.size() == size0 + 2
    # One batch: consecutive records written by one append.
    assert result.exhibits[0].record.time <= result.exhibits[1].record.time


def test_killed_capture_leaves_no_record_and_no_partial_artifact(home, shop, tmp_path):
    """SIGKILL in the middle of a capture: the ledger and store are as before."""
    home.close()
    size0, blobs0 = _reopen_size(home)
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from capture import capture_page
        print("started", flush=True)
        capture_page({shop.url("/never-ending")!r}, case="C1", home={str(home.home.root)!r}, load_timeout=60)
        """
    )
    # Its scratch directory goes under tmp_path: a SIGKILL leaves it behind,
    # outside the evidence home, and pytest cleans it up.
    env = dict(os.environ, TMPDIR=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, start_new_session=True, env=env)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"started"
    time.sleep(3)  # browser up, page loading (it never finishes)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    size1, blobs1 = _reopen_size(home)
    assert size1 == size0
    assert blobs1 == blobs0


def _reopen_size(home) -> tuple[int, set[str]]:
    from ledger.log import Ledger

    with Ledger.open(home.home.root) as led:
        digests = set(store_is_sound(led))
        return led.size(), digests


def test_manifest_info_is_what_the_capture_saw(home, shop):
    ex = capture_page(shop.url("/item/123", tls=True), case="C3", ledger=home, trust_roots=(shop.ca_path,))
    info = ex.manifest["info"]
    assert info["tls"]["validation"]["valid"] is True
    env_entry = next(a for a in ex.artifacts if a.role == "environment")
    with home.artifacts.open(env_entry.sha256) as f:
        env = json.load(f)
    assert env["browser"]["name"] == "Chromium" and env["profile"]["clean"] is True
