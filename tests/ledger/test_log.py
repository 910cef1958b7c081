import os
import stat

import pytest

from ledger import merkle
from ledger.checkpoint import Checkpoint
from ledger.errors import ConfigError, KeyFileError, RollbackError, UsageError
from ledger.exhibit import ArtifactFile
from ledger.log import Ledger
from ledger.note import verify_note
from ledger.record import Draft
from verify.ledger import audit_store


def test_init_creates_home(tmp_path, monkeypatch):
    monkeypatch.setenv("EVIDENCE_KEY_PASSPHRASE", "correct horse")
    led = Ledger.init(tmp_path / "h")
    key_file = tmp_path / "h" / "keys" / f"{led.config.key_id}.key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert b"ENCRYPTED" in key_file.read_bytes()
    first = next(led.records())
    assert first.index == 0 and first.kind == "log-init" and first.prev == "0" * 64
    led.close()
    with pytest.raises(ConfigError, match="already"):
        Ledger.init(tmp_path / "h")
    monkeypatch.delenv("EVIDENCE_KEY_PASSPHRASE")
    with pytest.raises(KeyFileError, match="EVIDENCE_KEY_PASSPHRASE"):
        Ledger.init(tmp_path / "other")
    # reading needs no passphrase; signing does
    led = Ledger.open(tmp_path / "h")
    assert led.size() == 1
    with pytest.raises(KeyFileError):
        led.append("custody", {"note": "x"})


def test_open_missing_home(tmp_path):
    with pytest.raises(ConfigError, match="evidence init"):
        Ledger.open(tmp_path / "nothing")


def test_append_chain_and_proofs(home):
    recs = home.append_many([Draft("custody", {"i": i}, "C1") for i in range(40)])
    assert [r.index for r in recs] == list(range(1, 41))
    for a, b in zip(recs, recs[1:]):
        assert b.prev == a.leaf.hex()
    cp = home.checkpoint()
    assert cp.size == 41
    body = Checkpoint.parse(verify_note(cp.note, home.verifiers()).text)
    assert body.root == cp.root and body.origin == "test.example/log"
    leaves = [r.leaf for r in home.records()]
    assert merkle.root(leaves) == cp.root
    for i in (0, 17, 40):
        proof = home.store.inclusion_proof(i, cp.size)
        merkle.verify_inclusion(leaves[i], i, cp.size, proof, cp.root)
    # the same size twice gives the same checkpoint, no new row
    assert home.checkpoint() == cp
    home.append("custody", {"i": 99})
    cp2 = home.checkpoint()
    merkle.verify_consistency(cp.size, cp2.size, home.store.consistency_proof(cp.size, cp2.size), cp.root, cp2.root)
    assert [r.case for r in home.records(case="C1")] == ["C1"] * 40


def test_bad_drafts_append_nothing(home):
    from ledger.errors import CanonicalizationError
    from ledger.record import Draft

    with pytest.raises(CanonicalizationError):
        home.append_many([Draft("custody", {"ok": 1}), Draft("custody", {"bad": float("nan")})])
    with pytest.raises(CanonicalizationError):
        home.append("Not A Kind", {})
    assert home.size() == 1
    assert audit_store(home.store, home.config.trusted_vkeys).ok


def test_refuses_truncated_store(home):
    for i in range(5):
        home.append("custody", {"i": i})
    home.checkpoint()
    home.store.execute_raw("DELETE FROM records WHERE idx >= 4")
    home.store.execute_raw("DELETE FROM nodes")
    home.store.execute_raw("UPDATE tree_state SET size = 4")
    with pytest.raises(RollbackError, match="truncated or rolled back"):
        Ledger.open(home.home.root)


