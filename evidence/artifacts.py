"""Content-addressed artifact store: ``store/sha256/ab/cd/abcd...``.

Every blob is streamed into a temporary file in the store's own directory,
hashed while it is written, fsynced, and only then renamed to its digest
path. A crash leaves at most a ``tmp/`` file (swept on the next open), never
a digest path holding partial content.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .digest import CHUNK
from .errors import IntegrityError, StoreError


@dataclass(frozen=True)
class Blob:
    sha256: str
    size: int


class ArtifactStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self._tmp = self.root / "tmp"
        try:
            self._tmp.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create artifact store at {self.root}: {e.strerror}") from e

    def path_for(self, sha256: str) -> Path:
        if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
            raise IntegrityError(f"not a SHA-256 hex digest: {sha256!r}")
        return self.root / "sha256" / sha256[:2] / sha256[2:4] / sha256

    def __contains__(self, sha256: str) -> bool:
        return self.path_for(sha256).exists()

    def put_stream(self, src: BinaryIO) -> Blob:
        h = hashlib.sha256()
        size = 0
        fd, tmp_name = tempfile.mkstemp(dir=self._tmp, prefix="put-")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := src.read(CHUNK):
                    h.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            digest = h.hexdigest()
            dest = self.path_for(digest)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(tmp, 0o444)
            os.replace(tmp, dest)
            _fsync_dir(dest.parent)
            return Blob(digest, size)
        except OSError as e:
            raise StoreError(f"cannot write to artifact store {self.root}: {e.strerror}") from e
        finally:
            tmp.unlink(missing_ok=True)

    def put_file(self, path: Path) -> Blob:
        with open(path, "rb") as f:
            return self.put_stream(f)

    def put_bytes(self, data: bytes) -> Blob:
        import io

        return self.put_stream(io.BytesIO(data))

    def open(self, sha256: str) -> BinaryIO:
        try:
            return open(self.path_for(sha256), "rb")
        except FileNotFoundError:
            raise IntegrityError(f"artifact sha256:{sha256} is missing from the store") from None

    def copy_to(self, sha256: str, dest: Path) -> None:
        with self.open(sha256) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, CHUNK)

    def check(self, sha256: str) -> None:
        """Re-hash a stored blob; raise IntegrityError if it no longer matches."""
        with self.open(sha256) as f:
            h = hashlib.sha256()
            while chunk := f.read(CHUNK):
                h.update(chunk)
        if h.hexdigest() != sha256:
            raise IntegrityError(f"artifact sha256:{sha256} was altered (now {h.hexdigest()})")

    def sweep_tmp(self) -> int:
        """Remove temporary files left by interrupted writes; return how many."""
        n = 0
        for p in self._tmp.glob("put-*"):
            p.unlink(missing_ok=True)
            n += 1
        return n

    def __iter__(self) -> Iterator[str]:
        base = self.root / "sha256"
        if base.exists():
            for p in base.glob("??/??/*"):
                yield p.name


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
