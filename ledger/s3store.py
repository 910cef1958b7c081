"""The ``BlobStore`` on an S3-compatible bucket: ``EVIDENCE_ARTIFACTS=s3://bucket/prefix``.

Keys are ``prefix/sha256/ab/cd/<digest>``, like the file store's paths. A put
spools the caller's stream to a local temporary file while hashing it (the
digest is ours, never the caller's), then writes the object only if the key is
absent (``If-None-Match: *``): an existing object is never overwritten, and
one that is there already must carry the same size and ``sha256`` metadata.
Reads hash as they stream and raise IntegrityError when the last byte has been
read and the digest differs, so a tampered object cannot be exported silently.

When the bucket has S3 Object Lock enabled every object is written in
COMPLIANCE mode, retained until now + ``EVIDENCE_S3_RETAIN_DAYS`` (default:
the bucket's default retention, else 3650 days); ``facts`` describes this for
the exhibit's ``info.storage``.

Settings (environment): ``EVIDENCE_S3_ENDPOINT_URL`` (MinIO, Aliyun OSS,
Tencent COS; unset = AWS), ``EVIDENCE_S3_REGION`` (else boto3's own region
settings), ``EVIDENCE_S3_ADDRESSING_STYLE`` (``auto``/``path``/``virtual``:
MinIO usually wants ``path``, OSS ``virtual``), ``EVIDENCE_S3_RETAIN_DAYS``.
Credentials come from boto3's normal chain (``AWS_ACCESS_KEY_ID``..., a
profile, an instance role).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from .blobs import Blob, PutsFromStream
from .digest import CHUNK
from .display import printable
from .errors import ConfigError, IntegrityError, StoreError

DEFAULT_RETAIN_DAYS = 3650
#: A blob larger than one part goes up in parts (a single PUT is limited to
#: 5 GiB, and one failed request should not resend a whole screen recording).
#: Parts are read into memory one at a time; 10,000 parts = 320 GiB.
PART_SIZE = 32 << 20
RETAINED_KEPT = 100_000  # retain-until dates remembered from our own puts (~25 MB)
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_MISSING = {"404", "NoSuchKey", "NotFound"}
_DENIED = {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken",
           "ExpiredToken", "AllAccessDisabled"}
_NO_LOCK_API = {"ObjectLockConfigurationNotFoundError", "NotImplemented", "MethodNotAllowed", "501", "405"}


def parse_url(url: str) -> tuple[str, str]:
    """(bucket, prefix without slashes) of ``s3://bucket/prefix``; ConfigError if it is not one."""
    rest = url[len("s3://") :] if url.startswith("s3://") else None
    bucket, _, prefix = (rest or "").partition("/")
    prefix = prefix.strip("/")
    if rest is None or not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise ConfigError(f"artifact store {printable(url)!r}: not s3://BUCKET[/PREFIX] with a valid bucket name")
    if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
        raise ConfigError(f"artifact store {printable(url)!r}: the prefix has an empty, '.' or '..' part")
    return bucket, prefix


