"""MPEG-DASH live (ISO/IEC 23009-1): the MPD as a recorder reads it, and the loop that follows it.

Only what decides *what to fetch next* is read: ``type`` (dynamic = live),
``availabilityStartTime``, ``minimumUpdatePeriod``, ``timeShiftBufferDepth``,
the last Period, and per adaptation set a ``SegmentTemplate`` (on the set or
the representation) with ``$Number$``/``$Time$``/``$RepresentationID$``/
``$Bandwidth$``, either a ``SegmentTimeline`` or a fixed ``duration`` (then
the available segment numbers follow from ``availabilityStartTime`` and the
wall clock). The highest-bandwidth video representation and the
highest-bandwidth representation of the first audio set are recorded; every
segment and init segment is archived as served, and video frames are decoded
from init + segment.

The MPD is parsed with the standard library's expat (2.4+ refuses entity
expansion attacks; ElementTree fetches no external entities).
"""

from __future__ import annotations

import math
import re
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from ledger.errors import CaptureError

from .fetch import Exchange, Fetcher
from .frames import Sampler, joined
from .recorder import Recorder, decode_into, get_hops, record_hops, unlink

#: consecutive failed MPD fetches before the capture gives up
MAX_MPD_ERRORS = 3
#: no new segment for this many segment durations (or update periods) means the stream stalled
STALL_PERIODS = 3
#: a computed (``duration``-based) segment that answers 404 is asked for again this many times
MISSING_RETRIES = 3
#: at the first MPD, start this many segments behind the live edge
LIVE_EDGE_SEGMENTS = 2
#: a ``duration``-based segment is asked for this long after its computed end
AVAILABILITY_MARGIN_S = 0.5

_DURATION = re.compile(
    r"^P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$"
)
_TEMPLATE = re.compile(r"\$(RepresentationID|Number|Bandwidth|Time)(?:%0(\d+)d)?\$")


def duration_s(text: str | None) -> float | None:
    """An xs:duration such as ``PT2.5S`` or ``P1DT2H``; None if absent or malformed."""
    if not text:
        return None
    m = _DURATION.match(text.strip())
    if not m:
        return None
    d, h, mi, s = (float(x) if x else 0.0 for x in m.groups())
    return d * 86400 + h * 3600 + mi * 60 + s


