"""Streaming check of every WARC record's WARC-Block-Digest and WARC-Payload-Digest.

Fed the file's bytes chunk by chunk (the same chunks that are hashed for the
file digest), so a WARC is read from the case file exactly once. Handles
gzip-per-record ``.warc.gz`` (any number of members) and plain ``.warc``.

warcio's ``ArchiveIterator`` does the same per 16 KiB in Python and runs at a
fraction of hashlib's speed; this parser hands whole multi-megabyte slices to
zlib and hashlib (both release the GIL), so two threads use both cores.

Digests may be ``alg:BASE32`` (the WARC convention) or ``alg:hex``. The
payload of an ``application/http`` block is what follows the HTTP header; for
other records it is the whole block. Revisit records carry the digest of a
payload they do not contain, so only their block digest is checked. Tools
disagree on the payload digest of chunked HTTP bodies (raw or de-chunked;
warcio issues #74/#75): such a record passes when its raw payload digest
matches, and is otherwise reported as not comparable, never as tampered; its
block digest still covers every byte.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
from collections import deque
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any

from ledger.warcscan import zlibx

MAX_HEADER = 64 << 10  # a WARC or HTTP header block larger than this is not honest
OUT_CHUNK = 4 << 20  # most zlib may produce per call: bounds memory on bombs
IN_SLICE = 2 << 20  # input handed to zlib per call (see WarcChecker._feed); also the slice size the lanes get
MAX_RATIO = 200  # decompressed / compressed bytes; beyond this it is a bomb
RATIO_FLOOR = 64 << 20
MAX_ERRORS = 20
# A revisit record whose payload is an artifact of the same exhibit (capture
# stores a download's bytes once, as that artifact): its name and length.
PAYLOAD_ARTIFACT = "evidence-payload-artifact"
PAYLOAD_LENGTH = "evidence-payload-length"


class WarcFormatError(Exception):
    """The bytes are not a well-formed WARC (reported as a failed check)."""


@dataclass(frozen=True)
class PayloadClaim:
    """A revisit record's statement that its payload is artifact ``name`` of the exhibit."""

    record: str  # "record N (<urn:uuid:...>)"
    uri: str
    name: str
    alg: str
    digest: bytes
    length: int | None


@dataclass
class WarcSummary:
    records: int = 0
    block_checked: int = 0
    payload_checked: int = 0
    no_digest: int = 0
    not_comparable: int = 0  # chunked payloads whose digest tools compute differently
    errors: list[str] = field(default_factory=list)
    claims: list[PayloadClaim] = field(default_factory=list)  # bound to artifacts by the case verifier

    @property
    def ok(self) -> bool:
        return not self.errors

    def detail(self) -> str:
        s = (
            f"{self.records} WARC records: {self.block_checked} block and "
            f"{self.payload_checked} payload digests match"
        )
        if self.no_digest:
            s += f"; {self.no_digest} record(s) carry no digest"
        if self.not_comparable:
            s += f"; {self.not_comparable} chunked payload digest(s) not comparable (block digest checked)"
        if self.claims:
            s += f"; {len(self.claims)} payload(s) stored once, as artifacts of the exhibit"
        return s


def _parse_digest(value: str) -> tuple[str, bytes]:
    alg, sep, enc = value.strip().partition(":")
    alg = alg.lower().replace("-", "")
    if not sep or alg not in ("sha1", "sha256", "sha512", "md5", "sha384"):
        raise WarcFormatError(f"unsupported digest {value[:40]!r}")
    size = hashlib.new(alg).digest_size
    try:
        if len(enc) == 2 * size and all(c in "0123456789abcdefABCDEF" for c in enc):
            raw = bytes.fromhex(enc)
        else:
            raw = base64.b32decode(enc.upper() + "=" * (-len(enc) % 8))
    except (binascii.Error, ValueError):
        raise WarcFormatError(f"digest {value[:40]!r} is neither base32 nor hex") from None
    if len(raw) != size:
        raise WarcFormatError(f"digest {value[:40]!r} has the wrong length")
    return alg, raw


LANE_MIN = 256 << 10  # slices this large are hashed on a lane thread; smaller ones inline
LANE_BYTES = 16 << 20  # bytes queued per lane: the reader runs ahead of a hash by this much at most