class S3Store(PutsFromStream):
    """``BlobStore`` on one bucket and prefix. Nothing is contacted until first use."""

    def __init__(self, url: str, *, endpoint_url: str | None = None, region: str | None = None,
                 addressing_style: str | None = None, retain_days: int | None = None,
                 spool_dir: Path | None = None, part_size: int = PART_SIZE):
        self.bucket, self.prefix = parse_url(url)
        self.url = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        self.endpoint_url = endpoint_url or None
        self.region = region or None
        self.addressing_style = addressing_style or "auto"
        if self.addressing_style not in ("auto", "path", "virtual"):
            raise ConfigError(f"EVIDENCE_S3_ADDRESSING_STYLE must be auto, path or virtual, not {printable(addressing_style)!r}")
        if retain_days is not None and retain_days < 1:
            raise ConfigError(f"EVIDENCE_S3_RETAIN_DAYS must be a positive number of days, not {retain_days}")
        self._retain_days_setting = retain_days
        self.spool_dir = spool_dir
        self.part_size = part_size
        self._client: Any = None
        self._exc: Any = None
        self._lock: dict[str, Any] | None = None
        self._ready = False
        self._retained: dict[str, datetime] = {}  # digest -> retain-until of its object (put or extended here)

    @classmethod
    def from_env(cls, url: str) -> S3Store:
        days = os.environ.get("EVIDENCE_S3_RETAIN_DAYS") or None
        if days is not None and not days.strip().isdigit():
            raise ConfigError(f"EVIDENCE_S3_RETAIN_DAYS must be a whole number of days, not {printable(days)!r}")
        return cls(url, endpoint_url=os.environ.get("EVIDENCE_S3_ENDPOINT_URL"),
                   region=os.environ.get("EVIDENCE_S3_REGION"),
                   addressing_style=os.environ.get("EVIDENCE_S3_ADDRESSING_STYLE"),
                   retain_days=int(days) if days else None)

    def __repr__(self) -> str:
        return f"S3Store({self.url!r}, endpoint={self.endpoint_url!r})"

    # -- connection ------------------------------------------------------------

    def _s3(self) -> Any:
        if self._client is None:
            # boto3 is a dependency, imported here because it costs ~0.4 s of
            # start-up that every command of a home with a file store would pay.
            import boto3
            import botocore.exceptions
            from botocore.config import Config

            cfg = Config(
                connect_timeout=10, read_timeout=120, retries={"max_attempts": 3, "mode": "standard"},
                s3={"addressing_style": self.addressing_style},
                # Only the checksums S3 requires: botocore's default CRC32 trailers are refused by
                # several S3-compatible services; we send Content-MD5 ourselves (Object Lock needs one).
                request_checksum_calculation="when_required", response_checksum_validation="when_required",
            )
            try:
                self._client = boto3.session.Session().client(
                    "s3", endpoint_url=self.endpoint_url, region_name=self.region, config=cfg)
            except (botocore.exceptions.BotoCoreError, ValueError) as e:
                raise StoreError(f"artifact store {self.url}: {_line(e)}") from e
            self._exc = botocore.exceptions
        return self._client

    def _fail(self, e: Exception, doing: str) -> StoreError:
        """One line for a failed request: the bucket, what we did, and why (exit 3)."""
        where = f"artifact store {self.url}" + (f" at {self.endpoint_url}" if self.endpoint_url else "")
        exc = self._exc
        if isinstance(e, exc.NoCredentialsError | exc.PartialCredentialsError):
            return StoreError(f"{where}: no S3 credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)")
        if isinstance(e, exc.ClientError):
            code = _code(e)
            if code in ("NoSuchBucket",) or (doing == "head bucket" and code in _MISSING):
                return StoreError(f"{where}: the bucket {self.bucket} does not exist")
            if code in _DENIED:
                return StoreError(f"{where}: access denied ({code}) while trying to {doing}: check the credentials and the bucket policy")
            return StoreError(f"{where}: {doing} failed: {code} {_line(e.response.get('Error', {}).get('Message', ''))}".rstrip())
        if isinstance(e, exc.EndpointConnectionError | exc.ConnectTimeoutError | exc.ConnectionClosedError):
            return StoreError(f"{where}: the S3 endpoint is unreachable ({_line(e)})")
        return StoreError(f"{where}: cannot {doing}: {_line(e)}")

    def _call(self, doing: str, op: str, **kw: Any) -> Any:
        try:
            return getattr(self._s3(), op)(**kw)
        except self._errors() as e:
            raise self._fail(e, doing) from e

    def _errors(self) -> tuple[type[Exception], ...]:
        self._s3()
        return (self._exc.BotoCoreError, self._exc.ClientError)

    def connect(self) -> None:
        """Check the bucket is there and readable, and learn its Object Lock settings (once)."""
        if self._ready:
            return
        self._call("head bucket", "head_bucket", Bucket=self.bucket)
        try:
            got = self._s3().get_object_lock_configuration(Bucket=self.bucket)
        except self._exc.ClientError as e:
            if _code(e) not in _NO_LOCK_API:
                raise self._fail(e, "read the bucket's Object Lock configuration") from e
            got = {}
        except self._exc.BotoCoreError as e:
            raise self._fail(e, "read the bucket's Object Lock configuration") from e
        conf = got.get("ObjectLockConfiguration") or {}
        if conf.get("ObjectLockEnabled") == "Enabled":
            default = (conf.get("Rule") or {}).get("DefaultRetention") or {}
            days = self._retain_days_setting or default.get("Days") or (
                default["Years"] * 365 if default.get("Years") else DEFAULT_RETAIN_DAYS)
            self._lock = {"mode": "COMPLIANCE", "retain_days": int(days)}
        self._ready = True

    # -- keys ------------------------------------------------------------------

    def key_for(self, sha256: str) -> str:
        if not isinstance(sha256, str) or not _HEX64.fullmatch(sha256):
            raise IntegrityError(f"not a SHA-256 hex digest: {printable(sha256)!r}")
        return f"{self.prefix}/" * bool(self.prefix) + f"sha256/{sha256[:2]}/{sha256[2:4]}/{sha256}"

    def __contains__(self, sha256: object) -> bool:
        if not isinstance(sha256, str) or not _HEX64.fullmatch(sha256):
            return False
        try:
            self._s3().head_object(Bucket=self.bucket, Key=self.key_for(sha256))
            return True
        except self._errors() as e:
            if isinstance(e, self._exc.ClientError) and _code(e) in _MISSING:
                return False
            raise self._fail(e, f"look up sha256:{sha256}") from e

    def __iter__(self) -> Iterator[str]:
        base = f"{self.prefix}/" * bool(self.prefix) + "sha256/"
        pages = self._s3().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base)
        try:
            for page in pages:
                for obj in page.get("Contents", []):
                    name = obj["Key"].rsplit("/", 1)[-1]
                    if _HEX64.fullmatch(name) and obj["Key"] == self.key_for(name):
                        yield name
        except self._errors() as e:
            raise self._fail(e, "list the bucket") from e

    # -- writing ---------------------------------------------------------------

    def put_stream(self, src: BinaryIO) -> Blob:
        self.connect()
        try:
            return self._spool_and_put(src)
        except OSError as e:
            raise StoreError(f"artifact store {self.url}: cannot spool the upload to a local temporary file: "
                             f"{e.strerror or e}") from e

    def _spool_and_put(self, src: BinaryIO) -> Blob:
        h = hashlib.sha256()
        part_md5s: list[str] = []  # Content-MD5 of each part; of the whole object when it is one part
        part, in_part = hashlib.md5(), 0
        size = 0
        with tempfile.TemporaryFile(dir=self.spool_dir, prefix="evidence-s3-") as spool:
            while chunk := src.read(CHUNK):
                h.update(chunk)
                spool.write(chunk)
                size += len(chunk)
                view = memoryview(chunk)
                while view:  # MD5 of each part as it will be uploaded, on the same pass
                    take = view[: self.part_size - in_part]
                    part.update(take)
                    in_part += len(take)
                    view = view[len(take) :]
                    if in_part == self.part_size:
                        part_md5s.append(_b64(part.digest()))
                        part, in_part = hashlib.md5(), 0
            if in_part or not part_md5s:
                part_md5s.append(_b64(part.digest()))
            spool.flush()
            spool.seek(0)
            digest = h.hexdigest()
            key = self.key_for(digest)
            extra: dict[str, Any] = {"Metadata": {"sha256": digest}, "ContentType": "application/octet-stream"}
            until = None
            if self._lock is not None:
                until = _retain_until(self._lock["retain_days"])
                extra.update(ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until)
            if len(part_md5s) > 1:
                written = self._put_parts(spool, key, extra, part_md5s)
            else:
                written = self._put_once(spool, key, size, part_md5s[0], extra)
        if written:
            if until is not None:
                self._remember(digest, until)
        else:
            self._existing(key, digest, size)
        return Blob(digest, size)

    def _put_once(self, spool: BinaryIO, key: str, size: int, md5: str, extra: dict[str, Any]) -> bool:
        """One PUT if the key is absent; False if it is there already (412)."""
        try:
            self._s3().put_object(Bucket=self.bucket, Key=key, Body=spool, ContentLength=size,
                                  ContentMD5=md5, IfNoneMatch="*", **extra)
            return True
        except self._errors() as e:
            if _precondition(e):
                return False
            raise self._fail(e, f"store {key}") from e

    def _put_parts(self, spool: BinaryIO, key: str, extra: dict[str, Any], md5s: list[str]) -> bool:
        """Multipart upload, put-if-absent on completion.

        Not ``upload_file``: s3transfer does not pass If-None-Match to
        CompleteMultipartUpload, so it could overwrite an existing object.
        """
        up = self._call(f"start the upload of {key}", "create_multipart_upload", Bucket=self.bucket, Key=key, **extra)
        uid = up["UploadId"]
        done = False
        try:
            parts = []
            for n, md5 in enumerate(md5s, 1):
                data = spool.read(self.part_size)
                got = self._call(f"upload part {n} of {key}", "upload_part", Bucket=self.bucket, Key=key,
                                 UploadId=uid, PartNumber=n, Body=data, ContentMD5=md5)
                parts.append({"ETag": got["ETag"], "PartNumber": n})
            try:
                self._s3().complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=uid,
                                                     MultipartUpload={"Parts": parts}, IfNoneMatch="*")
                done = True
                return True
            except self._errors() as e:
                if _precondition(e):
                    return False
                raise self._fail(e, f"complete the upload of {key}") from e
        finally:
            if not done:
                try:
                    self._s3().abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=uid)
                except self._errors():
                    pass  # the bucket's lifecycle rule for incomplete uploads cleans up what this cannot

    def _existing(self, key: str, digest: str, size: int) -> None:
        """The key was there: it must be this blob; under a lock, make its retention reach ours."""
        head = self._call(f"look up {key}", "head_object", Bucket=self.bucket, Key=key)
        stored = (head.get("Metadata") or {}).get("sha256")
        if head.get("ContentLength") != size or stored != digest:
            raise IntegrityError(
                f"artifact store {self.url}: the object {key} is not the blob sha256:{digest} "
                f"(it has {head.get('ContentLength')} bytes, sha256 metadata {printable(stored)!r}); not overwritten")
        if self._lock is None:
            return
        want = _retain_until(self._lock["retain_days"])
        have = head.get("ObjectLockRetainUntilDate")
        if head.get("ObjectLockMode") == "COMPLIANCE" and isinstance(have, datetime) and have >= want:
            self._remember(digest, have.astimezone(UTC))
            return
        # Extending a COMPLIANCE retention is allowed (shortening is not): the
        # exhibit then holds for as long as one stored afresh.
        if isinstance(have, datetime) and have > want:  # a longer GOVERNANCE lock: keep its date, make it COMPLIANCE
            want = have.astimezone(UTC)
        self._call(f"extend the retention of {key}", "put_object_retention", Bucket=self.bucket, Key=key,
                   Retention={"Mode": "COMPLIANCE", "RetainUntilDate": want})
        self._remember(digest, want)

    def _remember(self, digest: str, until: datetime) -> None:
        # Bounded: a worker stores millions of blobs; an exhibit asks right after its own puts.
        self._retained.pop(digest, None)
        self._retained[digest] = until
        if len(self._retained) > RETAINED_KEPT:
            del self._retained[next(iter(self._retained))]

    def _retention_of(self, digest: str) -> datetime | None:
        """The retain-until of a blob's object: from our own put, else from the server."""
        if digest in self._retained:
            return self._retained[digest]
        head = self._call(f"look up sha256:{digest}", "head_object", Bucket=self.bucket, Key=self.key_for(digest))
        have = head.get("ObjectLockRetainUntilDate") if head.get("ObjectLockMode") == "COMPLIANCE" else None
        return have.astimezone(UTC) if isinstance(have, datetime) else None

    # -- reading ---------------------------------------------------------------

    def open(self, sha256: str) -> BinaryIO:
        key = self.key_for(sha256)
        try:
            got = self._s3().get_object(Bucket=self.bucket, Key=key)
        except self._errors() as e:
            if isinstance(e, self._exc.ClientError) and _code(e) in _MISSING:
                raise IntegrityError(f"artifact sha256:{sha256} is missing from the store {self.url}") from None
            raise self._fail(e, f"read {key}") from e
        raw = _Verifying(self, key, sha256, got["Body"], int(got["ContentLength"]))
        return io.BufferedReader(raw, CHUNK)  # type: ignore[return-value]

    def check(self, sha256: str) -> None:
        """Re-read and re-hash a stored blob; IntegrityError if it no longer matches."""
        with self.open(sha256) as f:
            while f.read(CHUNK):
                pass

    # -- what the exhibit records --------------------------------------------

    def facts(self, digests: Iterable[str] = ()) -> dict[str, Any]:
        """Where the blobs are and how long they are locked: the earliest retain-until of ``digests``."""
        self.connect()
        lock = None
        if self._lock is not None:
            untils = [self._retention_of(d) for d in digests]
            if None in untils:  # an object without its lock (put before the bucket had one): say so
                lock = {**self._lock, "mode": None, "retain_until": None}
            else:
                until = min(untils, default=None) or _retain_until(self._lock["retain_days"])  # type: ignore[type-var]
                lock = {**self._lock, "retain_until": until.strftime("%Y-%m-%dT%H:%M:%SZ")}
        return {"backend": "s3", "bucket": self.bucket, "prefix": self.prefix, "endpoint": self.endpoint_url,
                "object_lock": lock}


