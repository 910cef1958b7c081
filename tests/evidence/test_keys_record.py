import os
import stat

import pytest

from ledger.errors import IntegrityError, KeyFileError, SignatureError
from ledger.keys import SigningKey, load_key, save_key
from ledger.record import GENESIS_PREV, Draft, parse_record, seal


def test_key_file_encrypted_mode_0600(tmp_path):
    k = SigningKey.generate()
    p = tmp_path / "k.key"
    save_key(k, p, b"secret")
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    assert b"ENCRYPTED PRIVATE KEY" in p.read_bytes()
    assert load_key(p, b"secret").key_id == k.key_id
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        load_key(p, b"other")
    with pytest.raises(KeyFileError, match="EVIDENCE_KEY_PASSPHRASE"):
        load_key(p, None)
    with pytest.raises(KeyFileError, match="already exists"):
        save_key(k, p, b"secret")


def test_unencrypted_key_round_trip(tmp_path):
    k = SigningKey.generate()
    save_key(k, tmp_path / "k", None)
    assert b"BEGIN PRIVATE KEY" in (tmp_path / "k").read_bytes()
    assert load_key(tmp_path / "k", None).public_raw == k.public_raw


def _rec(key, **kw):
    args = dict(index=0, prev=GENESIS_PREV, time="2026-11-22T10:00:00.000000Z", origin="test/log", key=key)
    args.update(kw)
    return seal(Draft("exhibit", {"url": "https://shop.example/\u5546\u54c1", "n": 1}, "C-1"), **args)


def test_seal_is_canonical_and_verifies():
    k = SigningKey.generate()
    r = _rec(k)
    p = parse_record(r.raw, expect_index=0)
    p.verify(k.public)
    assert p.leaf == r.leaf and p.payload["n"] == 1
    # domain separation: the bare record bytes are not what was signed
    from cryptography.exceptions import InvalidSignature

    with pytest.raises(InvalidSignature):
        k.public.verify(r.sig, r.raw)


def test_other_key_fails():
    r = _rec(SigningKey.generate())
    with pytest.raises(SignatureError):
        parse_record(r.raw).verify(SigningKey.generate().public)


@pytest.mark.parametrize(
    "old, new",
    [(b'"index":0', b'"index":1'), (b'"kind":"exhibit"', b'"kind":"custody"'), (b"C-1", b"C-2"), (b'"n":1', b'"n":2')],
)
def test_any_field_change_breaks_signature(old, new):
    k = SigningKey.generate()
    raw = _rec(k).raw.replace(old, new)
    with pytest.raises(SignatureError):
        parse_record(raw).verify(k.public)


def test_non_canonical_bytes_rejected():
    k = SigningKey.generate()
    raw = _rec(k).raw.replace(b'{"case"', b'{ "case"')
    with pytest.raises(IntegrityError, match="canonical"):
        parse_record(raw)
    with pytest.raises(IntegrityError, match="claims index"):
        parse_record(_rec(k).raw, expect_index=5)