class Lane:
    """A hash fed in order on a worker thread, so that several hashes of one byte stream run on several cores.

    ``update`` queues the slice and returns; it waits only when this lane
    already holds about ``LANE_BYTES`` (memory stays bounded). One drain task
    at a time applies a lane's slices in order, so the hash sees the bytes as
    a single thread would. Waiting on each slice before queueing the next (a
    future per slice) kept both cores busy only about half the time.
    """

    def __init__(self, h: Any, pool: Executor | None):
        self.h, self.pool = h, pool
        self._queue: deque[Any] = deque()
        self._lock = threading.Lock()
        self._room: threading.BoundedSemaphore | None = None  # sized by the first slice queued
        self._drain: Future[None] | None = None

    def update(self, data: Any) -> None:
        if self.pool is None or len(data) < LANE_MIN:
            self.wait()  # a small slice inline, after every queued one
            self.h.update(data)
            return
        if self._room is None:
            self._room = threading.BoundedSemaphore(max(2, LANE_BYTES // len(data)))
        self._room.acquire()
        with self._lock:
            self._queue.append(data)
            if self._drain is None:
                self._drain = self.pool.submit(self._run)

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._drain = None
                    return
                data = self._queue.popleft()
            try:
                self.h.update(data)
            finally:
                self._room.release()  # type: ignore[union-attr]  # set before anything is queued

    def wait(self) -> None:
        while True:
            with self._lock:
                drain = self._drain
            if drain is None:
                return
            drain.result()

    def digest(self) -> bytes:
        self.wait()
        return bytes(self.h.digest())


class _Record:
    """Digest state of the record being read."""

    def __init__(self, headers: dict[str, str], number: int, pool: Executor | None = None):
        self.number = number
        self.rid = headers.get("warc-record-id", "?")
        try:
            self.left = int(headers["content-length"])
        except (KeyError, ValueError):
            raise WarcFormatError(f"record {number}: missing or bad Content-Length") from None
        if self.left < 0:
            raise WarcFormatError(f"record {number}: negative Content-Length")
        self.block_want = _parse_digest(headers["warc-block-digest"]) if "warc-block-digest" in headers else None
        rtype = headers.get("warc-type", "").lower()
        pd = headers.get("warc-payload-digest")
        self.payload_want = _parse_digest(pd) if pd and rtype != "revisit" else None
        self.claim: PayloadClaim | None = None
        if rtype == "revisit" and PAYLOAD_ARTIFACT in headers:
            if not pd:
                raise WarcFormatError(f"record {number}: names payload artifact but carries no WARC-Payload-Digest")
            alg, raw = _parse_digest(pd)
            length = headers.get(PAYLOAD_LENGTH)
            if length is not None and not length.isdigit():
                raise WarcFormatError(f"record {number}: bad {PAYLOAD_LENGTH} {length[:20]!r}")
            self.claim = PayloadClaim(f"record {number} ({self.rid})", headers.get("warc-target-uri", ""),
                                      headers[PAYLOAD_ARTIFACT], alg, raw, int(length) if length is not None else None)
        self.http = headers.get("content-type", "").lower().startswith("application/http")
        self.pool = pool
        self.block = Lane(hashlib.new(self.block_want[0]), pool) if self.block_want else None
        self.payload: Any = None
        self.shared = False  # payload == block, same algorithm: reuse the block hash
        self.head = bytearray()  # HTTP header bytes until the blank line
        self.in_head = False
        self.chunked = False
        if self.payload_want:
            if self.http:
                self.in_head = True
            elif self.block_want and self.block_want[0] == self.payload_want[0]:
                self.shared = True
            else:
                self.payload = Lane(hashlib.new(self.payload_want[0]), pool)

    def feed(self, data: memoryview) -> None:
        if self.block is not None:
            self.block.update(data)
        if self.in_head:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                if len(self.head) > MAX_HEADER:
                    raise WarcFormatError(f"record {self.number}: HTTP header longer than {MAX_HEADER} bytes")
                return
            assert self.payload_want is not None
            headers = bytes(self.head[:end]).lower()
            self.chunked = b"\ntransfer-encoding: chunked" in headers or b"\ntransfer-encoding:chunked" in headers
            self.payload = Lane(hashlib.new(self.payload_want[0]), self.pool)
            self.payload.update(bytes(self.head[end + 4:]))
            self.head = bytearray()
            self.in_head = False
        elif self.payload is not None:
            self.payload.update(data)

    def finish(self, out: WarcSummary) -> None:
        where = f"record {self.number} ({self.rid})"
        if self.claim is not None:
            out.claims.append(self.claim)
        if self.block_want is None and self.payload_want is None:
            out.no_digest += 1
        if self.block_want is not None:
            assert self.block is not None
            got = self.block.digest()
            if got != self.block_want[1]:
                out.errors.append(f"{where}: WARC-Block-Digest does not match the block")
            else:
                out.block_checked += 1
        if self.payload_want is None:
            return
        if self.in_head:
            # An HTTP block without the blank line: the payload is empty.
            got = hashlib.new(self.payload_want[0]).digest()
        elif self.shared:
            got = self.block.digest() if self.block is not None else b""
        else:
            got = self.payload.digest()
        if got == self.payload_want[1]:
            out.payload_checked += 1
        elif self.chunked:
            out.not_comparable += 1
        else:
            out.errors.append(f"{where}: WARC-Payload-Digest does not match the payload")


class WarcChecker:
    """Feed raw file bytes with ``feed``; ``close`` returns the summary (never raises).

    With ``pool`` (two or more threads), the block and payload digests of
    large records are computed on it while this thread inflates and parses.
    """

    def __init__(self, pool: Executor | None = None) -> None:
        self.pool = pool
        self.summary = WarcSummary()
        self._gzip: bool | None = None
        self._z: Any = None
        self._in = 0
        self._out = 0
        self._buf = bytearray()  # undecided bytes: a header in progress, or a trailer
        self._rec: _Record | None = None
        self._trailer = 0  # CRLFs still expected after a block
        self._failed: str | None = None
        self._member_open = False  # a gzip member has begun and not yet ended

    # -- raw bytes -> decompressed stream -------------------------------------

    def feed(self, data: bytes) -> None:
        if self._failed:
            return
        try:
            self._feed(data)
        except WarcFormatError as e:
            self._fail(str(e))

    def _fail(self, why: str) -> None:
        self._failed = why
        self.summary.errors.append(f"malformed WARC after {self.summary.records} record(s): {why}")

    def _feed(self, data: bytes) -> None:
        if self._gzip is None:
            if not data:
                return
            self._gzip = data[:1] == b"\x1f"
            if self._gzip:
                self._z = zlibx.decompressobj(31)
        if not self._gzip:
            self._in += len(data)
            self._parse(memoryview(data))
            return
        # Small input slices: when max_length stops zlib, unconsumed_tail is a fresh copy
        # of the rest of the input it was given, so a whole chunk would be copied again.
        mv = memoryview(data)
        for i in range(0, len(mv), IN_SLICE):
            self._in += len(mv[i : i + IN_SLICE])
            self._inflate(mv[i : i + IN_SLICE])

    def _inflate(self, src: Any) -> None:
        while src:
            self._member_open = True
            try:
                out = self._z.decompress(src, OUT_CHUNK)
            except zlibx.error as e:
                raise WarcFormatError(f"damaged gzip data ({e})") from None
            self._inflated(out)
            if self._z.eof:
                # gzip-per-record: the next member starts in unused_data.
                src = self._z.unused_data
                self._z = zlibx.decompressobj(31)
                self._member_open = False
                if src[:1] not in (b"", b"\x1f"):
                    raise WarcFormatError("bytes after a gzip member are not another gzip member")
            else:
                src = self._z.unconsumed_tail
        # The zlib object may still hold output it could not hand out (max_length).
        while self._z.unconsumed_tail:
            self._inflated(self._z.decompress(self._z.unconsumed_tail, OUT_CHUNK))

    def _inflated(self, out: bytes) -> None:
        self._out += len(out)
        if self._out > RATIO_FLOOR and self._out > MAX_RATIO * self._in:
            raise WarcFormatError(f"decompresses more than {MAX_RATIO}:1 (bomb?)")
        if out:
            self._parse(memoryview(out))

    # -- decompressed stream -> records -----------------------------------------

    def _parse(self, mv: memoryview) -> None:
        while len(mv):
            rec = self._rec
            if rec is not None:
                n = min(rec.left, len(mv))
                if n:
                    rec.feed(mv[:n])
                    rec.left -= n
                    mv = mv[n:]
                if rec.left == 0:
                    rec.finish(self.summary)
                    self._rec = None
                    self._trailer = 4
                continue
            if self._trailer:
                n = min(self._trailer, len(mv))
                want = b"\r\n\r\n"[4 - self._trailer : 4 - self._trailer + n]
                if bytes(mv[:n]) != want:
                    raise WarcFormatError(f"record {self.summary.records}: block is not followed by CRLF CRLF")
                self._trailer -= n
                mv = mv[n:]
                continue
            # A header block in progress: buffer at most MAX_HEADER + 4 bytes of it.
            old = len(self._buf)
            self._buf += mv[: MAX_HEADER + 4 - old]
            end = self._buf.find(b"\r\n\r\n", max(0, old - 3))
            if end < 0:
                if len(self._buf) >= MAX_HEADER + 4:
                    raise WarcFormatError("WARC header longer than 64 KiB")
                return  # all of mv is buffered
            head = bytes(self._buf[:end])
            mv = mv[end + 4 - old :]
            self._buf = bytearray()
            self._begin(head)

    def _begin(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        if not lines[0].startswith(b"WARC/"):
            raise WarcFormatError(f"expected a WARC/ version line, found {lines[0][:20]!r}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                raise WarcFormatError(f"malformed WARC header line {line[:40]!r}")
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        self.summary.records += 1
        self._rec = _Record(headers, self.summary.records, self.pool)
        if self._rec.left == 0:
            self._rec.finish(self.summary)
            self._rec = None
            self._trailer = 4

    def close(self) -> WarcSummary:
        if not self._failed:
            if self._member_open:
                self._fail("gzip stream ends in the middle of a member (truncated)")
            elif self._rec is not None or self._trailer or self._buf:
                self._fail("file ends in the middle of a record (truncated)")
            elif self.summary.records == 0:
                self._fail("no WARC records")
        del self.summary.errors[MAX_ERRORS:]
        return self.summary


def check_warc_bytes(data: bytes) -> WarcSummary:
    """Convenience for tests: check a whole WARC held in memory."""
    c = WarcChecker()
    for i in range(0, len(data), 1 << 16):
        c.feed(data[i : i + (1 << 16)])
    return c.close()
