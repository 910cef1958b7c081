"""`anchor --exhibits`: each exhibit's manifest digest deposited once per service, carried and checked.

The toy notary of examples/deposit_adapter.py records the digests it is
given; its receipts are checked offline by the example's signature-checking
adapter and by the generic HTTP JSON adapter.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from evidence.case import export_case
from ledger.anchors import EXHIBIT_DEPOSIT, anchor_checkpoint, audit_anchors
from ledger.exhibit import ArtifactFile
from verify.case import verify_case
from verify.report import write_report

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "deposit_adapter.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("deposit_adapter_example_x", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


@pytest.fixture
def notary(example):
    n = example.ToyNotary().start()
    yield n
    n.stop()


def seal(led, tmp_path: Path, case: str, n: int):
    f = tmp_path / f"shot-{case}-{n}.png"
    f.write_bytes(f"png {case} {n}".encode())
    return led.seal_exhibit(case, [ArtifactFile("shot.png", f, "image/png", "screenshot-full")],
                            {"url": f"https://shop.example/{case}/{n}"})


def exhibit_deposits(results):
    return [r for r in results if r.type == EXHIBIT_DEPOSIT]


def test_each_exhibit_deposited_once(home, example, notary, tmp_path):
    custom = example.NotaryDeposit("toy-notary", notary.url, notary.public_key)
    generic = example.generic_adapter(notary.url)
    e1, e2, other = seal(home, tmp_path, "C1", 1), seal(home, tmp_path, "C1", 2), seal(home, tmp_path, "C2", 1)
    first = anchor_checkpoint(home, deposits=[custom, generic], exhibits=True)
    deps = exhibit_deposits(first)
    assert len(deps) == 6 and all(r.ok for r in deps)
    manifests = [e.manifest_sha256 for e in (e1, e2, other)]
    # The service holds each exhibit's manifest digest itself, once per adapter.
    assert sorted(d for d in notary.deposits if d in manifests) == sorted(manifests * 2)
    for r in deps:
        p = r.payload
        ex = {e.index: e for e in (e1, e2, other)}[p["exhibit_index"]]
        assert p["manifest_sha256"] == ex.manifest_sha256 and p["exhibit_leaf"] == ex.record.leaf.hex()
        assert p["reference"] and p["time"] and p["service"] in ("toy-notary", "toy-notary-generic")
        with home.artifacts.open(p["receipt_sha256"]) as f:
            assert json.loads(f.read())["receipt"]["hash"] == ex.manifest_sha256  # verbatim service bytes
    # Only the digest went to the service, never the manifest's contents.
    assert len(notary.deposits) == 8  # 2 checkpoint deposits + 6 exhibit deposits
    # A second run deposits nothing new; a new exhibit is the only one sent.
    before = len(notary.deposits)
    again = anchor_checkpoint(home, deposits=[custom, generic], exhibits=True)
    assert exhibit_deposits(again) == [] and len(notary.deposits) == before + 2  # the checkpoint only
    e3 = seal(home, tmp_path, "C1", 3)
    third = exhibit_deposits(anchor_checkpoint(home, deposits=[custom], exhibits=True))
    assert [r.payload["exhibit_index"] for r in third] == [e3.index]
    # Without --exhibits nothing is deposited per exhibit (control for the flag).
    e4 = seal(home, tmp_path, "C1", 4)
    assert exhibit_deposits(anchor_checkpoint(home, deposits=[custom])) == []
    assert e4.manifest_sha256 not in notary.deposits
    checks = audit_anchors(home, deposits=[custom, generic])
    assert checks and all(c.ok and c.verified for c in checks), [c for c in checks if not (c.ok and c.verified)]


def _rewrite(src: Path, dst: Path, change: dict[str, bytes]) -> None:
    """Copy a case file entry by entry, replacing the named entries' bytes."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = change.get(info.filename, zin.read(info.filename))
            zout.writestr(info, data)


def _exported(home, example, notary, tmp_path):
    custom = example.NotaryDeposit("toy-notary", notary.url, notary.public_key)
    e1, e2, other = seal(home, tmp_path, "C1", 1), seal(home, tmp_path, "C1", 2), seal(home, tmp_path, "C2", 1)
    anchor_checkpoint(home, deposits=[custom], exhibits=True)
    out = tmp_path / "c1.wacz"
    export_case(home, "C1", out)
    return custom, (e1, e2, other), out


def test_receipts_in_the_case_file_verify(home, example, notary, tmp_path):
    custom, (e1, e2, other), out = _exported(home, example, notary, tmp_path)
    res = verify_case(out, trust=home.config.trusted_vkeys, deposits=[custom])
    assert res.ok and res.complete, [c for c in res.checks if not c.ok]
    deps = [a for a in res.anchors if a["type"] == EXHIBIT_DEPOSIT]
    assert sorted(a["exhibit_index"] for a in deps) == [e1.index, e2.index]  # not the other case's
    assert all(a["verified"] and a["reference"] and a["time"] for a in deps)
    assert {a["manifest_sha256"] for a in deps} == {e1.manifest_sha256, e2.manifest_sha256}
    receipts = [f for a in deps for f in a["files"]]
    assert receipts and all(res.files[f]["bound_by"] for f in receipts)  # the export record binds them
    by_ex = {x["index"]: x for x in res.exhibits}
    assert by_ex[e1.index]["anchor"] is not None
    # Without the adapter: intact, not verified; still valid.
    plain = verify_case(out, trust=home.config.trusted_vkeys)
    assert plain.ok and all(not a["verified"] for a in plain.anchors if a["type"] == EXHIBIT_DEPOSIT)
    # The report prints each deposit: service, receipt id, time.
    report = tmp_path / "report.html"
    write_report(res, out, report)
    html = report.read_text("utf-8")
    assert "Exhibit deposits" in html
    for a in deps:
        assert a["reference"] in html and a["time"] in html


