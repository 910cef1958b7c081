"""Case files end to end: export, WACZ validity, offline verification, tampering, anchors, CLI."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ledger"))

from case_fixtures import MUTATIONS, build_case, detected, mutate, read_zip, write_zip  # noqa: E402

from evidence.case import export_case  # noqa: E402
from ledger.errors import CaseFileError, UsageError  # noqa: E402
from verify.case import verify_case  # noqa: E402
from verify.casefile import CASE_JSON, CaseReader, load_json  # noqa: E402

SAFE_PATH = re.compile(r"[a-z0-9._-]+(/[a-z0-9._-]+)?")


@pytest.fixture
def case(home, tmp_path):
    """A real case: 3 exhibits with custody records and another case's records in between."""
    indexes = build_case(home, tmp_path / "work", "SAMR-2026-017", exhibits=3)
    out = tmp_path / "case.wacz"
    summary = export_case(home, "SAMR-2026-017", out)
    return out, list(home.config.trusted_vkeys), indexes, summary


def by_name(res, name):
    return [c for c in res.checks if c.name == name]


def test_round_trip_verifies_every_part_with_the_pinned_key(case):
    path, trust, indexes, summary = case
    assert summary.exhibits == 3 and summary.export_record is not None
    res = verify_case(path, trust=trust)
    assert res.ok and res.trusted, res.first_failure
    assert res.exit_code() == 0
    assert [e["index"] for e in res.exhibits] == indexes
    assert {e["operator"] for e in res.exhibits} == {"李伟 Li Wei"}
    for name in ("file-digest", "datapackage-digest", "warc-digests", "checkpoint-signature", "record-signature",
                 "prev-link", "inclusion-proof", "completeness", "datapackage", "manifest-digest", "artifact-digest",
                 "case-map", "key-file"):
        assert by_name(res, name) and all(c.ok for c in by_name(res, name)), name
    assert res.complete and not res.gaps and res.export_record == summary.export_record
    # Every file but the (unsigned) datapackage pair is bound, and says by what.
    with zipfile.ZipFile(path) as zf:
        assert set(res.files) == set(zf.namelist()) - {"datapackage.json", "datapackage-digest.json"}
    assert all(f["bound_by"] for f in res.files.values())
    assert all(e["proven"] for e in res.exhibits)
    # Every record of the case (3 exhibits, 3 custody) plus log-init and the export record has a proof.
    proved = {c.where for c in by_name(res, "inclusion-proof")}
    assert len(proved) == len(load_json(CaseReader(path).read(CASE_JSON), CASE_JSON)["records"])
    # Records of the other case stay out of the bundle.
    with zipfile.ZipFile(path) as zf:
        assert not any(b"OTHER-1" in zf.read(n) for n in zf.namelist() if n.startswith("evidence/record-"))


def test_without_a_pinned_key_the_bundle_is_intact_but_untrusted(case, tmp_path):
    path, _, _, _ = case
    res = verify_case(path)
    assert res.ok and not res.trusted
    assert any("self-declared" in w for w in res.warnings)
    assert res.exit_code(require_trust=True) == 1
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ledger.note import vkey_for

    stranger = vkey_for("test.example/log", Ed25519PrivateKey.generate().public_key())
    bad = verify_case(path, trust=[stranger])
    assert not bad.ok and bad.first_failure.name == "checkpoint-signature"


