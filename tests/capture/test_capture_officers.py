"""Officers co-sign at capture, each with their own key and own passphrase.

A real capture of the example shop by two registered officers: their
attestations are in the same batch as the exhibit, right after it; the
extraction record names both with badges; a wrong passphrase or an unknown
officer costs no browser and stores nothing; an attestation signed by one
officer's key in another's name fails verification.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from capture.browser import find_chromium

pytestmark = pytest.mark.browser

CASE = "SAMR-2026-031"
A, B = "李伟 Li Wei", "王芳 Wang Fang"
HOME_PW = "home-pw"
PASS = {A: "li-wei-own", B: "wang-fang-own"}


def run(home: Path, *args: str, check: int | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    e = dict(os.environ, EVIDENCE_HOME=str(home), COLUMNS="300", EVIDENCE_KEY_PASSPHRASE=HOME_PW)
    e.pop("EVIDENCE_OFFICER_PASSPHRASE", None)
    e.pop("EVIDENCE_OFFICER_PASSPHRASE_FILE", None)
    e.update(env or {})
    p = subprocess.run([sys.executable, "-m", "evidence.cli", *args], capture_output=True, text=True, env=e,
                       timeout=300, stdin=subprocess.DEVNULL)
    both = p.stdout + p.stderr
    assert "Traceback" not in both and "internal error" not in both, both
    if check is not None:
        assert p.returncode == check, (p.returncode, p.stdout, p.stderr)
    return p


def one_line(p: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), p.stderr
    return lines[0]


@pytest.fixture
def officers_home(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A home with two officers, each key under its own passphrase; a passphrase file for both;
    and a Chromium wrapper that leaves a mark each time a browser starts."""
    home = tmp_path / "home"
    run(home, "init", check=0)
    for name, badge in ((A, "31010012345"), (B, "31010067890")):
        run(home, "key", "add", "--officer", name, "--badge", badge, "--unit", "上海市市场监管局 执法总队",
            env={"EVIDENCE_OFFICER_PASSPHRASE": PASS[name]}, check=0)
    pwfile = tmp_path / "officers.json"
    pwfile.write_text(json.dumps(PASS, ensure_ascii=False), "utf-8")
    pwfile.chmod(0o600)
    mark = tmp_path / "browser-started"
    wrapper = tmp_path / "chromium"
    wrapper.write_text(f"#!/bin/sh\necho started >> '{mark}'\nexec '{find_chromium()}' \"$@\"\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    env = {"EVIDENCE_OFFICER_PASSPHRASE_FILE": str(pwfile), "EVIDENCE_CHROMIUM": str(wrapper)}
    return home, env


def _store_files(home: Path) -> list[str]:
    return sorted(str(p.relative_to(home)) for p in (home / "store").rglob("*") if p.is_file())


def _records(home: Path) -> list[dict]:
    return json.loads(run(home, "log", "--json", check=0).stdout)["records"]


def test_keys_are_under_the_officers_own_passphrases(officers_home):
    home, _env = officers_home
    cfg = json.loads((home / "config.json").read_text("utf-8"))
    signers = cfg["signers"]
    assert all(signers[n]["own_passphrase"] for n in (A, B))
    from ledger.errors import KeyFileError
    from ledger.keys import load_key

    for n in (A, B):
        path = home / "keys" / f"{signers[n]['key_id']}.key"
        assert load_key(path, PASS[n].encode()).key_id == signers[n]["key_id"]
        with pytest.raises(KeyFileError):
            load_key(path, HOME_PW.encode())  # not the home's passphrase
    # The home's passphrase may not be an officer's own.
    p = run(home, "key", "add", "--officer", "Zhao", "--badge", "1", env={"EVIDENCE_OFFICER_PASSPHRASE": HOME_PW}, check=2)
    assert "their own" in one_line(p)
    p = run(home, "key", "add", "--officer", "Zhao", "--badge", "1", check=2)  # no terminal, no variable
    assert "no passphrase for officer" in one_line(p)
    assert [r["kind"] for r in _records(home)] == ["log-init", "key-add", "key-add"]


def test_two_officers_cosign_at_capture(officers_home, shop, tmp_path):
    home, env = officers_home
    res = json.loads(run(
        home, "capture", shop.url("/s/Xy7Kq"), "--case", CASE, "--officer", A, "--officer", B,
        "--proves", "该店铺销售假冒注册商标的商品 the shop sells counterfeit goods",
        "--no-witness-reason", "夜间提取，无符合条件的见证人", "--record-process", "--json", env=env, check=0,
    ).stdout)
    ex = res["exhibits"][0]
    assert [o["name"] for o in ex["officers"]] == [A, B]
    recs = _records(home)
    kinds = [r["kind"] for r in recs]
    i = ex["index"]
    assert kinds[i:] == ["exhibit", "attestation", "attestation"]
    cfg = json.loads((home / "config.json").read_text("utf-8"))["signers"]
    exhibit = recs[i]
    for rec, name in zip(recs[i + 1:], (A, B)):
        p = rec["payload"]
        assert rec["time"] == exhibit["time"]  # the same append, the same instant
        assert p["officer"] == name and p["at_capture"] is True and rec["key_id"] == cfg[name]["key_id"]
        assert p["exhibit_index"] == i and p["exhibit_leaf"] == exhibit["leaf"]
        assert p["manifest_sha256"] == ex["manifest_sha256"]
    run(home, "audit", check=0)

    out = tmp_path / "record.html"
    strict = ["record", str(i), "--format", "html", "-o", str(out), "--strict", "--json"]
    # Control: without case facts the strict record is refused (and names what is missing).
    p = run(home, *strict, check=1)
    assert "案由" in p.stderr and "officer" not in p.stderr and "证明对象" not in p.stderr
    run(home, "case", "set", CASE, "--cause", "销售假冒注册商标的商品", "--party", "某网店 some shop", check=0)
    info = json.loads(run(home, *strict, check=0).stdout)
    assert info["attesting_officers"] == [A, B] and info["missing"] == []
    html = out.read_text("utf-8")
    officers = html.split("执法人员 Enforcement officers")[1].split("</table>")[0]
    for name, badge in ((A, "31010012345"), (B, "31010067890")):
        assert name in officers and badge in officers
    assert officers.count("提取时签署 at capture") == 2
    assert "该店铺销售假冒注册商标的商品" in html and "夜间提取" in html

    case_file = tmp_path / "case.wacz"
    run(home, "export", CASE, "-o", str(case_file), check=0)
    v = json.loads(run(home, "verify", str(case_file), "--trust", str(home / "keys"), "--json", check=0).stdout)
    atts = [a for a in v["attestations"] if a["exhibit_index"] == i]
    assert [a["officer"] for a in atts] == [A, B] and all(a["at_capture"] for a in atts)


def test_batch_capture_cosigns_each_exhibit(officers_home, shop, tmp_path):
    home, env = officers_home
    urls = tmp_path / "urls.txt"
    urls.write_text(f"{shop.url('/item/123')}\n{shop.url('/s/Xy7Kq')}\n")
    res = json.loads(run(home, "capture", "--urls", str(urls), "--case", CASE, "--officer", B, "--officer", A,
                         "--witness", "张三", "--witness-id", "居民身份证:110101199001011234", "--json",
                         env=env, check=0).stdout)
    idx = [e["index"] for e in res["exhibits"]]
    recs = _records(home)
    for i in idx:
        assert [r["kind"] for r in recs[i:i + 3]] == ["exhibit", "attestation", "attestation"]
        assert [r["payload"]["officer"] for r in recs[i + 1:i + 3]] == [B, A]
        assert all(r["payload"]["exhibit_index"] == i for r in recs[i + 1:i + 3])
        assert recs[i + 1]["payload"]["witness"] == {"name": "张三", "id_type": "居民身份证", "id_number": "110101199001011234"}
    run(home, "audit", check=0)


def test_wrong_passphrase_or_unknown_officer_costs_nothing(officers_home, shop, tmp_path):
    home, env = officers_home
    before_recs, before_store = _records(home), _store_files(home)
    mark = tmp_path / "browser-started"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({A: PASS[A], B: "not-her-passphrase"}), "utf-8")
    url = shop.url("/s/Xy7Kq")
    t0 = time.monotonic()
    p = run(home, "capture", url, "--case", CASE, "--officer", A, "--officer", B,
            env={**env, "EVIDENCE_OFFICER_PASSPHRASE_FILE": str(bad)}, check=2)
    elapsed = time.monotonic() - t0
    assert "wrong passphrase for officer" in one_line(p) and B in p.stderr
    assert elapsed < 3, elapsed  # about 1 s, most of it starting Python: no browser ran
    # The home passphrase does not open an officer's key either.
    p = run(home, "capture", url, "--case", CASE, "--officer", A, env={**{k: v for k, v in env.items() if "FILE" not in k},
                                                                       "EVIDENCE_OFFICER_PASSPHRASE": HOME_PW}, check=2)
    assert "wrong passphrase" in one_line(p)
    p = run(home, "capture", url, "--case", CASE, "--officer", A, "--officer", "Nobody", env=env, check=2)
    assert "no key registered for 'Nobody'" in one_line(p)
    p = run(home, "capture", url, "--case", CASE, "--officer", A, "--officer", A, env=env, check=2)
    assert "named twice" in one_line(p)
    for args, words in (
        (["--witness", "张三", "--witness-id", "110101199001011234"], "TYPE:NUMBER"),
        (["--witness", "张三"], "--witness-id"),
        (["--witness", "张三", "--witness-id", "居民身份证:1", "--no-witness-reason", "none"], "exclude"),
        (["--proves", "line one\nline two"], "control characters"),
        (["--holder-note", "拒绝\x1b[31m签名"], "control characters"),
        (["--witness-id", "居民身份证:1"], "need --witness"),
    ):
        assert words in one_line(run(home, "capture", url, "--case", CASE, "--officer", A, *args, env=env, check=2))
    assert not mark.exists(), "a browser was started for a capture that could not be sealed"
    assert _records(home) == before_recs and _store_files(home) == before_store
    # Control, through the same path: the right passphrases capture (and start the browser).
    run(home, "capture", url, "--case", CASE, "--officer", A, "--officer", B, env=env, check=0)
    assert mark.exists() and len(_records(home)) == len(before_recs) + 3


