"""HTTP-FLV live: one endless GET, kept byte-exact as one part file per window, decoded as it arrives.

Many Chinese platforms serve their rooms as HTTP-FLV. Unlike a progressive
MP4, an FLV stream decodes from its first bytes: a decoder thread reads the
same chunks the part files get (through a bounded queue, so a slow decoder
never holds up the download) and keeps one frame per interval of the
stream's own timestamps. If the decoder falls behind by more than the
queue, decoding stops for the rest of the capture (said in the log); the
bytes are still all kept. The whole response goes into the last window's
WARC when the download ends, as for a progressive download.
"""

from __future__ import annotations

import queue
import threading
import time

from .fetch import Fetcher
from .frames import Sampler
from .recorder import Parts, PartsRecorder, Recorder, get_when_live, seal_streamed, unlink

#: batches (``_Batch``: up to ~128 KiB or 0.2 s each) the decoder may lag behind the download
MAX_QUEUED = 256
#: after the download ends, the decoder gets this long to finish what is queued
DRAIN_SECONDS = 30.0
#: chunks of the download are handed to the window's part and the decoder together, up to this
#: many bytes or this much time: an HTTP-FLV server sends a chunk per FLV tag (~1 KiB at
#: 320x180), and per-chunk bookkeeping (window clock, queue, two writes) was ~1/4 of our CPU
BATCH_BYTES = 64 * 1024
BATCH_SECONDS = 0.2
#: ``Fetcher.pace`` of the download: an idle socket is read again only after this long, so one
#: wakeup takes ~6 FLV tags at 320x180 instead of one (measured on the download thread alone,
#: 20 s of the test source: 0.18 s of CPU unpaced, 0.15 s at 0.05 s, 0.07 s at 0.1 s). TCP keeps
#: what arrives meanwhile; the bytes and their order are the same.
PACE_SECONDS = 0.1


class _Feed:
    """A file-like object PyAV reads from, fed by the download thread."""

    def __init__(self) -> None:
        self.q: queue.Queue[bytes | None] = queue.Queue(MAX_QUEUED)
        self.buf = b""
        self.eof = False
        self.overrun = False

    def put(self, data: bytes) -> None:
        if self.overrun:
            return
        try:
            self.q.put_nowait(data)
        except queue.Full:
            self.overrun = True

    def close(self) -> None:
        try:
            self.q.put(None, timeout=DRAIN_SECONDS)
        except queue.Full:
            self.overrun = True

    def read(self, n: int = -1) -> bytes:
        while not self.buf and not self.eof:
            if self.overrun:
                return b""
            try:
                item = self.q.get(timeout=0.5)
            except queue.Empty:
                continue
            if item is None:
                self.eof = True
            else:
                self.buf = item
        if n < 0 or n >= len(self.buf):
            out, self.buf = self.buf, b""
        else:
            out, self.buf = self.buf[:n], self.buf[n:]
        return out


class _Batch:
    """The download's chunks, gathered and passed on to the part file and the decoder together.

    ``flush`` must follow the download's end: every byte of the response body
    reaches the parts (they put together are the body) and the decoder.
    """

    def __init__(self, rec: Recorder, parts: Parts, feed: _Feed):
        self.rec, self.parts, self.feed = rec, parts, feed
        self.buf = bytearray()
        self.since = time.monotonic()

    def chunk(self, data: bytes) -> bool:
        self.buf += data
        if len(self.buf) >= BATCH_BYTES or time.monotonic() - self.since >= BATCH_SECONDS:
            return self.flush()
        return not self.rec.stopping

    def flush(self) -> bool:
        self.since = time.monotonic()
        if not self.buf:
            return not self.rec.stopping
        data = bytes(self.buf)
        self.buf.clear()
        self.feed.put(data)
        return self.parts.write(data)


def _decode(rec: Recorder, feed: _Feed, url: str) -> None:
    sampler = Sampler(int(rec.limits.frame_interval * 1000))
    cap = rec.limits.max_frames
    try:
        for d in sampler.frames(feed):  # type: ignore[arg-type]
            rec.frame_image(
                d.image, "frame", pts=d.pts, time_base=d.time_base, media_ms=d.time_ms, source=url
            )
            if cap is not None and rec.result.frames >= cap:
                break
    except Exception as e:  # a damaged stream must not end the capture; its bytes are kept anyway
        rec.log("decode", f"cannot decode {url}: {type(e).__name__}: {e}", level="warning", url=url)
    if feed.overrun:
        rec.log(
            "decode",
            "the decoder fell behind the stream: no more frames decoded (all bytes kept)",
            level="warning",
        )
    # Whatever is still queued is dropped so the download thread never blocks on us.
    feed.overrun = True
    while not feed.q.empty():
        feed.q.get_nowait()


def run_flv(rec: Recorder, fetcher: Fetcher, url: str) -> None:
    """The streamed GET of an HTTP-FLV room, until a bound, the end of the stream or a lost connection."""
    assert isinstance(rec, PartsRecorder)
    parts = Parts(rec, url)
    rec.parts = parts
    feed = _Feed()
    decoder = threading.Thread(target=_decode, args=(rec, feed, url), name="flv-decode", daemon=True)
    decoder.start()
    batch = _Batch(rec, parts, feed)
    fetcher.pace = PACE_SECONDS
    try:
        hops = get_when_live(rec, fetcher, url, batch.chunk)
    finally:
        batch.flush()  # the last bytes, into the open window's part and to the decoder
        feed.close()
        decoder.join(DRAIN_SECONDS)
    if hops is None:
        return
    seal_streamed(rec, hops, "the stream ended")
    for h in hops:
        unlink(h)
