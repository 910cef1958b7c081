"""Ledger records: the canonical, signed, hash-chained unit of the log.

A record is a JCS (RFC 8785) object::

    {"case": ..., "index": n, "key_id": ..., "kind": ..., "origin": ...,
     "payload": {...}, "prev": <hex leaf of record n-1>, "sig": <base64>,
     "time": <RFC 3339 UTC>, "time_source": "system-clock", "v": 1}

``sig`` is Ed25519 over ``RECORD_DOMAIN || JCS(record without sig)``; the
prefix keeps a record signature from ever being valid as any other message
we sign (checkpoints are signed notes, cosignatures have their own prefix).
``leaf = SHA-256(0x00 || JCS(record with sig))``: the Merkle tree and the
``prev`` chain both commit to the signature too. No IO here.
"""

from __future__ import annotations

import base64
import hashlib
import re
from binascii import b2a_base64
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property, lru_cache
from json.encoder import encode_basestring as _encode_str  # C-accelerated, JCS escaping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .canonical import canonical_json, loads, quick_canonical
from .errors import CanonicalizationError, IntegrityError, SignatureError
from .keys import SigningKey, verify_signature

FORMAT_VERSION = 1
RECORD_DOMAIN = b"evidence-chain/record/v1\n"
GENESIS_PREV = "0" * 64
TIME_SOURCE = "system-clock"

_FIELDS = frozenset(
    {"case", "index", "key_id", "kind", "origin", "payload", "prev", "sig", "time", "time_source", "v"}
)
_HEX64 = re.compile(r"[0-9a-f]{64}")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z")
_KIND = re.compile(r"[a-z][a-z0-9-]{0,63}")


