"""Ed25519 signing keys: creation, encrypted storage, loading, identifiers.

Private keys are stored as PKCS#8 PEM encrypted with the passphrase from
``EVIDENCE_KEY_PASSPHRASE`` (unencrypted only when the caller says so
explicitly), written with mode 0600 before any key byte reaches the disk.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from .errors import KeyFileError, SignatureError


def raw_public(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_for(public_key: Ed25519PublicKey | bytes) -> str:
    """Stable short name of a public key: first 8 bytes of SHA-256(raw key), hex."""
    raw = public_key if isinstance(public_key, bytes) else raw_public(public_key)
    return hashlib.sha256(raw).digest()[:8].hex()


def public_from_raw(raw: bytes) -> Ed25519PublicKey:
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as e:
        raise SignatureError(f"not an Ed25519 public key: {e}") from e


def public_from_b64(text: str) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError as e:
        raise SignatureError("public key is not valid base64") from e
    return public_from_raw(raw)


@dataclass(frozen=True)
class SigningKey:
    private: Ed25519PrivateKey
    # Derived once: every appended record names its key.
    public_raw: bytes = field(init=False, repr=False)
    key_id: str = field(init=False)

    def __post_init__(self) -> None:
        raw = raw_public(self.private.public_key())
        object.__setattr__(self, "public_raw", raw)
        object.__setattr__(self, "key_id", key_id_for(raw))

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    def sign(self, message: bytes) -> bytes:
        return self.private.sign(message)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())


def verify_signature(public_key: Ed25519PublicKey, signature: bytes, message: bytes) -> None:
    try:
        public_key.verify(signature, message)
    except InvalidSignature:
        raise SignatureError("signature does not verify") from None


def save_key(key: SigningKey, path: Path, passphrase: bytes | None) -> None:
    """Write the private key as PKCS#8 PEM, encrypted unless passphrase is None."""
    enc: serialization.KeySerializationEncryption
    if passphrase:
        enc = serialization.BestAvailableEncryption(passphrase)
    else:
        enc = serialization.NoEncryption()
    pem = key.private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL: never overwrite a key; mode 0600 from creation, not chmod after.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"key file {path} already exists") from None
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())


def load_key(path: Path, passphrase: bytes | None) -> SigningKey:
    try:
        pem = path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"signing key {path} not found") from None
    except OSError as e:
        raise KeyFileError(f"cannot read signing key {path}: {e.strerror}") from e
    encrypted = b"ENCRYPTED PRIVATE KEY" in pem
    if encrypted and not passphrase:
        raise KeyFileError(
            f"signing key {path} is encrypted: set EVIDENCE_KEY_PASSPHRASE"
        )
    try:
        key = serialization.load_pem_private_key(pem, passphrase if encrypted else None)
    except (ValueError, TypeError) as e:
        raise KeyFileError(f"cannot load signing key {path}: wrong passphrase or damaged file") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"signing key {path} is not an Ed25519 key")
    return SigningKey(key)
