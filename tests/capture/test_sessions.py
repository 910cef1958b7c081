"""Captures with a saved login, credential headers hashed in WARCs, expected texts, devices.

A local members-only shop (login_site.py) stands in for a platform. The
investigator's secrets (session cookie, a cookie the page sets, a bearer
token) must appear in no byte of the exported case file, WARCs inflated;
the server's own log shows they really crossed the wire, so the search
could have found them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from login_site import MARKER, LoginSite
from PIL import Image

pytestmark = [pytest.mark.browser, pytest.mark.slow]
PASS = "correct horse battery staple"


def run(home, *args, check=None, passphrase=PASS):
    env = dict(os.environ, EVIDENCE_HOME=str(home), COLUMNS="200")
    env.pop("EVIDENCE_KEY_PASSPHRASE", None)
    if passphrase:
        env["EVIDENCE_KEY_PASSPHRASE"] = passphrase
    p = subprocess.run([sys.executable, "-m", "evidence.cli", *args], capture_output=True, text=True, env=env, timeout=300)
    assert "Traceback" not in p.stderr
    if check is not None:
        assert p.returncode == check, (p.returncode, p.stdout, p.stderr)
    return p


@pytest.fixture(scope="module")
def site():
    s = LoginSite().start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    h = tmp_path_factory.mktemp("sess") / "home"
    run(h, "init", check=0)
    return h


def records(home):
    return json.loads(run(home, "log", "--json", check=0).stdout)["records"]


def store_files(home):
    return sorted(p for p in (home / "store").rglob("*") if p.is_file())


def import_session(home, tmp_path, site, name, marker=MARKER):
    state = tmp_path / f"{name}.json"
    state.write_text(json.dumps(site.storage_state(site.new_sid())))
    args = ["session", "import", name, str(state), "--operator", "Li Wei"]
    run(home, *args, *(["--marker", marker] if marker else []), check=0)
    return json.loads(state.read_text())["cookies"][0]["value"]


def manifests(z: zipfile.ZipFile) -> list[dict]:
    return [json.loads(z.read(n)) for n in z.namelist() if re.fullmatch(r"evidence/exhibit-\d+\.json", n)]


def case_bytes(wacz: Path) -> list[tuple[str, bytes]]:
    """Every file of the case file, WARCs inflated member by member."""
    out = []
    with zipfile.ZipFile(wacz) as z:
        for n in z.namelist():
            data = z.read(n)
            out.append((n, data))
            if n.endswith(".warc.gz"):
                # Each record is its own gzip member; gzip.decompress inflates them all.
                out.append((n + " (inflated)", gzip.decompress(data)))
                with gzip.GzipFile(fileobj=io.BytesIO(data)) as g:
                    assert g.read() == out[-1][1]
    return out


def test_session_capture_keeps_credentials_out_of_the_case_file(home, tmp_path, site):
    sid = import_session(home, tmp_path, site, "shop")
    session_file = home / "sessions" / "shop.session"
    before = session_file.read_bytes()
    res = run(home, "capture", site.url("/members"), "--case", "C-1", "--session", "shop", "--json", check=0)
    ex = json.loads(res.stdout)["exhibits"][0]
    # The control: the secrets really were in the browser's traffic, and the page used them.
    sent = {(p.split("?")[0], h): v for p, h, v in site.seen}
    assert sid in sent[("/members", "Cookie")]
    assert sent[("/api/price", "Authorization")] == f"Bearer {site.api_token}"
    assert site.page_cookie in sent[("/api/price", "Cookie")]  # the page's own cookie was set and sent back
    # Cookies the page set are not written back to the session.
    assert session_file.read_bytes() == before
    wacz = tmp_path / "c1.wacz"
    run(home, "export", "C-1", "-o", str(wacz), check=0)
    files = case_bytes(wacz)
    assert any(n.endswith(".warc.gz (inflated)") for n, _ in files)
    for secret in (sid, site.page_cookie, site.api_token):
        for n, data in files:
            assert secret.encode() not in data, (secret, n)
    warc = b"".join(d for n, d in files if n.endswith("(inflated)"))
    # Names kept, values replaced by sha256:<hex> of the exact value.
    cookie_digest = "sha256:" + hashlib.sha256(f"sid={sid}".encode()).hexdigest()
    set_cookie = "sha256:" + hashlib.sha256(f"seen={site.page_cookie}; Path=/".encode()).hexdigest()
    bearer = "sha256:" + hashlib.sha256(f"Bearer {site.api_token}".encode()).hexdigest()
    assert f"Cookie: {cookie_digest}".encode() in warc
    assert f"Set-Cookie: {set_cookie}".encode() in warc
    assert f"Authorization: {bearer}".encode().lower() in warc.lower()
    assert b"Welcome alice" in warc
    # network.json lists the replacement; the manifest names the session, never a value.
    network = json.loads(next(d for n, d in files if n.endswith("network.json")))
    notes = [t for x in network["exchanges"] for t in x.get("transformations", [])]
    assert any(t.startswith("Cookie value replaced by its SHA-256") for t in notes)
    assert any(t.lower().startswith("set-cookie value replaced") for t in notes)
    assert any(t.lower().startswith("authorization value replaced") for t in notes)
    html = tmp_path / "record.html"
    run(home, "record", str(ex["index"]), "--format", "html", "-o", str(html), check=0)
    text = html.read_text("utf-8")
    assert "a saved login session was used: shop" in text and "made by Li Wei" in text and "sid @ 127.0.0.1" in text
    assert "cannot log in as the investigator" in text
    assert sid not in text


def test_exhibit_records_session_and_profile(home, tmp_path, site):
    import_session(home, tmp_path, site, "shop2")
    res = run(home, "capture", site.url("/members"), "--case", "C-2", "--session", "shop2", "--json", check=0)
    idx = json.loads(res.stdout)["exhibits"][0]["index"]
    wacz = tmp_path / "c2.wacz"
    run(home, "export", "C-2", "-o", str(wacz), check=0)
    with zipfile.ZipFile(wacz) as z:
        found = manifests(z)
        envs = [json.loads(z.read(n)) for n in z.namelist() if n.endswith("environment.json")]
    assert len(found) == 1 and len(envs) == 1
    info = found[0]["info"]
    s = info["session"]
    assert s["name"] == "shop2" and s["made_by"] == "Li Wei" and s["made_at"].endswith("Z")
    assert [(c["name"], c["domain"]) for c in s["cookies"]] == [("sid", "127.0.0.1")]
    assert all("value" not in c for c in s["cookies"])
    check = info["environment_check"]
    assert check["profile"] == "logged-in session shop2" and check["fresh_profile"] is False
    assert envs[0]["profile"]["statement"].startswith("each capture runs in a new browser context started from logged-in session shop2")
    assert envs[0]["profile"]["clean"] is True
    assert info["expect"]["texts"] == [MARKER] and idx >= 0
    # The control: without a session the same check says fresh profile.
    res = run(home, "capture", site.url("/public"), "--case", "C-2b", "--json", check=0)
    wacz = tmp_path / "c2b.wacz"
    run(home, "export", "C-2b", "-o", str(wacz), check=0)
    with zipfile.ZipFile(wacz) as z:
        info = manifests(z)[0]["info"]
    assert info["environment_check"]["profile"] == "fresh profile" and info["environment_check"]["fresh_profile"] is True
    assert "session" not in info


def test_lapsed_login_is_refused_and_nothing_is_appended(home, tmp_path, site):
    import_session(home, tmp_path, site, "lapsing")
    n, blobs = len(records(home)), store_files(home)
    site.sids.clear()  # the platform logged the investigator out
    p = run(home, "capture", site.url("/members"), "--case", "C-3", "--session", "lapsing", check=1)
    assert p.stderr.startswith("error: expected text not found (session expired?)") and len(p.stderr.strip().splitlines()) == 1
    assert len(records(home)) == n and store_files(home) == blobs
    # --expect on its own, no session: the same refusal; its control passes.
    p = run(home, "capture", site.url("/public"), "--case", "C-3", "--expect", "公开商品", "--expect", "not on the page", check=1)
    assert "'not on the page'" in p.stderr and "公开商品" not in p.stderr
    assert len(records(home)) == n and store_files(home) == blobs
    run(home, "capture", site.url("/public"), "--case", "C-3", "--expect", "公开商品", check=0)
    assert len(records(home)) == n + 1


def test_batch_stops_when_the_login_lapses(home, tmp_path, site):
    import_session(home, tmp_path, site, "batch")
    urls = tmp_path / "urls.txt"
    urls.write_text("\n".join(site.url(f"/members?p={i}") for i in range(1, 5)) + "\n")
    site.member_pages, site.expire_after = 0, 2  # the second member page is the last one served
    n = len(records(home))
    try:
        p = run(home, "capture", "--urls", str(urls), "--case", "C-4", "--session", "batch", "--json", check=1)
    finally:
        site.expire_after = None
    out = json.loads(p.stdout)
    assert [e["url"] for e in out["exhibits"]] == [site.url("/members?p=1"), site.url("/members?p=2")]
    fails = out["failures"]
    assert [f["url"] for f in fails] == [site.url("/members?p=3"), site.url("/members?p=4")]
    assert fails[0]["error"].startswith("expected text not found (session expired?)")
    assert fails[1]["error"].startswith("not captured")
    assert "remaining 1 URL(s) were not captured" in out["stopped"]
    assert len(records(home)) == n + 2


def test_device_descriptor_drives_the_capture(home, tmp_path, site):
    p = run(home, "capture", site.url("/h5"), "--case", "C-5", "--device", "iPhone 13", "--json", check=0)
    idx = json.loads(p.stdout)["exhibits"][0]["index"]
    wacz = tmp_path / "c5.wacz"
    run(home, "export", "C-5", "-o", str(wacz), check=0)
    with zipfile.ZipFile(wacz) as z:
        names = z.namelist()
        info = manifests(z)[0]["info"]
        full = Image.open(io.BytesIO(z.read(next(n for n in names if n.endswith("screenshot-full.png")))))
        view = Image.open(io.BytesIO(z.read(next(n for n in names if n.endswith("screenshot-viewport.png")))))
    d = info["device"]["descriptor"]
    assert info["device"]["name"] == "iPhone 13" and d["viewport"]["width"] == 390 and d["device_scale_factor"] == 3
    assert info["viewport"]["user_agent"] == d["user_agent"] and "iPhone" in d["user_agent"]
    assert info["viewport"]["is_mobile"] is True and info["viewport"]["has_touch"] is True
    # Pixels = CSS width x scale factor (the H5 page is laid out at the device's 390 CSS px).
    assert full.size == (390 * 3, 1500 * 3) and view.size == (390 * 3, d["viewport"]["height"] * 3)
    assert idx >= 0
    # The control: no device, a desktop screenshot at scale 1.
    run(home, "capture", site.url("/h5"), "--case", "C-5b", "--viewport", "800x600", check=0)
    wacz = tmp_path / "c5b.wacz"
    run(home, "export", "C-5b", "-o", str(wacz), check=0)
    with zipfile.ZipFile(wacz) as z:
        full = Image.open(io.BytesIO(z.read(next(n for n in z.namelist() if n.endswith("screenshot-full.png")))))
    assert full.size == (800, 1500)


def test_bad_input_is_one_line_exit_2_nothing_appended(home, tmp_path, site):
    n = len(records(home))
    cases = [
        (["--device", "iphone 13"], "unknown device 'iphone 13': did you mean 'iPhone 13'"),
        (["--device", "iPhone 13", "--viewport", "800x600"], "--device sets the viewport"),
        (["--device", "iPhone 13", "--mobile"], "--device sets the viewport"),
        (["--session", "nobody"], "no session named nobody"),
        (["--session", "../etc/passwd"], "session name '../etc/passwd' is not usable"),
        (["--expect", " "], "--expect must not be empty"),
    ]
    for extra, msg in cases:
        p = run(home, "capture", site.url("/public"), "--case", "C-6", *extra, check=2)
        assert p.stderr.startswith("error:") and msg in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert len(records(home)) == n


def test_devices_lists_playwrights_descriptors(home):
    from playwright.sync_api import sync_playwright

    out = json.loads(run(home, "devices", "--json", check=0).stdout)["devices"]
    with sync_playwright() as p:
        want = p.devices
    assert [d["name"] for d in out] == list(want)
    pixel = next(d for d in out if d["name"] == "Pixel 7")
    assert pixel["device_scale_factor"] == want["Pixel 7"]["device_scale_factor"] and pixel["is_mobile"] is True


def test_queued_job_names_its_session_and_the_worker_uses_it(tmp_path, site):
    from capture.worker import enqueue, run_worker
    from ledger.log import Ledger
    from ledger.queue import Queue

    h = tmp_path / "qhome"
    run(h, "init", check=0)
    import_session(h, tmp_path, site, "q")
    sid = next(iter(site.sids))  # not necessarily q's; only used to show no cookie reaches the table
    os.environ["EVIDENCE_KEY_PASSPHRASE"] = PASS
    try:
        led = Ledger.open(h)
        try:
            ids = enqueue(led, [site.url("/members"), site.url("/members?again")], case="C-7", session="q")
            q = Queue(led.store)
            jobs = [q.get(i) for i in ids]
            assert all(j.options["session"] == "q" for j in jobs)
            raw = json.dumps([j.options for j in jobs])
            assert "sid-" not in raw and sid not in raw
            stats = run_worker(led, once=True, max_jobs=1)
            assert len(stats.done) == 1 and not stats.failed and q.get(ids[0]).state == "done"
            # The platform logs the investigator out: the next job fails, and the session's other jobs stop.
            ids2 = enqueue(led, [site.url("/public")], case="C-7", session="q", expect=["公开商品"])
            site.sids.clear()
            stats = run_worker(led, once=True, max_jobs=1)
            assert stats.failed and "expected text not found (session expired?)" in stats.failed[0][1]
            assert q.get(ids2[0]).state == "failed" and q.get(ids2[0]).error.startswith("not captured")
        finally:
            led.close()
    finally:
        del os.environ["EVIDENCE_KEY_PASSPHRASE"]


def test_livestream_page_mode_starts_from_the_session(home, tmp_path, site):
    """A live room behind a login, recorded in page mode from a saved session; its cookie stays out of the case."""
    sid = import_session(home, tmp_path, site, "live-room")
    case = "LIVE-SESSION-1"
    before = [v for _, h, v in site.seen if h == "Cookie" and sid in v]
    p = run(home, "livestream", site.url("/members"), "--mode", "page", "--duration", "4", "--window", "2",
            "--case", case, "--session", "live-room", "--json", check=0)
    s = json.loads(p.stdout)
    assert s["windows"], s
    # the browser really sent the saved login, and the room showed the members' page
    assert len([v for _, h, v in site.seen if h == "Cookie" and sid in v]) > len(before)
    recs = [r for r in records(home) if r["case"] == case]
    wacz = tmp_path / "live.wacz"
    run(home, "export", case, "-o", str(wacz), check=0)
    with zipfile.ZipFile(wacz) as z:
        infos = [m["info"] for m in manifests(z)]
    assert any((i.get("session") or {}).get("name") == "live-room" for i in infos), infos
    assert all(sid.encode() not in data for _, data in case_bytes(wacz))
    assert any(r["kind"] == "exhibit" for r in recs)
    # a session with a direct stream mode is refused before anything starts
    n = len(records(home))
    p = run(home, "livestream", site.url("/live.m3u8"), "--mode", "hls", "--duration", "2", "--case", case,
            "--session", "live-room", check=2)
    assert "--mode page" in p.stderr and len(records(home)) == n


def test_enqueue_command_names_the_session(home, tmp_path, site):
    import_session(home, tmp_path, site, "queued")
    p = run(home, "enqueue", site.url("/members"), "--case", "Q-1", "--session", "queued", "--device", "Pixel 7",
            "--expect", "Welcome", "--json", check=0)
    (job,) = json.loads(p.stdout)["jobs"]
    listed = json.loads(run(home, "jobs", "--json", check=0).stdout)
    assert job in [j["id"] for j in listed["jobs"]]
    before = len(listed["jobs"])
    # unknown session or device: one line, exit 2, nothing queued
    for bad in (["--session", "nobody"], ["--device", "Nokia 3310 Imaginary"]):
        p = run(home, "enqueue", site.url("/members"), "--case", "Q-1", *bad, check=2)
        assert len([ln for ln in p.stderr.splitlines() if ln.strip()]) == 1
    assert len(json.loads(run(home, "jobs", "--json", check=0).stdout)["jobs"]) == before