def _datetime_s(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.strip().replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def fill(template: str, rep_id: str, bandwidth: int, number: int | None = None, t: int | None = None) -> str:
    """Substitute a SegmentTemplate's identifiers (23009-1 5.3.9.4.4); ``$$`` is a dollar sign."""

    def one(m: re.Match[str]) -> str:
        name, width = m.group(1), m.group(2)
        value: Any = {"RepresentationID": rep_id, "Bandwidth": bandwidth, "Number": number, "Time": t}[name]
        if value is None:
            raise CaptureError(f"SegmentTemplate {template!r} uses ${name}$, which this MPD does not define")
        return f"{value:0{int(width)}d}" if width and name != "RepresentationID" else str(value)

    return _TEMPLATE.sub(one, template).replace("$$", "$")


@dataclass(frozen=True)
class DashSegment:
    track: str  # "video" or "audio"
    uri: str
    number: int | None
    time: int | None  # in the template's timescale
    start_ms: int  # media time since the Period's start
    duration_ms: int


@dataclass
class Track:
    kind: str
    rep_id: str
    bandwidth: int
    mime: str
    base: str
    media: str
    init: str | None
    timescale: int
    start_number: int
    pto: int
    duration: int | None
    #: (t, d, r) of each SegmentTimeline S element
    timeline: list[tuple[int | None, int, int]] | None

    @property
    def init_uri(self) -> str | None:
        return urljoin(self.base, fill(self.init, self.rep_id, self.bandwidth)) if self.init else None

    def segments(self, mpd: Mpd, now: float) -> list[DashSegment]:
        """Segments available at wall time ``now`` (those still in the time-shift window, for duration-based templates)."""
        out: list[DashSegment] = []
        ts = self.timescale
        if self.timeline is not None:
            t = 0
            number = self.start_number
            for i, (st, d, r) in enumerate(self.timeline):
                if st is not None:
                    t = st
                if d <= 0:
                    continue
                if r < 0:
                    # Repeat until the next S or the live edge.
                    nxt = self.timeline[i + 1][0] if i + 1 < len(self.timeline) else None
                    if nxt is None:
                        edge = mpd.media_now(now, self) if mpd.dynamic else None
                        r = max(0, math.floor((edge - t) / d) - 1) if edge is not None else 0
                    else:
                        r = max(0, math.ceil((nxt - t) / d) - 1)
                for _ in range(r + 1):
                    out.append(self._seg(number, t, d))
                    t += d
                    number += 1
            return out
        if not self.duration:
            raise CaptureError(
                f"representation {self.rep_id}: SegmentTemplate has neither SegmentTimeline nor duration"
            )
        d = self.duration
        seg_s = d / ts
        if mpd.dynamic:
            if mpd.availability_start is None:
                raise CaptureError(
                    "a dynamic MPD without availabilityStartTime: its segment numbers cannot be known"
                )
            elapsed = now - mpd.availability_start - mpd.period_start - AVAILABILITY_MARGIN_S
            last = math.floor(elapsed / seg_s) - 1
            if last < 0:
                return []
            keep = math.ceil((mpd.time_shift_s or seg_s * 10) / seg_s)
            first = max(0, last - keep + 1)
        else:
            total = mpd.duration_s or 0
            first, last = 0, math.ceil(total / seg_s) - 1
        for k in range(first, last + 1):
            out.append(self._seg(self.start_number + k, self.pto + k * d, d))
        return out

    def _seg(self, number: int, t: int, d: int) -> DashSegment:
        uri = urljoin(self.base, fill(self.media, self.rep_id, self.bandwidth, number, t))
        start = (t - self.pto) * 1000 // self.timescale
        return DashSegment(self.kind, uri, number, t, start, d * 1000 // self.timescale)


@dataclass
class Mpd:
    dynamic: bool
    availability_start: float | None
    minimum_update_s: float | None
    time_shift_s: float | None
    duration_s: float | None
    period_start: float
    tracks: list[Track] = field(default_factory=list)

    def media_now(self, now: float, track: Track) -> int | None:
        if self.availability_start is None:
            return None
        return int((now - self.availability_start - self.period_start) * track.timescale) + track.pto


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(el: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in el if _local(c.tag) == name]


def _child(el: ET.Element | None, name: str) -> ET.Element | None:
    if el is None:
        return None
    return next(iter(_children(el, name)), None)


def _base(el: ET.Element, base: str) -> str:
    b = _child(el, "BaseURL")
    return urljoin(base, b.text.strip()) if b is not None and b.text else base


def _int(v: str | None, default: int) -> int:
    try:
        return int(v) if v is not None else default
    except ValueError:
        return default


def looks_like_mpd(content_type: str, head: bytes) -> bool:
    if content_type in ("application/dash+xml", "video/vnd.mpeg.dash.mpd"):
        return True
    return b"<MPD" in head[:512] and head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith((b"<?xml", b"<MPD"))


def parse(text: str, base_url: str) -> Mpd:
    """Parse an MPD fetched from ``base_url``: CaptureError (one line) when it is not an MPD we can follow."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise CaptureError(f"{base_url} is not an MPD: not well-formed XML ({e})") from None
    if _local(root.tag) != "MPD":
        raise CaptureError(f"{base_url} is not an MPD (its root element is <{_local(root.tag)}>)")
    periods = _children(root, "Period")
    if not periods:
        raise CaptureError(f"MPD {base_url} has no Period")
    period = periods[-1]  # the live edge is in the last Period
    base = _base(period, _base(root, base_url))
    mpd = Mpd(
        dynamic=root.get("type", "static") == "dynamic",
        availability_start=_datetime_s(root.get("availabilityStartTime")),
        minimum_update_s=duration_s(root.get("minimumUpdatePeriod")),
        time_shift_s=duration_s(root.get("timeShiftBufferDepth")),
        duration_s=duration_s(root.get("mediaPresentationDuration")),
        period_start=duration_s(period.get("start")) or 0.0,
    )
    best: dict[str, Track] = {}
    audio_set: ET.Element | None = None
    for aset in _children(period, "AdaptationSet"):
        kind = _kind(aset)
        if kind is None:
            continue
        aset_base = _base(aset, base)
        for rep in _children(aset, "Representation"):
            k = kind if kind != "?" else _kind(rep)
            if k not in ("video", "audio"):
                continue
            if k == "audio":
                # One audio adaptation set (the first): others are other languages or descriptions.
                if audio_set is None:
                    audio_set = aset
                elif audio_set is not aset:
                    continue
            t = _track(k, aset, rep, _base(rep, aset_base), base_url)
            if k not in best or t.bandwidth > best[k].bandwidth:
                best[k] = t
    if "video" not in best and "audio" not in best:
        raise CaptureError(f"MPD {base_url} lists no video or audio representation")
    mpd.tracks = [best[k] for k in ("video", "audio") if k in best]
    return mpd


def _kind(el: ET.Element) -> str | None:
    ct = el.get("contentType") or (el.get("mimeType") or "").split("/")[0]
    if ct in ("video", "audio"):
        return ct
    if ct in ("text", "image", "application"):
        return None
    return "?"


def _track(kind: str, aset: ET.Element, rep: ET.Element, base: str, mpd_url: str) -> Track:
    outer, inner = _child(aset, "SegmentTemplate"), _child(rep, "SegmentTemplate")
    if outer is None and inner is None:
        what = (
            "SegmentList"
            if _child(rep, "SegmentList") is not None or _child(aset, "SegmentList") is not None
            else "no SegmentTemplate"
        )
        raise CaptureError(
            f"MPD {mpd_url}: representation {rep.get('id')} uses {what}; only SegmentTemplate is followed live"
        )
    attrs = {**(outer.attrib if outer is not None else {}), **(inner.attrib if inner is not None else {})}
    # Not `or`: an Element without children is false.
    tl_el = _child(inner, "SegmentTimeline")
    if tl_el is None:
        tl_el = _child(outer, "SegmentTimeline")
    timeline = None
    if tl_el is not None:
        timeline = [
            (
                _int(s.get("t"), -1) if s.get("t") is not None else None,
                _int(s.get("d"), 0),
                _int(s.get("r"), 0),
            )
            for s in _children(tl_el, "S")
        ]
    if not attrs.get("media"):
        raise CaptureError(
            f"MPD {mpd_url}: representation {rep.get('id')} has a SegmentTemplate without @media"
        )
    return Track(
        kind=kind,
        rep_id=rep.get("id") or "",
        bandwidth=_int(rep.get("bandwidth"), 0),
        mime=rep.get("mimeType") or aset.get("mimeType") or "",
        base=base,
        media=attrs["media"],
        init=attrs.get("initialization"),
        timescale=max(1, _int(attrs.get("timescale"), 1)),
        start_number=_int(attrs.get("startNumber"), 1),
        pto=_int(attrs.get("presentationTimeOffset"), 0),
        duration=_int(attrs.get("duration"), 0) or None,
        timeline=timeline,
    )


# -- following a live MPD --------------------------------------------------------


class _Follow:
    def __init__(self, rec: Recorder, fetcher: Fetcher):
        self.rec = rec
        self.fetcher = fetcher
        self.sampler = Sampler(int(rec.limits.frame_interval * 1000))
        self.inits: dict[str, Path | None] = {}
        #: per track: start time (ms) of the last segment archived
        self.last: dict[str, int] = {}
        self.missing: dict[str, int] = {}
        self.last_new = time.monotonic()

    def init(self, t: Track) -> Path | None:
        uri = t.init_uri
        if uri is None:
            return None
        if uri not in self.inits:
            hops = get_hops(self.rec, self.fetcher, uri)
            body = None
            if hops is not None:
                ex = record_hops(
                    self.rec, hops, segment={"track": t.kind, "init": True, "representation": t.rep_id}
                )
                if ex.ok and ex.body is not None:
                    body = ex.body
                else:
                    self.rec.log(
                        "segment",
                        f"init segment {ex.url} answered {ex.status_line}",
                        level="warning",
                        status=ex.status,
                    )
                    unlink(ex)
            self.inits[uri] = body
        return self.inits[uri]

    def fetch(self, t: Track, s: DashSegment, computed: bool) -> bool:
        """Archive one segment; False when a computed segment is not there yet (asked again later)."""
        rec = self.rec
        init = self.init(t)
        hops = get_hops(rec, self.fetcher, s.uri)
        if hops is None:
            return True
        ex = hops[-1]
        if computed and ex.status == 404 and self.missing.get(s.uri, 0) < MISSING_RETRIES:
            # Numbered from the clock: a segment a little late is not yet an error.
            self.missing[s.uri] = self.missing.get(s.uri, 0) + 1
            for h in hops:
                unlink(h)
            return False
        facts = {
            "track": t.kind,
            "representation": t.rep_id,
            "number": s.number,
            "time": s.time,
            "start_ms": s.start_ms,
            "duration_ms": s.duration_ms,
        }
        ex = record_hops(rec, hops, segment=facts)
        self.last_new = time.monotonic()
        if not ex.ok:
            rec.log(
                "segment",
                f"{ex.url} answered {ex.status_line} ({ex.size} bytes)",
                level="warning",
                status=ex.status,
            )
        elif t.kind == "video" and ex.body is not None:
            src = ex.body
            if init is not None:
                src = joined(init, ex.body, self.fetcher.tmpdir / "joined")
            try:
                decode_into(rec, self.sampler, src, s.uri, number=s.number, start_ms=s.start_ms)
            finally:
                if src != ex.body:
                    src.unlink(missing_ok=True)
        unlink(ex)
        return True

    def close(self) -> None:
        for p in self.inits.values():
            if p is not None:
                p.unlink(missing_ok=True)


def _mpd(rec: Recorder, fetcher: Fetcher, url: str, first: list[Exchange] | None) -> tuple[Mpd | None, bool]:
    """Fetch (or take) and parse the MPD; (None, True) for a bad MPD, (None, False) for a failed fetch."""
    hops = first or get_hops(rec, fetcher, url)
    if hops is None:
        return None, False
    ex = record_hops(rec, hops)
    try:
        if not ex.ok:
            rec.log(
                "mpd", f"{ex.url} answered {ex.status_line or 'nothing'}", level="error", status=ex.status
            )
            return None, False
        try:
            return parse(ex.body.read_text("utf-8", "replace") if ex.body else "", ex.url), False
        except CaptureError as e:
            rec.log("mpd", str(e), level="error")
            return None, True
    finally:
        unlink(ex)


def run_dash(rec: Recorder, fetcher: Fetcher, url: str, first: list[Exchange] | None = None) -> None:
    """Follow a (dynamic) MPD until a bound, the end (the MPD turns static), a stall or errors."""
    f = _Follow(rec, fetcher)
    errors = 0
    started = False
    try:
        while not rec.stopping:
            mpd, bad = _mpd(rec, fetcher, url, first)
            first = None
            if mpd is None:
                errors += 1
                if bad and not started:
                    rec.stop("bad-manifest")
                    break
                if errors >= MAX_MPD_ERRORS or rec.stopping:
                    rec.stop("http-error")
                    break
                rec.wait(1.0)
                continue
            errors = 0
            now = time.time()
            try:
                lists = [(t, t.segments(mpd, now)) for t in mpd.tracks]
            except CaptureError as e:
                rec.log("mpd", str(e), level="error")
                rec.stop("bad-manifest")
                break
            pending: list[tuple[int, Track, DashSegment]] = []
            for t, segs in lists:
                if not started and mpd.dynamic and len(segs) > LIVE_EDGE_SEGMENTS:
                    skipped = len(segs) - LIVE_EDGE_SEGMENTS
                    rec.log(
                        "mpd",
                        f"{t.kind}: starting at the live edge, {skipped} older segment(s) not fetched",
                        skipped=skipped,
                    )
                    segs = segs[-LIVE_EDGE_SEGMENTS:]
                last = f.last.get(t.kind, -1)
                pending += [(s.start_ms, t, s) for s in segs if s.start_ms > last]
            if not started:
                started = True
                rec.log(
                    "mpd",
                    f"{'dynamic' if mpd.dynamic else 'static'} MPD: "
                    + ", ".join(f"{t.kind} {t.rep_id} ({t.bandwidth} bit/s)" for t in mpd.tracks),
                )
            # Interleaved by media time, as a player would fetch them.
            for _, t, s in sorted(pending, key=lambda x: (x[0], x[1].kind != "video")):
                if rec.stopping:
                    break
                if not f.fetch(t, s, t.timeline is None):
                    continue
                f.last[t.kind] = max(f.last.get(t.kind, -1), s.start_ms)
                rec.tick()
            if rec.stopping:
                break
            if not mpd.dynamic:
                rec.log("mpd", "the MPD is static: the stream has ended")
                rec.stop("stream-ended")
                break
            seg_s = max((s.duration_ms for _, segs in lists for s in segs[-1:]), default=2000) / 1000
            period = mpd.minimum_update_s or seg_s
            quiet = time.monotonic() - f.last_new
            if quiet > STALL_PERIODS * max(seg_s, period):
                rec.log("mpd", f"no new segment for {quiet:.1f} s", level="warning")
                rec.stop("stalled")
                break
            # Reloaded at minimumUpdatePeriod; never faster than a tenth of a second.
            rec.wait(max(0.1, min(period, seg_s)))
    finally:
        f.close()