def test_case_file_is_a_valid_wacz(case, tmp_path):
    path, *_ = case
    wacz = Path(sys.executable).with_name("wacz")
    out = subprocess.run([str(wacz), "validate", "-f", str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        assert all(SAFE_PATH.fullmatch(n) for n in names), names
        warcs = [n for n in names if n.startswith("archive/")]
        assert len(warcs) == 3 and all(zf.getinfo(n).compress_type == zipfile.ZIP_STORED for n in warcs)
        pages = [json.loads(line) for line in zf.read("pages/pages.jsonl").splitlines()]
        assert pages[0]["format"] == "json-pages-1.0"
        assert sorted(p["url"] for p in pages[1:]) == [f"http://shop.example/item/{n}" for n in range(3)]
        cdxj = zf.read("indexes/index.cdx").decode()
        assert all(f"example,shop)/item/{n}" in cdxj for n in range(3))
        dp = json.loads(zf.read("datapackage.json"))
        assert dp["wacz_version"] == "1.1.1"
        listed = {r["path"] for r in dp["resources"]}
        assert listed == set(names) - {"datapackage.json", "datapackage-digest.json"}


def test_attestations_show_who_captured_and_who_attested(home, tmp_path):
    [ex] = build_case(home, tmp_path / "w", "C-ATT", exhibits=1)
    home.add_key("王芳 Wang Fang", "officer")
    home.attest(ex, "王芳 Wang Fang")
    out = tmp_path / "att.wacz"
    export_case(home, "C-ATT", out)
    res = verify_case(out, trust=home.config.trusted_vkeys)
    assert res.ok, res.first_failure
    [att] = res.attestations
    assert att["exhibit_index"] == ex and att["officer"] == "王芳 Wang Fang"
    from verify.report import render_html

    html = render_html(res, out)
    assert "王芳 Wang Fang" in html and "李伟 Li Wei" in html


def test_an_attestation_under_another_officers_name_fails(home, tmp_path):
    from ledger.record import Draft

    [ex] = build_case(home, tmp_path / "w", "C-ATT", exhibits=1)
    home.add_key("Wang Fang", "officer")
    key = home.signer_key("Wang Fang")
    leaf = next(r for r in home.records(case="C-ATT") if r.index == ex).leaf.hex()
    home.store.append_many([Draft("attestation", {"exhibit_index": ex, "exhibit_leaf": leaf, "officer": "Zhao Lei"}, "C-ATT")],
                           key=key, origin=home.origin)
    out = tmp_path / "att.wacz"
    export_case(home, "C-ATT", out)
    res = verify_case(out, trust=home.config.trusted_vkeys)
    assert not res.ok and res.first_failure.name == "attestation" and "Zhao Lei" in res.first_failure.detail


def test_a_key_rotation_after_the_case_is_carried_in_the_bundle(home, tmp_path):
    build_case(home, tmp_path / "w", "C-ROT", exhibits=1)
    home.rotate_key()  # the export record and checkpoint are signed by the new key
    out = tmp_path / "rot.wacz"
    export_case(home, "C-ROT", out)
    res = verify_case(out, trust=home.config.trusted_vkeys[-1:])
    assert res.ok and res.trusted, res.first_failure
    assert any(c.ok and "key-rotation" in c.detail for c in by_name(res, "record-signature"))


@pytest.mark.parametrize("kind", MUTATIONS)
def test_tampering_is_detected_and_named(home, tmp_path, kind):
    build_case(home, tmp_path / "a", "CASE-T", exhibits=2)
    export_case(home, "CASE-T", tmp_path / "earlier.wacz")  # an older export record the forger may swap in
    old = [home.checkpoint().note]
    home.rotate_key()
    build_case(home, tmp_path / "b", "CASE-T", exhibits=2)
    src = tmp_path / "case.wacz"
    export_case(home, "CASE-T", src)
    trust = list(home.config.trusted_vkeys)
    rng = random.Random(kind)
    for i in range(8):
        dst = tmp_path / f"m{i}.wacz"
        m = mutate(src, dst, rng, kind, old_notes=old)
        found, named, msg = detected(dst, m, trust)
        assert found, f"{kind} {m.target}: {msg}"
        assert named, f"{kind} {m.target} not named: {msg}"


def test_no_byte_of_the_unsigned_case_map_can_change(case, tmp_path):
    path, trust, *_ = case
    entries = read_zip(path)
    i = next(n for n, (zi, _) in enumerate(entries) if zi.filename == CASE_JSON)
    data = entries[i][1]
    rng = random.Random(5)
    for pos in rng.sample(range(len(data)), 120):
        b = bytearray(data)
        b[pos] ^= 1 << rng.randrange(8)
        mutated = list(entries)
        mutated[i] = (entries[i][0], bytes(b))
        dst = tmp_path / "m.wacz"
        write_zip(dst, mutated, fix_datapackage=True)  # the attacker rewrites every digest too
        try:
            res = verify_case(dst, trust=trust)
        except CaseFileError:
            continue
        assert not res.ok, f"byte {pos} ({data[max(0, pos - 20):pos + 20]!r}) changed undetected"


def test_the_cdxj_index_is_bound_to_the_export_record(case, tmp_path):
    path, trust, *_ = case
    entries = read_zip(path)
    forged = [(zi, d.replace(b"example,shop)/item/1", b"example,shop)/item/9") if zi.filename == "indexes/index.cdx" else d)
              for zi, d in entries]
    dst = tmp_path / "forged.wacz"
    write_zip(dst, forged, fix_datapackage=True)
    res = verify_case(dst, trust=trust)
    assert not res.ok
    assert res.first_failure.name == "file-digest" and res.first_failure.where == "indexes/index.cdx"
    assert "export record" in res.first_failure.detail and "indexes/index.cdx" not in res.files


def test_export_refuses_an_unknown_case_and_leaves_nothing(home, tmp_path):
    with pytest.raises(UsageError, match="no records for case"):
        export_case(home, "NOPE", tmp_path / "x.wacz")
    assert list(tmp_path.glob("*.wacz*")) == [] and list(tmp_path.glob(".x.wacz*")) == []


def test_export_to_an_unwritable_place_appends_nothing(home, tmp_path):
    build_case(home, tmp_path / "w", "C-1", exhibits=1)
    size = home.size()
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(UsageError, match="cannot write the case file"):
        export_case(home, "C-1", blocker / "case.wacz")
    assert home.size() == size  # no case-export record for an export that never happened


def test_export_fails_cleanly_when_an_artifact_was_altered_in_the_store(home, tmp_path):
    build_case(home, tmp_path / "w", "C-1", exhibits=1)
    [rec] = [r for r in home.records(case="C-1") if r.kind == "exhibit"]
    with home.artifacts.open(rec.payload["manifest"]["sha256"]) as f:
        manifest = json.loads(f.read())
    shot = next(a for a in manifest["artifacts"] if a["name"].endswith(".png"))
    blob = Path(home.artifacts.path_for(shot["sha256"]))
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[-1] ^= 1
    blob.write_bytes(bytes(data))
    from ledger.errors import IntegrityError

    with pytest.raises(IntegrityError, match="altered"):
        export_case(home, "C-1", tmp_path / "c.wacz")
    assert not (tmp_path / "c.wacz").exists() and not list(tmp_path.glob(".c.wacz*"))


def test_rfc3161_anchor_travels_with_the_case_and_verifies_offline(home, tmp_path, tsa_case):
    tsa, roots, root_pem = tsa_case
    from ledger.anchors import anchor_checkpoint

    build_case(home, tmp_path / "w", "C-TSA", exhibits=1)
    [res] = anchor_checkpoint(home, tsa_urls=[tsa.url], roots=roots)
    assert res.ok
    out = tmp_path / "tsa.wacz"
    export_case(home, "C-TSA", out)
    trust = list(home.config.trusted_vkeys)
    good = verify_case(out, trust=trust, tsa_roots=roots)
    assert good.ok, good.first_failure
    [anchor] = [a for a in good.anchors if a["type"] == "rfc3161"]
    assert anchor["time"].endswith("Z") and anchor["verified"] and anchor["trusted"]
    assert any(c.ok and c.name == "anchor-rfc3161" and "root given by the verifier" in c.detail for c in good.checks)
    # Without the TSA's root the token cannot be trusted: said, not passed silently.
    unrooted = verify_case(out, trust=trust)
    [a] = unrooted.anchors
    assert not a["verified"] and any("--tsa-root" in w for w in unrooted.warnings)
    # A token for another checkpoint is caught even without a root.
    other = tmp_path / "other.wacz"
    home.append("custody", {"note": "later"}, case="C-TSA")
    anchor_checkpoint(home, tsa_urls=[tsa.url], roots=roots)
    later_token = [r for r in home.records() if r.kind == "anchor"][-1].payload["token_sha256"]
    with home.artifacts.open(later_token) as f:
        forged = f.read()
    entries = [(zi, forged if zi.filename == next(n for n in anchor["files"] if n.endswith("token.tsr")) else d)
               for zi, d in read_zip(out)]
    write_zip(other, entries, fix_datapackage=True)
    bad = verify_case(other, trust=trust, tsa_roots=roots)
    assert not bad.ok

    # The report's OpenSSL command works on the files as shipped.
    d = tmp_path / "unzipped"
    with zipfile.ZipFile(out) as zf:
        zf.extractall(d)
    token = next(f for f in anchor["files"] if f.endswith("token.tsr"))
    chain = next(f for f in anchor["files"] if f.endswith("chain.pem"))
    cmd = ["openssl", "ts", "-verify", "-in", token, "-data", f"evidence/checkpoint-{anchor['checkpoint_size']}.note",
           "-CAfile", str(root_pem), "-untrusted", chain]
    r = subprocess.run(cmd, cwd=d, capture_output=True, text=True)
    assert r.returncode == 0 and "Verification: OK" in r.stdout, r.stdout + r.stderr
    from verify.report import render_html

    assert "openssl ts -verify -in " + token in render_html(good, out)


@pytest.fixture
def tsa_case(tmp_path_factory):
    from tsa_fixture import LocalTSA

    from ledger.anchors import load_roots

    server = LocalTSA(tmp_path_factory.mktemp("tsa")).start()
    yield server, load_roots([server.root_pem]), server.root_pem
    server.stop()


def test_report_html_and_pdf_show_the_case_for_a_court(case, tmp_path):
    path, trust, indexes, _ = case
    from verify.report import write_report

    res = verify_case(path, trust=trust)
    html = write_report(res, path, tmp_path / "report.html").read_text("utf-8")
    assert "SAMR-2026-017" in html and "校验报告" in html and "Verification report" in html
    assert html.count("data:image/jpeg;base64,") >= 3  # a thumbnail per exhibit
    for f, facts in res.files.items():
        if f.startswith("archive/"):
            assert facts["sha256"] in html
    assert "sha256sum" in html and "evidence verify" in html
    assert "<script" not in html.lower() and "http://" not in html.split("<body", 1)[1].replace("http://shop.example", "")
    pdf = write_report(res, path, tmp_path / "report.pdf")
    from pypdf import PdfReader

    text = "".join(p.extract_text() for p in PdfReader(str(pdf)).pages)
    assert "SAMR-2026-017" in text


# -- the command line -------------------------------------------------------------------

def run(home_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    import os

    env = {**os.environ, "EVIDENCE_HOME": str(home_dir)}
    return subprocess.run([sys.executable, "-m", "evidence.cli", *args], capture_output=True, text=True, env=env, timeout=300)


def test_cli_export_verify_exit_codes(home, tmp_path):
    build_case(home, tmp_path / "w", "C-CLI", exhibits=1)
    home_dir = home.home.root
    home.close()
    out = tmp_path / "c.wacz"
    r = run(home_dir, "export", "C-CLI", "-o", str(out), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["exhibits"] == 1
    vkey = tmp_path / "log.vkey"
    r = run(home_dir, "key", "show")
    vkey.write_text(re.search(r"test\.example/log\+[0-9a-f]{8}\+\S+", r.stdout).group(0) + "\n")
    r = run(home_dir, "verify", str(out), "--trust", str(vkey), "--report", str(tmp_path / "r.html"), "--json")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    assert json.loads(r.stdout)["ok"] is True and (tmp_path / "r.html").exists()

    bad = tmp_path / "bad.wacz"
    m = mutate(out, bad, random.Random(1), "flip", old_notes=[])
    r = run(home_dir, "verify", str(bad), "--trust", str(vkey))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: case file is INVALID:"), r.stderr
    assert m.target in r.stderr or "datapackage" in r.stderr

    junk = tmp_path / "junk.wacz"
    junk.write_bytes(b"PK\x03\x04 not really a zip")
    r = run(home_dir, "verify", str(junk))
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run(home_dir, "verify", str(tmp_path / "missing.wacz"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = run(home_dir, "export", "NO-SUCH-CASE", "-o", str(tmp_path / "n.wacz"))
    assert r.returncode != 0 and "Traceback" not in r.stderr and "no records" in r.stderr
    r = run(home_dir, "verify", str(out), "--report", str(tmp_path / "no-such-dir" / "r.html"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and "cannot write the report" in r.stderr
    r = run(home_dir, "export", "C-CLI", "-o", str(vkey / "c.wacz"))  # a file where a folder should be
    assert r.returncode == 2 and "cannot write the case file" in r.stderr and "Traceback" not in r.stderr
    r = run(home_dir, "verify", str(out), "--require-trust")
    assert r.returncode == 1 and "self-declared" in r.stderr
