"""WACZ signing of case files: the spec's signedData, bound to the ledger, checked by our verifier.

Each forgery is written by the same rewrite as its control (the untouched
bytes written back), so a failure can only come from the mutation.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from evidence.case import INDEX, export_case
from ledger import waczsign
from ledger.casefacts import set_case_info
from ledger.errors import SignatureError
from ledger.log import Ledger
from verify.case import verify_case
from verify.casefile import DATAPACKAGE, DATAPACKAGE_DIGEST, datapackage_digest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "verify"))
from case_fixtures import build_case  # noqa: E402

VENV_BIN = Path(sys.executable).parent


@pytest.fixture
def case(tmp_path):
    led = Ledger.init(tmp_path / "home", unencrypted=True, origin="test.example/log")
    build_case(led, tmp_path, "C-1", exhibits=2)
    set_case_info(led, "C-1", cause="销售假冒注册商标的商品", party="某某旗舰店（某平台）")
    out = tmp_path / "case.wacz"
    export_case(led, "C-1", out)
    yield led, out
    led.close()


def trust(led):
    return list(led.config.trusted_vkeys)


def rewrite(src: Path, dst: Path, changes: dict[str, bytes | None]) -> None:
    """Copy the ZIP entry by entry, replacing (bytes) or dropping (None) the named entries."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for zi in zin.infolist():
            if zi.filename in changes:
                if changes[zi.filename] is not None:
                    zout.writestr(zi, changes[zi.filename])
            else:
                zout.writestr(zi, zin.read(zi))


def read(path: Path, name: str) -> bytes:
    with zipfile.ZipFile(path) as z:
        return z.read(name)


def wacz_check(res):
    return [c for c in res.checks if c.name == "wacz-signature"]


def test_export_is_signed_per_spec_and_verifies(case):
    led, out = case
    res = verify_case(out, trust=trust(led))
    assert res.exit_code() == 0, res.verdict()
    [chk] = wacz_check(res)
    assert chk.ok and "ECDSA P-384" in chk.detail
    digest = json.loads(read(out, DATAPACKAGE_DIGEST))
    dp_raw = read(out, DATAPACKAGE)
    signed = digest["signedData"]
    assert list(signed) == list(waczsign.SIGNED_FIELDS)  # the spec's anonymous form and nothing else
    assert signed["hash"] == digest["hash"] == "sha256:" + hashlib.sha256(dp_raw).hexdigest()
    assert signed["created"] == json.loads(dp_raw)["created"]  # py-wacz refuses a signature whose time differs
    # The signature is what WebCrypto (ReplayWeb.page) verifies: raw r||s over the ASCII hash string.
    pub = serialization.load_der_public_key(base64.b64decode(signed["publicKey"]))
    assert isinstance(pub.curve, ec.SECP384R1) and len(base64.b64decode(signed["signature"])) == 96
    # The key is the one a wacz-key record in the bundle introduces, and the export record names it.
    recs = [json.loads(read(out, n)) for n in zipfile.ZipFile(out).namelist() if n.startswith("evidence/record-") and n.endswith(".json")]
    [keyrec] = [r for r in recs if r["kind"] == waczsign.KEY_KIND]
    [export] = [r for r in recs if r["kind"] == "case-export"]
    assert keyrec["payload"]["public_key"] == signed["publicKey"]
    assert export["payload"]["wacz_key"] == keyrec["payload"]["key_id"]


def test_title_index_name_and_mode(case, tmp_path):
    led, out = case
    dp = json.loads(read(out, DATAPACKAGE))
    assert dp["metadata"]["title"] == "Case C-1 — 销售假冒注册商标的商品 — 某某旗舰店（某平台）" == dp["title"]
    assert INDEX == "indexes/index.cdx" and INDEX in zipfile.ZipFile(out).namelist()
    assert stat.S_IMODE(out.stat().st_mode) == 0o644  # mkstemp's 0600 would keep a web server out
    private = tmp_path / "private.wacz"
    export_case(led, "C-1", private, mode=0o600)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    # Control for the title: a case without case-info is named by its id alone.
    build_case(led, tmp_path / "c2", "C-2", exhibits=1)
    export_case(led, "C-2", tmp_path / "c2.wacz")
    assert json.loads(read(tmp_path / "c2.wacz", DATAPACKAGE))["metadata"]["title"] == "Case C-2"


def test_key_is_introduced_once_and_reused(case, tmp_path):
    led, out = case
    export_case(led, "C-1", tmp_path / "again.wacz")
    keys = list(led.store.iter_records(kind=waczsign.KEY_KIND))
    assert len(keys) == 1
    a = json.loads(read(out, DATAPACKAGE_DIGEST))["signedData"]["publicKey"]
    b = json.loads(read(tmp_path / "again.wacz", DATAPACKAGE_DIGEST))["signedData"]["publicKey"]
    assert a == b
    assert verify_case(tmp_path / "again.wacz", trust=trust(led)).exit_code() == 0