def test_attest_later_with_own_passphrase_and_witness(officers_home, shop):
    home, env = officers_home
    ex = json.loads(run(home, "capture", shop.url("/item/123"), "--case", CASE, "--officer", A, "--json",
                        env=env, check=0).stdout)["exhibits"][0]
    p = run(home, "attest", str(ex["index"]), "--officer", B, env={"EVIDENCE_OFFICER_PASSPHRASE": PASS[A]}, check=2)
    assert "wrong passphrase" in one_line(p)
    p = run(home, "attest", str(ex["index"]), "--officer", B, "--witness", "张三", "--witness-id", "身份证",
            env={"EVIDENCE_OFFICER_PASSPHRASE": PASS[B]}, check=2)
    assert "TYPE:NUMBER" in one_line(p)
    n = len(_records(home))
    att = json.loads(run(home, "attest", str(ex["index"]), "--officer", B, "--witness", "张三", "--witness-id",
                         "居民身份证:110101199001011234", "--witness-contact", "138 0000 0000", "--holder-note",
                         "店主拒绝签名 the shop owner refused to sign", "--json",
                         env={"EVIDENCE_OFFICER_PASSPHRASE": PASS[B]}, check=0).stdout)
    recs = _records(home)
    assert len(recs) == n + 1 and att["index"] == n
    p = recs[n]["payload"]
    assert "at_capture" not in p and p["witness"]["contact"] == "138 0000 0000" and p["holder_note"].startswith("店主")
    run(home, "audit", check=0)