def test_refuses_inconsistent_checkpoint(home):
    for i in range(6):
        home.append("custody", {"i": i})
    home.checkpoint()
    # Rewrite history below the checkpoint consistently (record, leaf and every
    # stored node above it), as someone with database access would.
    leaves = [r.leaf for r in home.records()]
    leaves[1] = merkle.leaf_hash(b"forged record")
    home.store.execute_raw("UPDATE records SET leaf = ? WHERE idx = 1", (leaves[1],))
    cr = merkle.CompactRange()
    for leaf in leaves:
        for level, idx, h in cr.append(leaf):
            home.store.execute_raw("UPDATE nodes SET hash = ? WHERE level = ? AND idx = ?", (h, level, idx))
    home.close()
    # The home's own copy of the last checkpoint catches it at once.
    with pytest.raises(RollbackError, match="another history"):
        Ledger.open(home.home.root)
    # Without that file (a joined home, a lost file) signing still refuses.
    home.home.checkpoint_path.unlink()
    led = Ledger.open(home.home.root)
    led.append("custody", {"i": 7})
    with pytest.raises(RollbackError, match="not consistent"):
        led.checkpoint()
    led.close()


def test_seal_exhibit_stores_then_appends(home, tmp_path):
    a = tmp_path / "shot.png"
    a.write_bytes(b"\x89PNG fake")
    b = tmp_path / "page.html"
    b.write_text("<p>\u5546\u54c1</p>", "utf-8")
    ex = home.seal_exhibit(
        "SAMR-2026-017",
        [ArtifactFile("shot.png", a, "image/png", "screenshot-full"), ArtifactFile("page.html", b, "text/html", "dom")],
        {"url": "https://shop.example/item/1", "operator": "Li Wei"},
    )
    assert ex.record.kind == "exhibit" and ex.case == "SAMR-2026-017"
    assert ex.record.payload["manifest"]["sha256"] == ex.manifest_sha256
    for art in ex.artifacts:
        home.artifacts.check(art.sha256)
    home.artifacts.check(ex.manifest_sha256)
    with pytest.raises(UsageError):
        home.seal_exhibit("", [], {})


def test_key_rotation_audits(home):
    home.append("custody", {"before": True})
    old = home.config.key_id
    rot = home.rotate_key()
    assert rot.key_id == old and rot.payload["new_key_id"] == home.config.key_id != old
    rec = home.append("custody", {"after": True})
    assert rec.key_id == home.config.key_id
    home.checkpoint()
    res = audit_store(home.store, home.config.trusted_vkeys)
    assert res.ok, res.problems
    # Trusting only the original key still works: the rotation chain is followed.
    res = audit_store(home.store, home.config.trusted_vkeys[:1])
    assert not [p for p in res.problems if p.index is not None], res.problems


def test_old_key_cannot_sign_after_rotation(home):
    old_key = home.key
    home.rotate_key()
    home.store.append_many([Draft("custody", {})], key=old_key, origin=home.origin)
    res = audit_store(home.store, home.config.trusted_vkeys)
    assert not res.ok and res.first_problem.index == 2
    assert "not trusted" in res.first_problem.what and "retired by record 1" in res.first_problem.what


def test_postgres_backend(pg_url, tmp_path):
    led = Ledger.init(tmp_path / "pg", unencrypted=True, db_url=pg_url, origin="pg.example/log")
    from ledger.record import Draft

    led.append_many([Draft("custody", {"i": i}) for i in range(100)])
    cp = led.checkpoint()
    assert cp.size == 101
    led.close()
    led = Ledger.open(tmp_path / "pg")
    assert led.store.engine.dialect.name == "postgresql"
    leaves = [r.leaf for r in led.records()]
    merkle.verify_inclusion(leaves[50], 50, 101, led.store.inclusion_proof(50, 101), cp.root)
    assert audit_store(led.store, led.config.trusted_vkeys).ok
    led.close()


def test_time_never_runs_backwards(home, monkeypatch):
    import ledger.store as store_mod

    first = home.append("custody", {"i": 1})
    monkeypatch.setattr(store_mod, "utc_now", lambda: "2001-01-01T00:00:00.000000Z")  # clock jumped back
    second = home.append("custody", {"i": 2})
    assert second.time == first.time >= "2026"
    assert audit_store(home.store, home.config.trusted_vkeys).ok
