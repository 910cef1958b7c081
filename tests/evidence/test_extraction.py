"""The extraction record (电子数据提取笔录): every digest, the officers, the ledger facts."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from capture.browser import chromium_available
from evidence.extraction import build_record, write_record
from ledger.errors import UsageError
from ledger.exhibit import ArtifactFile
from ledger.keys import SigningKey
from ledger.record import Draft
from verify.ledger import audit_store

sys.path.insert(0, str(Path(__file__).resolve().parent))
from documents import docx_text, pdf_text  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
HEX = re.compile(r"[0-9a-f]{64}")


def pdftotext(path: Path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def exhibit(home, tmp_path):
    files = []
    for name, media, role, data in (
        ("page.warc.gz", "application/warc", "warc", b"WARC/1.1 fake"),
        ("screenshot-full.png", "image/png", "screenshot-full", b"\x89PNG fake"),
        ("process-video.webm", "video/webm", "process-video", b"\x1aE\xdf\xa3 fake"),
        ("dom.html", "text/html; charset=utf-8", "dom", "<h1>假冒商品</h1>".encode()),
    ):
        p = tmp_path / name
        p.write_bytes(data)
        files.append(ArtifactFile(name, p, media, role))
    info = {
        "url": "https://shop.example/s/Xy7Kq",
        "final_url": "https://shop.example/item/123",
        "operator": "李伟 Li Wei",
        "started": "2026-03-01T02:00:00.000000Z",
        "ended": "2026-03-01T02:00:09.000000Z",
        "tool": "evidence-chain 0.1.0",
        "browser": {"name": "Chromium", "version": "156.0"},
        "warnings": ["system clock is 30.0 s ahead of http://time.example/ (limit 2 s)"],
        "environment_check": {
            "fresh_profile": True,
            "extensions": {"none": True},
            "proxy": None,
            "hostname": "evidence-pc-01",
            "browser": "Chromium 156.0",
            "headless": True,
            "fonts": {"families": 20, "chinese": ["Noto Sans CJK SC"]},
            "clock": {"source": "http-date", "url": "http://time.example/", "offset_ms": -30000, "uncertainty_ms": 500, "max_offset_ms": 2000, "within_limit": False},
            "outbound_ip": {"checked": True, "endpoint": "http://ip.example/", "reachable": True, "route": "direct", "ip": "203.0.113.7"},
        },
    }
    return home.seal_exhibit("SAMR-2026-017", files, info)


def test_record_in_every_format_carries_every_digest(home, exhibit, tmp_path):
    home.add_key("王芳 Wang Fang", "officer")
    att = home.attest(exhibit.index, "王芳 Wang Fang")
    home.checkpoint()
    anchor = home.append_anchors(
        [{"type": "rfc3161", "checkpoint_size": home.size(), "tsa": "http://tsa.example/", "time": "2026-03-01T02:05:00Z", "token_sha256": "cd" * 32}]
    )[0]
    rec = build_record(home, exhibit.index, place="某市市场监督管理局 City AMR office")
    assert rec.officers == ["王芳 Wang Fang"] and rec.attestations[0].index == att.index
    assert rec.checkpoint["size"] == home.size() - 1 and rec.anchor["record"] == anchor.index
    digests = {a.sha256 for a in exhibit.artifacts} | {exhibit.manifest_sha256}
    for fmt, read in (("docx", docx_text), ("pdf", pdf_text), ("pdf", pdftotext), ("html", lambda p: p.read_text("utf-8"))):
        if read is pdftotext and shutil.which("pdftotext") is None:
            continue
        out = write_record(rec, fmt, tmp_path / f"record.{fmt}")
        text = read(out)
        found = set(HEX.findall(text))
        assert digests <= found, (fmt, digests - found)
        for must in ("电子数据提取笔录", "Electronic Data Extraction Record", "SAMR-2026-017", "王芳 Wang Fang",
                     "李伟 Li Wei", "某市市场监督管理局", "https://shop.example/item/123", "203.0.113.7",
                     "2026-03-01T02:05:00Z", "evidence-pc-01", "process-video.webm", "全程录像"):
            assert must in text, (fmt, must)
        assert "NOT VERIFIED" not in text


def test_unknown_key_attestation_is_not_a_signature(home, exhibit, tmp_path):
    stranger = SigningKey.generate()
    home.store.add_key(stranger.key_id, stranger.public_raw, "stranger", None)  # known to the DB, never registered by a record
    bad = home.store.append_many(
        [Draft("attestation", {"exhibit_index": exhibit.index, "exhibit_leaf": exhibit.record.leaf.hex(), "officer": "Zhao"}, "SAMR-2026-017")],
        key=stranger,
        origin=home.origin,
    )[0]
    # The ledger audit rejects it ...
    res = audit_store(home.store, home.config.trusted_vkeys)
    assert not res.ok and res.first_problem.index == bad.index
    # ... and the record does not count it as an officer's signature.
    rec = build_record(home, exhibit.index)
    assert rec.officers == [] and not rec.attestations[0].verified
    assert "never registered" in rec.attestations[0].problem
    text = docx_text(write_record(rec, "docx", tmp_path / "r.docx"))
    assert "NOT VERIFIED" in text and "无 none" in text


def test_impostor_officer_name_is_not_verified(home, exhibit):
    home.add_key("Wang Fang", "officer")
    key = home.signer_key("Wang Fang")
    home.store.append_many(
        [Draft("attestation", {"exhibit_index": exhibit.index, "exhibit_leaf": exhibit.record.leaf.hex(), "officer": "Chief Zhang"}, "SAMR-2026-017")],
        key=key,
        origin=home.origin,
    )
    rec = build_record(home, exhibit.index)
    assert rec.officers == [] and "belongs to 'Wang Fang'" in rec.attestations[0].problem


def test_bad_input(home, exhibit, tmp_path):
    with pytest.raises(UsageError, match="not an exhibit"):
        build_record(home, 0)
    with pytest.raises(UsageError, match="no record 99"):
        build_record(home, 99)
    rec = build_record(home, exhibit.index)
    with pytest.raises(UsageError, match="format"):
        write_record(rec, "odt", tmp_path / "x.odt")
    with pytest.raises(UsageError, match="does not exist"):
        write_record(rec, "html", tmp_path / "missing" / "x.html")
    # No place given and none configured: the field says so rather than inventing one.
    assert rec.place is None


def run(home: Path, *args: str, check: int | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, EVIDENCE_HOME=str(home), COLUMNS="200")
    env.setdefault("EVIDENCE_OFFICER_PASSPHRASE", "officer-pw")  # officers' keys are under their own passphrase
    p = subprocess.run([sys.executable, "-m", "evidence.cli", *args], capture_output=True, text=True, env=env, timeout=300)
    assert "Traceback" not in p.stderr
    if check is not None:
        assert p.returncode == check, (p.returncode, p.stdout, p.stderr)
    return p


def _shop():
    spec = importlib.util.spec_from_file_location("suspect_shop_serve_x", ROOT / "examples" / "suspect-shop" / "serve.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.ShopServer().start()


@pytest.mark.browser
@pytest.mark.skipif(not chromium_available() and not os.environ.get("CI"), reason="Chromium not installed")
def test_cli_record_of_a_real_capture(tmp_path):
    import json

    home = tmp_path / "home"
    shop = _shop()
    try:
        run(home, "init", "--no-passphrase", check=0)
        cfg = json.loads((home / "config.json").read_text("utf-8"))
        cfg["office"] = "某市市场监督管理局执法办案区 Enforcement office, City AMR"
        (home / "config.json").write_text(json.dumps(cfg, ensure_ascii=False), "utf-8")
        ex = json.loads(run(home, "capture", shop.url("/item/123"), "--case", "SAMR-2026-017", "--operator", "Li Wei", "--record-process", "--json", check=0).stdout)["exhibits"][0]
    finally:
        shop.stop()
    run(home, "key", "add", "--officer", "Wang Fang", "--badge", "SC-0002", check=0)
    run(home, "attest", str(ex["index"]), "--officer", "Wang Fang", check=0)
    run(home, "checkpoint", check=0)
    out = json.loads(run(home, "record", str(ex["index"]), "--format", "pdf", "-o", str(tmp_path / "r.pdf"), "--json", check=0).stdout)
    assert out["attesting_officers"] == ["Wang Fang"] and out["unverified_attestations"] == []
    text = pdf_text(tmp_path / "r.pdf")
    manifest = json.loads(run(home, "log", "--json", check=0).stdout)["records"][ex["index"]]["payload"]
    for a in manifest["artifacts"]:
        assert a["sha256"] in text, a["name"]
    assert "process-video.webm" in text and "Enforcement office, City AMR" in text and "Wang Fang" in text
    assert "SC-0002" in text
    # A real capture: Chromium hands over decoded bodies and runs headless here; the record says so.
    assert {"transformed", "headless", "officers"} <= set(out["disclosures"]) and out["tz"] == "Asia/Shanghai"
    run(home, "record", str(ex["index"]), "--format", "docx", "-o", str(tmp_path / "r.docx"), check=0)
    assert ex["process_video"] in docx_text(tmp_path / "r.docx")
    p = run(home, "record", "0", "--format", "pdf", "-o", str(tmp_path / "x.pdf"), check=2)
    assert p.stderr.startswith("error:") and "not an exhibit" in p.stderr
    p = run(home, "record", str(ex["index"]), "--format", "odt", "-o", str(tmp_path / "x.odt"), check=2)
    assert "--format" in p.stderr
