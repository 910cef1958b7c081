"""WACZ signing: the ``signedData`` block of ``datapackage-digest.json`` (WACZ Signing and Verification 0.1.0).

    key = load_or_create(home.keys_dir, passphrase)     # ECDSA P-384, stored encrypted like the log key
    payload = key_record_payload(key, origin)           # appended once as a ``wacz-key`` record
    signed = sign_datapackage(key, datapackage_bytes, created, software)
    verify_signed_data(signed, datapackage_bytes, created, spki_b64)   # raises SignatureError

Why ECDSA P-384 and not the log's Ed25519 key: the spec's anonymous form
carries an ECDSA ``publicKey`` (SPKI, base64) and ReplayWeb.page (wabac.js)
imports it with WebCrypto as ECDSA P-384 and verifies ECDSA/SHA-256 over the
ASCII ``hash`` string with a raw ``r||s`` signature (IEEE P1363). Ed25519 or
P-256 would be shown as an invalid signature there. ``wacz validate
--verify-auth`` (py-wacz + authsign) checks only the spec's domain-certificate
form against authsign's built-in roots (Let's Encrypt, public TSAs), so it
cannot accept any anonymous signature: see the README.

The key is bound to the log by a ``wacz-key`` record (signed by the log key
like every record; its own proof of possession over the statement below),
and each case-export record names the key id that signs its bundle, so a
verifier can tell a removed or re-signed ``signedData`` from an honest one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from .canonical import canonical_json
from .errors import KeyFileError, SignatureError

KEY_KIND = "wacz-key"
KEY_NAME = "wacz-signing"
ALGORITHM = "ecdsa-p384-sha256"
SPEC_VERSION = "0.1.0"
KEY_DOMAIN = b"evidence-chain/wacz-key/v1\n"
KEY_FILE = "wacz-signing.pem"
# The anonymous form's fields, in the order written; the spec forbids any other.
SIGNED_FIELDS = ("hash", "created", "software", "version", "signature", "publicKey")
KEY_FIELDS = ("origin", "key_id", "public_key", "algorithm", "name")
_COORD = 48  # P-384 scalar size in bytes: a raw signature is r||s, 96 bytes


@dataclass(frozen=True)
class WaczKey:
    private: ec.EllipticCurvePrivateKey
    spki_b64: str = field(init=False)
    key_id: str = field(init=False)

    def __post_init__(self) -> None:
        spki = self.private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        object.__setattr__(self, "spki_b64", base64.b64encode(spki).decode("ascii"))
        object.__setattr__(self, "key_id", key_id_of(spki))

    def sign_raw(self, message: bytes) -> bytes:
        """ECDSA/SHA-256 as WebCrypto writes it: r||s, each 48 bytes big-endian."""
        r, s = decode_dss_signature(self.private.sign(message, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(_COORD, "big") + s.to_bytes(_COORD, "big")


def key_id_of(spki_der: bytes) -> str:
    """First 8 bytes of SHA-256 over the SPKI DER, hex (the same length as log key ids)."""
    return hashlib.sha256(spki_der).digest()[:8].hex()


def load_or_create(keys_dir: Path, passphrase: bytes | None) -> WaczKey:
    """The home's WACZ signing key, made on first use (mode 0600 from creation, encrypted if the home is)."""
    path = keys_dir / KEY_FILE
    if not path.exists():
        enc: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption())
        pem = ec.generate_private_key(ec.SECP384R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
        keys_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another export made it a moment ago: use that one
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
                f.flush()
                os.fsync(f.fileno())
    try:
        pem = path.read_bytes()
    except OSError as e:
        raise KeyFileError(f"cannot read the WACZ signing key {path}: {e.strerror or e}") from None
    encrypted = b"ENCRYPTED PRIVATE KEY" in pem
    if encrypted and not passphrase:
        raise KeyFileError(f"WACZ signing key {path} is encrypted: set EVIDENCE_KEY_PASSPHRASE")
    try:
        key = serialization.load_pem_private_key(pem, passphrase if encrypted else None)
    except (ValueError, TypeError):
        raise KeyFileError(f"cannot load the WACZ signing key {path}: wrong passphrase or damaged file") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP384R1):
        raise KeyFileError(f"WACZ signing key {path} is not an ECDSA P-384 key")
    return WaczKey(key)


