"""The extraction record against the national rules: every element, every 说明 item both ways, --strict.

A "full" exhibit has every fact the rules ask for (two officers with badges
who signed, case facts, 证明对象, a witness, the holder's note, a checked
clock and outbound IP, a headed sandboxed browser, a process video, a
verified RFC 3161 anchor): its record has no 说明 item at all. Each
parametrised change then takes away exactly one fact, and exactly its item
appears.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from evidence.extraction import build_record, disclosures, document, missing, render_html, write_record
from ledger.casefacts import case_info, set_case_info
from ledger.errors import UsageError
from ledger.exhibit import ArtifactFile
from ledger.keys import SigningKey
from ledger.record import Draft

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "ledger"))
sys.path.insert(0, str(ROOT / "tests" / "verify"))
sys.path.insert(0, str(ROOT / "tests" / "evidence"))

from documents import docx_text  # noqa: E402
from test_report_layout import layout_problems  # noqa: E402
from tsa_fixture import LocalTSA  # noqa: E402

CASE = "SAMR-2026-017"
A, B = "李伟 Li Wei", "王芳 Wang Fang"
WITNESS = {"name": "张三 Zhang San", "id_type": "居民身份证", "id_number": "110101199001011234", "contact": "13800000000"}


@pytest.fixture(scope="module")
def tsa(tmp_path_factory):
    server = LocalTSA(tmp_path_factory.mktemp("tsa")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def roots(tsa):
    from ledger.anchors import load_roots

    return load_roots([tsa.root_pem])


def _network(transformed: bool) -> dict[str, Any]:
    doc = {"url": "https://shop.example/item/123", "method": "GET", "resource_type": "Document", "status": 200}
    css = {"url": "https://shop.example/s.css", "method": "GET", "resource_type": "Stylesheet", "status": 200,
           "transformations": ["body stored decoded (Chromium removed Content-Encoding: gzip); header renamed"] if transformed else []}
    return {"exchanges": [{"url": "https://shop.example/s/Xy7Kq", "method": "GET", "resource_type": "Document", "status": 302}, doc, css],
            "scroll": {"steps": 4, "reachedBottom": True, "height": 2732, "width": 1366, "content_size": {"width": 1366, "height": 2732}}}


def _environment(sandbox: bool) -> dict[str, Any]:
    return {
        "os": {"system": "Linux", "release": "6.1.0", "distribution": "Debian GNU/Linux 12 (bookworm)", "machine": "x86_64", "hostname": "evidence-pc-01"},
        "user": "investigator",
        "timezone": {"name": "Asia/Shanghai", "utc_offset": "+08:00"},
        "browser": {"name": "Chromium", "version": "156.0", "headless": False, "sandbox": sandbox, "driver": "playwright 1.65.2",
                    "command_line": ["/usr/lib/chromium/chromium"] + ([] if sandbox else ["--no-sandbox"])},
    }


LOG = [
    {"time": "2026-03-01T02:00:00.100000Z", "step": "start", "message": "capture of https://shop.example/s/Xy7Kq"},
    {"time": "2026-03-01T02:00:01.000000Z", "step": "navigate", "message": "goto https://shop.example/s/Xy7Kq"},
    {"time": "2026-03-01T02:00:02.000000Z", "step": "scroll", "message": "scrolled to trigger lazy loading", "steps": 4, "width": 1366, "height": 2732, "reachedBottom": True},
    {"time": "2026-03-01T02:00:03.000000Z", "step": "screenshot", "message": "viewport and full-page screenshots taken", "width": 1366, "height": 2732},
    {"time": "2026-03-01T02:00:08.000000Z", "step": "end", "message": "page closed; writing artifacts"},
]


def full_info() -> dict[str, Any]:
    return {
        "url": "https://shop.example/s/Xy7Kq",
        "final_url": "https://shop.example/item/123",
        "title": "【官方正品】某品牌手机 - 优选数码旗舰店",
        "status": 200,
        "redirects": [{"url": "https://shop.example/s/Xy7Kq", "status": 302, "location": "https://shop.example/item/123"}],
        "server": {"ip": "203.0.113.20", "port": 443},
        "tls": {"protocol": "TLS 1.3", "cipher": "AES_128_GCM", "certificate": {
            "subject": "CN=shop.example", "issuer": "CN=Example Issuing CA,O=Example Trust",
            "not_before": "2026-01-01T00:00:00Z", "not_after": "2026-12-31T23:59:59Z"}, "validation": {"valid": True}},
        "operator": A,
        "officers": [{"name": A, "key_id": None}, {"name": B, "key_id": None}],
        "proves": "当事人在其网店销售假冒注册商标的手机 the party sells phones bearing a counterfeit trademark",
        "witness": dict(WITNESS),
        "holder_note": "当事人未到场 the party was not present",
        "started": "2026-03-01T02:00:00.000000Z",
        "ended": "2026-03-01T02:00:09.000000Z",
        "tool": "evidence-chain 0.1.0",
        "browser": {"name": "Chromium", "version": "156.0"},
        "mode": "automatic",
        "viewport": {"width": 1366, "height": 768, "device_scale_factor": 1, "device": "desktop",
                     "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0 Safari/537.36"},
        "navigations": [{"url": "https://shop.example/item/123", "time": "2026-03-01T02:00:01.500000Z", "navigation_id": "N1", "cause": "redirect"}],
        "snapshots": [{"artifact": "screenshot-full.png", "url": "https://shop.example/item/123", "navigation_id": "N1", "time": "2026-03-01T02:00:03.000000Z"}],
        "process_video": {"name": "process-video.webm", "started": "2026-03-01T02:00:00.200000Z"},
        "warnings": [],
        "environment_check": {
            "fresh_profile": True, "extensions": {"none": True}, "proxy": None, "hostname": "evidence-pc-01",
            "browser": "Chromium 156.0", "headless": False, "fonts": {"families": 20, "chinese": ["Noto Sans CJK SC"]},
            "clock": {"source": "http-date", "url": "http://time.example/", "offset_ms": 300, "uncertainty_ms": 500, "max_offset_ms": 2000, "within_limit": True},
            "outbound_ip": {"checked": True, "endpoint": "http://ip.example/", "reachable": True, "route": "direct", "ip": "198.51.100.7"},
        },
    }


def scenario(home: Any, tmp: Path, tsa: Any = None, roots: Any = None, *, change: str | None = None, tz: str | None = None):
    """Seal the full exhibit (less the fact ``change`` removes) and build its record."""
    info = full_info()
    video, network, sandbox, cosign, case_facts, anchored = True, _network(False), True, 2, True, tsa is not None
    extra_att = False
    network_raw: bytes | None = None
    if change == "officers":
        cosign = 1
    elif change == "operator":
        info["operator"] = "临时工 Temp Worker"
    elif change == "unverified":
        extra_att = True
    elif change == "case-facts":
        case_facts = False
    elif change == "no-witness":
        del info["witness"]
        info["no_witness_reason"] = "夜间提取，无符合条件的见证人 extraction at night, no qualified witness available"
    elif change == "no-video":
        video = False
        del info["process_video"]
    elif change == "transformed":
        network = _network(True)
    elif change == "clock-unchecked":
        info["environment_check"]["clock"] = {"error": "no time source configured", "max_offset_ms": 2000, "within_limit": None}
    elif change == "clock-offset":
        info["environment_check"]["clock"].update(offset_ms=30000, within_limit=False)
    elif change == "ip-unchecked":
        info["environment_check"]["outbound_ip"] = {"checked": False, "reason": "no IP echo endpoint configured"}
    elif change == "headless":
        info["environment_check"]["headless"] = True
    elif change == "no-sandbox":
        sandbox = False
    elif change == "interactive":
        info["mode"] = "interactive"
    elif change == "session":
        info["session"] = {"name": "shop-login"}
    elif change == "not-anchored":
        anchored = False
    elif change == "warnings":
        info["warnings"] = ["page is 40000 px tall; the full-page screenshot shows the top 30000 px"]
    elif change == "unreadable":
        network_raw = b"{not json"
    elif change is not None:
        raise AssertionError(change)

    home.add_key(A, "officer", badge="SC-0001", unit="某市市场监督管理局 City AMR")
    home.add_key(B, "officer", badge="SC-0002", unit="某市市场监督管理局 City AMR")
    if case_facts:
        set_case_info(home, CASE, cause="销售侵犯注册商标专用权的商品 selling trademark-infringing goods",
                      party="优选数码旗舰店（某平台），经营者：某某科技有限公司", unit="某市市场监督管理局",
                      place="某市市场监督管理局执法办案区 enforcement office")
    files = []
    for name, media, role, data in (
        ("page.warc.gz", "application/warc", "warc", b"WARC/1.1 fake"),
        ("screenshot-full.png", "image/png", "screenshot-full", b"\x89PNG fake"),
        ("process-video.webm", "video/webm", "process-video", b"\x1aE\xdf\xa3 fake"),
        ("dom.html", "text/html; charset=utf-8", "dom", "<h1>假冒商品</h1>".encode()),
        ("network.json", "application/json", "network", network_raw or json.dumps(network).encode()),
        ("environment.json", "application/json", "environment", json.dumps(_environment(sandbox)).encode()),
        ("capture-log.jsonl", "application/x-ndjson", "capture-log", "".join(json.dumps(e) + "\n" for e in LOG).encode()),
    ):
        if role == "process-video" and not video:
            continue
        p = tmp / name
        p.write_bytes(data)
        files.append(ArtifactFile(name, p, media, role))
    ex = home.seal_exhibit(CASE, files, info)
    for name in (A, B)[:cosign]:
        payload = {"exhibit_index": ex.index, "exhibit_leaf": ex.record.leaf.hex(), "manifest_sha256": ex.manifest_sha256,
                   "officer": name, "statement": "I attest that I took part in this extraction.", "at_capture": name == A}
        home.store.append_many([Draft("attestation", payload, CASE)], key=home.signer_key(name), origin=home.origin)
    if extra_att:
        stranger = SigningKey.generate()
        home.store.add_key(stranger.key_id, stranger.public_raw, "stranger", None)
        home.store.append_many([Draft("attestation", {"exhibit_index": ex.index, "exhibit_leaf": ex.record.leaf.hex(), "officer": "赵六 Zhao"}, CASE)],
                               key=stranger, origin=home.origin)
    if anchored:
        from ledger.anchors import anchor_checkpoint

        anchor_checkpoint(home, tsa_urls=[tsa.url], roots=roots)
    return ex, build_record(home, ex.index, tz=tz, tsa_roots=roots)


def codes(rec) -> list[str]:
    return [d.code for d in disclosures(rec)]


def visible(rec) -> str:
    """The record's text as a reader sees it (HTML tags dropped, entities resolved)."""
    return html.unescape(re.sub(r"<[^>]+>", " ", render_html(rec)))


