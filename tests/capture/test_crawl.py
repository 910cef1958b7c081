"""`evidence crawl`: a generated shop, breadth first, one exhibit per page, resumable after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "verify"))

from case_fixtures import build_case  # noqa: E402
from crawl_shop import LOGGED_IN, GeneratedShop  # noqa: E402

from capture.crawl import MAX_LINKS_PER_PAGE, Scope, normalise, page_links, start  # noqa: E402
from capture.session import PageCapture  # noqa: E402
from evidence.case import export_case  # noqa: E402
from ledger.crawls import Crawls  # noqa: E402
from ledger.errors import UsageError  # noqa: E402
from ledger.exhibit import ArtifactFile  # noqa: E402
from ledger.log import Ledger  # noqa: E402
from verify.case import verify_case  # noqa: E402

FAST = ["--delay", "0", "--settle-timeout", "0.5", "--max-scroll", "0", "--no-mhtml"]


def run(home, *args, check=None, timeout=300):
    env = dict(os.environ, EVIDENCE_HOME=str(home), COLUMNS="200")
    p = subprocess.run([sys.executable, "-m", "evidence.cli", *args], capture_output=True, text=True, env=env, timeout=timeout)
    assert "Traceback" not in p.stderr, p.stderr
    if check is not None:
        assert p.returncode == check, (p.returncode, p.stdout, p.stderr)
    return p


@pytest.fixture(scope="module")
def shops():
    other = GeneratedShop(1, 1).start()
    shop = GeneratedShop(2, 2, other=other.url("/")).start()
    yield shop, other
    shop.stop()
    other.stop()


def _init(tmp_path):
    home = tmp_path / "home"
    run(home, "init", "--no-passphrase", check=0)
    return home


def _records(home, case):
    with Ledger.open(home) as led:
        return list(led.records(case=case))


def _exhibit_urls(home, case):
    """URL each exhibit of ``case`` was captured from, read from its sealed manifest."""
    with Ledger.open(home) as led:
        out = {}
        for r in led.records(case=case):
            if r.kind == "exhibit":
                m = r.payload["manifest"]
                with led.artifacts.open(m["sha256"]) as f:
                    out[r.index] = json.loads(f.read())["info"]["url"]
        return out


# -- links and scope (no browser) -------------------------------------------------


def test_normalise_drops_fragments_and_non_pages():
    assert normalise("HTTP://Shop.Example:80/a#x") == "http://shop.example/a"
    assert normalise("../b?p=2#f", "https://h:8443/x/y") == "https://h:8443/b?p=2"
    assert normalise("https://h") == "https://h/"
    for bad in ("javascript:alert(1)", "mailto:a@b", "data:text/html,x", "http://user:pw@h/", "http://h:99999/"):
        assert normalise(bad, "http://h/") is None, bad
    assert normalise("#top", "http://h/p?q=1#x") == "http://h/p?q=1"


def test_scope_kinds_and_refusals():
    start = "http://127.0.0.1:5000/shop/1"
    host = Scope.make(start, None)
    assert host.allows("http://127.0.0.1:5000/x") and not host.allows("http://127.0.0.1:5001/x")
    prefix = Scope.make(start, "http://127.0.0.1:5000/shop", exclude=[r"/shop/9"])
    assert prefix.allows("http://127.0.0.1:5000/shop/2") and not prefix.allows("http://127.0.0.1:5000/about")
    assert not prefix.allows("http://127.0.0.1:5000/shop/9")
    rx = Scope.make(start, r"^http://127\.0\.0\.1:5000/(shop|item)/", include=[r"/shop/\d+$"])
    assert rx.allows("http://127.0.0.1:5000/shop/7") and not rx.allows("http://127.0.0.1:5000/item/7")
    assert Scope.from_json(rx.to_json()) == rx
    with pytest.raises(UsageError, match="not a valid regular expression"):
        Scope.make(start, "(unclosed")
    with pytest.raises(UsageError, match="not a valid regular expression"):
        Scope.make(start, None, exclude=["*x"])
    with pytest.raises(UsageError, match="outside the crawl's own scope"):
        Scope.make(start, "http://127.0.0.1:5000/other/")
    with pytest.raises(UsageError, match="outside the crawl's own scope"):
        Scope.make(start, None, exclude=["/shop/"])


def test_links_from_the_dom_and_its_frames(tmp_path):
    dom = tmp_path / "dom.html"
    dom.write_text(
        "<html><head><base href='http://shop.test/cat/'></head><body>"
        "<a href='item?id=1#reviews'>1</a><a href='item?id=1'>again</a><a href='/about'>about</a>"
        "<a href='javascript:void(0)'>js</a><a href='mailto:x@y'>mail</a><a>no href</a>"
        "<map><area href='http://other.test/ad'></map>"
        "<a href='http://shop.test/" + "p" * 70000 + "'>long</a></body></html>", "utf-8")
    frame = tmp_path / "frame-1.html"
    frame.write_text("<a href='notice'>公告</a><a href='/about'>about</a>", "utf-8")
    pc = PageCapture("http://shop.test/", tmp_path, [
        ArtifactFile("dom.html", dom, "text/html; charset=utf-8", "dom"),
        ArtifactFile("frame-1.html", frame, "text/html; charset=utf-8", "frame-dom"),
        ArtifactFile("screenshot.png", tmp_path / "none.png", "image/png", "screenshot-viewport"),
    ], {"final_url": "http://shop.test/", "frames": [{"url": "http://shop.test/f/", "artifact": "frame-1.html"}]})
    links = page_links(pc)
    assert links[:4] == ["http://shop.test/cat/item?id=1", "http://shop.test/about", "http://other.test/ad",
                         "http://shop.test/" + "p" * 70000]
    # The frame's relative link resolves against the frame's own URL; duplicates across documents once.
    assert links[4:] == ["http://shop.test/f/notice"]


# -- bad input -----------------------------------------------------------------------


@pytest.mark.slow  # each CLI start is seconds on a loaded machine
def test_bad_input_is_one_line_exit_2_and_nothing_appended(tmp_path, shops):
    shop, _ = shops
    home = _init(tmp_path)
    with Ledger.open(home) as led:
        size = led.size()
    shop.hits.clear()
    # As a user types them (each CLI run is slow on a loaded machine: the two the issue names).
    for flag, value in [("--scope", "(unclosed"), ("--scope", "http://127.0.0.1:1/elsewhere/")]:
        p = run(home, "crawl", shop.url("/"), "--case", "C-BAD", *FAST, flag, value, check=2)
        assert len(p.stderr.strip().splitlines()) == 1 and p.stderr.startswith("error:"), (flag, p.stderr)
    assert "no crawl 99" in run(home, "crawl", "--resume", "99", check=2).stderr
    # The rest through the same entry point the CLI uses.
    with Ledger.open(home) as led:
        for kw in [dict(include=["[a-"]), dict(exclude=["/$"]), dict(max_pages=0), dict(delay=-1),
                   dict(max_depth=-1), dict(scope="https://"), dict(load_timeout=0)]:
            with pytest.raises(UsageError):
                start(shop.url("/"), case="C-BAD", ledger=led, **kw)
        for url in ["ftp://x/", "http://", "http://h/ x"]:
            with pytest.raises(UsageError):
                start(url, case="C-BAD", ledger=led)
        with pytest.raises(UsageError):
            start(shop.url("/"), case=" ", ledger=led)
        assert led.size() == size
        assert Crawls(led.store).list() == []
    assert shop.hits == Counter()  # no browser went anywhere
    # Control: the same entry point with good arguments stores a crawl (not run here).
    with Ledger.open(home) as led:
        prepared = start(shop.url("/"), case="C-BAD", ledger=led, include=["/"], max_depth=0)
        assert Crawls(led.store).get(prepared.crawl.id).state == "running" and led.size() == size


# -- a real crawl ----------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.slow
def test_crawl_a_shop_export_and_verify(tmp_path, shops):
    shop, other = shops
    shop.hits.clear()
    home = _init(tmp_path)
    p = run(home, "crawl", shop.url("/"), "--case", "C-1", "--operator", "Li Wei", *FAST, "--json", check=0)
    res = json.loads(p.stdout)
    assert (res["state"], res["pages"], res["failed"], res["not_visited"]) == ("done", shop.pages, 0, 0)
    recs = _records(home, "C-1")
    assert [r.kind for r in recs] == ["exhibit"] * shop.pages + ["crawl"]
    crawl = recs[-1]
    assert crawl.index == res["record"]
    pages = crawl.payload["pages"]
    expect = {shop.url(p) for p in ["/", "/about", "/list?page=1", "/list?page=2", "/notice", *(f"/item/{i}" for i in range(1, 5))]}
    assert {p["url"] for p in pages} == expect and len(pages) == len(expect)
    # One exhibit per page, captured from that very URL.
    urls = _exhibit_urls(home, "C-1")
    assert {p["exhibit_index"]: p["url"] for p in pages} == urls
    assert sorted(res["exhibits"]) == sorted(urls)
    # Breadth first: depths never go down in visiting order.
    depths = [p["depth"] for p in sorted(pages, key=lambda p: p["exhibit_index"])]
    assert depths == sorted(depths) and depths[0] == 0
    index = next(p for p in pages if p["url"] == shop.url("/"))
    # Fragments dropped, each page once ("#top" is the page itself); mailto: and javascript: are no pages;
    # the frame's links count, resolved against the frame's URL (/notice is linked only from there).
    assert index["links"] == [shop.url("/list?page=1"), shop.url("/about"), shop.url("/"), shop.url("/notice")]
    assert index["out_of_scope"] == [other.url("/ad?x=1")]
    item1 = next(p for p in pages if p["url"] == shop.url("/item/1"))
    assert other.url("/item/1") in item1["out_of_scope"] and shop.url("/item/2") in item1["links"]
    assert other.hits == Counter()  # listed, never followed
    assert all(shop.hits[p] == 1 for p in ["/", "/about", "/item/1", "/item/4", "/list?page=2"]), shop.hits
    run(home, "audit", check=0)
    # The case file carries the crawl record and the verifier checks it.
    out = tmp_path / "case.wacz"
    run(home, "export", "C-1", "-o", str(out), check=0)
    v = json.loads(run(home, "verify", str(out), "--json", check=0).stdout)
    checks = [c for c in v["checks"] if c["name"] == "crawl"]
    assert len(checks) == 1 and checks[0]["ok"], checks
    # Finished: a resume is refused, nothing appended.
    n = len(_records(home, "C-1"))
    assert "finished" in run(home, "crawl", "--resume", str(res["crawl"]), check=2).stderr
    assert len(_records(home, "C-1")) == n


@pytest.mark.browser
@pytest.mark.slow
def test_bounds_depth_and_pages(tmp_path, shops):
    shop, _ = shops
    home = _init(tmp_path)
    res = json.loads(run(home, "crawl", shop.url("/"), "--case", "C-D", "--max-depth", "1", *FAST, "--json", check=0).stdout)
    crawl = _records(home, "C-D")[-1].payload
    assert {p["url"] for p in crawl["pages"]} == {shop.url("/"), shop.url("/about"), shop.url("/list?page=1"), shop.url("/notice")}
    assert res["pages"] == 4 and crawl["not_visited"] == []
    res = json.loads(run(home, "crawl", shop.url("/"), "--case", "C-P", "--max-pages", "2", *FAST, "--json", check=0).stdout)
    crawl = _records(home, "C-P")[-1].payload
    assert res["pages"] == 2 and len(crawl["pages"]) == 2
    assert shop.url("/about") in crawl["not_visited"] or shop.url("/list?page=1") in crawl["not_visited"]


@pytest.mark.browser
@pytest.mark.slow
def test_a_page_flooding_links_cannot_bloat_the_crawl_record(tmp_path):
    shop = GeneratedShop(1, 1, frame=False, flood=MAX_LINKS_PER_PAGE + 500).start()
    try:
        home = _init(tmp_path)
        res = json.loads(run(home, "crawl", shop.url("/"), "--case", "C-F", "--max-pages", "1", *FAST, "--json", check=0).stdout)
        crawl = _records(home, "C-F")[-1].payload
        index = crawl["pages"][0]
        assert len(index["links"]) + len(index["out_of_scope"]) == MAX_LINKS_PER_PAGE
        # Control: the links before the flood are all kept, in document order.
        assert index["links"][:2] == [shop.url("/list?page=1"), shop.url("/about")]
        with Ledger.open(home) as led:
            m = next(led.records(case="C-F")).payload["manifest"]
            with led.artifacts.open(m["sha256"]) as f:
                info = json.loads(f.read())["info"]["crawl"]
        assert info["links_kept"] == MAX_LINKS_PER_PAGE and info["links_found"] > MAX_LINKS_PER_PAGE + 500
        assert res["not_visited"] == MAX_LINKS_PER_PAGE - 1 - 1  # every kept in-scope link but the page itself
    finally:
        shop.stop()


@pytest.mark.browser
@pytest.mark.slow
def test_sigkill_mid_crawl_then_resume_captures_no_page_twice(tmp_path):
    shop = GeneratedShop(1, 3).start()
    try:
        home = _init(tmp_path)
        env = dict(os.environ, EVIDENCE_HOME=str(home))
        proc = subprocess.Popen(
            [sys.executable, "-m", "evidence.cli", "crawl", shop.url("/"), "--case", "C-K", *FAST, "--delay", "0.3"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )
        deadline = time.monotonic() + 240
        sealed = 0
        while time.monotonic() < deadline and proc.poll() is None:
            with Ledger.open(home) as led:
                sealed = sum(1 for r in led.records(case="C-K") if r.kind == "exhibit")
            if sealed >= 2:
                break
            time.sleep(0.1)
        assert proc.poll() is None, proc.stderr.read()
        os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its browser, no chance to clean up
        proc.wait(30)
        proc.stderr.close()
        with Ledger.open(home) as led:
            killed_at = [r.kind for r in led.records(case="C-K")]
            c = Crawls(led.store).list()[0]
        assert c.state == "running" and "crawl" not in killed_at and 2 <= len(killed_at) < shop.pages
        res = json.loads(run(home, "crawl", "--resume", str(c.id), "--json", check=0).stdout)
        assert res["state"] == "done" and res["pages"] == shop.pages
        urls = _exhibit_urls(home, "C-K")
        per_url = Counter(urls.values())
        assert len(per_url) == shop.pages and set(per_url.values()) == {1}, per_url
        crawl = _records(home, "C-K")[-1]
        assert crawl.kind == "crawl"
        assert {p["exhibit_index"] for p in crawl.payload["pages"]} == set(urls)
        run(home, "audit", check=0)
    finally:
        shop.stop()


@pytest.mark.browser
@pytest.mark.slow
def test_expired_session_pauses_the_crawl_and_resume_finishes(tmp_path):
    shop = GeneratedShop(1, 1).start()
    try:
        home = _init(tmp_path)
        shop.expire_after = 2  # documents served before the "login" lapses
        p = run(home, "crawl", shop.url("/"), "--case", "C-E", "--expect", LOGGED_IN, *FAST, check=1)
        assert "paused" in p.stderr and "session expired" in p.stderr and "--resume 1" in p.stderr
        kinds = [r.kind for r in _records(home, "C-E")]
        assert kinds == ["exhibit"] * 2  # the login page was not sealed, no crawl record yet
        with Ledger.open(home) as led:
            assert Crawls(led.store).get(1).state == "paused"
        # Still logged out: pauses again, nothing appended.
        run(home, "crawl", "--resume", "1", check=1)
        assert len(_records(home, "C-E")) == 2
        shop.expired, shop.expire_after = False, None  # logged in again
        res = json.loads(run(home, "crawl", "--resume", "1", "--json", check=0).stdout)
        assert res["pages"] == shop.pages
        per_url = Counter(_exhibit_urls(home, "C-E").values())
        assert len(per_url) == shop.pages and set(per_url.values()) == {1}
    finally:
        shop.stop()


# -- the verifier's crawl check (no browser) -----------------------------------------------


def _crawl_payload(pages):
    return {"crawl": 1, "start_url": "http://shop.example/", "pages": [
        {"url": f"http://shop.example/item/{n}", "depth": 1, "exhibit_index": i, "links": [], "out_of_scope": []}
        for n, i in enumerate(pages)]}


def _forged_case(tmp_path, name):
    """A case of two exhibits and a crawl record signed by the log's own key, naming ``name``'s pages."""
    led = Ledger.init(tmp_path / name / "home", unencrypted=True, origin="test.example/log")
    ours = build_case(led, tmp_path / name, "C-V", exhibits=2)
    theirs = build_case(led, tmp_path / name, "OTHER-9", exhibits=1, other_case_between=False)
    named = {
        "control": ours,
        "other-case": [*ours, theirs[0]],
        "not-an-exhibit": [ours[0], 0],  # record 0, the log-init, is in every bundle
        "not-an-index": [ours[0], str(ours[1])],
        "later": [ours[0], led.size() + 1],  # the exhibit sealed right after the crawl record
    }[name]
    led.append("crawl", _crawl_payload(named), case="C-V")
    build_case(led, tmp_path / name / "after", "C-V", exhibits=1, other_case_between=False)
    export_case(led, "C-V", tmp_path / name / "case.wacz")
    led.close()
    return verify_case(tmp_path / name / "case.wacz")


@pytest.mark.parametrize("name", ["control", "other-case", "not-an-exhibit", "not-an-index", "later"])
def test_verifier_checks_each_crawl_page_is_a_proven_exhibit_of_the_case(tmp_path, name):
    res = _forged_case(tmp_path, name)
    crawl = [c for c in res.checks if c.name == "crawl"]
    assert len(crawl) == 1, res.checks
    if name == "control":
        assert res.ok and crawl[0].ok, res.verdict()
        assert "every exhibit present and proven" in crawl[0].detail
    else:
        assert not res.ok and not crawl[0].ok and "crawl record names" in crawl[0].detail, (crawl, res.verdict())
        assert res.first_failure.name == "crawl"
