"""The orjson fast path of canonical_json and the quick canonical check of stored records (issue 18).

Reference: ``rfc8785`` (Trail of Bits), and the strict parser for what a
record's bytes hold. Every refusal has its control through the same path.
"""

from __future__ import annotations

import json

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.canonical import _fast, canonical_json, quick_canonical
from ledger.errors import CanonicalizationError, IntegrityError
from ledger.keys import SigningKey
from ledger.record import Draft, parse_record, seal

KEY = SigningKey.generate()


def record(payload: dict) -> bytes:
    return seal(Draft("custody", payload, "C1"), index=3, prev="a" * 64, time="2026-01-01T00:00:00.000001Z",
                origin="test.example/log", key=KEY).raw


def test_every_bmp_character_is_escaped_as_jcs():
    # orjson and json must agree on each character, alone and beside others, as keys and values.
    chars = [chr(c) for c in range(0x10000) if not 0xD800 <= c <= 0xDFFF]
    for i in range(0, len(chars), 512):
        chunk = chars[i : i + 512]
        value = {c: f"x{c}y" for c in chunk}
        assert canonical_json(value) == _fast(value).encode("utf-8") == rfc8785.dumps(value)


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**53) + 1, 2**53 - 1), st.text(max_size=8))
json_value = st.recursive(
    json_leaf, lambda kids: st.one_of(st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=6), kids, max_size=4)),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_value)
def test_orjson_path_matches_rfc8785(value):
    try:
        want = rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, UnicodeEncodeError):
        with pytest.raises(CanonicalizationError):
            canonical_json(value)
        return
    assert canonical_json(value) == want
    judged = quick_canonical(want)
    assert judged is None or judged == (json.loads(want), True)


def test_lone_surrogate_is_refused_not_passed():
    assert canonical_json({"a": "\ue000"}) == rfc8785.dumps({"a": "\ue000"})  # control
    with pytest.raises(CanonicalizationError):
        canonical_json({"a": "\ud800"})


def test_deep_nesting_beyond_orjson_falls_back_to_json():
    value: object = "x"
    for _ in range(400):  # orjson stops at 255 levels; json goes on
        value = [value]
    assert canonical_json(value) == rfc8785.dumps(value)


def test_non_string_key_still_refused():
    assert canonical_json({"1": "x"}) == b'{"1":"x"}'  # control
    with pytest.raises(CanonicalizationError):
        canonical_json({1: "x"})


def test_quick_check_accepts_a_sealed_record():
    raw = record({"a": 1, "b": ["x", None, True]})
    value, ok = quick_canonical(raw)
    assert ok and value["payload"] == {"a": 1, "b": ["x", None, True]}


@pytest.mark.parametrize(
    "mutate",
    [
        lambda raw: raw.replace(b'"payload":{', b'"payload": {'),  # whitespace
        lambda raw: raw.replace(b'{"a":1,', b'{"a":1,"a":1,'),  # duplicate key
        lambda raw: raw.replace(b'{"a":1,"b"', b'{"b":0,"a":1,"c"'),  # key order
        lambda raw: raw.replace(b'"a":1', b'"a":1.0'),  # float form
        lambda raw: raw.replace(b'"a":1', b'"a":-0'),  # integer form
        lambda raw: raw.replace(b'"a":1', b'"a":12345678901234567890'),  # outside I-JSON
        lambda raw: raw.replace(b'"x"', b'"\\u0078"'),  # needless escape
        lambda raw: raw.replace(b'"x"', b'"\xf0\x9f\x98\x80"', 1).replace(b'"a":1', b'"\xf0\x9f\x98\x80":1'),
    ],
)
def test_quick_check_never_accepts_what_is_not_jcs(mutate):
    raw = record({"a": 1, "b": ["x", None, True]})
    assert parse_record(raw).payload["a"] == 1  # control: the unmutated record parses
    bad = mutate(raw)
    assert bad != raw
    judged = quick_canonical(bad)
    assert judged is None or judged[1] is (bad == rfc8785.dumps(json.loads(bad)))
    try:
        canonical = rfc8785.dumps(json.loads(bad)) == bad and bad.count(b'"a":') == 1
    except Exception:
        canonical = False
    if canonical:
        parse_record(bad)  # what is JCS (the non-BMP key case) still parses
    else:
        with pytest.raises(IntegrityError):
            parse_record(bad)


def test_duplicate_key_keeps_its_precise_message():
    raw = record({"a": 1, "b": ["x", None, True]})
    with pytest.raises(IntegrityError, match="duplicate JSON key"):
        parse_record(raw.replace(b'{"a":1,', b'{"a":1,"a":1,'))
    with pytest.raises(IntegrityError, match="not in canonical"):
        parse_record(raw.replace(b'"payload":{', b'"payload": {'))


# What orjson round-trips but JCS writes otherwise must not take the quick route: floats in
# every position a number can take, integers past 2**53, keys beyond the BMP (UTF-16 order,
# not code points).
@pytest.mark.parametrize(
    ("payload_json", "jcs_ok"),
    [
        (b'{"a":1e21}', False),  # orjson writes 1e21, JCS 1e+21
        (b'{"b":["x",1e21]}', False),  # an element after a comma
        (b'{"b":[1e21]}', False),  # the first element
        (b'{"b":[1.5]}', True),  # control: a float already in JCS form parses (by the full route)
        (b'{"a":9007199254740993}', False),  # 2**53 + 1
        (b'{"b":["x",-9007199254740993]}', False),
        ('{{"{}":1,"{}":2}}'.format("\uff61", "\U0001f600").encode(), False),  # code-point order
        ('{{"{}":2,"{}":1}}'.format("\U0001f600", "\uff61").encode(), True),  # control: UTF-16 order
    ],
)
def test_what_orjson_cannot_judge_takes_the_full_route(payload_json, jcs_ok):
    raw = record({"a": 1})
    bad = raw.replace(b'"payload":{"a":1}', b'"payload":' + payload_json)
    assert bad != raw and quick_canonical(raw) is not None  # control: the plain record takes the quick route
    assert quick_canonical(bad) is None
    if jcs_ok:
        assert parse_record(bad).payload == json.loads(payload_json)
    else:
        with pytest.raises(IntegrityError):
            parse_record(bad)


def test_quick_route_takes_integers_in_range():
    raw = record({"a": 2**53 - 1, "b": [-(2**53) + 1]})  # control for the 2**53 + 1 cases above
    value, ok = quick_canonical(raw)
    assert ok and value["payload"]["b"] == [-(2**53) + 1]