# -- every element, present with its value ------------------------------------------------


def test_full_record_has_every_element_in_order(home, tmp_path, tsa, roots):
    ex, rec = scenario(home, tmp_path, tsa, roots)
    assert codes(rec) == [] and missing(rec) == []
    text = visible(rec)
    for value in (
        CASE, "某市市场监督管理局", "销售侵犯注册商标专用权的商品", "优选数码旗舰店（某平台），经营者：某某科技有限公司",
        "【官方正品】某品牌手机 - 优选数码旗舰店", "shop.example", "https://shop.example/item/123",
        A, B, "SC-0001", "SC-0002", "提取时签署 at capture", "事后确认 attested later",
        "张三 Zhang San", "居民身份证 110101199001011234", "13800000000", "当事人未到场 the party was not present",
        # 02:00:00Z is 10:00:00 Beijing time, offset shown, the UTC original beside it
        "2026-03-01 10:00:00 (UTC+08:00 Asia/Shanghai)", "UTC 2026-03-01T02:00:00.000000Z",
        "checked against http://time.example/", "偏差 offset +0.3 s",
        "某市市场监督管理局执法办案区 enforcement office", "网络在线提取 online extraction", "全程录像",
        # the narrative
        "10:00:01.000", "goto https://shop.example/s/Xy7Kq", "https://shop.example/item/123 · redirect · HTTP 200 · id N1",
        "302 https://shop.example/s/Xy7Kq → https://shop.example/item/123", "203.0.113.20:443",
        "主体 subject: CN=shop.example", "签发者 issuer: CN=Example Issuing CA,O=Example Trust", "2027-01-01 07:59:59",
        "4 步 steps", "screenshot-full.png of https://shop.example/item/123", "封存 sealed",
        # the device
        "evidence-pc-01", "Debian GNU/Linux 12 (bookworm)", "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0 Safari/537.36",
        "1366×768 px", "有界面 headed", "启用 on", "198.51.100.7", "Asia/Shanghai (UTC+08:00)",
        "数据存储于平台服务器，采用网络在线提取", "当事人在其网店销售假冒注册商标的手机",
        "电子签名（本机构密钥）", "electronic signature (agency key)", "签名已核验 signature verified",
    ):
        assert value in text, value
    for a in ex.artifacts:
        assert f"SHA-256 {a.sha256}" in text
    anchor = rec.anchors[0]
    assert anchor.status == "verified" and anchor.serial and f"序列号 serial {anchor.serial}" in text
    # No wording that claims more than the facts.
    for claim in ("anchored by an external timestamp", "见证/复核", "可信时间", "Attesting officer"):
        assert claim not in text
    assert "说明 Disclosures" in text and text.split("说明 Disclosures")[1].strip().startswith("无 none")
    order = [s.zh for s in document(rec)]
    assert order == ["案件", "当事人/对象", "执法人员", "见证人", "当事人/持有人", "时间", "地点", "方法", "提取过程",
                     "取证设备与环境", "未扣押原始存储介质的原因", "提取的电子数据清单", "证明对象", "完整性与锚定", "说明"]
    assert text.index("执法单位") < text.index("案由") < text.index("当事人/对象 Party") < text.index("执法人员 Enforcement")


