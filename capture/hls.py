"""HLS playlists (RFC 8216), as much as a recorder needs: no IO here.

A recorder does not play the stream, it keeps it: so parsing is lenient
(unknown tags are ignored, never fatal) and only what decides *what to
fetch next* is read: variants of a master playlist, and the media
sequence, segment URIs, durations, the init section (``EXT-X-MAP``), the
key of each segment (``EXT-X-KEY``), the end marker, and for Low-Latency HLS
(RFC 8216bis) the partial segments (``EXT-X-PART``), the preload hint and
whether the server holds blocking reloads (``EXT-X-SERVER-CONTROL``).
Durations are kept in milliseconds because canonical JSON (our record
format) has no floats.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

from ledger.errors import CaptureError

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
class Key:
    """``EXT-X-KEY``: how the segments after it are encrypted (RFC 8216 4.3.2.4)."""

    method: str  # NONE, AES-128, SAMPLE-AES, SAMPLE-AES-CTR, ...
    uri: str | None = None
    iv: bytes | None = None
    keyformat: str = "identity"

    @property
    def decodable(self) -> bool:
        """Whole-segment AES-128 with a key we can fetch; SAMPLE-AES and DRM key systems are not."""
        return self.method == "AES-128" and self.keyformat == "identity" and bool(self.uri)

    def summary(self) -> dict[str, str | None]:
        return {
            "method": self.method,
            "uri": self.uri,
            "keyformat": self.keyformat,
            "iv": self.iv.hex() if self.iv else None,
        }


@dataclass(frozen=True)
class Part:
    """``EXT-X-PART``: a partial segment, published before its whole segment is."""

    uri: str
    duration_ms: int
    independent: bool = False
    byterange: str | None = None


@dataclass(frozen=True)
class Segment:
    """One media segment; ``seq`` is its media sequence number (RFC 8216 6.3.2)."""

    seq: int
    uri: str
    duration_ms: int
    init_uri: str | None = None
    discontinuity: bool = False
    key: Key | None = None
    #: the partial segments it was published as, when the playlist still lists them
    parts: tuple[Part, ...] = ()


@dataclass
class MediaPlaylist:
    target_duration_ms: int
    media_sequence: int
    segments: list[Segment] = field(default_factory=list)
    ended: bool = False
    #: parts of the segment still being published (sequence ``next_seq``)
    parts: list[Part] = field(default_factory=list)
    part_target_ms: int = 0
    can_block_reload: bool = False
    preload_hint: str | None = None
    #: the key in force for the segment being published
    key: Key | None = None

    @property
    def next_seq(self) -> int:
        return self.media_sequence + len(self.segments)


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
    key: Key | None = None
    parts: list[Part] = []
    part_target = 0
    can_block = False
    hint: str | None = None
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
        elif ln.startswith("#EXT-X-KEY:"):
            a = _attrs(ln.partition(":")[2])
            method = a.get("METHOD", "NONE").upper()
            key = (
                None
                if method == "NONE"
                else Key(
                    method,
                    urljoin(base, a["URI"]) if a.get("URI") else None,
                    _iv(a.get("IV")),
                    a.get("KEYFORMAT", "identity"),
                )
            )
        elif ln.startswith("#EXT-X-PART-INF:"):
            part_target = _ms(_attrs(ln.partition(":")[2]).get("PART-TARGET", "0"))
        elif ln.startswith("#EXT-X-PART:"):
            a = _attrs(ln.partition(":")[2])
            if a.get("URI"):
                parts.append(
                    Part(
                        urljoin(base, a["URI"]),
                        _ms(a.get("DURATION", "0")),
                        a.get("INDEPENDENT") == "YES",
                        a.get("BYTERANGE"),
                    )
                )
        elif ln.startswith("#EXT-X-SERVER-CONTROL:"):
            can_block = _attrs(ln.partition(":")[2]).get("CAN-BLOCK-RELOAD") == "YES"
        elif ln.startswith("#EXT-X-PRELOAD-HINT:"):
            a = _attrs(ln.partition(":")[2])
            if a.get("TYPE") == "PART" and a.get("URI") and "BYTERANGE-START" not in a:
                hint = urljoin(base, a["URI"])
        elif ln and not ln.startswith("#"):
            segments.append(
                Segment(seq + len(segments), urljoin(base, ln), duration or 0, init, disc, key, tuple(parts))
            )
            duration = None
            disc = False
            parts = []
    # RFC 8216 4.3.3.1 makes TARGETDURATION mandatory; a live recorder still
    # needs a poll period if a server forgets it.
    if not target:
        target = max((s.duration_ms for s in segments), default=0) or 6000
    return MediaPlaylist(target, seq, segments, ended, parts, part_target, can_block, hint, key)


def _iv(text: str | None) -> bytes | None:
    if not text or not text.lower().startswith("0x"):
        return None
    try:
        return bytes.fromhex(text[2:].rjust(32, "0"))[-16:]
    except ValueError:
        return None


def blocking_url(playlist_url: str, msn: int, part: int | None) -> str:
    """A blocking playlist reload (RFC 8216bis 6.2.5.2): answered once ``msn`` (and ``part``) exist."""
    sep = "&" if urlsplit(playlist_url).query else "?"
    q = f"_HLS_msn={msn}" + (f"&_HLS_part={part}" if part is not None else "")
    return playlist_url + sep + q


def looks_like_playlist(url: str, content_type: str | None) -> bool:
    ct = (content_type or "").split(";")[0].strip().lower()
    return ct in ("application/vnd.apple.mpegurl", "application/x-mpegurl", "audio/mpegurl") or url.split(
        "?"
    )[0].lower().endswith(".m3u8")