def test_signing_key_encrypted_like_the_log_key(tmp_path):
    led = Ledger.init(tmp_path / "home", passphrase=b"correct horse", origin="test.example/log")
    build_case(led, tmp_path, "C-1", exhibits=1)
    export_case(led, "C-1", tmp_path / "case.wacz")
    key_file = led.home.keys_dir / waczsign.KEY_FILE
    assert b"ENCRYPTED PRIVATE KEY" in key_file.read_bytes()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert verify_case(tmp_path / "case.wacz", trust=trust(led)).exit_code() == 0
    led.close()


def _resign_with_own_key(out: Path, dst: Path, mutate_dp: bool) -> None:
    """The forger's best: a valid anonymous signature by a key of their own (over an altered package, or not)."""
    dp = read(out, DATAPACKAGE)
    if mutate_dp:
        obj = json.loads(dp)
        obj["title"] = obj["metadata"]["title"] = "Case C-1 — 已结案，无违法事实"
        dp = json.dumps(obj, ensure_ascii=False, indent=1).encode()
    own = waczsign.WaczKey(ec.generate_private_key(ec.SECP384R1()))
    created = json.loads(dp)["created"]
    forged = datapackage_digest(dp, waczsign.sign_datapackage(own, dp, created, "evidence-chain 0.1.0"))
    rewrite(out, dst, {DATAPACKAGE: dp, DATAPACKAGE_DIGEST: forged})


@pytest.mark.parametrize("fault", ["resigned-by-other-key", "altered-package-resigned", "signeddata-removed",
                                   "hash-field-changed", "signature-bit-flipped", "created-changed", "extra-field"])
def test_forged_signatures_fail(case, tmp_path, fault):
    led, out = case
    control = tmp_path / "control.wacz"
    rewrite(out, control, {DATAPACKAGE_DIGEST: read(out, DATAPACKAGE_DIGEST)})
    ok = verify_case(control, trust=trust(led))
    assert ok.exit_code() == 0 and wacz_check(ok)[0].ok, ok.verdict()

    forged = tmp_path / "forged.wacz"
    dp = read(out, DATAPACKAGE)
    digest = json.loads(read(out, DATAPACKAGE_DIGEST))
    signed = dict(digest["signedData"])
    if fault == "resigned-by-other-key":
        _resign_with_own_key(out, forged, mutate_dp=False)
    elif fault == "altered-package-resigned":
        _resign_with_own_key(out, forged, mutate_dp=True)
    else:
        if fault == "signeddata-removed":
            signed = None
        elif fault == "hash-field-changed":
            signed["hash"] = "sha256:" + hashlib.sha256(b"another package").hexdigest()
        elif fault == "signature-bit-flipped":
            sig = bytearray(base64.b64decode(signed["signature"]))
            sig[10] ^= 1
            signed["signature"] = base64.b64encode(bytes(sig)).decode()
        elif fault == "created-changed":
            signed["created"] = "2020-01-01T00:00:00Z"
        elif fault == "extra-field":
            signed["domain"] = "samr.gov.cn"
        body = datapackage_digest(dp, signed)
        if fault == "extra-field":  # datapackage_digest keeps the spec's fields only: the forger writes their own
            obj = json.loads(body)
            obj["signedData"] = signed
            body = json.dumps(obj, indent=1).encode()
        rewrite(out, forged, {DATAPACKAGE_DIGEST: body})
    res = verify_case(forged, trust=trust(led))
    assert res.exit_code() == 1
    bad = [c for c in res.checks if not c.ok]
    assert any(c.name in ("wacz-signature", "datapackage-digest", "datapackage") for c in bad), res.verdict()
    if fault in ("resigned-by-other-key", "signeddata-removed", "hash-field-changed", "signature-bit-flipped",
                 "created-changed"):
        [chk] = wacz_check(res)
        assert not chk.ok
        want = {"resigned-by-other-key": "did not introduce", "signeddata-removed": "missing",
                "hash-field-changed": "signedData.hash", "signature-bit-flipped": "does not verify",
                "created-changed": "created"}[fault]
        assert want in chk.detail, chk.detail


def test_key_record_proof_of_possession():
    key = waczsign.WaczKey(ec.generate_private_key(ec.SECP384R1()))
    payload = waczsign.key_record_payload(key, "test.example/log")
    assert waczsign.verify_key_record(payload, "test.example/log") == (key.key_id, key.spki_b64)  # control
    other = waczsign.WaczKey(ec.generate_private_key(ec.SECP384R1()))
    swapped = dict(payload, public_key=other.spki_b64, key_id=other.key_id)  # someone else's key, our proof
    with pytest.raises(SignatureError, match="does not verify"):
        waczsign.verify_key_record(swapped, "test.example/log")
    with pytest.raises(SignatureError, match="another log"):
        waczsign.verify_key_record(payload, "other.example/log")
    with pytest.raises(SignatureError, match="malformed"):
        waczsign.verify_key_record(dict(payload, note="x"), "test.example/log")