def test_signature_cells_are_blank_and_the_witness_is_no_officer(home, tmp_path):
    _ex, rec = scenario(home, tmp_path)
    html = render_html(rec)
    officers = html.split("执法人员 Enforcement officers")[1].split("</table>")[0]
    # The last cell of each officer row is the handwriting space: empty.
    assert officers.count("<td></td></tr>") == 2
    assert "见证人签名 Witness signature" in html  # the witness signs in the witness block, not as an officer


def test_no_witness_states_reason_and_video(home, tmp_path):
    _ex, rec = scenario(home, tmp_path, change="no-witness")
    text = visible(rec)
    assert "无见证人 no witness" in text and "夜间提取，无符合条件的见证人" in text
    assert "有 yes: process-video.webm" in text and "见证人签名 Witness signature" not in text


def test_times_follow_tz_and_evidence_tz(home, tmp_path, monkeypatch):
    _ex, rec = scenario(home, tmp_path, tz="UTC")
    assert "2026-03-01 02:00:00 (UTC+00:00 UTC)" in visible(rec)
    monkeypatch.setenv("EVIDENCE_TZ", "Europe/Berlin")
    rec = build_record(home, rec.index)
    assert "2026-03-01 03:00:00 (UTC+01:00 Europe/Berlin)" in visible(rec)
    with pytest.raises(UsageError, match="unknown time zone"):
        build_record(home, rec.index, tz="Mars/Olympus")


