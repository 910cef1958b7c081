"""One PNG from screenshot tiles, written as they come.

Chromium cannot draw a screenshot taller than its texture limit (16,384
device pixels), so a tall page is shot in tiles. ``StitchedPng`` appends each
tile's rows to a single PNG file as it arrives: only one tile is ever decoded
in memory, never the whole picture.

The PNG is 8-bit RGB, rows unfiltered, one zlib stream split over IDAT
chunks (PNG specification, sections 11.2.2 and 10), so any PNG reader opens
it. The size in the header is written when the file is finished: a device
scale factor such as 2.625 makes a tile's height in device pixels known only
once Chromium has drawn it.
"""

from __future__ import annotations

import struct
import zlib
from io import BytesIO
from pathlib import Path
from typing import BinaryIO

from PIL import Image

SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: compressed bytes per IDAT chunk
IDAT_SIZE = 1 << 20
#: rows converted at a time, so a tile's raw bytes are never copied whole
BAND_ROWS = 256
#: where IHDR's data starts: after the signature, the chunk length and its type
IHDR_AT = len(SIGNATURE) + 8


class StitchedPng:
    """A PNG filled top to bottom by ``add``; ``close`` finishes it."""

    def __init__(self, path: Path):
        self.path = path
        self.width = 0
        self.rows = 0
        self.tiles = 0
        # Level 1: a third of level 6's time on screenshot rows, for somewhat larger files.
        self._z = zlib.compressobj(1)
        self._pending = bytearray()
        self._f: BinaryIO = open(path, "wb")
        self._f.write(SIGNATURE)
        self._chunk(b"IHDR", self._ihdr())  # placeholder until the size is known

    def _ihdr(self) -> bytes:
        return struct.pack(">IIBBBBB", self.width, self.rows, 8, 2, 0, 0, 0)

    def _chunk(self, kind: bytes, data: bytes) -> None:
        self._f.write(struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data)))

    def _compressed(self, b: bytes) -> None:
        self._pending += b
        while len(self._pending) >= IDAT_SIZE:
            self._chunk(b"IDAT", bytes(self._pending[:IDAT_SIZE]))
            del self._pending[:IDAT_SIZE]

    def add(self, png: bytes, rows: int | None = None) -> None:
        """Append one tile (a PNG as Chromium returns it), or its top ``rows`` rows."""
        with Image.open(BytesIO(png)) as img:
            tile = img.convert("RGB")
        if not self.width:
            self.width = tile.width
        elif tile.width != self.width:
            raise ValueError(f"a tile is {tile.width} px wide, the first one was {self.width} px")
        rows = tile.height if rows is None else min(rows, tile.height)
        stride = 3 * self.width
        for top in range(0, rows, BAND_ROWS):
            band = tile.crop((0, top, self.width, min(rows, top + BAND_ROWS))).tobytes()
            out = bytearray()
            for i in range(0, len(band), stride):
                out += b"\x00"  # filter type None
                out += band[i : i + stride]
            self._compressed(self._z.compress(bytes(out)))
        self.rows += rows
        self.tiles += 1

    def close(self) -> None:
        """Finish the file and write its size into the header."""
        try:
            if not self.rows:
                raise ValueError("no tile was drawn")
            self._compressed(self._z.flush())
            if self._pending:
                self._chunk(b"IDAT", bytes(self._pending))
                self._pending.clear()
            self._chunk(b"IEND", b"")
            data = self._ihdr()
            self._f.seek(IHDR_AT)
            self._f.write(data + struct.pack(">I", zlib.crc32(b"IHDR" + data)))
        finally:
            self._f.close()

    def abort(self) -> None:
        self._f.close()
        self.path.unlink(missing_ok=True)