@pytest.mark.slow  # frictionless validation: ~15 s on a loaded machine
def test_py_wacz_validates_signed_case(case):
    led, out = case
    p = subprocess.run([str(VENV_BIN / "wacz"), "validate", "-f", str(out)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "Validation succeeded" in p.stdout, p.stdout + p.stderr
    assert "Has signature" in p.stdout  # py-wacz saw signedData and its created matched datapackage.json


@pytest.mark.slow  # two CLI runs
def test_cli_mode_option(tmp_path):
    env = dict(os.environ, EVIDENCE_HOME=str(tmp_path / "home"), COLUMNS="200")

    def run(*args):
        return subprocess.run([sys.executable, "-m", "evidence.cli", *args], capture_output=True, text=True, env=env, timeout=120)

    led = Ledger.init(tmp_path / "home", unencrypted=True, origin="test.example/log")
    build_case(led, tmp_path, "C-1", exhibits=1)
    led.close()
    bad = run("export", "C-1", "-o", str(tmp_path / "x.wacz"), "--mode", "rw-r--r--")
    assert bad.returncode == 2 and "--mode" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "x.wacz").exists()
    good = run("export", "C-1", "-o", str(tmp_path / "y.wacz"), "--mode", "0640")
    assert good.returncode == 0, good.stderr
    assert stat.S_IMODE((tmp_path / "y.wacz").stat().st_mode) == 0o640


# -- names: WARC-Filename is the name in the case file ------------------------------------------

def _own_named_exhibit(led, work: Path, case: str, n: int, warc_name: str) -> int:
    from case_fixtures import make_exhibit_files, write_warc

    from ledger.exhibit import ArtifactFile

    files = make_exhibit_files(work / f"own-{n}", n, f"http://shop.example/item/{n}")
    own = work / f"own-{n}" / warc_name  # warcio writes the file's name as WARC-Filename, as capture does
    write_warc(own, f"http://shop.example/item/{n}", f"<html><body>item {n} {work.name}</body></html>".encode())
    files[0] = ArtifactFile("page.warc.gz", own, "application/warc", "warc")
    return led.seal_exhibit(case, files, {"url": f"http://shop.example/item/{n}"}).index


def _warcinfo_names(path: Path) -> dict[str, str]:
    import io

    from warcio.archiveiterator import ArchiveIterator

    out = {}
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            if name.startswith("archive/"):
                rec = next(iter(ArchiveIterator(io.BytesIO(z.read(name)))))
                out[name] = rec.rec_headers.get_header("WARC-Filename")
    return out


def test_warc_stored_under_its_warc_filename(tmp_path):
    led = Ledger.init(tmp_path / "home", unencrypted=True, origin="test.example/log")
    a = "warc-20261202010000-0123456789ab.warc.gz"
    b = "warc-20261202010001-ba9876543210.warc.gz"
    _own_named_exhibit(led, tmp_path, "C-1", 1, a)
    _own_named_exhibit(led, tmp_path, "C-1", 2, b)
    # Two WARCs that carry one name (a copied capture file): the second keeps the indexed name.
    dup = _own_named_exhibit(led, tmp_path / "dup", "C-1", 3, a)
    out = tmp_path / "case.wacz"
    export_case(led, "C-1", out)
    names = _warcinfo_names(out)
    assert names[f"archive/{a}"] == a and names[f"archive/{b}"] == b
    assert names[f"archive/{dup}-page.warc.gz"] == a  # control: fallback name, WARC-Filename unchanged
    index = read(out, INDEX).decode()
    assert f'"filename": "{a}"' in index and f'"filename": "{dup}-page.warc.gz"' in index
    res = verify_case(out, trust=trust(led))
    assert res.exit_code() == 0, res.verdict()
    # Forgery: the map points exhibit 3 at exhibit 1's WARC (same name, another exhibit): never bound twice.
    cmap = json.loads(read(out, "evidence/case.json"))
    for x in cmap["exhibits"]:
        if x["index"] == dup:
            x["artifacts"]["page.warc.gz"] = f"archive/{a}"
    from verify.casefile import case_map_bytes

    forged = tmp_path / "forged.wacz"
    rewrite(out, forged, {"evidence/case.json": case_map_bytes(cmap)})
    bad = verify_case(forged, trust=trust(led))
    assert bad.exit_code() == 1 and dup not in bad.proven_exhibits()
    led.close()
