"""HLS playlists (RFC 8216), as much as a recorder needs: no IO here.

A recorder does not play the stream, it keeps it: so parsing is lenient
(unknown tags are ignored, never fatal) and only what decides *what to
fetch next* is read: variants of a master playlist, and the media
sequence, segment URIs, durations, the init section (``EXT-X-MAP``) and
the end marker of a media playlist. Durations are kept in milliseconds
because canonical JSON (our record format) has no floats.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urljoin

from evidence.errors import CaptureError

_ATTR = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)')


def _attrs(text: str) -> dict[str, str]:
    return {k: v.strip('"') for k, v in _ATTR.findall(text)}


def _ms(seconds: str) -> int:
    try:
        return max(0, round(float(seconds.strip()) * 1000))
    except ValueError:
        return 0


@dataclass(frozen=True)
class Variant:
    uri: str
    bandwidth: int
    resolution: str | None = None


@dataclass(frozen=True)
class Segment:
    """One media segment; ``seq`` is its media sequence number (RFC 8216 6.3.2)."""

    seq: int
    uri: str
    duration_ms: int
    init_uri: str | None = None
    discontinuity: bool = False


@dataclass
class MediaPlaylist:
    target_duration_ms: int
    media_sequence: int
    segments: list[Segment] = field(default_factory=list)
    ended: bool = False


@dataclass
class MasterPlaylist:
    variants: list[Variant]

    def best(self) -> Variant:
        """The highest-bandwidth variant: evidence wants the most detail, not the smoothest play."""
        return max(self.variants, key=lambda v: v.bandwidth)


def parse(text: str, base_url: str) -> MediaPlaylist | MasterPlaylist:
    """Parse a playlist body fetched from ``base_url``; URIs come back absolute."""
    lines = [ln.strip() for ln in text.replace("\r\n", "\n").split("\n")]
    if not lines or lines[0].lstrip("\ufeff") != "#EXTM3U":
        raise CaptureError(f"{base_url} is not an HLS playlist (no #EXTM3U header)")
    if any(ln.startswith("#EXT-X-STREAM-INF") for ln in lines):
        return _master(lines, base_url)
    return _media(lines, base_url)


def _master(lines: list[str], base: str) -> MasterPlaylist:
    variants: list[Variant] = []
    pending: dict[str, str] | None = None
    for ln in lines:
        if ln.startswith("#EXT-X-STREAM-INF:"):
            pending = _attrs(ln.partition(":")[2])
        elif ln and not ln.startswith("#") and pending is not None:
            try:
                bw = int(pending.get("BANDWIDTH", "0"))
            except ValueError:
                bw = 0
            variants.append(Variant(urljoin(base, ln), bw, pending.get("RESOLUTION")))
            pending = None
    if not variants:
        raise CaptureError(f"master playlist {base} lists no variant streams")
    return MasterPlaylist(variants)


def _media(lines: list[str], base: str) -> MediaPlaylist:
    target = 0
    seq = 0
    ended = False
    segments: list[Segment] = []
    duration: int | None = None
    init: str | None = None
    disc = False
    for ln in lines:
        if ln.startswith("#EXT-X-TARGETDURATION:"):
            target = _ms(ln.partition(":")[2])
        elif ln.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            try:
                seq = int(ln.partition(":")[2])
            except ValueError:
                seq = 0
        elif ln.startswith("#EXTINF:"):
            duration = _ms(ln.partition(":")[2].split(",", 1)[0])
        elif ln.startswith("#EXT-X-MAP:"):
            uri = _attrs(ln.partition(":")[2]).get("URI")
            init = urljoin(base, uri) if uri else None
        elif ln.startswith("#EXT-X-DISCONTINUITY") and not ln.startswith("#EXT-X-DISCONTINUITY-"):
            disc = True
        elif ln.startswith("#EXT-X-ENDLIST"):
            ended = True
        elif ln and not ln.startswith("#"):
            segments.append(Segment(seq + len(segments), urljoin(base, ln), duration or 0, init, disc))
            duration = None
            disc = False
    # RFC 8216 4.3.3.1 makes TARGETDURATION mandatory; a live recorder still
    # needs a poll period if a server forgets it.
    if not target:
        target = max((s.duration_ms for s in segments), default=0) or 6000
    return MediaPlaylist(target, seq, segments, ended)


def looks_like_playlist(url: str, content_type: str | None) -> bool:
    ct = (content_type or "").split(";")[0].strip().lower()
    return ct in ("application/vnd.apple.mpegurl", "application/x-mpegurl", "audio/mpegurl") or url.split(
        "?"
    )[0].lower().endswith(".m3u8")
