"""Record offsets and heads of a gzip-per-record WARC, taken from the bytes as they stream past.

Export feeds each WARC through ``WarcScan`` while it copies it into the case
file, so the CDXJ index (``evidence.cdxj``) needs no second read: the scan
notes where each gzip member starts and keeps the first ``HEAD`` bytes of its
record (WARC and HTTP headers), inflating the rest only to find the member's
end. Light on purpose (zlib only): ``evidence.case`` imports it, and the
verifier imports ``evidence.case``.

``zlibx`` is zlib-ng when installed (same API as ``zlib``; its SIMD inflate
and CRC-32 cost a third and a tenth of stock zlib's on a large WARC), else
the standard ``zlib``: export and verify take their inflate and CRC from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

try:
    from zlib_ng import zlib_ng as zlibx
except ImportError:  # optional speed-up: stock zlib gives the same bytes, slower
    import zlib as zlibx  # type: ignore[no-redef]

HEAD = 64 << 10  # WARC + HTTP header bytes kept per record
OUT_CHUNK = 4 << 20
IN_SLICE = 512 << 10


@dataclass
class WarcScan:
    """Record offsets and heads of a gzip-per-record WARC, fed as it is copied."""

    ok: bool = True  # False: not readable this way (cdxj-indexer indexes it instead)
    records: list[tuple[int, int, bytes]] = field(default_factory=list)  # (offset, length, head)
    _z: Any = None
    _pos: int = 0  # compressed bytes consumed
    _start: int = 0
    _head: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> None:
        if not self.ok:
            return
        try:
            self._feed(data)
        except zlibx.error:
            self.ok = False

    def _feed(self, data: bytes) -> None:
        # Small input slices: when max_length stops zlib, unconsumed_tail is a fresh copy
        # of the rest of the input it was given, so a whole chunk would be copied again.
        mv = memoryview(data)
        for i in range(0, len(mv), IN_SLICE):
            self._inflate(mv[i : i + IN_SLICE])

    def _inflate(self, src: Any) -> None:
        while src:
            if self._z is None:
                if src[:1] != b"\x1f":
                    self.ok = False
                    return
                self._z = zlibx.decompressobj(31)
                self._start = self._pos
                self._head = bytearray()
            z = self._z
            out = z.decompress(src, OUT_CHUNK)
            rest = z.unused_data if z.eof else z.unconsumed_tail
            self._pos += len(src) - len(rest)
            if len(self._head) < HEAD:
                self._head += out[: HEAD - len(self._head)]
            if z.eof:
                self._end_member()
            src = rest

    def _end_member(self) -> None:
        self.records.append((self._start, self._pos - self._start, bytes(self._head)))
        self._z = None
        self._head = bytearray()

    def close(self) -> None:
        # zlib may hold output it could not hand out (max_length) with no input left.
        while self.ok and self._z is not None:
            out = self._z.decompress(b"", OUT_CHUNK)
            if self._z.eof:
                self._end_member()
            elif not out:
                break
        if self._z is not None or not self.records:
            self.ok = False
