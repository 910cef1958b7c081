"""The fast append path (issue 18) writes exactly the records the reference path would.

The reference here is built from the record format alone: the record as a
dict, RFC 8785 through ``rfc8785`` (Trail of Bits, pure Python), Ed25519
over the domain and those bytes. Ed25519 is deterministic, so the same key
over the same bytes gives the same signature: every stored byte can be
recomputed and compared.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import threading

import pytest
import rfc8785

from ledger import merkle
from ledger.canonical import loads
from ledger.log import Ledger
from ledger.record import RECORD_DOMAIN, Draft, parse_record, seal, unsigned_bytes, utc_now
from ledger.store import SignedDraft, Store, writer_lock_path
from verify.ledger import audit_store

DRAFTS = [
    Draft("custody", {"note": "handed to court"}, "SAMR-2026-017"),
    Draft("custody", {"i": 1, "nested": {"b": [1, 2, {"z": None, "a": True}], "a": "x"}}, None),
    Draft("exhibit", {"title": "\u8bc1\u636e \u5e97\u94fa", "emoji": "\U0001f600", "esc": "q\"\\\n\t\u2028/"}, "C1"),
    # Floats and keys outside the BMP take the rfc8785 path inside canonical_json.
    Draft("custody", {"price": 19.9, "big": 1e21, "small": 1e-7, "one": 1.0}, "C1"),
    Draft("custody", {"\U0001f600": 1, "\ufb01": 2, "a": 3}, "C1"),
    # A payload that spells a record's own members, sig included.
    Draft("custody", {"sig": "AAAA", "prev": "0" * 64, "x": ',"sig":"', "time": "2026-01-01T00:00:00Z"}, "C1"),
]


def reference(rec_index: int, draft: Draft, prev: str, time: str, key_id: str, origin: str, key) -> bytes:
    obj = {
        "case": draft.case, "index": rec_index, "key_id": key_id, "kind": draft.kind, "origin": origin,
        "payload": draft.payload, "prev": prev, "time": time, "time_source": "system-clock", "v": 1,
    }
    sig = key.sign(RECORD_DOMAIN + rfc8785.dumps(obj))
    return rfc8785.dumps({**obj, "sig": base64.b64encode(sig).decode()})


def check_against_reference(led: Ledger, drafts: list[Draft], first: int) -> None:
    prev = led.store.record(first - 1).leaf.hex()
    for i, d in enumerate(drafts):
        stored = led.store.record(first + i)
        want = reference(first + i, d, prev, stored.time, led.key.key_id, led.origin, led.key)
        assert stored.body == want, (first + i, stored.body, want)
        assert stored.leaf == hashlib.sha256(b"\x00" + want).digest()
        prev = stored.leaf.hex()


def test_batch_is_byte_identical_to_reference(home):
    recs = home.append_many(DRAFTS)
    check_against_reference(home, DRAFTS, 1)
    for r in recs:
        assert r.unsigned == unsigned_bytes(r.raw)  # what the append kept is what the bytes say
        assert r.leaf == hashlib.sha256(b"\x00" + r.raw).digest()
    assert audit_store(home.store, home.config.trusted_vkeys).ok


def test_reference_comparison_can_fail(home):
    """Control: the comparison sees a one-character difference in any part."""
    home.append_many(DRAFTS[:2])
    stored = home.store.record(1)
    prev = home.store.record(0).leaf.hex()
    exact = reference(1, DRAFTS[0], prev, stored.time, home.key.key_id, home.origin, home.key)
    assert stored.body == exact
    other_time = stored.time.replace(stored.time[-3], "0" if stored.time[-3] != "0" else "1")
    assert reference(1, DRAFTS[0], prev, other_time, home.key.key_id, home.origin, home.key) != exact
    assert reference(2, DRAFTS[0], prev, stored.time, home.key.key_id, home.origin, home.key) != exact
    assert reference(1, DRAFTS[0], "1" * 64, stored.time, home.key.key_id, home.origin, home.key) != exact


def test_big_batch_spans_insert_statements(home):
    """More rows than one multi-row INSERT holds: every row lands, in order, and proves."""
    drafts = [Draft("custody", {"i": i, "t": "\u8bc1" * (i % 7)}, f"C{i % 3}") for i in range(700)]
    home.append_many(drafts)
    check_against_reference(home, drafts[:5], 1)
    check_against_reference(home, drafts[-5:], 1 + 695)
    leaves = [r.leaf for r in home.records()]
    assert len(leaves) == 701
    cp = home.checkpoint()
    assert cp.root == merkle.root(leaves)
    for idx in (0, 141, 142, 143, 333, 334, 700):
        merkle.verify_inclusion(leaves[idx], idx, 701, home.store.inclusion_proof(idx, 701), cp.root)
    assert audit_store(home.store, home.config.trusted_vkeys).ok


def test_linked_draft_is_sealed_under_the_lock(home):
    """A SignedDraft whose payload names an earlier record of its batch sees that record."""
    officer = home.key  # any registered key: the link, not the role, is under test
    link = SignedDraft("custody", {}, "C1", key=officer, link=lambda recs: {"after": recs[0].index, "leaf": recs[0].leaf.hex()})
    recs = home.append_many([Draft("custody", {"a": 1}, "C1"), link])
    assert recs[1].payload == {"after": recs[0].index, "leaf": recs[0].leaf.hex()}
    check_against_reference(home, [Draft("custody", {"a": 1}, "C1"), Draft("custody", recs[1].payload, "C1")], 1)


def test_parsed_record_cuts_the_top_level_sig_only(home):
    """The signed bytes of a parsed record come from cutting ``sig`` out; a nested
    ``sig`` in the payload is not the one cut, and a moved signature does not verify."""
    rec = home.append_many([DRAFTS[-1]])[0]
    parsed = parse_record(rec.raw)
    assert "unsigned" in parsed.__dict__  # the fast cut was used, not a second parse
    assert parsed.unsigned == unsigned_bytes(rec.raw) == rec.unsigned
    parsed.verify(home.key.public)
    # Forgery: the real signature put in the payload's "sig", a forger's junk at top level.
    obj = loads(rec.raw)
    obj["payload"] = dict(obj["payload"], sig=obj["sig"])
    obj["sig"] = base64.b64encode(bytes(64)).decode()
    forged = parse_record(rfc8785.dumps(obj))
    assert forged.unsigned == unsigned_bytes(forged.raw)
    with pytest.raises(Exception, match="does not verify"):
        forged.verify(home.key.public)


def test_record_with_extra_members_falls_back_to_a_full_parse(home):
    """A record holding a member beyond the format's: the cut declines, the slow path decides."""
    key = home.key
    rec = seal(Draft("custody", {"a": 1}), index=5, prev="0" * 64, time=utc_now(), origin=home.origin, key=key)
    obj = loads(rec.raw)
    obj["w"] = "extra"
    raw = rfc8785.dumps(obj)
    parsed = parse_record(raw)
    assert "unsigned" not in parsed.__dict__
    assert parsed.unsigned == unsigned_bytes(raw)
    with pytest.raises(Exception, match="does not verify"):
        parsed.verify(key.public)  # the extra member is not under the signature
    parse_record(rec.raw).verify(key.public)  # control: the record as signed verifies


