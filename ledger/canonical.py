"""RFC 8785 JSON Canonicalization Scheme (JCS): the only bytes we hash or sign.

`rfc8785` (Trail of Bits) is the reference implementation we rely on. It is
pure Python and costs more than an Ed25519 signature per record, so records
take a fast path: for values without floats and without keys outside the
Basic Multilingual Plane, the C-accelerated ``json.dumps`` with sorted keys
produces exactly the JCS bytes (same string escaping, same integer form, and
code-point order equals UTF-16 order inside the BMP). Anything else goes
through ``rfc8785``. A property test checks both paths agree.
"""

from __future__ import annotations

import json
from typing import Any

import rfc8785

from .errors import CanonicalizationError

# I-JSON (RFC 7493) interoperable integer range, which RFC 8785 requires.
_MAX_SAFE_INT = 2**53 - 1

_fast = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
).encode


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
            if type(v) is not str and not _fast_path_ok(v):
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
            return _fast(value).encode("utf-8")
        return rfc8785.dumps(value)
    except CanonicalizationError:
        raise
    except RecursionError:
        raise CanonicalizationError("value is nested too deeply") from None
    except (UnicodeEncodeError, ValueError, TypeError, rfc8785.CanonicalizationError) as e:
        raise CanonicalizationError(f"cannot canonicalise value: {e}") from e


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