def test_forged_at_capture_attestation_fails_verify(officers_home, shop, tmp_path):
    """Officer A's key signs an at-capture attestation in officer B's name, digests all correct."""
    home, env = officers_home
    ex = json.loads(run(home, "capture", shop.url("/item/123"), "--case", CASE, "--officer", A, "--json",
                        env=env, check=0).stdout)["exhibits"][0]
    from ledger.log import Ledger
    from ledger.record import Draft

    led = Ledger.open(home, passphrase=HOME_PW.encode())
    try:
        a = led.officer_key(A, PASS[A].encode())
        target = led.exhibit_record(ex["index"])
        payload = {"exhibit_index": target.index, "exhibit_leaf": target.leaf.hex(),
                   "manifest_sha256": target.payload["manifest"]["sha256"], "officer": B,
                   "statement": "I performed this extraction.", "at_capture": True}
        forged = led.store.append_many([Draft("attestation", payload, CASE)], key=a.key, origin=led.origin)[0]
    finally:
        led.close()
    p = run(home, "audit", "--json", check=1)
    assert f"attestation names officer {B!r}" in p.stdout
    case_file = tmp_path / "forged.wacz"
    run(home, "export", CASE, "-o", str(case_file), check=0)
    v = json.loads(run(home, "verify", str(case_file), "--json", check=1).stdout)
    bad = [c for c in v["checks"] if not c["ok"]]
    assert [c["name"] for c in bad] == ["attestation"], bad
    assert f"registered to {A!r}, not to the attesting officer {B!r}" in bad[0]["detail"]
    out = tmp_path / "r.html"
    info = json.loads(run(home, "record", str(ex["index"]), "--format", "html", "-o", str(out), "--json", check=0).stdout)
    assert info["attesting_officers"] == [A] and info["unverified_attestations"] == [forged.index]


def test_control_genuine_second_attestation_verifies(officers_home, shop, tmp_path):
    """The same path as the forgery, but signed by B's own key: verifies."""
    home, env = officers_home
    ex = json.loads(run(home, "capture", shop.url("/item/123"), "--case", CASE, "--officer", A, "--json",
                        env=env, check=0).stdout)["exhibits"][0]
    from ledger.log import Ledger
    from ledger.record import Draft

    led = Ledger.open(home, passphrase=HOME_PW.encode())
    try:
        b = led.officer_key(B, PASS[B].encode())
        target = led.exhibit_record(ex["index"])
        payload = {"exhibit_index": target.index, "exhibit_leaf": target.leaf.hex(),
                   "manifest_sha256": target.payload["manifest"]["sha256"], "officer": B,
                   "statement": "I performed this extraction.", "at_capture": True}
        led.store.append_many([Draft("attestation", payload, CASE)], key=b.key, origin=led.origin)
    finally:
        led.close()
    run(home, "audit", check=0)
    case_file = tmp_path / "genuine.wacz"
    run(home, "export", CASE, "-o", str(case_file), check=0)
    run(home, "verify", str(case_file), "--json", check=0)
