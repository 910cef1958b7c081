"""Registered signers and two-officer sign-off."""

import pytest

from ledger.errors import ConfigError, UsageError
from ledger.keys import SigningKey
from ledger.record import Draft
from verify.ledger import audit_store


def exhibit(led, tmp_path):
    from ledger.exhibit import ArtifactFile

    f = tmp_path / "shot.png"
    f.write_bytes(b"png")
    return led.seal_exhibit("C1", [ArtifactFile("shot.png", f, "image/png", "screenshot-full")], {"url": "https://x.example/"})


def test_attestation_audits(home, tmp_path):
    ex = exhibit(home, tmp_path)
    home.add_key("Wang Fang", "officer")
    att = home.attest(ex.index, "Wang Fang")
    assert att.kind == "attestation" and att.case == "C1" and att.key_id != home.key.key_id
    assert att.payload["exhibit_leaf"] == ex.record.leaf.hex()
    res = audit_store(home.store, home.config.trusted_vkeys)
    assert res.ok, res.problems
    with pytest.raises(ConfigError):
        home.add_key("Wang Fang")
    with pytest.raises(UsageError, match="not an exhibit"):
        home.attest(0, "Wang Fang")
    with pytest.raises(UsageError, match="no key registered"):
        home.attest(ex.index, "Nobody")


def test_attestation_by_unknown_key_fails(home, tmp_path):
    ex = exhibit(home, tmp_path)
    stranger = SigningKey.generate()
    home.store.add_key(stranger.key_id, stranger.public_raw, "stranger", None)  # in the DB, never added by a record
    rec = home.store.append_many(
        [Draft("attestation", {"exhibit_index": ex.index, "exhibit_leaf": ex.record.leaf.hex(), "officer": "X"}, "C1")],
        key=stranger,
        origin=home.origin,
    )[0]
    res = audit_store(home.store, home.config.trusted_vkeys)
    assert not res.ok and res.first_problem.index == rec.index
    assert "not trusted" in res.first_problem.what


def test_officer_key_cannot_append_exhibits(home, tmp_path):
    home.add_key("Wang Fang", "officer")
    key = home.signer_key("Wang Fang")
    rec = home.store.append_many([Draft("exhibit", {"manifest": {}}, "C1")], key=key, origin=home.origin)[0]
    res = audit_store(home.store, home.config.trusted_vkeys)
    assert res.first_problem.index == rec.index and "only attestations" in res.first_problem.what


def test_attestation_must_match_exhibit(home, tmp_path):
    ex = exhibit(home, tmp_path)
    home.add_key("Wang Fang", "officer")
    key = home.signer_key("Wang Fang")
    rec = home.store.append_many(
        [Draft("attestation", {"exhibit_index": ex.index, "exhibit_leaf": "00" * 32, "officer": "Wang Fang"}, "C1")],
        key=key,
        origin=home.origin,
    )[0]
    res = audit_store(home.store, home.config.trusted_vkeys)
    assert res.first_problem.index == rec.index and "leaf" in res.first_problem.what


def test_writer_key_appends(home):
    home.add_key("worker-2", "writer")
    key = home.signer_key("worker-2")
    home.store.append_many([Draft("custody", {"n": 1})], key=key, origin=home.origin)
    assert audit_store(home.store, home.config.trusted_vkeys).ok
