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
same file. ``BlobStore`` (ledger/blobs.py) is what the ledger needs from any
backend; ``s3://bucket/prefix`` selects the S3-compatible one (ledger/s3store.py).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from .blobs import Blob, BlobStore, PutsFromStream
from .config import fsync_dir
from .digest import CHUNK
from .errors import IntegrityError, StoreError
from .s3store import S3Store

__all__ = ["ArtifactStore", "Blob", "BlobStore", "S3Store", "BlobPath", "artifact_store_for"]


def artifact_store_for(home_root: Path, configured: object = None) -> ArtifactStore | S3Store:
    """The store a home uses: EVIDENCE_ARTIFACTS, then config ``artifacts``, then ``store/``."""
    where = os.environ.get("EVIDENCE_ARTIFACTS") or configured
    if where is None or where == "":
        return ArtifactStore(Path(home_root) / "store")
    if not isinstance(where, str):
        raise StoreError(f"artifact store setting must be a directory path, not {where!r}")
    if where.startswith("s3://"):
        return S3Store.from_env(where)
    if where.startswith("file://"):
        where = where[len("file://") :]
    elif "://" in where:
        raise StoreError(
            f"artifact store {where!r}: only a directory, a file:// path or s3://BUCKET/PREFIX is supported"
        )
    path = Path(where).expanduser()
    if not path.is_absolute():
        raise StoreError(f"artifact store path must be absolute (it is shared between homes): {where}")
    return ArtifactStore(path)


class ArtifactStore(PutsFromStream):
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

    def open(self, sha256: str) -> BinaryIO:
        try:
            return open(self.path_for(sha256), "rb")
        except FileNotFoundError:
            raise IntegrityError(f"artifact sha256:{sha256} is missing from the store") from None

    def facts(self, digests: Iterable[str] = ()) -> dict[str, Any] | None:
        """Nothing to record: a file store's exhibits stay as they always were."""
        return None

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


class BlobPath(os.PathLike[str]):
    """A filesystem path to a blob for a tool that wants one (cdxj-indexer), made only if used.

    A file store's own file; for any other store the blob is copied (through
    its verifying ``open``) into ``workdir`` the first time the path is asked
    for, because most exports never need it.
    """

    def __init__(self, store: BlobStore, sha256: str, workdir: Path):
        self.store, self.sha256, self.workdir = store, sha256, Path(workdir)
        self._path: str | None = None

    def __fspath__(self) -> str:
        if self._path is None:
            if isinstance(self.store, ArtifactStore):
                self._path = str(self.store.path_for(self.sha256))
            else:
                dest = self.workdir / f"blob-{self.sha256}"
                with self.store.open(self.sha256) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out, CHUNK)
                self._path = str(dest)
        return self._path

    def __str__(self) -> str:
        return self.__fspath__()
