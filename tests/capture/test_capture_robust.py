"""Captures that a page tries to hang, split between documents, or cut short.

Each capture must end (within its deadline; the bounds here are generous so a
loaded machine does not make them flaky: speed is for the benchmarks) and its
exhibit must be consistent: every snapshot names the one document it shows,
a body cut short is kept and marked, and the same page without the hostile
part gives a clean exhibit with no warnings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from robust_fixtures import DECLARED, PARTIAL, RELEASE, ROUTES
from warcio.archiveiterator import ArchiveIterator

from capture import capture_many, capture_page
from capture.page import LOCK_NAME, sweep_workdirs
from ledger.errors import KeyFileError

pytestmark = pytest.mark.browser
BIN = Path(sys.executable).parent
FAST = {"load_timeout": 2, "settle_timeout": 1}
SNAPSHOT_ROLES = {"screenshot-viewport", "screenshot-full", "dom", "mhtml"}


@pytest.fixture(scope="module")
def site(serve: Any) -> Iterator[Any]:
    RELEASE.clear()
    server = serve.ShopServer(routes=ROUTES, https_port=None).start()
    yield server
    RELEASE.set()
    server.stop()


def capture(browser: Any, url: str, tmp_path: Path, **options: Any) -> tuple[Any, float]:
    t = time.monotonic()
    pc = browser.capture(url, tmp_path / "w", **{**FAST, **options})
    took = time.monotonic() - t
    # Generous: the deadline itself, plus closing and writing on a busy machine.
    assert took < pc.info["capture_deadline_ms"] / 1000 + 15, took
    return pc, took


def records(pc: Any) -> list[tuple[str, str, Any, bytes]]:
    with open(pc.artifact("warc").path, "rb") as f:
        return [
            (r.rec_type, r.rec_headers.get_header("WARC-Target-URI"), r.rec_headers, r.content_stream().read())
            for r in ArchiveIterator(f)
        ]


def response(pc: Any, url: str) -> tuple[Any, bytes]:
    for kind, uri, headers, body in records(pc):
        if kind == "response" and uri == url:
            return headers, body
    raise AssertionError(f"no response record for {url}")


def warc_check(pc: Any) -> None:
    r = subprocess.run([str(BIN / "warcio"), "check", str(pc.artifact("warc").path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def assert_one_document(pc: Any) -> dict[str, Any]:
    """Every snapshot names one and the same document: the exhibit's final URL."""
    snaps = pc.info["snapshots"]
    files = {a.name for a in pc.artifacts if a.role in SNAPSHOT_ROLES}
    assert sorted(s["artifact"] for s in snaps) == sorted(files)
    assert len({(s["url"], s["navigation_id"]) for s in snaps}) == 1, snaps
    doc = snaps[0]
    assert doc["url"] == pc.info["final_url"]
    assert all(s["time"].endswith("Z") for s in snaps)
    if "page.mhtml" in files:
        mhtml = (pc.workdir / "page.mhtml").read_text("utf-8")
        assert f"Snapshot-Content-Location: {doc['url']}" in mhtml
    return doc


# -- a script that never yields ---------------------------------------------------


@pytest.mark.parametrize("how", ["inline", "timer", "interval", "raf", "after-load"])
def test_blocked_main_thread_is_captured(browser, site, tmp_path, how):
    url = site.url(f"/robust/spin?how={how}")
    pc, _ = capture(browser, url, tmp_path)
    assert any("kept the browser's main thread busy" in w for w in pc.warnings), pc.warnings
    assert pc.info["page_scripts_stopped"].endswith("Z")
    # With the script stopped the page can be read: screenshots, DOM and MHTML all of it.
    assert {a.role for a in pc.artifacts} >= SNAPSHOT_ROLES
    assert_one_document(pc)
    assert "卡死之前的内容" in pc.artifact("dom").path.read_text("utf-8")
    assert pc.info["title"] == "卡死页面"
    _, body = response(pc, url)
    assert "卡死之前的内容".encode() in body
    warc_check(pc)


def test_page_without_the_spin_is_clean(browser, site, tmp_path):
    pc, _ = capture(browser, site.url("/robust/spin?how=none"), tmp_path)
    assert pc.warnings == []
    assert "page_scripts_stopped" not in pc.info
    assert [n["cause"] for n in pc.info["navigations"]] == ["initial"]
    assert_one_document(pc)


