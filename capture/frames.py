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
import struct
import zlib
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
#: zlib level of stored frames (still lossless). Measured on one core: at 1280x720, level 1 takes
#: ~0.7x the CPU of level 3 for ~1.1x the bytes on a busy picture (about the same on a test card);
#: at 320x180 the two cost the same. Pillow's default 6 costs ~2x level 3 for ~10 % smaller files.
PNG_LEVEL = 1
#: rows of a frame filtered and compressed at a time (bounds the extra copies of a large frame)
PNG_BAND_ROWS = 64
#: compressed bytes gathered into one IDAT chunk
PNG_IDAT_BYTES = 1 << 16
#: Pillow mode -> (PNG colour type, bytes per pixel) that ``write_png`` encodes itself
_PNG_MODES = {"RGB": (2, 3), "L": (0, 1)}


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
    #: the dedupe thumbnail, where it was made anyway (``png_file``); the recorder makes its own
    thumb: bytes | None = None


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
    """Save a Pillow image as PNG, hashing the bytes as they go to disk.

    RGB and grayscale frames (what the decoder gives) are encoded here, the
    rest by Pillow. Pillow's encoder tries all five PNG filters on every row
    and keeps the best: at 320x180 that search is ~3/4 of its CPU, even at
    zlib level 0. Here every row takes the "Up" filter (PNG 9.2, type 2),
    computed for the whole image at once in C (``ImageChops.subtract_modulo``
    of the image and itself one row down): on decoded video frames the files
    come out within a few per cent of Pillow's size, for ~0.5x its CPU at
    320x180 and ~0.6x at 1280x720 (zlib is then most of it). The pixels are
    the same either way (lossless; tests decode the file again and compare).
    """
    with open(path, "wb") as f:
        hf = _HashingFile(f)
        if image.mode in _PNG_MODES:
            _png_up(image, hf)
        else:
            image.save(hf, "PNG", compress_level=PNG_LEVEL)
    return WrittenFrame(path, hf.h.hexdigest(), hf.size)


def _png_chunk(out: _HashingFile, kind: bytes, data: bytes) -> None:
    out.write(struct.pack(">I", len(data)) + kind)
    out.write(data)
    out.write(struct.pack(">I", zlib.crc32(data, zlib.crc32(kind))))


def _png_up(image: Any, out: _HashingFile) -> None:
    """8-bit RGB or gray PNG (ISO/IEC 15948): first row unfiltered, every other row "Up"-filtered."""
    from PIL import ImageChops  # Pillow is imported where frames are made, as in png_file

    color_type, bpp = _PNG_MODES[image.mode]
    w, h = image.size
    stride = w * bpp
    raw = image.tobytes()
    # Row r minus row r-1, byte by byte modulo 256; offset() wraps the last row round to the
    # top, so row 0 of ``up`` is not used: row 0 is written unfiltered (type 0).
    up = ImageChops.subtract_modulo(image, ImageChops.offset(image, 0, 1)).tobytes()
    out.write(b"\x89PNG\r\n\x1a\n")
    _png_chunk(out, b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0))
    z = zlib.compressobj(PNG_LEVEL)
    pending = bytearray()
    for start in range(0, h, PNG_BAND_ROWS):
        rows = []
        for r in range(start, min(h, start + PNG_BAND_ROWS)):
            a = r * stride
            rows.append(b"\x00" + raw[a : a + stride] if r == 0 else b"\x02" + up[a : a + stride])
        pending += z.compress(b"".join(rows))
        if len(pending) >= PNG_IDAT_BYTES:
            _png_chunk(out, b"IDAT", bytes(pending))
            pending.clear()
    pending += z.flush()
    _png_chunk(out, b"IDAT", bytes(pending))
    _png_chunk(out, b"IEND", b"")


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


#: a group of pictures buffered beyond this many bytes is decoded as it comes (no keyframes
#: flagged, or a very long GOP): memory stays bounded, only the saving is lost for that GOP
MAX_GOP_BYTES = 32 << 20