def key_record_payload(key: WaczKey, origin: str) -> dict[str, Any]:
    """A ``wacz-key`` payload: the statement and the new key's own signature over it (proof of possession)."""
    statement = {"origin": origin, "key_id": key.key_id, "public_key": key.spki_b64, "algorithm": ALGORITHM,
                 "name": KEY_NAME}
    sig = key.sign_raw(KEY_DOMAIN + canonical_json(statement))
    return dict(statement, key_sig=base64.b64encode(sig).decode("ascii"))


def verify_key_record(payload: dict[str, Any], origin: str) -> tuple[str, str]:
    """Check a ``wacz-key`` payload; return (key id, SPKI base64)."""
    if not isinstance(payload, dict) or set(payload) != {*KEY_FIELDS, "key_sig"}:
        raise SignatureError("wacz-key record is malformed (fields differ from what evidence-chain writes)")
    statement = {k: payload[k] for k in KEY_FIELDS}
    if statement["origin"] != origin or statement["algorithm"] != ALGORITHM or statement["name"] != KEY_NAME:
        raise SignatureError("wacz-key record is for another log or algorithm")
    pub, spki = _public(statement["public_key"])
    if key_id_of(spki) != statement["key_id"]:
        raise SignatureError("wacz-key record names a key id that does not match its key")
    _verify_raw(pub, payload["key_sig"], KEY_DOMAIN + canonical_json(statement), "wacz-key record's proof of possession")
    return statement["key_id"], statement["public_key"]


def sign_datapackage(key: WaczKey, datapackage: bytes, created: str, software: str) -> dict[str, str]:
    """The spec's anonymous ``signedData``: the key signs the ASCII ``hash`` string ("sha256:<hex>")."""
    digest = "sha256:" + hashlib.sha256(datapackage).hexdigest()
    sig = base64.b64encode(key.sign_raw(digest.encode("ascii"))).decode("ascii")
    return {"hash": digest, "created": created, "software": software, "version": SPEC_VERSION,
            "signature": sig, "publicKey": key.spki_b64}


def verify_signed_data(signed: Any, datapackage: bytes, created: Any, spki_b64: str) -> None:
    """Raise ``SignatureError`` unless ``signed`` is a signature by ``spki_b64`` over this exact datapackage."""
    if not isinstance(signed, dict):
        raise SignatureError("signedData is missing")
    if set(signed) != set(SIGNED_FIELDS) or not all(isinstance(signed[k], str) for k in SIGNED_FIELDS):
        raise SignatureError("signedData has other fields than the spec's anonymous signature")
    want = "sha256:" + hashlib.sha256(datapackage).hexdigest()
    if signed["hash"] != want:
        raise SignatureError(f"signedData.hash is {signed['hash'][:80]}, but datapackage.json is {want}")
    if signed["created"] != created:
        raise SignatureError("signedData.created differs from datapackage.json's created")
    if signed["publicKey"] != spki_b64:
        raise SignatureError("signed by a key the ledger did not introduce for this export")
    pub, _ = _public(spki_b64)
    _verify_raw(pub, signed["signature"], signed["hash"].encode("ascii"), "signedData.signature")


def _public(spki_b64: Any) -> tuple[ec.EllipticCurvePublicKey, bytes]:
    try:
        spki = base64.b64decode(str(spki_b64), validate=True)
        pub = serialization.load_der_public_key(spki)
    except (ValueError, binascii.Error, TypeError):
        raise SignatureError("WACZ signing key is not a valid SPKI public key") from None
    if not isinstance(pub, ec.EllipticCurvePublicKey) or not isinstance(pub.curve, ec.SECP384R1):
        raise SignatureError("WACZ signing key is not ECDSA P-384")
    return pub, spki


def _verify_raw(pub: ec.EllipticCurvePublicKey, sig_b64: Any, message: bytes, what: str) -> None:
    try:
        raw = base64.b64decode(str(sig_b64), validate=True)
    except (ValueError, binascii.Error):
        raise SignatureError(f"{what} is not base64") from None
    if len(raw) != 2 * _COORD:
        raise SignatureError(f"{what} is not a raw P-384 signature ({len(raw)} bytes, not 96)")
    der = encode_dss_signature(int.from_bytes(raw[:_COORD], "big"), int.from_bytes(raw[_COORD:], "big"))
    try:
        pub.verify(der, message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise SignatureError(f"{what} does not verify") from None
