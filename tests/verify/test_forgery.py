"""Forgeries by someone who recomputes every digest: none may verify VALID.

Each test first runs its forging path with no change (everything re-serialised,
the index regenerated, every digest recomputed) and requires VALID, so that a
forgery cannot fail for a reason the forger would simply not have.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))

from case_fixtures import Forger, build_case, forged_warc, png_bytes  # noqa: E402

from evidence.case import export_case  # noqa: E402
from ledger.log import Ledger  # noqa: E402
from verify.case import verify_case  # noqa: E402

CASE = "C-F"


@pytest.fixture(scope="module")
def genuine(tmp_path_factory):
    """A case of 2 exhibits, exported once, with the log key that signed it."""
    d = tmp_path_factory.mktemp("forgery")
    led = Ledger.init(d / "home", unencrypted=True, origin="test.example/log")
    exhibits = build_case(led, d / "w", CASE, exhibits=2)
    out = d / "case.wacz"
    s = export_case(led, CASE, out)
    trust = list(led.config.trusted_vkeys)
    led.close()
    return out, trust, exhibits, s.export_record, d / "home"


def valid(path: Path, trust: list[str]) -> None:
    res = verify_case(path, trust=trust)
    assert res.ok and res.complete and res.trusted and res.exit_code() == 0, res.first_failure
    assert res.verdict().startswith("VALID")


def refused(path: Path, trust: list[str], *named: str) -> str:
    """Not VALID, exit 1, and the first failure names one of ``named``; returns that message."""
    res = verify_case(path, trust=trust)
    assert not res.ok and res.exit_code() == 1 and not res.verdict().startswith("VALID")
    f = res.first_failure
    msg = f"{f.where}: {f.detail}"
    assert any(n in msg for n in named), msg
    return msg


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "evidence.cli", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "EVIDENCE_HOME": "/nonexistent-evidence-home"})


def trust_file(tmp_path: Path, trust: list[str]) -> str:
    p = tmp_path / "log.vkey"
    p.write_text("\n".join(trust) + "\n")
    return str(p)


def test_control_every_digest_recomputed_is_still_valid(genuine, tmp_path):
    src, trust, *_ = genuine
    f = Forger(src)
    dst = f.write(tmp_path / "same.wacz")
    # The regenerated index, page list and map are byte for byte what export wrote.
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst) as b:
        for n in ("indexes/index.cdx", "pages/pages.jsonl", "evidence/case.json"):
            assert a.read(n) == b.read(n), n
    valid(dst, trust)
    r = cli("verify", str(dst), "--trust", trust_file(tmp_path, trust))
    assert r.returncode == 0 and "valid" in r.stdout.lower(), r.stdout + r.stderr


# -- forgery 1: a whole exhibit and the export record dropped ----------------------------

def drop_last_exhibit_and_export(f: Forger, export_index: int, exhibits: list[int]) -> None:
    f.drop_record(exhibits[-1])
    f.drop_record(export_index)
    for i in f.records():  # its custody record goes too: the forger leaves no trace of it
        rec = f.record(i)
        if rec["kind"] == "custody" and f"exhibit {exhibits[-1]} " in rec["payload"].get("note", ""):
            f.drop_record(i)


def test_forgery_1_dropped_exhibit_and_export_record_is_incomplete(genuine, tmp_path):
    src, trust, exhibits, e, _ = genuine
    valid(Forger(src).write(tmp_path / "control.wacz"), trust)
    f = Forger(src)
    drop_last_exhibit_and_export(f, e, exhibits)
    assert f.case["export_record"] is None
    dst = f.write(tmp_path / "f1.wacz")
    tf = trust_file(tmp_path, trust)
    r = cli("verify", str(dst), "--trust", tf)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert "case file is INCOMPLETE" in last and "case-export" in last, r.stderr
    assert "valid" not in r.stdout.lower()
    # --allow-incomplete: what is there is proven, the verdict says so, and never VALID.
    r = cli("verify", str(dst), "--trust", tf, "--allow-incomplete", "--json")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    out = json.loads(r.stdout)
    assert out["complete"] is False and out["ok"] is False
    assert out["verdict"].startswith("INCOMPLETE: proven in part") and "VALID" not in out["verdict"]
    assert [x["index"] for x in out["exhibits"] if x["proven"]] == exhibits[:1]
    gaps = {g["where"] for g in out["gaps"]}
    assert {"indexes/index.cdx", "pages/pages.jsonl"} <= gaps  # nothing signed states them any more
    assert "indexes/index.cdx" not in out["files"] and "evidence/exhibit-" + str(exhibits[0]) + ".json" in out["files"]
    r = cli("verify", str(dst), "--trust", tf, "--allow-incomplete")
    assert r.returncode == 0 and "INCOMPLETE: proven in part" in r.stderr and "valid" not in r.stdout.lower()
    from verify.report import render_html

    html = render_html(verify_case(dst, trust=trust, allow_incomplete=True), dst)
    assert "INCOMPLETE: proven in part" in html and not re.search(r"(?<!IN)VALID", html)
    sums = html.split("sha256sum -c", 1)[1].split("EOF</pre>", 1)[0]
    assert "indexes/index.cdx" not in sums and "pages/pages.jsonl" not in sums


def test_allow_incomplete_still_fails_on_anything_that_contradicts_a_signed_statement(genuine, tmp_path):
    src, trust, exhibits, e, _ = genuine
    f = Forger(src)
    f.drop_record(e)
    shot = next(p for p in f.names() if p.startswith(f"evidence/exhibit-{exhibits[0]}-") and p.endswith(".png"))
    f.put(shot, png_bytes(10, 10, (255, 0, 0)))
    res = verify_case(f.write(tmp_path / "bad.wacz"), trust=trust, allow_incomplete=True)
    assert res.exit_code() == 1 and res.verdict().startswith("INVALID") and res.first_failure.where == shot


# -- forgery 2: ... plus a forged WARC and an index pointing at it ---------------------------

def test_forgery_2_forged_extra_warc_with_regenerated_index(genuine, tmp_path):
    src, trust, exhibits, e, _ = genuine
    valid(Forger(src).write(tmp_path / "control.wacz"), trust)
    f = Forger(src)
    drop_last_exhibit_and_export(f, e, exhibits)
    url = f"http://shop.example/item/{len(exhibits) - 1}"
    f.put("archive/9-page.warc.gz", forged_warc(url, "<html><body><h1>商品</h1><p>价格 ¥1</p></body></html>".encode()))
    f.pages.append({"id": "exhibit-9", "url": url, "ts": "2026-11-22T10:01:00Z"})
    dst = f.write(tmp_path / "f2.wacz")
    assert b"9-page.warc.gz" in zipfile.ZipFile(dst).read("indexes/index.cdx")
    wacz = Path(sys.executable).with_name("wacz")
    w = subprocess.run([str(wacz), "validate", "-f", str(dst)], capture_output=True, text=True, timeout=120)
    assert w.returncode == 0, w.stdout + w.stderr  # a valid WACZ: a replay tool would show the forged price
    msg = refused(dst, trust, "archive/9-page.warc.gz", "case-export")
    r = cli("verify", str(dst), "--trust", trust_file(tmp_path, trust), "--allow-incomplete", "--json")
    out = json.loads(r.stdout)
    assert r.returncode == 0 and out["complete"] is False, msg
    assert {"archive/9-page.warc.gz", "indexes/index.cdx", "pages/pages.jsonl"} <= {g["where"] for g in out["gaps"]}
    assert not {"archive/9-page.warc.gz", "indexes/index.cdx"} & set(out["files"])


def test_forged_extra_warc_with_the_export_record_kept(genuine, tmp_path):
    src, trust, *_ = genuine
    f = Forger(src)
    f.put("archive/9-page.warc.gz", forged_warc("http://shop.example/item/1", b"<p>price 1</p>"))
    refused(f.write(tmp_path / "x.wacz"), trust, "archive/9-page.warc.gz", "indexes/index.cdx")


def test_two_warcs_for_one_url(genuine, tmp_path):
    src, trust, exhibits, *_ = genuine
    f = Forger(src)
    valid(f.write(tmp_path / "control.wacz"), trust)
    f = Forger(src)
    # A second WARC for exhibit 1's URL, under exhibit 1's own prefix, indexed beside the genuine one.
    name = f"archive/{exhibits[1]}-2-page.warc.gz"
    f.put(name, forged_warc("http://shop.example/item/1", "<p>价格 ¥1</p>".encode()))
    dst = f.write(tmp_path / "two.wacz")
    assert zipfile.ZipFile(dst).read("indexes/index.cdx").count(b"example,shop)/item/1 ") >= 2
    msg = refused(dst, trust, name, "indexes/index.cdx")
    r = cli("verify", str(dst), "--trust", trust_file(tmp_path, trust))
    assert r.returncode == 1 and "case file is INVALID" in r.stderr and (name in r.stderr or "index.cdx" in r.stderr), msg


def test_an_exhibits_warc_swapped_for_a_forged_one_with_its_index(genuine, tmp_path):
    src, trust, exhibits, *_ = genuine
    f = Forger(src)
    warc = next(n for n in f.warcs() if n.startswith(f"archive/{exhibits[0]}-"))
    f.put(warc, forged_warc("http://shop.example/item/0", b"<p>price 1</p>"))
    refused(f.write(tmp_path / "swap.wacz"), trust, warc)


# -- forgery 3: a file no signed record names ---------------------------------------------

EXTRA = ["archive/1-extra.warc.gz", "archive/extra.warc.gz", "evidence/exhibit-1-extra.png", "evidence/extra.png",
         "evidence/record-99.json", "evidence/checkpoint-99.note", "indexes/extra.cdxj", "indexes/index2.cdxj",
         "pages/extra.jsonl", "extra.png", "extra.json"]


@pytest.mark.parametrize("listed", [True, False], ids=["listed-in-datapackage", "unlisted"])
@pytest.mark.parametrize("name", EXTRA)
def test_forgery_3_an_extra_file_in_any_folder(genuine, tmp_path, name, listed):
    src, trust, exhibits, *_ = genuine
    f = Forger(src)
    valid(f.write(tmp_path / "control.wacz", fix_datapackage=True), trust)
    f = Forger(src)
    if name.endswith(".warc.gz"):
        data = forged_warc("http://shop.example/item/1", b"<p>price 1</p>")
    elif name.endswith(".png"):
        data = png_bytes(20, 20, (0, 200, 0))
    else:
        data = f.data(f"evidence/record-{exhibits[0]}.json") if name.endswith(".json") else b"extra\n"
    f.put(name, data)
    dst = f.write(tmp_path / "extra.wacz", fix_datapackage=listed)
    refused(dst, trust, name)
    res = verify_case(dst, trust=trust)
    assert name not in res.files
    # Nor does the report list it among the files to check with sha256sum.
    from verify.report import render_html

    html = render_html(res, dst)
    sums = html.split("sha256sum -c", 1)[1].split("EOF</pre>", 1)[0]
    assert name not in sums and "evidence/case.json" in sums


def test_forgery_3_via_the_cli_names_the_file(genuine, tmp_path):
    src, trust, *_ = genuine
    f = Forger(src)
    f.put("evidence/exhibit-1-extra.png", png_bytes(20, 20, (0, 200, 0)))
    r = cli("verify", str(f.write(tmp_path / "x.wacz")), "--trust", trust_file(tmp_path, trust))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert "INVALID" in last and "evidence/exhibit-1-extra.png" in last, r.stderr


# -- dropping records ---------------------------------------------------------------------

def test_drop_any_one_record_file(genuine, tmp_path):
    src, trust, *_ = genuine
    valid(Forger(src).write(tmp_path / "control.wacz"), trust)
    for i in Forger(src).records():
        f = Forger(src)
        f.drop_record(i, everywhere=False)
        refused(f.write(tmp_path / f"d{i}.wacz"), trust, f"record-{i}", f"record {i}")


def test_drop_any_one_record_and_every_mention_of_it(genuine, tmp_path):
    src, trust, _, e, _ = genuine
    for i in Forger(src).records():
        f = Forger(src)
        f.drop_record(i)
        dst = f.write(tmp_path / f"e{i}.wacz")
        if i == e:
            msg = refused(dst, trust, "case-export")
            assert "INCOMPLETE" in verify_case(dst, trust=trust).verdict(), msg
        elif i == 0:
            # Without log-init no key is introduced: every signature fails, the export record's too.
            refused(dst, trust, "which no earlier record in the bundle introduces")
        else:
            refused(dst, trust, f"record-{i}", f"record {i}")


def test_drop_the_export_record_only_via_the_cli(genuine, tmp_path):
    src, trust, _, e, _ = genuine
    f = Forger(src)
    f.drop_record(e)
    r = cli("verify", str(f.write(tmp_path / "noexp.wacz")), "--trust", trust_file(tmp_path, trust), "--json")
    out = json.loads(r.stdout)
    assert r.returncode == 1 and out["complete"] is False and out["ok"] is False
    assert out["verdict"].startswith("INCOMPLETE") and "case-export" in out["verdict"]


def test_replace_the_index(genuine, tmp_path):
    src, trust, *_ = genuine
    f = Forger(src)
    f.index_override = f.cdxj()
    valid(f.write(tmp_path / "control.wacz"), trust)
    f = Forger(src)
    lines = f.cdxj().splitlines(keepends=True)
    f.index_override = b"".join(lines[:-1])  # one capture fewer to replay
    refused(f.write(tmp_path / "idx.wacz"), trust, "indexes/index.cdx")
    f = Forger(src)
    f.index_override = f.cdxj().replace(b'"offset": "', b'"offset": "1')
    refused(f.write(tmp_path / "idx2.wacz"), trust, "indexes/index.cdx")


def test_replace_the_page_list(genuine, tmp_path):
    src, trust, *_ = genuine
    f = Forger(src)
    f.pages[1]["title"] = "another title"
    refused(f.write(tmp_path / "pages.wacz"), trust, "pages/pages.jsonl")


def test_swap_the_export_record_for_an_older_one(tmp_path):
    led = Ledger.init(tmp_path / "home", unencrypted=True, origin="test.example/log")
    build_case(led, tmp_path / "a", CASE, exhibits=1)
    first = export_case(led, CASE, tmp_path / "first.wacz").export_record
    build_case(led, tmp_path / "b", CASE, exhibits=1)
    src = tmp_path / "second.wacz"
    second = export_case(led, CASE, src).export_record
    trust = list(led.config.trusted_vkeys)
    led.close()
    valid(Forger(src).write(tmp_path / "control.wacz"), trust)
    f = Forger(src)
    assert f"evidence/record-{first}.json" in f.names()  # the older export is one of the case's records
    f.drop_record(second)
    f.case["export_record"] = first
    f.case["exported"] = f.record(first)["time"]
    refused(f.write(tmp_path / "older.wacz"), trust, "not in export record", f"export record {first}")
    # Keeping the newer one and pointing the map at the older one fails too.
    f = Forger(src)
    f.case["export_record"] = first
    f.case["exported"] = f.record(first)["time"]
    refused(f.write(tmp_path / "older2.wacz"), trust, "evidence/case.json")


def test_a_v1_export_record_does_not_make_a_bundle_complete(genuine, tmp_path):
    """Re-signing is impossible, but an old-format record must not count: simulate by the verifier's own rule."""
    src, trust, _, e, _ = genuine
    f = Forger(src)
    rec = f.record(e)
    assert rec["payload"]["v"] == 2 and set(rec["payload"]) == {"v", "records", "files", "software", "wacz_key"}
    # Every file export wrote before the record is named in it, with its size.
    named = set(rec["payload"]["files"])
    assert {"indexes/index.cdx", "pages/pages.jsonl"} <= named
    assert all(n in named for n in f.names() if n.startswith(("archive/", "evidence/exhibit-", "evidence/key-")))


