"""SHA-256 helpers that stream: files are hashed in chunks, never read whole."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_stream(f: BinaryIO) -> tuple[str, int]:
    """Hex digest and byte count of everything left in ``f``."""
    h = hashlib.sha256()
    n = 0
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    while True:
        got = f.readinto(view)  # type: ignore[attr-defined]
        if not got:
            break
        h.update(view[:got])
        n += got
    return h.hexdigest(), n


def sha256_file(path: str | Path) -> tuple[str, int]:
    with open(path, "rb") as f:
        return sha256_stream(f)