# -- each 说明 item exactly when its fact holds ---------------------------------------------

CHANGES = ["officers", "operator", "unverified", "case-facts", "no-witness", "no-video", "transformed", "clock-unchecked",
           "clock-offset", "ip-unchecked", "headless", "no-sandbox", "interactive", "session", "not-anchored", "warnings",
           "unreadable"]


@pytest.mark.parametrize("change", CHANGES)
def test_each_disclosure_appears_exactly_when_its_fact_holds(home, tmp_path, tsa, roots, change):
    _ex, rec = scenario(home, tmp_path, tsa if change != "not-anchored" else None, roots, change=change)
    assert codes(rec) == [change]
    item = disclosures(rec)[0]
    assert item.text in visible(rec)


def test_disclosure_texts_name_the_facts(home, tmp_path):
    """A bare exhibit: one officer, no case facts, nothing checked; the 说明 say which and why."""
    _ex, rec = scenario(home, tmp_path, change="officers")
    d = {x.code: x for x in disclosures(rec)}
    assert "《中华人民共和国行政处罚法》第四十二条" in d["officers"].text and "1 名" in d["officers"].text
    assert "not-anchored" in d
    home2 = type(home).init(tmp_path / "h2", unencrypted=True, origin="test.example/log2")
    try:
        (tmp_path / "b").mkdir()
        _ex, rec = scenario(home2, tmp_path / "b", change="transformed")
    finally:
        home2.close()
    t = {x.code: x for x in disclosures(rec)}["transformed"]
    assert t.details == ("GET https://shop.example/s.css: body stored decoded (Chromium removed Content-Encoding: gzip); header renamed",)


