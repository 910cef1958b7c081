"""Key statements: what a key-rotation or key-add record's new key signs, and checking it.

Verification needs these offline, from nothing but a case file, so they live
apart from ``ledger.log``, which opens a store (and with it SQLAlchemy).
``ledger.log`` re-exports every name.
"""

from __future__ import annotations

import base64
from typing import Any

from ledger.canonical import canonical_json
from ledger.errors import EvidenceError, SignatureError
from ledger.keys import SigningKey, key_id_for, public_from_b64, raw_public, verify_signature

ROTATION_DOMAIN = b"evidence-chain/key-rotation/v1\n"
KEY_ADD_DOMAIN = b"evidence-chain/key-add/v1\n"
ROLES = ("officer", "writer")
# The statement a key-add record's proof of possession signs: these fields,
# plus whichever of the optional registration facts it carries.
KEY_ADD_FIELDS = ("origin", "key_id", "public_key", "name", "role")
KEY_ADD_FACTS = ("badge", "unit")  # 执法证号 and unit of an officer


def verify_rotation(payload: dict[str, Any]) -> bytes:
    """Check a key-rotation payload's new-key signature; return the new raw key."""
    try:
        statement = {k: payload[k] for k in ("origin", "old_key_id", "new_key_id", "new_public_key")}
        sig = base64.b64decode(payload["new_key_sig"], validate=True)
    except (KeyError, TypeError, ValueError):
        raise SignatureError("key-rotation record is malformed") from None
    pub = public_from_b64(statement["new_public_key"])
    raw = raw_public(pub)
    if key_id_for(raw) != statement["new_key_id"]:
        raise SignatureError("key-rotation record names a key id that does not match its key")
    try:
        verify_signature(pub, sig, ROTATION_DOMAIN + canonical_json(statement))
    except SignatureError:
        raise SignatureError("key-rotation record: the new key's signature does not verify") from None
    return raw


def verify_key_add(payload: dict[str, Any]) -> tuple[str, bytes, str, str]:
    """Check a key-add payload's proof of possession; return (key_id, raw, name, role)."""
    try:
        statement = {k: payload[k] for k in KEY_ADD_FIELDS}
        sig = base64.b64decode(payload["key_sig"], validate=True)
    except (KeyError, TypeError, ValueError):
        raise SignatureError("key-add record is malformed") from None
    extra = set(payload) - {*KEY_ADD_FIELDS, *KEY_ADD_FACTS, "key_sig"}
    if extra:
        # Every fact a key-add shows must be one the key's own signature covers.
        raise SignatureError(f"key-add record has unknown field(s) {', '.join(sorted(extra))}")
    for k in KEY_ADD_FACTS:
        if k in payload:
            _check_fact(k, payload[k], SignatureError)
            statement[k] = payload[k]
    pub = public_from_b64(statement["public_key"])
    raw = raw_public(pub)
    if key_id_for(raw) != statement["key_id"]:
        raise SignatureError("key-add record names a key id that does not match its key")
    if statement["role"] not in ROLES:
        raise SignatureError(f"key-add record has unknown role {statement['role']!r}")
    try:
        verify_signature(pub, sig, KEY_ADD_DOMAIN + canonical_json(statement))
    except SignatureError:
        raise SignatureError("key-add record: the new key's signature does not verify") from None
    return statement["key_id"], raw, statement["name"], statement["role"]


def _key_statement(
    key: SigningKey, origin: str, name: str, role: str, facts: dict[str, str] | None = None
) -> dict[str, Any]:
    """A key-add payload: the statement (with any badge/unit) and the key's own signature over it."""
    statement = {"origin": origin, "key_id": key.key_id, "public_key": _b64(key.public_raw), "name": name, "role": role}
    statement.update(facts or {})
    return dict(statement, key_sig=_b64(key.sign(KEY_ADD_DOMAIN + canonical_json(statement))))


def key_add_facts(payload: dict[str, Any]) -> dict[str, str]:
    """Badge and unit of a key-add payload (meaningful once ``verify_key_add`` passed)."""
    return {k: payload[k] for k in KEY_ADD_FACTS if isinstance(payload.get(k), str)}


def _check_fact(name: str, value: Any, error: type[EvidenceError]) -> None:
    if not isinstance(value, str) or not value.strip() or any(c in value for c in "\n\r") or len(value) > 200:
        raise error(f"a key's {name} must be one non-empty line of at most 200 characters")


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")
