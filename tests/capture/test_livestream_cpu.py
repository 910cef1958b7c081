"""The cheaper livestream path keeps what the costly one kept.

Frames: the sampler decodes only the packets a kept frame needs; on every kind
of stream here (B-frames, open GOPs, a segment cut between keyframes, a GOP
too long to buffer, timestamps that restart) it must keep the very frames,
pixel for pixel and PTS for PTS, that decoding every frame keeps (the
reference below is the sampler as it was: every frame decoded, the same rule).

WARC: media payloads go into stored gzip members, text into level-9 members;
either way the record reads back byte-exact with its digests.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import subprocess
import zlib
from pathlib import Path

import pytest
from live_sources import have_ffmpeg
from warcio.archiveiterator import ArchiveIterator

from capture import frames as frames_mod
from capture.fetch import Exchange, StreamWarc
from capture.frames import Sampler

pytestmark = pytest.mark.skipif(not have_ffmpeg(), reason="ffmpeg not installed")


def reference(interval_ms: int, paths: list[Path]) -> list[tuple[int, int, bytes]]:
    """Every frame decoded, the media-clock rule on each (the sampler before it learnt to skip)."""
    import av

    out = []
    next_ms = None
    for path in paths:
        with av.open(str(path)) as c:
            for f in c.decode(c.streams.video[0]):
                if f.pts is None:
                    continue
                t = int(f.pts * f.time_base * 1000)
                if next_ms is not None and t < next_ms - 2 * interval_ms:
                    next_ms = None
                if next_ms is None:
                    next_ms = t
                if t < next_ms:
                    continue
                while next_ms <= t:
                    next_ms += interval_ms
                out.append((f.pts, t, f.to_image().tobytes()))
    return out


def frame_count(paths: list[Path]) -> int:
    import av

    n = 0
    for path in paths:
        with av.open(str(path)) as c:
            n += sum(1 for _ in c.decode(c.streams.video[0]))
    return n


def sampled(s: Sampler, paths: list[Path], as_file: bool = False) -> list[tuple[int, int, bytes]]:
    out = []
    for p in paths:
        src = open(p, "rb") if as_file else p
        try:
            out += [(d.pts, d.time_ms, d.image.tobytes()) for d in s.frames(src)]  # type: ignore[arg-type]
        finally:
            if as_file:
                src.close()  # type: ignore[union-attr]
    return out


def clip(path: Path, *args: str, seconds: int = 6, fmt: str = "mpegts") -> Path:
    # A moving picture (frames differ), 10 fps, small: seconds of media in milliseconds of CPU.
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=160x90:rate=10",
         "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", *args, "-f", fmt, str(path)],
        check=True,
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    return {
        # a keyframe a second, B-frames: the benchmark's and most live sources' shape
        "gop1s": clip(d / "gop1s.ts", "-g", "10", "-keyint_min", "10", "-bf", "3"),
        # keyframes 2.5 s apart, so some GOPs hold two kept frames and one holds a kept frame mid-GOP
        "gop25": clip(d / "gop25.ts", "-g", "25", "-keyint_min", "25", "-sc_threshold", "0", "-bf", "2"),
        # no B-frames, FLV (the HTTP-FLV way in; time base 1/1000)
        "flv": clip(d / "s.flv", "-g", "15", "-bf", "0", fmt="flv"),
        # fragmented MP4 (DASH, LL-HLS parts): keyframes from the sync-sample flags, B-frames
        "fmp4": clip(d / "f.mp4", "-g", "10", "-bf", "2", "-movflags", "frag_keyframe+empty_moov", fmt="mp4"),
        # open GOPs: frames after a keyframe that show before it
        "open": clip(d / "open.ts", "-g", "12", "-bf", "3", "-x264-params", "open-gop=1:keyint=12:min-keyint=12:scenecut=0"),
    }  # fmt: skip


@pytest.mark.parametrize("name", ["gop1s", "gop25", "flv", "fmp4", "open"])
@pytest.mark.parametrize("interval_ms", [1000, 700, 3000])
def test_sampler_keeps_the_frames_decoding_everything_keeps(clips, name, interval_ms):
    want = reference(interval_ms, [clips[name]])
    s = Sampler(interval_ms)
    got = sampled(s, [clips[name]], as_file=name == "flv")
    assert [(p, t) for p, t, _ in got] == [(p, t) for p, t, _ in want] and len(want) >= 2
    assert [px for _, _, px in got] == [px for _, _, px in want], "pixel for pixel"


def test_sampler_decodes_a_tenth_with_a_keyframe_each_interval(clips):
    s = Sampler(1000)
    got = sampled(s, [clips["gop1s"]])
    assert len(got) == 6
    # 60 frames in the clip; one decoded (and one packet sent) per kept frame
    assert s.decoded == 6 and s.sent == 6
    # control: the open-GOP clip has to be decoded every frame, and the sampler does so
    o = Sampler(1000)
    sampled(o, [clips["open"]])
    assert o.decoded >= 60  # (the GOP before the first open one is decoded twice: references)


def test_segment_cut_between_keyframes_falls_back_to_decoding_it_whole(clips, tmp_path):
    # A TS cut at a packet boundary mid-GOP: its first frames need references it does not
    # have, so the decoder drops them and the sampler must not take the packets' word for
    # that GOP (it decodes it whole). After a whole clip, as a live playlist would have it.
    data = clips["gop25"].read_bytes()
    for n, part in enumerate((2, 3)):
        cut = tmp_path / f"cut{n}.ts"
        cut.write_bytes(data[(len(data) // part // 188) * 188 :])
        for interval in (1000, 300):
            paths = [clips["gop1s"], cut]
            want = reference(interval, paths)
            s = Sampler(interval)
            got = sampled(s, paths)
            assert [(p, t, px) for p, t, px in got] == want and len(want) >= 3
            if interval == 1000:  # the whole clip's GOPs are still cut short
                assert s.decoded < 0.7 * frame_count(paths)


def test_timestamps_that_restart_restart_sampling(clips):
    # two segments from restarted encoders (both start at the same PTS)
    paths = [clips["gop25"], clips["gop1s"], clips["gop25"]]
    want = reference(1000, paths)
    assert [(p, t, px) for p, t, px in sampled(Sampler(1000), paths)] == want


def test_a_gop_too_long_to_buffer_is_decoded_as_it_comes(clips, monkeypatch):
    monkeypatch.setattr(frames_mod, "MAX_GOP_BYTES", 2000)
    want = reference(700, [clips["gop25"]])
    s = Sampler(700)
    assert [(p, t, px) for p, t, px in sampled(s, [clips["gop25"]])] == want
    assert s.decoded > len(want) * 3  # it did decode as it came (the shortcut was not taken)
    monkeypatch.undo()
    control = Sampler(700)
    sampled(control, [clips["gop25"]])
    assert control.decoded < s.decoded


# -- WARC gzip members ----------------------------------------------------------


def _members(path: Path) -> list[tuple[dict[str, str], bytes, int]]:
    """(WARC headers, payload, BTYPE of the member's first deflate block) per record."""
    raw = path.read_bytes()
    out = []
    with open(path, "rb") as f:
        it = ArchiveIterator(f)
        for r in it:
            payload = r.content_stream().read()
            headers = dict(r.rec_headers.headers)
            offset = it.get_record_offset()
            # gzip header is 10 bytes (zlib writes no name/extra); then the first deflate block
            assert raw[offset : offset + 2] == b"\x1f\x8b"
            out.append((headers, payload, (raw[offset + 10] >> 1) & 3))
    return out


def _exchange(tmp: Path, name: str, body: bytes, ctype: str) -> Exchange:
    p = tmp / name
    p.write_bytes(body)
    ex = Exchange(
        f"http://127.0.0.1:9/{name}", "GET", f"GET /{name} HTTP/1.1", [("Host", "127.0.0.1:9")], 1.7e9
    )
    ex.status, ex.status_line, ex.received = 200, "HTTP/1.1 200 OK", 1.7e9
    ex.response_headers = [("Content-Type", ctype), ("Content-Length", str(len(body)))]
    ex.body, ex.size, ex.sha256, ex.complete = p, len(body), hashlib.sha256(body).hexdigest(), True
    return ex


def test_media_records_are_stored_members_and_read_back_exact(clips, tmp_path):
    ts = clips["gop1s"].read_bytes()
    flv = clips["flv"].read_bytes()
    playlist = b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n" + b"#EXTINF:1.0,\nseg-000001.ts\n" * 200
    w = StreamWarc(tmp_path / "w.warc.gz", {})
    cases = [
        ("seg.ts", ts, "video/mp2t", 0),
        ("seg-octets.ts", ts, "application/octet-stream", 0),  # sniffed: TS sync bytes
        ("live.flv", flv, "application/octet-stream", 0),  # sniffed: FLV signature
        ("index.m3u8", playlist, "application/vnd.apple.mpegurl", 2),  # text: dynamic Huffman, level 9
        # control for the sniffing: octets that are not media keep level 9
        ("blob.bin", b"not media at all " * 300, "application/octet-stream", 2),
    ]
    for name, body, ctype, _ in cases:
        w.fetched(_exchange(tmp_path, name, body, ctype))
    w.close()
    recs = _members(tmp_path / "w.warc.gz")
    responses = [(h, p, bt) for h, p, bt in recs if h["WARC-Type"] == "response"]
    assert len(responses) == len(cases)
    for (name, body, _, btype), (h, payload, got_btype) in zip(cases, responses):
        assert h["WARC-Target-URI"].endswith(name)
        assert payload == body, f"{name}: payload byte-exact"
        assert got_btype == btype, f"{name}: deflate block type {got_btype}, expected {btype}"
    # the level-9 member of the text really is compressed, the stored one is not
    sizes = {}
    raw = (tmp_path / "w.warc.gz").read_bytes()
    with open(tmp_path / "w.warc.gz", "rb") as f:
        it = ArchiveIterator(f)
        for r in it:
            r.content_stream().read()
            sizes[r.rec_headers.get_header("WARC-Target-URI")] = (
                it.get_record_offset(),
                it.get_record_length(),
            )
    off, n = sizes["http://127.0.0.1:9/index.m3u8"]
    assert n < len(playlist) / 5
    off, n = sizes["http://127.0.0.1:9/seg.ts"]
    assert n > len(ts)
    # every member is a complete gzip stream on its own (what replay tools and indexers seek to)
    assert gzip.decompress(raw[off : off + n]).endswith(b"\r\n\r\n")
    assert zlib.decompressobj(zlib.MAX_WBITS + 16).decompress(raw[off : off + n])[:9] == b"WARC/1.1\r"


def test_digests_of_stored_members_verify(clips, tmp_path):
    import base64

    ts = clips["gop1s"].read_bytes()
    w = StreamWarc(tmp_path / "d.warc.gz", {})
    w.fetched(_exchange(tmp_path, "seg.ts", ts, "video/mp2t"))
    w.close()
    with open(tmp_path / "d.warc.gz", "rb") as f:
        for r in ArchiveIterator(f, check_digests="raise"):
            body = r.content_stream().read()
            if r.rec_type == "response":
                want = "sha256:" + base64.b32encode(hashlib.sha256(ts).digest()).decode()
                assert body == ts and r.rec_headers.get_header("WARC-Payload-Digest") == want
    # control: a payload byte changed (and the member's CRC made to match, so only the
    # WARC digests can tell) is caught by warcio's digest check
    raw = (tmp_path / "d.warc.gz").read_bytes()
    with open(tmp_path / "d.warc.gz", "rb") as f:
        it = ArchiveIterator(f)
        offsets = []
        for r in it:
            r.content_stream().read()
            offsets.append((r.rec_type, it.get_record_offset(), it.get_record_length()))
    _, off, n = next(o for o in offsets if o[0] == "response")
    record = bytearray(gzip.decompress(raw[off : off + n]))
    i = record.index(ts[1000:1040])
    record[i] ^= 0xFF
    bad = raw[:off] + gzip.compress(bytes(record), compresslevel=0) + raw[off + n :]
    with pytest.raises(Exception, match="(?i)digest"):
        for r in ArchiveIterator(io.BytesIO(bad), check_digests="raise"):
            r.content_stream().read()
    # and the same surgery without the change reads clean (the control's control)
    same = raw[:off] + gzip.compress(gzip.decompress(raw[off : off + n]), compresslevel=0) + raw[off + n :]
    for r in ArchiveIterator(io.BytesIO(same), check_digests="raise"):
        r.content_stream().read()


def test_many_kept_frames_in_a_gop_are_not_held_but_decoded_as_they_come(clips, monkeypatch):
    # 200 ms in a 2.5 s GOP: 12-13 kept frames a GOP, more than MAX_KEPT_PER_GOP
    whole = []
    real = Sampler._whole

    def spy(self, stream, gop):
        whole.append(len(gop))
        return real(self, stream, gop)

    monkeypatch.setattr(Sampler, "_whole", spy)
    want = reference(200, [clips["gop25"]])
    assert [(p, t, px) for p, t, px in sampled(Sampler(200), [clips["gop25"]])] == want
    # the two whole 2.5 s GOPs went the decode-as-it-comes way; the last, 1 s (5 kept), did not
    assert whole == [25, 25]
    # control: with the bound lifted the same frames come from the held-and-checked way
    whole.clear()
    monkeypatch.setattr(frames_mod, "MAX_KEPT_PER_GOP", 100)
    assert [(p, t, px) for p, t, px in sampled(Sampler(200), [clips["gop25"]])] == want
    assert whole == []