@pytest.mark.slow
def test_batch_goes_on_after_a_hanging_page(home, site):
    urls = [site.url("/robust/spin?how=none"), site.url("/robust/spin?how=inline"), site.url("/robust/second")]
    res = capture_many(urls, case="SAMR-2026-017", ledger=home, **FAST)
    assert res.failures == []
    assert [ex.manifest["info"]["url"] for ex in res.exhibits] == urls
    assert [ex.manifest["info"]["title"] for ex in res.exhibits] == ["卡死页面", "卡死页面", "第二页"]
    assert any("main thread busy" in w for w in res.exhibits[1].manifest["info"]["warnings"])
    assert res.exhibits[2].manifest["info"]["warnings"] == []


def test_deadline_ends_the_capture_and_keeps_what_arrived(browser, site, tmp_path):
    url = site.url("/robust/stalled?length=0")
    pc, took = capture(browser, url, tmp_path, load_timeout=30, capture_deadline=8)
    assert took < 8 + 15
    assert pc.info["deadline_reached"] is True and pc.info["capture_deadline_ms"] == 8000
    assert any("capture deadline (8 s) was reached" in w for w in pc.warnings), pc.warnings
    headers, body = response(pc, url)
    assert body == PARTIAL and headers.get_header("WARC-Truncated") == "time"
    warc_check(pc)


# -- one document per exhibit -----------------------------------------------------


@pytest.mark.parametrize(
    "by,delay",
    [("script", 0), ("script", 100), ("script", 250), ("script", 500), ("meta", 0), ("meta", 250), ("meta", 500)],
)
def test_self_navigation_gives_one_document(browser, site, tmp_path, by, delay):
    url = site.url(f"/robust/nav?by={by}&delay={delay}")
    second = site.url("/robust/second")
    pc, _ = capture(browser, url, tmp_path)
    doc = assert_one_document(pc)
    navs = pc.info["navigations"]
    assert (navs[0]["url"], navs[0]["cause"]) == (url, "initial")
    assert [(n["url"], n["cause"]) for n in navs[1:]] in ([], [(second, "script" if by == "script" else "meta-refresh")])
    # Either document may be the one captured (a late navigation can come after the
    # snapshots), but all of the exhibit is of that one.
    shown = {n["navigation_id"]: n["url"] for n in navs}[doc["navigation_id"]]
    dom = pc.artifact("dom").path.read_text("utf-8")
    if shown == second:
        assert pc.info["final_url"] == second and pc.info["title"] == "第二页" and "第二个文档" in dom
        assert any("navigated by itself" in w for w in pc.warnings), pc.warnings
    else:
        assert pc.info["final_url"] == url and pc.info["title"] == "第一页" and "第一个文档" in dom
    assert delay >= 250 or shown == second  # an early navigation is always followed
    assert pc.info["status"] == 200 and pc.info["redirects"] == []
    # Both documents are in the WARC; Chromium may have dropped the body of the first
    # before it could be read back, and then the record says so.
    headers, body = response(pc, url)
    assert "第一个文档".encode() in body or headers.get_header("WARC-Truncated") == "unspecified"
    if len(navs) > 1:
        assert "第二个文档".encode() in response(pc, second)[1]
    warc_check(pc)


def test_history_push_state_is_listed_and_snapshots_follow_it(browser, site, tmp_path):
    url = site.url("/robust/nav?by=push&delay=250")
    pc, _ = capture(browser, url, tmp_path)
    doc = assert_one_document(pc)
    pushed = site.url("/robust/pushed")
    assert pc.info["final_url"] == pushed and pc.info["title"] == "改写后"
    navs = pc.info["navigations"]
    assert [(n["url"], n["cause"]) for n in navs] == [(url, "initial"), (pushed, "history")]
    assert doc["navigation_id"] == navs[1]["navigation_id"] == navs[0]["navigation_id"] + ".1"
    assert "改写后的页面" in pc.artifact("dom").path.read_text("utf-8")


def test_page_that_never_stops_navigating_is_frozen(browser, site, tmp_path):
    pc, _ = capture(browser, site.url("/robust/loop"), tmp_path)
    doc = assert_one_document(pc)
    assert {a.role for a in pc.artifacts} >= SNAPSHOT_ROLES
    assert any("kept navigating" in w for w in pc.warnings), pc.warnings
    assert pc.info["navigation_frozen"]["time"].endswith("Z")
    n = pc.info["title"].split()[-1]
    assert doc["url"].endswith(f"/robust/loop?n={n}") if n != "0" else doc["url"].endswith("/robust/loop")
    assert f"循环第 {n} 次" in pc.artifact("dom").path.read_text("utf-8")