#: a GOP with more kept frames than this (a short --frame-interval) is decoded whole, frames
#: yielded as they come, rather than held until the GOP is checked
MAX_KEPT_PER_GOP = 8


class _Mismatch(Exception):
    """The decoder did not give the frames the packets announced: that GOP is decoded whole instead."""


class Sampler:
    """Decode segments in order and yield one frame per ``interval_ms`` of media time.

    The rule (``_pick``) is applied to every frame's PTS in presentation order,
    exactly as if every frame were decoded; but the PTS are known from the
    packets before any decoding, so a group of pictures (keyframe to the next
    keyframe) is buffered as packets, the rule is run on its PTS, and only
    the packets up to the last kept frame (decode order) are decoded; then
    the decoder is drained and reset for the next GOP. With one frame a second
    and a keyframe a second, that is one decoded frame in ten at 10 fps.

    Exactness: a kept frame depends only on packets before it in decode order,
    all of which are sent. Where the packets cannot tell (no PTS, the decoder
    yields other PTS than announced or drops a kept frame, e.g. a segment that
    does not start on a keyframe) that GOP is decoded whole with the rule
    applied to what the decoder gives, as before. An open GOP (frames after
    the keyframe that show before it, referring to the GOP before) cannot be
    cut from its predecessor: from the first one seen, the container is decoded
    continuously, every frame, the GOP before it re-fed to the decoder first.
    """

    def __init__(self, interval_ms: int):
        try:  # PyAV is optional (only stream capture needs it): imported where it is used
            from av.video.reformatter import VideoReformatter
        except ImportError as e:
            raise EnvironmentProblem("decoding stream frames needs PyAV: pip install av") from e
        self.interval_ms = max(1, interval_ms)
        self.next_ms: int | None = None
        #: frames the decoder produced, and packets it was given (what the sampling cost)
        self.decoded = 0
        self.sent = 0
        self._open = False  # an open GOP was seen in this container: every packet is decoded
        # One converter for every frame: VideoFrame.to_image() sets up a new swscale context
        # each call, ~6x the CPU at 320x180 for the same RGB bytes (measured, PyAV 18).
        self._rgb = VideoReformatter()
        self._skip: set[int] = set()  # PTS of frames re-decoded only as references (already sampled)

    def _pick(self, t: int) -> bool:
        """Is the frame at media time ``t`` (ms) kept? Advances the media clock if so."""
        if self.next_ms is not None and t < self.next_ms - 2 * self.interval_ms:
            self.next_ms = None  # timestamps went back: a discontinuity or a restarted encoder
        if self.next_ms is None:
            self.next_ms = t
        if t < self.next_ms:
            return False
        while self.next_ms <= t:
            self.next_ms += self.interval_ms
        return True

    def frames(self, source: Path | BinaryIO) -> Iterator[Decoded]:
        import av

        container = av.open(source if not isinstance(source, Path) else str(source), "r")
        try:
            if not container.streams.video:
                return
            stream = container.streams.video[0]
            self._open, self._skip = False, set()
            gop: list[Any] = []
            size = 0
            prev: list[Any] = []  # the GOP before, for an open GOP's leading frames
            continuous = False  # decoding every packet as it comes (open GOP, or a GOP too long)
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue  # the demuxer's end-of-stream packet: the decoder is drained below
                if continuous:
                    if packet.is_keyframe and not self._open:
                        # a GOP too long to buffer ended: back to sampling by packets
                        yield from self._drain(stream)
                        continuous = False
                    else:
                        yield from self._send(stream, packet)
                        continue
                if packet.is_keyframe and gop:
                    yield from self._gop(stream, gop)
                    prev, gop, size = gop, [], 0
                gop.append(packet)
                size += packet.size
                if len(gop) > 1 and packet.pts is not None and gop[0].is_keyframe and gop[0].pts is not None:
                    if packet.pts < gop[0].pts:
                        # Open GOP: its leading frames need the GOP before in the decoder.
                        self._open = True
                        self._skip = {p.pts for p in prev}
                        stream.codec_context.flush_buffers()
                        for p in [*prev, *gop]:
                            yield from self._send(stream, p)
                        gop, size, continuous = [], 0, True
                        continue
                if size > MAX_GOP_BYTES:
                    for p in gop:
                        yield from self._send(stream, p)
                    gop, size, continuous = [], 0, True
            if continuous:
                yield from self._drain(stream)
            elif gop:
                yield from self._gop(stream, gop)
        finally:
            self._open, self._skip = False, set()
            container.close()

    def _image(self, frame: Any) -> Any:
        return self._rgb.reformat(frame, format="rgb24").to_image()

    def _decoded(self, frame: Any, tb: Fraction | None) -> Decoded | None:
        """The rule applied to one decoded frame (every-frame decoding)."""
        self.decoded += 1
        if frame.pts is None or tb is None or frame.pts in self._skip:
            return None
        t = int(frame.pts * tb * 1000)
        if not self._pick(t):
            return None
        return Decoded(self._image(frame), int(frame.pts), _tb(tb), t)

    def _send(self, stream: Any, packet: Any) -> Iterator[Decoded]:
        self.sent += 1
        for frame in stream.decode(packet):
            d = self._decoded(frame, frame.time_base)
            if d is not None:
                yield d

    def _drain(self, stream: Any) -> Iterator[Decoded]:
        # Frames drained with decode(None) carry no time base (no packet brought one): the stream's.
        for frame in stream.decode(None):
            d = self._decoded(frame, frame.time_base or stream.time_base)
            if d is not None:
                yield d
        stream.codec_context.flush_buffers()

    def _gop(self, stream: Any, gop: list[Any]) -> Iterator[Decoded]:
        """One buffered GOP: the rule on its packets' PTS, then only the packets it needs decoded."""
        tb = gop[0].time_base
        if tb is None or any(p.pts is None or p.time_base != tb for p in gop):
            yield from self._whole(stream, gop)
            return
        saved = self.next_ms
        keep: set[int] = set()
        for pts in sorted(p.pts for p in gop):
            if self._pick(int(pts * tb * 1000)):
                keep.add(pts)
        if not keep:
            return  # nothing of this GOP is sampled: not one packet decoded
        if len(keep) > MAX_KEPT_PER_GOP:
            # Kept frames are held until the GOP is checked; this many would be a lot of memory
            # (1080p RGB is 6 MB a frame) and most of the GOP is decoded for them anyway.
            self.next_ms = saved
            yield from self._whole(stream, gop)
            return
        last = max(i for i, p in enumerate(gop) if p.pts in keep)
        try:
            out = self._decode_kept(stream, gop[: last + 1], keep, tb)
        except _Mismatch:
            self.next_ms = saved
            yield from self._whole(stream, gop)
            return
        yield from out

    def _decode_kept(self, stream: Any, packets: list[Any], keep: set[int], tb: Fraction) -> list[Decoded]:
        # Only the kept frames are held (as images): a GOP of decoded frames would be
        # hundreds of MB at 1080p; the others are only checked against the packets.
        announced = {p.pts for p in packets}
        got: dict[int, Any] = {}

        def take(frames: Any) -> None:
            for f in frames:
                self.decoded += 1
                if f.pts is None or f.pts not in announced or (f.time_base or stream.time_base) != tb:
                    raise _Mismatch
                if f.pts in keep and f.pts not in got:
                    got[f.pts] = self._image(f)

        try:
            for p in packets:
                self.sent += 1
                take(stream.decode(p))
            take(stream.decode(None))
        finally:
            stream.codec_context.flush_buffers()
        if len(got) != len(keep):
            raise _Mismatch  # a kept frame did not come out (dropped, or PTS not as the packets said)
        return [Decoded(got[pts], int(pts), _tb(tb), int(pts * tb * 1000)) for pts in sorted(got)]

    def _whole(self, stream: Any, gop: list[Any]) -> Iterator[Decoded]:
        """Every packet of the GOP decoded, the rule on each frame the decoder gives (no shortcut)."""
        for p in gop:
            yield from self._send(stream, p)
        yield from self._drain(stream)


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