def utc_now() -> str:
    """RFC 3339 UTC with microseconds, the form every record uses."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record_leaf_hash(raw: bytes) -> bytes:
    # RFC 6962 2.1: leaf hash = SHA-256(0x00 || entry)
    return hashlib.sha256(b"\x00" + raw).digest()


@dataclass(frozen=True)
class Draft:
    """What a caller asks to append; the log fills in index, prev, time, key."""

    kind: str
    payload: dict[str, Any]
    case: str | None = None

    def check(self) -> None:
        if not isinstance(self.kind, str) or not _KIND.fullmatch(self.kind):
            raise CanonicalizationError(f"record kind {self.kind!r} must match {_KIND.pattern}")
        if self.case is not None and (not isinstance(self.case, str) or not self.case.strip()):
            raise CanonicalizationError("case id must be a non-empty string")
        if not isinstance(self.payload, dict):
            raise CanonicalizationError("record payload must be a JSON object")


@dataclass(frozen=True)
class Record:
    index: int
    prev: str
    time: str
    kind: str
    case: str | None
    payload: dict[str, Any]
    key_id: str
    origin: str
    sig: bytes
    raw: bytes  # the canonical bytes, exactly as hashed into the tree

    @cached_property
    def leaf(self) -> bytes:
        return record_leaf_hash(self.raw)

    @cached_property
    def unsigned(self) -> bytes:
        """The record bytes without ``sig``: what the signature covers (after the domain)."""
        # seal_prepared and parse_record set this without re-parsing the bytes.
        return unsigned_bytes(self.raw)

    def signed_message(self) -> bytes:
        return RECORD_DOMAIN + self.unsigned

    def verify(self, public_key: Ed25519PublicKey) -> None:
        try:
            verify_signature(public_key, self.sig, self.signed_message())
        except SignatureError:
            raise SignatureError(f"record {self.index}: signature does not verify") from None

    def to_json(self) -> dict[str, Any]:
        return loads(self.raw)


@lru_cache(maxsize=4096)  # kinds, cases, key ids, origins: few values, each record names them
def _jstr(value: str | None) -> bytes:
    return b"null" if value is None else _encode_str(value).encode("utf-8")


@dataclass(slots=True)
class Prepared:
    """A draft's record bytes as far as they are known before the log is locked.

    Everything but ``index``, ``prev`` and ``time`` (the canonical payload
    above all) is encoded here, so the part of an append that must run in
    chain order, under the lock, is one format, the signature and a hash.
    """

    draft: Draft
    key: SigningKey
    origin: str
    head: bytes  # '{"case":<case>,"index":'
    middle: bytes  # ',"key_id":...,"kind":...,"origin":...,"payload":{...},"prev":"'


def prepare(draft: Draft, *, origin: str, key: SigningKey) -> Prepared:
    """Encode what of ``draft``'s record does not depend on its place in the log.

    The members are written in JCS order by hand around the canonical
    payload: exact, because every member but ``payload`` is a string, an
    integer or null, whose JCS form is what ``json`` writes. ``sig`` sits
    between ``prev`` and ``time``, so the signed bytes and the stored bytes
    share their head and tail.
    """
    try:
        head = b'{"case":%b,"index":' % _jstr(draft.case)
        middle = b',"key_id":%b,"kind":%b,"origin":%b,"payload":%b,"prev":"' % (
            _jstr(key.key_id),
            _jstr(draft.kind),
            _jstr(origin),
            canonical_json(draft.payload),
        )
    except UnicodeEncodeError as e:
        raise CanonicalizationError(f"record text is not valid Unicode: {e.reason}") from None
    return Prepared(draft, key, origin, head, middle)


def record_tail(time: str) -> bytes:
    """The members after ``sig``: the same for every record of one append."""
    return b'"time":"%b","time_source":"%b","v":%d}' % (time.encode("ascii"), TIME_SOURCE.encode(), FORMAT_VERSION)


def seal_prepared(p: Prepared, *, index: int, prev: str, time: str, tail: bytes) -> Record:
    """Sign and finish a prepared record (``tail`` is ``record_tail(time)``)."""
    body = b'%b%d%b%b"' % (p.head, index, p.middle, prev.encode("ascii"))
    sig = p.key.sign(b"%b%b,%b" % (RECORD_DOMAIN, body, tail))
    raw = b'%b,"sig":"%b",%b' % (body, b2a_base64(sig, newline=False), tail)
    d = p.draft
    # Filled in directly rather than through the frozen __init__ (one
    # object.__setattr__ per field, ~10 % of what an append adds to the
    # signature); leaf and unsigned are known here, so they are kept too.
    rec = object.__new__(Record)
    rec.__dict__.update(
        index=index, prev=prev, time=time, kind=d.kind, case=d.case, payload=d.payload, key_id=p.key.key_id,
        origin=p.origin, sig=sig, raw=raw, leaf=hashlib.sha256(b"\x00" + raw).digest(), unsigned=b"%b,%b" % (body, tail),
    )
    return rec


def seal(
    draft: Draft, *, index: int, prev: str, time: str, origin: str, key: SigningKey
) -> Record:
    """Build, sign and encode one record."""
    return seal_prepared(prepare(draft, origin=origin, key=key), index=index, prev=prev, time=time, tail=record_tail(time))


def unsigned_bytes(raw: bytes) -> bytes:
    obj = loads(raw)
    obj.pop("sig", None)
    return canonical_json(obj)


def parse_record(raw: bytes, *, expect_index: int | None = None) -> Record:
    """Parse stored or received record bytes, checking form (not signature)."""
    where = f"record {expect_index}" if expect_index is not None else "record"
    # orjson parses and re-encodes nearly every record (canonical_json's fast
    # path), ~4x cheaper than json with hooks; the rest, and anything that
    # fails, take the strict parser (duplicate keys, NaN) and the full
    # canonical_json, whose messages they report.
    quick = quick_canonical(raw) if type(raw) is bytes else None
    obj = _strict(raw, where) if quick is None else quick[0]
    if type(obj) is not dict:
        _strict(raw, where)
        raise IntegrityError(f"{where}: not a JSON object")
    missing = _FIELDS - obj.keys()
    if missing:
        _strict(raw, where)
        raise IntegrityError(f"{where}: missing field(s) {', '.join(sorted(missing))}")
    if quick is None or not quick[1]:
        if quick is not None:
            _strict(raw, where)
        try:
            if canonical_json(obj) != raw:
                raise IntegrityError(f"{where}: bytes are not in canonical (RFC 8785) form")
        except CanonicalizationError as e:
            raise IntegrityError(f"{where}: {e}") from None
    index, prev, time = obj["index"], obj["prev"], obj["time"]
    if type(index) is not int or index < 0:
        raise IntegrityError(f"{where}: index {index!r} is not a non-negative integer")
    if expect_index is not None and index != expect_index:
        raise IntegrityError(f"record {expect_index}: claims index {index}")
    if not isinstance(prev, str) or not _HEX64.fullmatch(prev):
        raise IntegrityError(f"{where}: prev is not 64 lowercase hex digits")
    if not isinstance(time, str) or not _TIME.fullmatch(time):
        raise IntegrityError(f"{where}: time {time!r} is not RFC 3339 UTC")
    if obj["v"] != FORMAT_VERSION:
        raise IntegrityError(f"{where}: unsupported format version {obj['v']!r}")
    if not isinstance(obj["payload"], dict) or not isinstance(obj["kind"], str):
        raise IntegrityError(f"{where}: payload must be an object and kind a string")
    if obj["case"] is not None and not isinstance(obj["case"], str):
        raise IntegrityError(f"{where}: case must be a string or null")
    if not isinstance(obj["key_id"], str) or not isinstance(obj["origin"], str):
        raise IntegrityError(f"{where}: key_id and origin must be strings")
    try:
        sig = base64.b64decode(obj["sig"], validate=True)
    except (ValueError, TypeError):
        raise SignatureError(f"{where}: sig is not valid base64") from None
    if len(sig) != 64:
        raise SignatureError(f"{where}: sig is {len(sig)} bytes, Ed25519 needs 64")
    # Filled in directly, as in seal_prepared: the frozen __init__ is one
    # object.__setattr__ per field, paid by every record an audit reads.
    rec = object.__new__(Record)
    rec.__dict__.update(
        index=index, prev=prev, time=time, kind=obj["kind"], case=obj["case"], payload=obj["payload"],
        key_id=obj["key_id"], origin=obj["origin"], sig=sig, raw=raw,
    )
    unsigned = _cut_sig(obj, raw)
    if unsigned is not None:
        rec.__dict__["unsigned"] = unsigned
    return rec


def _strict(raw: bytes, where: str) -> Any:
    """The strict parse (duplicate keys, NaN refused), raising its IntegrityError."""
    try:
        return loads(raw)
    except CanonicalizationError as e:
        raise IntegrityError(f"{where}: {e}") from None


def _cut_sig(obj: dict[str, Any], raw: bytes) -> bytes | None:
    """``raw`` without its top-level ``sig`` member, found without a second parse.

    Only for canonical ``raw`` holding exactly the record fields: JCS orders
    them, so the record ends with ``sig``, ``time``, ``time_source``, ``v``,
    and taking one member out of a canonical object leaves the canonical form
    of the rest. Anything else (extra members) returns None: parse again.
    """
    ts, v = obj["time_source"], obj["v"]
    if len(obj) != len(_FIELDS) or type(ts) is not str or type(v) is not int:
        return None
    tail = b'"time":%b,"time_source":%b,"v":%d}' % (_jstr(obj["time"]), _jstr(ts), v)
    member = b',"sig":"%b",' % obj["sig"].encode("ascii")
    if not raw.endswith(member + tail):
        return None
    return raw[: len(raw) - len(member) - len(tail)] + b"," + tail