def test_page_that_stays_is_clean(browser, site, tmp_path):
    pc, _ = capture(browser, site.url("/robust/nav?by=none"), tmp_path)
    assert pc.warnings == []
    assert [n["cause"] for n in pc.info["navigations"]] == ["initial"]
    assert assert_one_document(pc)["navigation_id"] == pc.info["navigations"][0]["navigation_id"]


# -- bodies cut short ---------------------------------------------------------------


@pytest.mark.parametrize("length", [True, False])
def test_stalled_main_document_still_gives_an_exhibit(browser, site, tmp_path, length):
    url = site.url(f"/robust/stalled?length={int(length)}")
    pc, _ = capture(browser, url, tmp_path)
    assert pc.info["status"] == 200 and pc.info["title"] == "部分到达"
    assert "只到了一部分的页面" in pc.artifact("dom").path.read_text("utf-8")
    headers, body = response(pc, url)
    assert body == PARTIAL  # as received, byte for byte
    assert headers.get_header("WARC-Truncated") == "time"
    assert headers.get_header("Evidence-Received-Length") == str(len(PARTIAL))
    assert headers.get_header("Evidence-Declared-Length") == (str(DECLARED) if length else None)
    main = json.loads(pc.artifact("network").path.read_text())["main_document"]["redirect_chain"][-1]
    assert main["truncated"]["reason"] == "time"
    assert main["truncated"]["received_length"] == len(PARTIAL)
    assert main["truncated"]["declared_length"] == (DECLARED if length else None)
    of = f"{len(PARTIAL):,} of {DECLARED:,} announced" if length else f"{len(PARTIAL):,}"
    assert any(w.startswith(f"the main document is incomplete: {of} bytes") for w in pc.warnings), pc.warnings
    assert_one_document(pc)
    warc_check(pc)


def test_cut_main_document_is_marked_disconnect(browser, site, tmp_path):
    url = site.url("/robust/cut")
    pc, _ = capture(browser, url, tmp_path)
    headers, body = response(pc, url)
    assert body == PARTIAL
    assert headers.get_header("WARC-Truncated") == "disconnect"
    assert headers.get_header("Evidence-Declared-Length") == str(DECLARED)
    assert any("the main document is incomplete" in w for w in pc.warnings)


@pytest.mark.parametrize("length", [True, False])
def test_stalled_subresource_is_marked_truncated(browser, site, tmp_path, length):
    pc, _ = capture(browser, site.url(f"/robust/image?img=stall&length={int(length)}"), tmp_path)
    img = site.url(f"/robust/stall.png?length={int(length)}")
    headers, body = response(pc, img)
    assert body.startswith(b"\x89PNG") and len(body) == 1008
    assert headers.get_header("WARC-Truncated") == "time"
    assert headers.get_header("Evidence-Received-Length") == "1008"
    ex = next(e for e in json.loads(pc.artifact("network").path.read_text())["exchanges"] if e["url"] == img)
    assert ex["body"]["complete"] is False
    assert ex["truncated"] == {
        "reason": "time",
        "received_length": 1008,
        "declared_length": DECLARED if length else None,
        "note": "the response was still arriving when the capture stopped waiting",
    }
    assert any("1 response(s) arrived incomplete" in w and img in w for w in pc.warnings), pc.warnings
    warc_check(pc)


def test_page_whose_image_arrives_is_clean(browser, site, tmp_path):
    pc, _ = capture(browser, site.url("/robust/image?img=fine"), tmp_path)
    assert pc.warnings == []
    for kind, uri, headers, _ in records(pc):
        if kind == "response":
            assert headers.get_header("WARC-Truncated") is None, uri
    assert_one_document(pc)


# -- fail before work ---------------------------------------------------------------


def cli(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    e = dict(os.environ, EVIDENCE_HOME=str(home), COLUMNS="200", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "evidence.cli", *args], capture_output=True, text=True, env=e, timeout=300
    )


def blobs(home: Path) -> list[Path]:
    return [p for p in (home / "store" / "sha256").rglob("*") if p.is_file()] if (home / "store" / "sha256").exists() else []


