"""Tamper tests: every single change to a stored ledger makes the audit fail
and name the index of the damaged record."""

import base64

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.keys import SigningKey
from ledger.log import Ledger
from ledger.record import Draft, parse_record
from verify.ledger import audit_store


def build(tmp_path, n=12, checkpoint_at=(6,)):
    led = Ledger.init(tmp_path, unencrypted=True, origin="audit.example/log")
    for i in range(1, n):
        led.append("custody", {"i": i, "note": "\u8bc1\u636e"}, case="C1")
        if i + 1 in checkpoint_at:
            led.checkpoint()
    led.checkpoint()
    return led


def audit(led):
    return audit_store(led.store, led.config.trusted_vkeys)


def body(led, idx):
    return led.store.record(idx).body


def set_body(led, idx, raw, fix_leaf=False):
    led.store.execute_raw("UPDATE records SET body = ? WHERE idx = ?", (raw, idx))
    if fix_leaf:
        from ledger.record import record_leaf_hash

        led.store.execute_raw("UPDATE records SET leaf = ? WHERE idx = ?", (record_leaf_hash(raw), idx))


def test_clean_ledger_passes(tmp_path):
    led = build(tmp_path)
    res = audit(led)
    assert res.ok, res.problems
    assert {c.name for c in res.checks} == {"records", "merkle-nodes", "checkpoints"}


FIELDS = {
    "payload": lambda r: r.replace(b'"i":5', b'"i":6'),
    "time": lambda r: r.replace(b'"time":"2', b'"time":"1'),
    "prev": None,
    "sig": None,
    "index": lambda r: r.replace(b'"index":5', b'"index":50'),
    "kind": lambda r: r.replace(b'"kind":"custody"', b'"kind":"exhibit"'),
    "case": lambda r: r.replace(b'"case":"C1"', b'"case":"C2"'),
}


@pytest.mark.parametrize("field", sorted(FIELDS))
@pytest.mark.parametrize("fix_leaf", [False, True])
def test_change_any_field(tmp_path, field, fix_leaf):
    led = build(tmp_path)
    raw = body(led, 5)
    if field == "sig":
        rec = parse_record(raw)
        bad = bytearray(rec.sig)
        bad[0] ^= 1
        new = raw.replace(base64.b64encode(rec.sig), base64.b64encode(bytes(bad)))
    elif field == "prev":
        rec = parse_record(raw)
        new = raw.replace(rec.prev.encode(), ("0" + rec.prev[1:] if rec.prev[0] != "0" else "1" + rec.prev[1:]).encode())
    else:
        new = FIELDS[field](raw)
    assert new != raw
    set_body(led, 5, new, fix_leaf)
    res = audit(led)
    assert not res.ok
    assert res.first_problem.index == 5, res.problems


def test_delete_record(tmp_path):
    led = build(tmp_path)
    led.store.execute_raw("DELETE FROM records WHERE idx = 4")
    res = audit(led)
    assert res.first_problem.index == 4 and "missing" in res.first_problem.what


def test_swap_records(tmp_path):
    led = build(tmp_path)
    a, b = body(led, 3), body(led, 8)
    set_body(led, 3, b, True)
    set_body(led, 8, a, True)
    res = audit(led)
    assert res.first_problem.index == 3


def test_truncate_tail(tmp_path):
    led = build(tmp_path)
    led.store.execute_raw("DELETE FROM records WHERE idx >= 9")
    res = audit(led)
    assert not res.ok
    assert res.first_problem.index == 9


def test_tamper_stored_leaf_and_nodes(tmp_path):
    led = build(tmp_path)
    led.store.execute_raw("UPDATE records SET leaf = ? WHERE idx = 7", (b"\x00" * 32,))
    assert audit(led).first_problem.index == 7
    led2 = build(tmp_path / "b")
    led2.store.execute_raw("UPDATE nodes SET hash = ? WHERE level = 2 AND idx = 1", (b"\x00" * 32,))
    res = audit(led2)
    assert not res.ok and res.first_problem.index == 4
    assert not next(c for c in res.checks if c.name == "merkle-nodes").ok


def test_replace_key_and_resign(tmp_path):
    """An attacker with database access re-signs every record with their own key."""
    led = build(tmp_path)
    evil = SigningKey.generate()
    recs = list(led.records())
    led.store.execute_raw("DELETE FROM records")
    led.store.execute_raw("DELETE FROM nodes")
    led.store.execute_raw("DELETE FROM checkpoints")
    led.store.execute_raw("UPDATE tree_state SET size = 0, last_leaf = ?, last_time = ''", (b"\x00" * 32,))
    led.store.execute_raw("DELETE FROM keys")
    led.store.add_key(evil.key_id, evil.public_raw, led.origin, 0)
    led.store._edge = None
    for r in recs:
        led.store.append_many([Draft(r.kind, r.payload, r.case)], key=evil, origin=led.origin)
    res = audit(led)
    assert not res.ok and res.first_problem.index == 0
    assert "not trusted" in res.first_problem.what


MUTATIONS = ["flip-body-byte", "flip-leaf", "delete", "swap-next", "truncate", "drop-sig"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(2, 10), data=st.data())
def test_random_single_mutation(tmp_path_factory, n, data):
    led = build(tmp_path_factory.mktemp("h"), n=n, checkpoint_at=())
    try:
        kind = data.draw(st.sampled_from(MUTATIONS))
        idx = data.draw(st.integers(0, n - 1 if kind != "swap-next" else n - 2))
        raw = body(led, idx)
        if kind == "flip-body-byte":
            pos = data.draw(st.integers(0, len(raw) - 1))
            bit = data.draw(st.integers(0, 7))
            b = bytearray(raw)
            b[pos] ^= 1 << bit
            set_body(led, idx, bytes(b), data.draw(st.booleans()))
        elif kind == "flip-leaf":
            leaf = bytearray(led.store.record(idx).leaf)
            leaf[data.draw(st.integers(0, 31))] ^= 1
            led.store.execute_raw("UPDATE records SET leaf = ? WHERE idx = ?", (bytes(leaf), idx))
        elif kind == "delete":
            led.store.execute_raw("DELETE FROM records WHERE idx = ?", (idx,))
        elif kind == "swap-next":
            a, b2 = raw, body(led, idx + 1)
            set_body(led, idx, b2, True)
            set_body(led, idx + 1, a, True)
        elif kind == "truncate":
            led.store.execute_raw("DELETE FROM records WHERE idx >= ?", (idx,))
        elif kind == "drop-sig":
            rec = parse_record(raw)
            set_body(led, idx, raw.replace(b',"sig":"' + base64.b64encode(rec.sig) + b'"', b""), True)
        res = audit(led)
        assert not res.ok
        assert res.first_problem.index == idx, (kind, idx, res.problems)
    finally:
        led.close()


def test_parallel_audit_matches_inline(tmp_path):
    led = build(tmp_path, n=30)
    set_body(led, 17, body(led, 17).replace(b'"i":17', b'"i":71'), True)
    inline = audit_store(led.store, led.config.trusted_vkeys, workers=0)
    pooled = audit_store(led.store, led.config.trusted_vkeys, workers=2)
    assert inline.to_json() == pooled.to_json()
    assert pooled.first_problem.index == 17