# -- export atomicity ----------------------------------------------------------------------

def test_export_to_an_existing_directory_appends_nothing(tmp_path):
    led = Ledger.init(tmp_path / "home", unencrypted=True, origin="test.example/log")
    build_case(led, tmp_path / "w", CASE, exhibits=1)
    size = led.size()
    home = led.home.root
    led.close()
    target = tmp_path / "out"
    target.mkdir()
    r = subprocess.run([sys.executable, "-m", "evidence.cli", "export", CASE, "-o", str(target)], capture_output=True,
                       text=True, timeout=300, env={**os.environ, "EVIDENCE_HOME": str(home)})
    assert r.returncode == 2 and "is a directory" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    led = Ledger.open(home)
    try:
        assert led.size() == size and not [x for x in led.records() if x.kind == "case-export"]
    finally:
        led.close()
    assert list(target.iterdir()) == [] and not list(tmp_path.glob(".out.*"))


def test_a_failed_write_before_the_append_leaves_no_record_and_no_temp_file(tmp_path, monkeypatch):
    from evidence import case as casemod
    from ledger.errors import EnvironmentProblem

    led = Ledger.init(tmp_path / "home", unencrypted=True, origin="test.example/log")
    build_case(led, tmp_path / "w", CASE, exhibits=1)
    size = led.size()

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(casemod, "_reserve", full)
    with pytest.raises(EnvironmentProblem, match="No space left"):
        export_case(led, CASE, tmp_path / "c.wacz")
    assert led.size() == size
    assert not (tmp_path / "c.wacz").exists() and not list(tmp_path.glob(".c.wacz*"))
    led.close()