# -- --strict --------------------------------------------------------------------------------


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, EVIDENCE_HOME=str(home), COLUMNS="250")
    p = subprocess.run([sys.executable, "-m", "evidence.cli", *args], capture_output=True, text=True, env=env, timeout=300)
    assert "Traceback" not in p.stderr
    return p


def test_strict_passes_on_a_complete_record(home, tmp_path):
    ex, _rec = scenario(home, tmp_path)
    out = tmp_path / "r.html"
    p = run(home.home.root, "record", str(ex.index), "--format", "html", "-o", str(out), "--strict", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["missing"] == [] and out.exists()


def test_strict_fails_one_line_per_missing_requirement(home, tmp_path):
    info = full_info()
    del info["proves"]
    home.add_key(B, "officer", badge="SC-0002")
    f = tmp_path / "shot.png"
    f.write_bytes(b"\x89PNG fake")
    ex = home.seal_exhibit(CASE, [ArtifactFile("shot.png", f, "image/png", "screenshot-full")], info)
    home.attest(ex.index, B)
    out = tmp_path / "r.pdf"
    p = run(home.home.root, "record", str(ex.index), "--format", "pdf", "-o", str(out), "--strict")
    assert p.returncode == 1 and not out.exists()
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 4 and all(x.startswith("missing:") for x in lines), p.stderr
    assert "第四十二条" in lines[0] and "案由" in lines[1] and "当事人" in lines[2] and "证明对象" in lines[3]
    # Without --strict the same facts are 说明 items and the file is written.
    p = run(home.home.root, "record", str(ex.index), "--format", "html", "-o", str(tmp_path / "r.html"), "--json")
    assert p.returncode == 0 and {"officers", "case-facts"} <= set(json.loads(p.stdout)["disclosures"])
    # Case facts recorded: two of the four lines go.
    run(home.home.root, "case", "set", CASE, "--cause", "销售假冒商品", "--party", "某店铺")
    p = run(home.home.root, "record", str(ex.index), "--format", "html", "-o", str(tmp_path / "r.html"), "--strict")
    assert p.returncode == 1 and len(p.stderr.strip().splitlines()) == 2
    p = run(home.home.root, "record", str(ex.index), "--format", "html", "-o", str(tmp_path / "r.html"), "--tz", "Nowhere/None")
    assert p.returncode == 2 and p.stderr.startswith("error:") and "unknown time zone" in p.stderr


# -- case facts as signed records -----------------------------------------------------------


def test_case_set_supersedes_and_keeps_both(home, tmp_path):
    root = home.home.root
    p = run(root, "case", "set", CASE, "--cause", "第一次 first", "--party", "甲店 Shop A", "--json")
    first = json.loads(p.stdout)
    assert p.returncode == 0 and first["kind"] == "case-info" and first["unit"] is None
    p = run(root, "case", "set", CASE, "--cause", "更正 corrected", "--party", "乙店 Shop B", "--unit", "某局", "--place", "办案区", "--json")
    second = json.loads(p.stdout)
    facts = case_info(home, CASE)
    assert (facts.cause, facts.party, facts.unit, facts.place, facts.index) == ("更正 corrected", "乙店 Shop B", "某局", "办案区", second["index"])
    kinds = [r.kind for r in home.records(case=CASE)]
    assert kinds.count("case-info") == 2
    for bad, why in ((["--cause", "", "--party", "x"], "must not be empty"), (["--cause", "a\x1b[2Jb", "--party", "x"], "control characters")):
        p = run(root, "case", "set", CASE, *bad)
        assert p.returncode == 2 and why in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_case_info_travels_in_the_case_file_and_verifies(home, tmp_path):
    from evidence.case import export_case
    from verify import verify_case

    f = tmp_path / "shot.png"
    f.write_bytes(b"\x89PNG fake")
    home.seal_exhibit(CASE, [ArtifactFile("shot.png", f, "image/png", "screenshot-full")], {"url": "https://shop.example/"})
    rec = set_case_info(home, CASE, cause="销售假冒商品", party="某店铺")
    export_case(home, CASE, tmp_path / "case.wacz")
    result = verify_case(tmp_path / "case.wacz")
    assert result.ok, result.first_failure
    assert any(c.name == "record-signature" and c.ok and c.where == f"evidence/record-{rec.index}.json" for c in result.checks)


# -- escaping and layout --------------------------------------------------------------------


def test_outside_strings_are_escaped_in_every_format(home, tmp_path):
    info = {"url": "https://shop.example/<x>", "title": "假\x1b[31m<script>alert(1)</script>\u202eevil", "operator": "Li\nWei",
            "started": "2026-03-01T02:00:00Z", "ended": "2026-03-01T02:00:09Z", "proves": "a\x07b"}
    f = tmp_path / "shot.png"
    f.write_bytes(b"\x89PNG fake")
    ex = home.seal_exhibit(CASE, [ArtifactFile("shot.png", f, "image/png", "screenshot-full")], info)
    rec = build_record(home, ex.index)
    html = render_html(rec)
    assert "<script>" not in html and "&lt;script&gt;" in html
    for raw in ("\x1b", "\u202e", "\x07", "Li\nWei"):
        assert raw not in html
    assert "\\x1b[31m" in html and "\\u202e" in html and "Li\\nWei" in html and "a\\x07b" in html
    d = docx_text(write_record(rec, "docx", tmp_path / "r.docx"))
    assert "\\x1b[31m&lt;" not in d and "\\x1b[31m<script>" in d and "\\u202e" in d and "\x1b" not in d
    write_record(rec, "pdf", tmp_path / "r.pdf")


def test_record_pdf_and_docx_layouts(home, tmp_path, tsa, roots):
    """WeasyPrint's PDF and LibreOffice's rendering of the DOCX: nothing overlaps, clips or leaves the page."""
    _ex, rec = scenario(home, tmp_path, tsa, roots, change="transformed")
    pdf = write_record(rec, "pdf", tmp_path / "record.pdf")
    assert layout_problems(pdf) == []
    soffice = shutil.which("soffice") or shutil.which("libreoffice")
    if soffice is None:
        if os.environ.get("CI"):
            pytest.fail("LibreOffice (libreoffice-writer-nogui) is not installed: scripts/setup installs it")
        pytest.skip("LibreOffice not installed")
    src = write_record(rec, "docx", tmp_path / "record.docx")
    profile = tmp_path / "lo-profile"
    subprocess.run([soffice, f"-env:UserInstallation=file://{profile}", "--headless", "--convert-to", "pdf",
                    "--outdir", str(tmp_path / "lo"), str(src)], check=True, capture_output=True, timeout=240)
    rendered = tmp_path / "lo" / "record.pdf"
    assert layout_problems(rendered) == []
    text = subprocess.run(["pdftotext", "-layout", str(rendered), "-"], capture_output=True, text=True).stdout if shutil.which("pdftotext") else ""
    if text:
        assert "电子数据提取笔录" in text and "SC-0001" in text
        for a in rec.artifacts:
            assert a["sha256"] in text.replace(" ", ""), a["name"]
