"""A rotated key is valid only up to its rotation, in case files and in the audit.

The adversary holds the retired private key (the usual reason to rotate). With
it they rebuild the log without the rotation record and export a case file
that is consistent in every byte (records, proofs, checkpoints, datapackage,
case.json, all written by the project's own export). Only the verifier's
knowledge of the retirement (``--trust HOME/keys``) can refuse it; with just
the old vkey it verifies, which shows the forgery is otherwise perfect.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from case_fixtures import build_case, read_zip, write_zip  # noqa: E402

from evidence.case import export_case  # noqa: E402
from ledger import Ledger, Store, Trust  # noqa: E402
from ledger.checkpoint import Checkpoint  # noqa: E402
from ledger.config import Home, HomeConfig  # noqa: E402
from ledger.keys import SigningKey  # noqa: E402
from ledger.note import parse_note, sign_note, vkey_for  # noqa: E402
from ledger.record import Draft  # noqa: E402
from ledger.waczsign import load_or_create  # noqa: E402
from verify.case import verify_case  # noqa: E402
from verify.ledger import audit_store  # noqa: E402

ORIGIN = "test.example/log"


def cli(*args: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="250")
    env.pop("EVIDENCE_KEY_PASSPHRASE", None)
    if home is not None:
        env["EVIDENCE_HOME"] = str(home)
    p = subprocess.run([sys.executable, "-m", "evidence.cli", *args], capture_output=True, text=True, env=env, timeout=300)
    assert "Traceback" not in p.stderr, p.stderr
    return p


@dataclass
class Rotated:
    led: Ledger
    root: Path
    old: SigningKey  # the retired key, as stolen before the rotation
    old_vkey: str
    rotation_index: int
    before: Path  # case file exported before the rotation
    genuine: Path  # case file exported after it


@pytest.fixture
def rotated(tmp_path: Path) -> Rotated:
    led = Ledger.init(tmp_path / "home", unencrypted=True, origin=ORIGIN)
    build_case(led, tmp_path / "w1", "C-1", exhibits=2)
    before = tmp_path / "before.wacz"
    export_case(led, "C-1", before)
    old = led.key
    old_vkey = vkey_for(ORIGIN, old.public)
    rot = led.rotate_key()
    # Enough after the rotation that the rebuilt log outgrows the old key's lifetime.
    build_case(led, tmp_path / "w2", "C-1", exhibits=2, other_case_between=False)
    genuine = tmp_path / "genuine.wacz"
    export_case(led, "C-1", genuine)
    return Rotated(led, tmp_path / "home", old, old_vkey, rot.index, before, genuine)


def forge_without_rotation(r: Rotated, where: Path) -> Ledger:
    """The log rebuilt with the retired key: the rotation dropped, every later record re-signed by it."""
    where.mkdir()
    store = Store(f"sqlite:///{where / 'ledger.db'}", create=True)
    store.add_key(r.old.key_id, r.old.public_raw, ORIGIN, 0)
    for rec in r.led.records():
        if rec.kind in ("key-rotation", "case-export"):
            continue
        store.append_many([Draft(rec.kind, rec.payload, rec.case)], key=r.old, origin=ORIGIN)
    cfg = HomeConfig(origin=ORIGIN, key_id=r.old.key_id, trusted_vkeys=[r.old_vkey],
                     extra={"artifacts": str(r.root / "store")})
    home = Home(where)
    home.save_config(cfg)
    forged = Ledger(home, cfg, store, None)
    forged._key = r.old
    return forged


def test_rotation_retires_the_old_key_in_keys_dir(rotated: Rotated):
    r = rotated
    keys = r.root / "keys"
    assert not (keys / f"{r.old.key_id}.key").exists()  # the retired private key left keys/
    assert (r.root / "keys-retired" / f"{r.old.key_id}.key").exists()
    assert not (keys / f"{r.old.key_id}.vkey").exists()
    life = json.loads((keys / "retired" / f"{r.old.key_id}.json").read_text())
    assert life["last_valid_size"] == r.rotation_index + 1 and life["retired_by_record"] == r.rotation_index
    assert life["successor_key_id"] == r.led.config.key_id
    assert (keys / "retired" / f"{r.old.key_id}.vkey").read_text().strip() == r.old_vkey
    shown = json.loads(cli("key", "show", "--json", home=r.root).stdout)
    assert shown["vkeys"] == [vkey_for(ORIGIN, r.led.key.public)]
    assert shown["retired"] == [{"key_id": r.old.key_id, "vkey": r.old_vkey, "last_valid_size": r.rotation_index + 1,
                                 "retired_by_record": r.rotation_index, "successor_key_id": r.led.config.key_id}]
    text = cli("key", "show", home=r.root).stdout
    assert f"retired: {r.old_vkey}" in text and f"checkpoints of size <= {r.rotation_index + 1}" in text


def test_genuine_cases_verify_with_trust_dir(rotated: Rotated):
    """Controls: the rotated case, and one exported before the rotation, are VALID under --trust HOME/keys."""
    for case in (rotated.genuine, rotated.before):
        p = cli("verify", str(case), "--trust", str(rotated.root / "keys"), "--json")
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr
        assert json.loads(p.stdout)["trusted"] is True
    # --trust FILE with one vkey keeps working (the current key signs the rotated case's checkpoint).
    one = rotated.root.parent / "current.vkey"
    one.write_text(vkey_for(ORIGIN, rotated.led.key.public) + "\n")
    assert cli("verify", str(rotated.genuine), "--trust", str(one)).returncode == 0


def test_case_rebuilt_without_rotation_is_refused(rotated: Rotated, tmp_path: Path):
    forged = forge_without_rotation(rotated, tmp_path / "forged")
    out = tmp_path / "forged.wacz"
    export_case(forged, "C-1", out)
    # Knowing only the old key, nothing is wrong with it: every digest, proof and signature holds.
    assert verify_case(out, trust=[rotated.old_vkey]).ok
    p = cli("verify", str(out), "--trust", str(rotated.root / "keys"))
    assert p.returncode == 1, p.stdout[-2000:] + p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("error: case file is INVALID:") and rotated.old.key_id in last and "retired" in last
    res = verify_case(out, trust=Trust.load([str(rotated.root / "keys")]))
    assert not res.ok and not res.trusted


def resign_checkpoint(src: Path, dst: Path, key: SigningKey, wacz_key: Any = None) -> None:
    """The case checkpoint (same tree) re-signed by ``key``, proofs and digests made to match
    (and the datapackage re-signed with ``wacz_key`` when the re-signer holds it)."""
    entries = read_zip(src)
    case = json.loads(next(d for zi, d in entries if zi.filename == "evidence/case.json"))
    name = case["checkpoint"]["path"]
    old = next(d for zi, d in entries if zi.filename == name).decode()
    text, _ = parse_note(old)
    new = sign_note(text, ORIGIN, key.private)
    fixed = []
    for zi, data in entries:
        if zi.filename == name or zi.filename.endswith(".tlog-proof"):
            data = data.decode().replace(old, new).encode()
        fixed.append((zi, data))
    write_zip(dst, fixed, True, wacz_key)


def test_checkpoint_beyond_retirement_by_old_key_fails(rotated: Rotated, tmp_path: Path):
    bad = tmp_path / "resigned.wacz"
    resign_checkpoint(rotated.genuine, bad, rotated.old)
    with zipfile.ZipFile(bad) as z:
        assert z.read("datapackage.json") != zipfile.ZipFile(rotated.genuine).read("datapackage.json")
    size = json.loads(zipfile.ZipFile(bad).read("evidence/case.json"))["checkpoint"]["size"]
    assert size > rotated.rotation_index + 1
    p = cli("verify", str(bad), "--trust", str(rotated.root / "keys"))
    assert p.returncode == 1 and rotated.old.key_id in p.stderr and f"size {size}" in p.stderr, p.stderr
    # Self-declared too: the bundle's own rotation record ends the old key's lifetime.
    res = verify_case(bad)
    assert not res.ok and rotated.old.key_id in res.first_failure.detail
    # Control through the same path: re-signed by the current key it is VALID again.
    again = tmp_path / "again.wacz"
    resign_checkpoint(bad, again, rotated.led.key, load_or_create(rotated.root / "keys", None))
    assert cli("verify", str(again), "--trust", str(rotated.root / "keys")).returncode == 0


def test_audit_with_trust_dir_refuses_rebuilt_ledger(rotated: Rotated, tmp_path: Path):
    forged = forge_without_rotation(rotated, tmp_path / "forged")
    forged.checkpoint()
    forged.close()
    keys = str(rotated.root / "keys")
    assert cli("audit", home=tmp_path / "forged").returncode == 0  # its own config knows only the old key
    p = cli("audit", "--trust", keys, home=tmp_path / "forged")
    assert p.returncode == 1, p.stdout + p.stderr
    assert rotated.old.key_id in p.stderr and f"first bad index {rotated.rotation_index + 1}" in p.stderr
    # Control: the genuine ledger under the same trust directory, and under the home's own trust.
    assert cli("audit", "--trust", keys, home=rotated.root).returncode == 0
    assert cli("audit", home=rotated.root).returncode == 0


def test_audit_checkpoint_lifetime_boundary(tmp_path: Path):
    """The old key may sign the tree ending with its rotation (size r+1), not one record more."""
    led = Ledger.init(tmp_path / "h", unencrypted=True, origin=ORIGIN)
    led.append("custody", {"i": 1})
    old = led.key
    r = led.rotate_key().index
    led.append("custody", {"i": 2})
    led.append("custody", {"i": 3})
    trust = Trust.load([str(tmp_path / "h" / "keys")])

    def add_cp(size: int) -> None:
        _, root = led.store.root(size)
        note = sign_note(Checkpoint(ORIGIN, size, root).to_text(), ORIGIN, old.private)
        led.store.execute_raw("INSERT INTO checkpoints (size, root, note, created) VALUES (?, ?, ?, ?)",
                              (size, root, note, "2026-01-01T00:00:00Z"))

    add_cp(r + 1)
    for t in (trust, led.trust(), led.config.trusted_vkeys):
        res = audit_store(led.store, t)
        assert res.ok, res.problems
    add_cp(r + 2)
    for t in (trust, led.trust(), led.config.trusted_vkeys):
        res = audit_store(led.store, t)
        assert not res.ok
        assert any(f"checkpoint of size {r + 2} is signed only by retired key {old.key_id}" in p.what for p in res.problems)


def test_audit_refuses_rotation_at_another_index(rotated: Rotated, tmp_path: Path):
    """A record dropped before the rotation, whose payload is replayed one record early.

    Everything stays within the old key's lifetime; only the pinned rotation
    index tells this history from the genuine one.
    """
    store = Store(f"sqlite:///{tmp_path / 'other.db'}", create=True)
    store.add_key(rotated.old.key_id, rotated.old.public_raw, ORIGIN, 0)
    recs = list(rotated.led.records())
    r = rotated.rotation_index
    for rec in recs[: r - 1] + [recs[r]]:
        store.append_many([Draft(rec.kind, rec.payload, rec.case)], key=rotated.old, origin=ORIGIN)
    trust = Trust.load([str(rotated.root / "keys")])
    res = audit_store(store, trust)
    assert not res.ok and res.first_problem.index == r - 1
    assert "another history" in res.first_problem.what and rotated.old.key_id in res.first_problem.what
    # Control: the same replay without the inserted record matches the pinned history.
    same = Store(f"sqlite:///{tmp_path / 'same.db'}", create=True)
    same.add_key(rotated.old.key_id, rotated.old.public_raw, ORIGIN, 0)
    for rec in recs[: rotated.rotation_index + 1]:
        same.append_many([Draft(rec.kind, rec.payload, rec.case)], key=rotated.old, origin=ORIGIN)
    assert audit_store(same, trust).ok, audit_store(same, trust).problems
    store.dispose()
    same.dispose()


def test_trust_dir_with_unusable_retirement_is_refused(rotated: Rotated, tmp_path: Path):
    keys = rotated.root / "keys"
    life = keys / "retired" / f"{rotated.old.key_id}.json"
    saved = life.read_text()
    life.unlink()
    p = cli("verify", str(rotated.genuine), "--trust", str(keys))
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2 and len(lines) == 1 and "no lifetime file" in lines[0], p.stderr
    life.write_text(saved.replace('"last_valid_size": ', '"last_valid_size": -'))
    assert cli("verify", str(rotated.genuine), "--trust", str(keys)).returncode == 2
    life.write_text(saved)
    assert cli("verify", str(rotated.genuine), "--trust", str(keys)).returncode == 0
