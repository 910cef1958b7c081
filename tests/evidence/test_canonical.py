import json

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.canonical import canonical_json, loads
from ledger.errors import CanonicalizationError


# RFC 8785 section 3.2.3 example: keys sorted by UTF-16 code units.
def test_rfc8785_sorting_example():
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    keys = list(json.loads(canonical_json(value)).keys())
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


# RFC 8785 section 3.2.2 numbers and strings example.
def test_rfc8785_values_example():
    value = {
        "numbers": [333333333.33333329, 1e30, 4.50, 2e-3, 0.000000000000000000000000001],
        "string": "\u20ac$\u000f\u000aA'\u0042\u0022\u005c\\\"/",
        "literals": [None, True, False],
    }
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert canonical_json(value) == expected.encode("utf-8")


@pytest.mark.parametrize(
    "value, expected",
    [
        ({"b": 1, "a": 2}, b'{"a":2,"b":1}'),
        ({"a": "\u4e2d\u6587"}, '{"a":"\u4e2d\u6587"}'.encode()),
        ({"a": "\x00\x1f\x7f"}, b'{"a":"\\u0000\\u001f\x7f"}'),
        ([1, -0, 9007199254740991], b"[1,0,9007199254740991]"),
        ({"n": 1.0}, b'{"n":1}'),
        ({"n": -0.0}, b'{"n":0}'),
        ({"n": 1e21}, b'{"n":1e+21}'),
        ({"\u2028": "\u2029"}, '{"\u2028":"\u2029"}'.encode()),
    ],
)
def test_cases(value, expected):
    assert canonical_json(value) == expected


@pytest.mark.parametrize(
    "bad",
    [{"a": float("nan")}, {"a": float("inf")}, {1: "x"}, {"a": 2**53}, {"a": object()}, {"a": "\ud800"}],
)
def test_rejects_non_json(bad):
    with pytest.raises(CanonicalizationError):
        canonical_json(bad)


def test_loads_rejects_duplicates_and_constants():
    with pytest.raises(CanonicalizationError, match="duplicate"):
        loads(b'{"a":1,"a":2}')
    with pytest.raises(CanonicalizationError):
        loads(b'{"a":NaN}')
    with pytest.raises(CanonicalizationError):
        loads(b"\xff")


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=["Cs"])),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(st.characters(exclude_categories=["Cs"]), max_size=5), children, max_size=5),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_fast_path_matches_reference(value):
    # The fast path must agree with the reference implementation byte for byte.
    assert canonical_json(value) == rfc8785.dumps(value)