class _Verifying(io.RawIOBase):
    """An object's body that checks its SHA-256 when the last byte is read.

    A seek (web replay reads one record) gives up the check for this handle:
    a ranged read cannot be verified, as with a file store's plain ``open``.
    """

    def __init__(self, store: S3Store, key: str, sha256: str, body: Any, length: int):
        self._store, self._key, self._sha, self._body, self._len = store, key, sha256, body, length
        self._pos = 0
        self._h: Any = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def readinto(self, b: Any) -> int:
        want = len(b)
        if want == 0 or self._pos >= self._len:
            self._finish()
            return 0
        try:
            data = self._body.read(min(want, self._len - self._pos))
        except self._store._errors() as e:
            raise self._store._fail(e, f"read {self._key}") from e
        except OSError as e:
            raise StoreError(f"artifact store {self._store.url}: reading {self._key} failed: {_line(e)}") from e
        n = len(data)
        b[:n] = data
        self._pos += n
        if self._h is not None:
            self._h.update(data)
        if n == 0 or self._pos >= self._len:
            self._finish()
        return n

    def _finish(self) -> None:
        if self._h is None:
            return
        h, self._h = self._h, None
        if self._pos != self._len:
            raise IntegrityError(f"artifact sha256:{self._sha}: the store sent {self._pos} of {self._len} bytes")
        if h.hexdigest() != self._sha:
            raise IntegrityError(f"artifact sha256:{self._sha} in the store {self._store.url} was altered (now {h.hexdigest()})")

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = {io.SEEK_SET: offset, io.SEEK_CUR: self._pos + offset, io.SEEK_END: self._len + offset}[whence]
        if target < 0:
            raise ValueError("negative seek position")
        if target == self._pos:
            return target
        self._h = None
        self._body.close()
        if target >= self._len:
            self._body = io.BytesIO(b"")
        else:
            got = self._store._call(f"read {self._key}", "get_object", Bucket=self._store.bucket, Key=self._key,
                                    Range=f"bytes={target}-")
            self._body = got["Body"]
        self._pos = target
        return target

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


def _retain_until(days: int) -> datetime:
    return (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0)


def _code(e: Any) -> str:
    err = e.response.get("Error", {}) if hasattr(e, "response") else {}
    return str(err.get("Code") or e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))


def _precondition(e: Exception) -> bool:
    """If-None-Match failed: the key exists (412), or a concurrent write of it just won (409)."""
    return hasattr(e, "response") and _code(e) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _line(e: object) -> str:
    return " ".join(printable(str(e)).split())

