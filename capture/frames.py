"""Frames of a stream: decoded at an interval (PyAV), written as PNG, hashed as written.

Sampling follows the *media* clock (presentation timestamps), not the wall
clock: a frame is kept when its PTS reaches the next multiple of the
interval, so the frames say where in the stream they are, however fast or
late the segments arrived.

Dedupe compares a small grayscale thumbnail with the last stored frame and
calls two frames the same only if no thumbnail pixel differs by more than a
few levels. That absorbs encoder noise on a still picture but still sees a
changed digit in a price tag: for evidence, a missed change is worse than a
duplicate, so the test errs towards "different".
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

from ledger.digest import sha256_file
from ledger.errors import EnvironmentProblem

THUMB_WIDTH = 96
#: a thumbnail pixel may differ by this many gray levels (of 255) and still count as the same
SAME_THRESHOLD = 10
PNG_LEVEL = 3  # zlib level: 6 (Pillow's default) costs ~2x the CPU for ~10% smaller files


class _HashingFile:
    def __init__(self, f: BinaryIO):
        self.f = f
        self.h = hashlib.sha256()
        self.size = 0

    def write(self, b: bytes) -> int:
        self.h.update(b)
        self.size += len(b)
        return self.f.write(b)

    def flush(self) -> None:
        self.f.flush()


@dataclass(frozen=True)
class WrittenFrame:
    path: Path
    sha256: str
    size: int
    thumb: bytes


def thumbnail(image: Any) -> bytes:
    w, h = image.size
    tw = min(THUMB_WIDTH, w)
    th = max(1, round(h * tw / w))
    return image.convert("L").resize((tw, th)).tobytes()


def same_picture(a: bytes | None, b: bytes) -> bool:
    if a is None or len(a) != len(b):
        return False
    return max(abs(x - y) for x, y in zip(a, b)) <= SAME_THRESHOLD


def write_png(image: Any, path: Path) -> WrittenFrame:
    """Save a Pillow image as PNG, hashing the bytes as they go to disk."""
    with open(path, "wb") as f:
        hf = _HashingFile(f)
        image.save(hf, "PNG", compress_level=PNG_LEVEL)
    return WrittenFrame(path, hf.h.hexdigest(), hf.size, thumbnail(image))


def png_file(path: Path) -> WrittenFrame:
    """Hash a PNG someone else wrote (a browser screenshot) and thumbnail it."""
    from PIL import Image

    sha, size = sha256_file(path)
    with Image.open(path) as im:
        thumb = thumbnail(im)
    return WrittenFrame(path, sha, size, thumb)


@dataclass(frozen=True)
class Decoded:
    image: Any  # PIL.Image
    pts: int
    time_base: str
    time_ms: int


class Sampler:
    """Decode segments in order and yield one frame per ``interval_ms`` of media time."""

    def __init__(self, interval_ms: int):
        try:
            import av  # noqa: F401
        except ImportError as e:
            raise EnvironmentProblem("decoding stream frames needs PyAV: pip install av") from e
        self.interval_ms = max(1, interval_ms)
        self.next_ms: int | None = None

    def frames(self, source: Path | BinaryIO) -> Iterator[Decoded]:
        import av

        container = av.open(source if not isinstance(source, Path) else str(source), "r")
        try:
            if not container.streams.video:
                return
            stream = container.streams.video[0]
            for frame in container.decode(stream):
                if frame.pts is None or frame.time_base is None:
                    continue
                t = int(frame.pts * frame.time_base * 1000)
                if self.next_ms is not None and t < self.next_ms - 2 * self.interval_ms:
                    self.next_ms = None  # timestamps went back: a discontinuity or a restarted encoder
                if self.next_ms is None:
                    self.next_ms = t
                if t < self.next_ms:
                    continue
                while self.next_ms <= t:
                    self.next_ms += self.interval_ms
                yield Decoded(frame.to_image(), int(frame.pts), _tb(frame.time_base), t)
        finally:
            container.close()


def _tb(tb: Fraction) -> str:
    return f"{tb.numerator}/{tb.denominator}"


#: top-level boxes a CMAF/fMP4 media segment may start with (ISO/IEC 23000-19, 14496-12)
FRAGMENT_START = ("styp", "sidx", "moof", "emsg", "prft")


def mp4_boxes(path: Path, limit: int = 16) -> list[str]:
    """Types of the first top-level ISO BMFF boxes of a file; [] if it does not parse as one."""
    out: list[str] = []
    size = path.stat().st_size
    with open(path, "rb") as f:
        pos = 0
        while pos + 8 <= size and len(out) < limit:
            f.seek(pos)
            head = f.read(16)
            n = int.from_bytes(head[:4], "big")
            kind = head[4:8]
            if not kind.isascii() or not kind.decode("ascii").isprintable():
                return []
            if n == 1:
                n = int.from_bytes(head[8:16], "big")
            elif n == 0:
                n = size - pos
            if n < 8:
                return []
            out.append(kind.decode("ascii"))
            pos += n
    return out


def is_init_section(boxes: list[str]) -> bool:
    """An fMP4 init section (``EXT-X-MAP``): a movie header and no media fragments."""
    return "moov" in boxes and "moof" not in boxes and "mdat" not in boxes


def joined(init: Path, segment: Path, dest: Path) -> Path:
    """An fMP4 segment is decodable only after its init section: write both to one file."""
    with open(dest, "wb") as out:
        for p in (init, segment):
            with open(p, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 16)
    return dest