def test_the_export_record_is_appended_after_the_bound_files_are_on_disk(tmp_path, monkeypatch):
    led = Ledger.init(tmp_path / "home", unencrypted=True, origin="test.example/log")
    build_case(led, tmp_path / "w", CASE, exhibits=1)
    seen: list[set[str]] = []
    real = led.append

    def append(kind, payload, case=None):
        if kind == "case-export":
            tmp = next(tmp_path.glob(".c.wacz.*.tmp"))
            seen.append({n for n in payload["files"]})
            assert tmp.stat().st_size > sum(v["bytes"] for v in payload["files"].values())
        return real(kind, payload, case=case)

    monkeypatch.setattr(led, "append", append)
    export_case(led, CASE, tmp_path / "c.wacz")
    assert seen and "indexes/index.cdx" in seen[0]
    valid(tmp_path / "c.wacz", list(led.config.trusted_vkeys))
    led.close()


# -- the property: removing records, adding files, never VALID ------------------------------

@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_removed_records_and_added_files_never_verify(genuine, tmp_path, data):
    src, trust, *_ = genuine
    f = Forger(src)
    records = f.records()
    drop = data.draw(st.lists(st.sampled_from(records), unique=True, max_size=len(records)))
    folders = ["archive/", "evidence/", "evidence/exhibit-1-", "indexes/", "pages/", ""]
    add = data.draw(st.lists(st.tuples(st.sampled_from(folders), st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True),
                                       st.sampled_from([".warc.gz", ".png", ".json", ".cdxj", ""])), max_size=3))
    everywhere = data.draw(st.booleans())
    for i in drop:
        f.drop_record(i, everywhere=everywhere)
    added = []
    for folder, stem, ext in add:
        name = f"{folder}{stem}{ext}"
        if name in f.entries:
            continue
        f.put(name, forged_warc("http://shop.example/item/1", b"<p>1</p>") if ext == ".warc.gz" else os.urandom(64))
        added.append(name)
    dst = f.write(tmp_path / "prop.wacz", fix_datapackage=data.draw(st.booleans()))
    res = verify_case(dst, trust=trust)
    if not drop and not added:
        assert res.ok, res.first_failure  # the control: nothing changed, everything recomputed
        return
    assert not res.ok and res.exit_code() == 1 and not res.verdict().startswith("VALID")
    assert not re.search(r"\bVALID\b", verify_case(dst, trust=trust, allow_incomplete=True).verdict())
