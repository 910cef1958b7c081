"""C2SP signed notes (https://c2sp.org/signed-note) with Ed25519 keys, and
C2SP tlog-cosignature (https://c2sp.org/tlog-cosignature) witness signatures.

A note is UTF-8 text ending in a newline, a blank line, then one signature
line per signer: ``U+2014 SPACE name SPACE base64(keyID || signature)``.
Byte layouts:

    Ed25519 (type 0x01)      keyID = SHA-256(name || 0x0A || 0x01 || pub)[:4]
                             signature over the note text
    cosignature/v1 (0x04)    keyID = SHA-256(name || 0x0A || 0x04 || pub)[:4]
                             signature over "cosignature/v1\\ntime <t>\\n" || text
                             blob = keyID || uint64 big-endian t || signature
    verifier key (vkey)      name+hex(keyID)+base64(type || pub)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.errors import SignatureError

ALG_ED25519 = 0x01
ALG_COSIGNATURE_V1 = 0x04
EM_DASH = "\u2014"
MAX_SIGNATURES = 100  # signed-note: verifiers may reject notes with more


@dataclass(frozen=True)
class Signature:
    name: str
    key_id: bytes  # 4 bytes
    blob: bytes  # what follows the key ID
    line: str


def _check_name(name: str) -> None:
    if not name or any(c.isspace() for c in name) or "+" in name:
        raise SignatureError(f"key name {name!r} must be non-empty with no spaces or '+'")


def _raw(pub: Ed25519PublicKey) -> bytes:
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


# signed-note "Ed25519": key ID derivation (also used for other types)
def key_id(name: str, alg: int, public_raw: bytes) -> bytes:
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([alg]) + public_raw).digest()[:4]


def vkey_for(name: str, public_key: Ed25519PublicKey, alg: int = ALG_ED25519) -> str:
    _check_name(name)
    raw = _raw(public_key)
    return f"{name}+{key_id(name, alg, raw).hex()}+{base64.b64encode(bytes([alg]) + raw).decode()}"


def _parse_vkey(vkey: str, alg: int) -> tuple[str, bytes, Ed25519PublicKey]:
    parts = vkey.strip().split("+", 2)
    if len(parts) != 3:
        raise SignatureError(f"verifier key {vkey!r} is not name+keyid+key")
    name, hexid, b64 = parts
    _check_name(name)
    try:
        kid = bytes.fromhex(hexid)
        blob = base64.b64decode(b64, validate=True)
    except (ValueError, binascii.Error):
        raise SignatureError(f"verifier key for {name} is not hex/base64") from None
    if len(kid) != 4 or len(blob) != 33 or blob[0] != alg:
        raise SignatureError(f"verifier key for {name} is not an Ed25519 key of type 0x{alg:02x}")
    if key_id(name, alg, blob[1:]) != kid:
        raise SignatureError(f"verifier key for {name}: key ID does not match the key")
    return name, kid, Ed25519PublicKey.from_public_bytes(blob[1:])


@dataclass(frozen=True)
class Verifier:
    """A trusted note signer (Ed25519, type 0x01)."""

    name: str
    key_id: bytes
    public: Ed25519PublicKey

    @classmethod
    def parse(cls, vkey: str) -> Verifier:
        return cls(*_parse_vkey(vkey, ALG_ED25519))

    @property
    def public_raw(self) -> bytes:
        return _raw(self.public)

    @property
    def vkey(self) -> str:
        return vkey_for(self.name, self.public)

    def verify(self, text: str, sig: Signature) -> None:
        try:
            self.public.verify(sig.blob, text.encode("utf-8"))
        except InvalidSignature:
            raise SignatureError(f"signature by {self.name} does not verify") from None


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise SignatureError("note text must end with a newline")
    for c in text:
        if (ord(c) < 0x20 and c != "\n") or c == "\x7f":
            raise SignatureError("note text holds a control character")


# signed-note: signature line
def _signature_line(name: str, key: bytes, blob: bytes) -> str:
    return f"{EM_DASH} {name} {base64.b64encode(key + blob).decode()}\n"


def sign_note(text: str, name: str, private_key: Ed25519PrivateKey) -> str:
    """The note ``text`` with one Ed25519 signature by ``name``."""
    _check_text(text)
    return text + "\n" + _signature_line(name, key_id(name, ALG_ED25519, _raw(private_key.public_key())), private_key.sign(text.encode("utf-8")))


def add_signature(note: str, name: str, private_key: Ed25519PrivateKey) -> str:
    text, _ = parse_note(note)
    kid = key_id(name, ALG_ED25519, _raw(private_key.public_key()))
    return note + _signature_line(name, kid, private_key.sign(text.encode("utf-8")))


def parse_note(note: str | bytes) -> tuple[str, list[Signature]]:
    """Split a note into its text and signature lines (form only, no crypto)."""
    if isinstance(note, bytes):
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError:
            raise SignatureError("note is not UTF-8") from None
    if "\r" in note:
        raise SignatureError("note holds a carriage return")
    text, sep, block = note.rpartition("\n\n")
    if not sep:
        raise SignatureError("note has no signature block")
    text += "\n"
    _check_text(text)
    if not block.endswith("\n"):
        raise SignatureError("note signature block must end with a newline")
    sigs = []
    for line in block[:-1].split("\n"):
        if not line.startswith(EM_DASH + " "):
            raise SignatureError(f"malformed signature line {line[:40]!r}")
        parts = line[2:].split(" ")
        if len(parts) != 2:
            raise SignatureError(f"malformed signature line {line[:40]!r}")
        name, b64 = parts
        _check_name(name)
        try:
            raw = base64.b64decode(b64, validate=True)
        except (ValueError, binascii.Error):
            raise SignatureError(f"signature by {name} is not base64") from None
        if len(raw) < 5:
            raise SignatureError(f"signature by {name} is too short")
        sigs.append(Signature(name, raw[:4], raw[4:], line + "\n"))
    if not sigs:
        raise SignatureError("note has no signatures")
    if len(sigs) > MAX_SIGNATURES:
        raise SignatureError(f"note has {len(sigs)} signatures (at most {MAX_SIGNATURES})")
    return text, sigs


@dataclass(frozen=True)
class VerifiedNote:
    text: str
    verified_by: list[Verifier]
    signatures: list[Signature]


def verify_note(note: str | bytes, verifiers: Iterable[Verifier]) -> VerifiedNote:
    """Check a note against trusted verifiers.

    Signatures by unknown keys are ignored (others may cosign); a signature
    that claims a trusted name and key ID but fails is an error; a note that
    no trusted key verified is an error.
    """
    text, sigs = parse_note(note)
    known = {(v.name, v.key_id): v for v in verifiers}
    ok: list[Verifier] = []
    for s in sigs:
        v = known.get((s.name, s.key_id))
        if v is None:
            continue
        v.verify(text, s)
        if v not in ok:
            ok.append(v)
    if not ok:
        names = ", ".join(sorted({n for n, _ in known})) or "none given"
        raise SignatureError(f"no trusted signer verified the note (trusted: {names})")
    return VerifiedNote(text, ok, sigs)


# tlog-cosignature: the signed message for cosignature/v1
def cosignature_message(text: str, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n".encode() + text.encode("utf-8")


def cosign(text: str, name: str, private_key: Ed25519PrivateKey, timestamp: int) -> str:
    """A witness's cosignature line over checkpoint ``text`` at ``timestamp``."""
    _check_text(text)
    _check_name(name)
    kid = key_id(name, ALG_COSIGNATURE_V1, _raw(private_key.public_key()))
    sig = private_key.sign(cosignature_message(text, timestamp))
    return _signature_line(name, kid, struct.pack(">Q", timestamp) + sig)