def test_appends_queue_on_the_writer_lock(home):
    """A SQLite append waits for the writers' file lock; with turns off, it does not."""
    path = writer_lock_path(home.store.engine.url.database)
    assert os.path.exists(path)
    fd = os.open(path, os.O_RDWR)
    done = threading.Event()
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        t = threading.Thread(target=lambda: (home.append("custody", {"queued": True}), done.set()))
        t.start()
        t.join(2.0)
        assert not done.is_set() and t.is_alive()  # blocked on the lock we hold, not slow
    finally:
        os.close(fd)  # releases the lock
    t.join()
    assert done.is_set() and home.size() == 2


def test_writer_turns_off_does_not_take_the_lock(home, monkeypatch):
    """Control for the test above: the same held lock, turns off, the append goes through."""
    monkeypatch.setattr(Store, "writer_turns", False)
    fd = os.open(writer_lock_path(home.store.engine.url.database), os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        home.append("custody", {"unqueued": True})
    finally:
        os.close(fd)
    assert home.size() == 2


def test_failed_init_leaves_no_lock_file(tmp_path, monkeypatch):
    def boom(*_a, **_k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("ledger.log.Store.add_key", boom)
    with pytest.raises(RuntimeError):
        Ledger.init(tmp_path / "h", unencrypted=True, origin="x.example/log")
    assert not (tmp_path / "h").exists() or not any((tmp_path / "h").rglob("*.writers"))


def test_postgres_batch_is_byte_identical(pg_url, tmp_path):
    led = Ledger.init(tmp_path / "pg", unencrypted=True, db_url=pg_url, origin="pgfast.example/log")
    try:
        led.append_many(DRAFTS)
        check_against_reference(led, DRAFTS, 1)
        assert audit_store(led.store, led.config.trusted_vkeys).ok
    finally:
        led.close()
