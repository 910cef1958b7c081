"""Content-addressed artifact store: ``store/sha256/ab/cd/abcd...``.

Every blob is streamed into a temporary file in the store's own directory,
hashed while it is written, fsynced, and only then renamed to its digest
path. A crash leaves at most a ``tmp/`` file (see ``sweep_tmp``), never a
digest path holding partial content.

Where the store is: ``EVIDENCE_ARTIFACTS`` (a directory, e.g. an NFS or SMB
mount shared by every capture machine), else ``"artifacts"`` in the home's
config.json, else ``store/`` in the evidence home (``artifact_store_for``).
Several homes may share one directory: a digest path is written once, by a
rename of complete content, and two machines storing the same bytes write the
same file. ``BlobStore`` is what the ledger needs from any other backend (an
S3-compatible bucket keyed ``sha256/ab/cd/<digest>`` would implement it, with
put-if-absent after hashing a local spool file).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from .config import fsync_dir
from .digest import CHUNK
from .errors import IntegrityError, StoreError


@dataclass(frozen=True)
class Blob:
    sha256: str
    size: int


@runtime_checkable
class BlobStore(Protocol):
    """What the ledger, export and audit use of an artifact store.

    A blob is addressed only by the SHA-256 of its bytes, computed by the
    store while it writes (never trusted from the caller); ``open`` of a
    digest that is not there raises IntegrityError; nothing is ever deleted
    or overwritten with other bytes.
    """

    def put_stream(self, src: BinaryIO) -> Blob: ...
    def put_file(self, path: Path) -> Blob: ...
    def put_bytes(self, data: bytes) -> Blob: ...
    def open(self, sha256: str) -> BinaryIO: ...
    def check(self, sha256: str) -> None: ...
    def __contains__(self, sha256: object) -> bool: ...
    def __iter__(self) -> Iterator[str]: ...


def artifact_store_for(home_root: Path, configured: object = None) -> ArtifactStore:
    """The store a home uses: EVIDENCE_ARTIFACTS, then config ``artifacts``, then ``store/``."""
    where = os.environ.get("EVIDENCE_ARTIFACTS") or configured
    if where is None or where == "":
        return ArtifactStore(Path(home_root) / "store")
    if not isinstance(where, str):
        raise StoreError(f"artifact store setting must be a directory path, not {where!r}")
    if where.startswith("file://"):
        where = where[len("file://") :]
    elif "://" in where:
        raise StoreError(
            f"artifact store {where!r}: only a directory (or file:// path) is supported; "
            "see BlobStore in ledger/artifacts.py to add another backend"
        )
    path = Path(where).expanduser()
    if not path.is_absolute():
        raise StoreError(f"artifact store path must be absolute (it is shared between homes): {where}")
    return ArtifactStore(path)


class ArtifactStore:
    """The local or shared-filesystem ``BlobStore``."""

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

    def __contains__(self, sha256: object) -> bool:
        return isinstance(sha256, str) and self.path_for(sha256).exists()

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
            fsync_dir(dest.parent)
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

    def sweep_tmp(self, older_than: float = 0.0) -> int:
        """Remove temporary files left by interrupted writes; return how many.

        On a store shared by several machines, pass an age in seconds (say a
        day): a younger file may be another machine's write in progress.
        """
        import time

        n = 0
        limit = time.time() - older_than
        for p in self._tmp.glob("put-*"):
            try:
                if older_than and p.stat().st_mtime > limit:
                    continue
                p.unlink()
                n += 1
            except FileNotFoundError:
                continue
        return n

    def __iter__(self) -> Iterator[str]:
        base = self.root / "sha256"
        if base.exists():
            for p in base.glob("??/??/*"):
                yield p.name