@dataclass(frozen=True)
class CosignatureVerifier:
    """A trusted witness key (tlog-cosignature, type 0x04)."""

    name: str
    key_id: bytes
    public: Ed25519PublicKey

    @classmethod
    def parse(cls, vkey: str) -> CosignatureVerifier:
        return cls(*_parse_vkey(vkey, ALG_COSIGNATURE_V1))

    @classmethod
    def from_key(cls, name: str, public_key: Ed25519PublicKey) -> CosignatureVerifier:
        _check_name(name)
        return cls(name, key_id(name, ALG_COSIGNATURE_V1, _raw(public_key)), public_key)

    @property
    def vkey(self) -> str:
        return vkey_for(self.name, self.public, ALG_COSIGNATURE_V1)

    def matches(self, line: str) -> bool:
        """True if a signature line claims to be from this witness."""
        line = line.rstrip("\n")
        prefix = f"{EM_DASH} {self.name} "
        if not line.startswith(prefix):
            return False
        try:
            raw = base64.b64decode(line[len(prefix):], validate=True)
        except (ValueError, binascii.Error):
            return False
        return raw[:4] == self.key_id

    def verify(self, text: str, line: str) -> int:
        """Verify one cosignature line over checkpoint ``text``; return its timestamp."""
        line = line.rstrip("\n")
        prefix = f"{EM_DASH} {self.name} "
        if not line.startswith(prefix):
            raise SignatureError(f"not a signature line by {self.name}")
        try:
            raw = base64.b64decode(line[len(prefix):], validate=True)
        except (ValueError, binascii.Error):
            raise SignatureError(f"cosignature by {self.name} is not base64") from None
        if len(raw) != 4 + 8 + 64 or raw[:4] != self.key_id:
            raise SignatureError(f"cosignature by {self.name} has the wrong length or key ID")
        (ts,) = struct.unpack(">Q", raw[4:12])
        try:
            self.public.verify(raw[12:], cosignature_message(text, ts))
        except InvalidSignature:
            raise SignatureError(f"cosignature by {self.name} does not verify") from None
        return ts