def test_tampered_receipt_fails_verify(home, example, notary, tmp_path):
    custom, (e1, _e2, _o), out = _exported(home, example, notary, tmp_path)
    res = verify_case(out, trust=home.config.trusted_vkeys, deposits=[custom])
    dep = next(a for a in res.anchors if a["type"] == EXHIBIT_DEPOSIT and a["exhibit_index"] == e1.index)
    path = dep["files"][0]
    with zipfile.ZipFile(out) as z:
        receipt = z.read(path)
    # Control through the same path: a rewritten copy with the same bytes verifies.
    same = tmp_path / "same.wacz"
    _rewrite(out, same, {path: receipt})
    assert verify_case(same, trust=home.config.trusted_vkeys, deposits=[custom]).ok
    doc = json.loads(receipt)
    doc["receipt"]["time"] = "1999-01-01T00:00:00Z"
    bad = tmp_path / "bad.wacz"
    _rewrite(out, bad, {path: json.dumps(doc).encode()})
    res = verify_case(bad, trust=home.config.trusted_vkeys, deposits=[custom])
    assert not res.ok
    assert any(not c.ok and c.where == path for c in res.checks)
    assert any(not c.ok and c.name == "anchor-exhibit-deposit" for c in res.checks)


def test_receipt_for_another_exhibit_fails(home, example, notary, tmp_path):
    """A receipt valid for exhibit 1 stored as exhibit 2's (digests all recomputed) fails the adapter check."""
    custom = example.NotaryDeposit("toy-notary", notary.url, notary.public_key)
    e1, e2 = seal(home, tmp_path, "C1", 1), seal(home, tmp_path, "C1", 2)
    home.checkpoint()
    cp = home.store.latest_checkpoint()
    base = {"type": EXHIBIT_DEPOSIT, "checkpoint_origin": home.origin, "checkpoint_size": cp.size,
            "checkpoint_sha256": hashlib.sha256(cp.note.encode()).hexdigest(), "service": "toy-notary"}
    with home.artifacts.open(e1.manifest_sha256) as f:
        receipt = custom.submit(f.read())
    blob = home.artifacts.put_bytes(receipt.data).sha256

    def entry(ex):
        return {**base, "exhibit_index": ex.index, "exhibit_leaf": ex.record.leaf.hex(), "manifest_sha256": ex.manifest_sha256,
                "time": "t", "reference": "r", "receipt_media_type": "application/json", "receipt_sha256": blob}

    home.append_anchors([entry(e1), entry(e2)])
    checks = audit_anchors(home, deposits=[custom])
    assert [c.ok for c in checks] == [True, False]  # control first, the misplaced receipt second
    out = tmp_path / "c.wacz"
    export_case(home, "C1", out)
    res = verify_case(out, trust=home.config.trusted_vkeys, deposits=[custom])
    bad = [c for c in res.checks if not c.ok]
    assert [c.name for c in bad] == ["anchor-exhibit-deposit"], bad


def cli(home: Path, *args: str, check: int | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, EVIDENCE_HOME=str(home), COLUMNS="300")
    env.pop("EVIDENCE_KEY_PASSPHRASE", None)
    p = subprocess.run([sys.executable, "-m", "evidence.cli", *args], capture_output=True, text=True, env=env, timeout=120)
    assert "Traceback" not in p.stderr, p.stderr
    if check is not None:
        assert p.returncode == check, (p.returncode, p.stdout, p.stderr)
    return p


def test_cli_anchor_exhibits(home, notary, tmp_path):
    root = home.home.root
    e1 = seal(home, tmp_path, "C1", 1)
    cfg = tmp_path / "notary.json"
    cfg.write_text(json.dumps({"name": "court-chain", "url": notary.url, "request": {"sha256": "hash"},
                               "digest": "receipt.hash", "reference": "receipt.tx", "time": "receipt.time"}))
    p = cli(root, "anchor", "--exhibits", check=2)
    assert "--deposit-config" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    out = json.loads(cli(root, "anchor", "--deposit-config", str(cfg), "--exhibits", "--json", check=0).stdout)
    deps = [r for r in out["results"] if r["type"] == EXHIBIT_DEPOSIT]
    assert [r["payload"]["exhibit_index"] for r in deps] == [e1.index] and e1.manifest_sha256 in notary.deposits
    again = json.loads(cli(root, "anchor", "--deposit-config", str(cfg), "--exhibits", "--json", check=0).stdout)
    assert [r for r in again["results"] if r["type"] == EXHIBIT_DEPOSIT] == []
    cli(root, "audit", check=0)
    # The record shows the deposit: service, receipt id, time.
    html = tmp_path / "r.html"
    cli(root, "record", str(e1.index), "--format", "html", "-o", str(html), check=0)
    text = html.read_text("utf-8")
    ref = deps[0]["payload"]["reference"]
    assert "本证据清单哈希存证" in text and "court-chain" in text and ref in text
    case_file = tmp_path / "c1.wacz"
    cli(root, "export", "C1", "-o", str(case_file), check=0)
    v = json.loads(cli(root, "verify", str(case_file), "--deposit-config", str(cfg), "--json", check=0).stdout)
    assert [a["verified"] for a in v["anchors"] if a["type"] == EXHIBIT_DEPOSIT] == [True]