def test_wrong_passphrase_fails_before_the_browser(tmp_path, site):
    home = tmp_path / "home"
    assert cli(home, "init", env={"EVIDENCE_KEY_PASSPHRASE": "right"}).returncode == 0
    before = blobs(home)
    t = time.monotonic()
    p = cli(home, "capture", site.url("/robust/second"), "--case", "X", env={"EVIDENCE_KEY_PASSPHRASE": "wrong"})
    took = time.monotonic() - t
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert p.stderr.startswith("error:") and "wrong passphrase" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
    assert blobs(home) == before
    # A browser launch alone takes about a second here, a capture several: none happened.
    assert took < 10


def test_wrong_passphrase_in_the_library_stores_nothing(tmp_path, site):
    from ledger.log import Ledger

    Ledger.init(tmp_path / "h", passphrase=b"right").close()
    led = Ledger.open(tmp_path / "h", passphrase=b"wrong")
    try:
        size0 = led.size()
        t = time.monotonic()
        with pytest.raises(KeyFileError, match="wrong passphrase"):
            capture_page(site.url("/robust/second"), case="X", ledger=led)
        assert time.monotonic() - t < 2  # no browser was started
        assert list(led.artifacts) == [] and led.size() == size0
    finally:
        led.close()


# -- temporary directories ------------------------------------------------------------


def test_work_directories_of_dead_captures_are_swept(tmp_path):
    import fcntl

    dead = tmp_path / "evidence-capture-dead"
    dead.mkdir()
    (dead / LOCK_NAME).touch()
    (dead / "screenshot-full.png").write_bytes(b"x")
    alive = tmp_path / "evidence-batch-alive"
    alive.mkdir()
    held = open(alive / LOCK_NAME, "wb")
    fcntl.flock(held, fcntl.LOCK_EX)
    fresh = tmp_path / "evidence-capture-justmade"  # no lock yet: may be a capture starting
    fresh.mkdir()
    old = tmp_path / "evidence-interactive-old"
    old.mkdir()
    os.utime(old, (time.time() - 2 * 86400, time.time() - 2 * 86400))
    other = tmp_path / "evidence-live-window"  # livestream leftovers are kept on purpose
    other.mkdir()
    try:
        assert sweep_workdirs(tmp_path) == 2
        assert not dead.exists() and not old.exists()
        assert alive.exists() and fresh.exists() and other.exists()
    finally:
        held.close()
    assert sweep_workdirs(tmp_path) == 1 and not alive.exists()


@pytest.mark.slow
def test_killed_capture_leaves_nothing_for_the_next(tmp_path, site):
    import shutil
    import tempfile

    home = tmp_path / "home"
    # Short: Chromium puts a unix socket (at most 107 bytes of path) under TMPDIR.
    tmp = Path(tempfile.mkdtemp(prefix="ec-", dir="/tmp"))
    try:
        _killed_and_swept(home, tmp, site)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _killed_and_swept(home: Path, tmp: Path, site: Any) -> None:
    env = {"TMPDIR": str(tmp)}
    assert cli(home, "init", "--no-passphrase", env=env).returncode == 0
    e = dict(os.environ, EVIDENCE_HOME=str(home), TMPDIR=str(tmp))
    args = [sys.executable, "-m", "evidence.cli", "capture", site.url("/robust/stalled?length=0"), "--case", "X",
            "--load-timeout", "20"]
    for sig in ("KILL", "TERM"):
        proc = subprocess.Popen(args, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        end = time.monotonic() + 60
        while not any((d / "page" / "bodies").exists() for d in tmp.glob("evidence-capture-*")):
            assert time.monotonic() < end and proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        if sig == "KILL":
            proc.kill()
            proc.wait(30)
            assert list(tmp.glob("evidence-capture-*"))  # left behind, as a kill must
        else:
            proc.terminate()
            _, err = proc.communicate(timeout=60)
            assert proc.returncode != 0 and "Traceback" not in err
            # SIGTERM is handled: the process cleaned up after itself.
            assert list(tmp.glob("evidence-capture-*")) == []
        if sig == "KILL":
            p = cli(home, "capture", site.url("/robust/second"), "--case", "X", "--json", env=env)
            assert p.returncode == 0, p.stderr
            assert list(tmp.glob("evidence-capture-*")) == []  # swept, and its own removed
