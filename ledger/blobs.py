"""What any artifact store is: the ``BlobStore`` contract and the ``Blob`` a put returns.

Apart from ``artifacts.py`` so that each backend (the file store there, the S3
store in ``s3store.py``) imports the contract without importing the others.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol, runtime_checkable


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
    or overwritten with other bytes. ``facts`` is what an exhibit records of
    where its blobs are kept (None for a plain file store).
    """

    def put_stream(self, src: BinaryIO) -> Blob: ...
    def put_file(self, path: Path) -> Blob: ...
    def put_bytes(self, data: bytes) -> Blob: ...
    def open(self, sha256: str) -> BinaryIO: ...
    def check(self, sha256: str) -> None: ...
    def facts(self, digests: Iterable[str] = ()) -> dict[str, Any] | None: ...
    def __contains__(self, sha256: object) -> bool: ...
    def __iter__(self) -> Iterator[str]: ...


class PutsFromStream:
    """``put_file`` and ``put_bytes`` for a store that implements ``put_stream``."""

    def put_stream(self, src: BinaryIO) -> Blob:
        raise NotImplementedError

    def put_file(self, path: Path) -> Blob:
        with open(path, "rb") as f:
            return self.put_stream(f)

    def put_bytes(self, data: bytes) -> Blob:
        return self.put_stream(io.BytesIO(data))
