"""RFC 8785 JSON Canonicalization Scheme (JCS): the only bytes we hash or sign.

`rfc8785` (Trail of Bits) is the reference implementation we rely on. It is
pure Python and costs more than an Ed25519 signature per record, so records
take a fast path: for values without floats and without keys outside the
Basic Multilingual Plane, ``orjson.dumps`` with sorted keys (or, where it
refuses, the C-accelerated ``json.dumps``) produces exactly the JCS bytes
(same string escaping, same integer form, and code-point order equals UTF-16
order inside the BMP). Anything else goes through ``rfc8785``. A property
test checks the paths agree; ``quick_canonical`` runs the same fast path
backwards to judge stored records.
"""

from __future__ import annotations

import json
from json.encoder import c_encode_basestring, c_make_encoder  # type: ignore[attr-defined]
from typing import Any

import orjson
import rfc8785

from .errors import CanonicalizationError

# I-JSON (RFC 7493) interoperable integer range, which RFC 8785 requires.
_MAX_SAFE_INT = 2**53 - 1

# orjson writes the same bytes as the json encoder below for every value the
# fast path takes (exact str/int/bool/None/list/tuple/dict, str keys in the
# BMP, whose UTF-8 order is their code-point and UTF-16 order): the same
# escapes (checked for every BMP character in the tests), integers, literals
# and separators; ~3x faster, the cost of a record payload on the append path
# and of the canonical check of every record an audit reads.
_oj_dumps, _oj_loads, _OJ_SORTED = orjson.dumps, orjson.loads, orjson.OPT_SORT_KEYS

_fast = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
).encode


def _not_json(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


if c_make_encoder is not None:
    # The C encoder JSONEncoder.encode builds afresh on every call, made once:
    # no circular-reference markers (a cycle fails _fast_path_ok first, as a
    # RecursionError), otherwise the very arguments JSONEncoder passes for the
    # options above. Half of the encoding cost of a record payload.
    _c_encode = c_make_encoder(None, _not_json, c_encode_basestring, None, ":", ",", True, False, False)

    def _fast(value: Any) -> str:  # noqa: F811  same bytes as the JSONEncoder above
        return "".join(_c_encode(value, 0))


def _fast_path_ok(value: Any) -> bool:
    """True if json.dumps gives JCS bytes for this value; raises on non-JSON.

    Runs once per record payload on the append hot path, hence the shape:
    strings (by far the most common leaf) are tested first and skipped inline.
    """
    t = type(value)
    if t is str or value is None or t is bool:
        return True
    if t is dict:
        for k, v in value.items():
            if type(k) is not str:
                raise CanonicalizationError(f"object key {k!r} is not a string")
            if not k.isascii() and max(k) > "\uffff":
                return False
            tv = type(v)
            if tv is str:
                continue
            if tv is int:  # the next most common leaf (sizes, indexes), also checked inline
                if not -_MAX_SAFE_INT <= v <= _MAX_SAFE_INT:
                    raise CanonicalizationError(f"integer {v} is outside the I-JSON range")
                continue
            if not _fast_path_ok(v):
                return False
        return True
    if t is list or t is tuple:
        for v in value:
            if type(v) is not str and not _fast_path_ok(v):
                return False
        return True
    if t is int:
        if not -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
            raise CanonicalizationError(f"integer {value} is outside the I-JSON range")
        return True
    if t is float:
        return False
    raise CanonicalizationError(f"{t.__name__} is not a JSON value")


def canonical_json(value: Any) -> bytes:
    """Serialise ``value`` as RFC 8785 canonical JSON (UTF-8 bytes)."""
    try:
        if _fast_path_ok(value):
            try:
                return _oj_dumps(value, option=_OJ_SORTED)
            except TypeError:
                pass  # a lone surrogate, or deeper than orjson goes: json says which
            return _fast(value).encode("utf-8")
        return rfc8785.dumps(value)
    except CanonicalizationError:
        raise
    except RecursionError:
        raise CanonicalizationError("value is nested too deeply") from None
    except (UnicodeEncodeError, ValueError, TypeError, rfc8785.CanonicalizationError) as e:
        raise CanonicalizationError(f"cannot canonicalise value: {e}") from e


def quick_canonical(raw: bytes) -> tuple[Any, bool] | None:
    """``(value, raw == canonical_json(value))`` by orjson alone, or None.

    None: the quick route cannot judge ``raw`` (orjson refuses it, or the
    value is not for the fast path: a float, a key beyond the BMP, an integer
    outside the I-JSON range): parse with ``loads`` and compare with
    ``canonical_json``. A duplicate key makes the bytes differ (the value
    keeps one of them), so it reads as False, as any other difference.
    """
    try:
        value = _oj_loads(raw)
        if not _fast_path_ok(value):
            return None
        return value, _oj_dumps(value, option=_OJ_SORTED) == raw
    except (ValueError, TypeError, RecursionError, CanonicalizationError):  # orjson's errors are these
        return None


def loads(data: bytes | str) -> Any:
    """Parse JSON strictly: duplicate keys and NaN/Infinity are errors."""

    def no_dupes(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for k, v in pairs:
            if k in obj:
                raise CanonicalizationError(f"duplicate JSON key {k!r}")
            obj[k] = v
        return obj

    def no_constants(name: str) -> Any:
        raise CanonicalizationError(f"{name} is not valid JSON")

    try:
        return json.loads(data, object_pairs_hook=no_dupes, parse_constant=no_constants)
    except CanonicalizationError:
        raise
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise CanonicalizationError(f"invalid JSON: {e}") from e
