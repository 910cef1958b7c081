"""Livestream building blocks without a stream: playlists, boxes, frames, fetches, bounds."""

from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from capture import hls
from capture.fetch import Exchange, Fetcher, FetchFailed, _fix_headers
from capture.frames import Sampler, is_init_section, mp4_boxes, same_picture, thumbnail
from capture.livestream import Limits, capture_livestream, stream_kind
from ledger.errors import CaptureError, UsageError

BASE = "https://live.example/room/7/"


def test_media_playlist_relative_uris_sequence_map_and_end():
    pl = hls.parse(
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:41\n#EXT-X-MAP:URI=\"init.mp4\"\n"
        "#EXTINF:2.002,\nseg41.m4s\n#EXT-X-DISCONTINUITY\n#EXTINF:1.5,title\n/abs/seg42.m4s?t=1\n#EXT-X-ENDLIST\n",
        BASE + "index.m3u8",
    )
    assert isinstance(pl, hls.MediaPlaylist)
    assert pl.target_duration_ms == 2000 and pl.media_sequence == 41 and pl.ended
    assert [(s.seq, s.uri, s.duration_ms, s.discontinuity) for s in pl.segments] == [
        (41, BASE + "seg41.m4s", 2002, False),
        (42, "https://live.example/abs/seg42.m4s?t=1", 1500, True),
    ]
    assert all(s.init_uri == BASE + "init.mp4" for s in pl.segments)


def test_master_playlist_picks_highest_bandwidth():
    pl = hls.parse(
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360\nlow/index.m3u8\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=3000000,RESOLUTION=1920x1080\nhigh/index.m3u8\n",
        BASE + "master.m3u8",
    )
    assert isinstance(pl, hls.MasterPlaylist)
    assert pl.best().uri == BASE + "high/index.m3u8" and pl.best().resolution == "1920x1080"


def test_missing_target_duration_falls_back_to_longest_segment():
    pl = hls.parse("#EXTM3U\n#EXTINF:4,\na.ts\n#EXTINF:6.5,\nb.ts\n", BASE + "i.m3u8")
    assert isinstance(pl, hls.MediaPlaylist) and pl.target_duration_ms == 6500 and not pl.ended


@pytest.mark.parametrize("body", ["", "<html>not a playlist</html>", "#EXT-X-TARGETDURATION:1\n"])
def test_not_a_playlist(body):
    with pytest.raises(CaptureError, match="not an HLS playlist"):
        hls.parse(body, BASE + "i.m3u8")


def test_stream_kind_by_name():
    assert stream_kind("https://x/live/Index.M3U8?token=1") == "hls"
    assert stream_kind("https://x/v/clip.webm") == "progressive"
    assert stream_kind("https://x/room/7") == "unknown"
    assert hls.looks_like_playlist("https://x/api/play", "application/vnd.apple.mpegURL; charset=utf-8")


def _box(kind: bytes, payload: bytes = b"") -> bytes:
    return (8 + len(payload)).to_bytes(4, "big") + kind + payload


def test_mp4_boxes_tell_init_sections_from_fragments(tmp_path: Path):
    init = tmp_path / "init.mp4"
    init.write_bytes(_box(b"ftyp", b"iso5") + _box(b"moov", b"\0" * 20))
    frag = tmp_path / "seg.m4s"
    frag.write_bytes(_box(b"styp") + _box(b"moof", b"\0" * 8) + _box(b"mdat", b"x" * 100))
    ts = tmp_path / "seg.ts"
    ts.write_bytes(b"\x47" + b"\xff" * 187)
    assert mp4_boxes(init) == ["ftyp", "moov"] and is_init_section(mp4_boxes(init))
    assert mp4_boxes(frag) == ["styp", "moof", "mdat"] and not is_init_section(mp4_boxes(frag))
    assert mp4_boxes(ts) == []
    bad = tmp_path / "short-box"
    bad.write_bytes((4).to_bytes(4, "big") + b"moov")
    assert mp4_boxes(bad) == []


def test_same_picture_tolerates_noise_but_not_a_changed_digit():
    from PIL import Image, ImageDraw

    def picture(price: str, noise: int = 0) -> bytes:
        im = Image.new("RGB", (320, 180), (30 + noise, 50, 90))
        ImageDraw.Draw(im).text((10, 150), f"PRICE {price}.00 CNY", fill=(255, 255, 0))
        return thumbnail(im)

    assert same_picture(picture("128"), picture("128", noise=3))
    assert not same_picture(picture("128"), picture("135"))
    assert not same_picture(None, picture("128"))


def _clip(path: Path, seconds: int, fps: int = 10) -> Path:
    import av
    from PIL import Image

    with av.open(str(path), "w") as out:
        st = out.add_stream("mpeg4", rate=fps)
        st.width, st.height, st.pix_fmt = 64, 48, "yuv420p"
        for i in range(seconds * fps):
            frame = av.VideoFrame.from_image(Image.new("RGB", (64, 48), (i * 8 % 256, 0, 0)))
            for packet in st.encode(frame):
                out.mux(packet)
        for packet in st.encode():
            out.mux(packet)
    return path


def test_sampler_follows_the_media_clock_across_segments(tmp_path: Path):
    a = _clip(tmp_path / "a.mp4", 3)
    s = Sampler(1000)
    first = [(d.time_ms, d.time_base) for d in s.frames(a)]
    assert [t for t, _ in first] == [0, 1000, 2000]
    # the next segment restarts at 0 (a restarted encoder): sampling restarts too
    assert [d.time_ms for d in s.frames(_clip(tmp_path / "b.mp4", 2))] == [0, 1000]
    assert [d.time_ms for d in Sampler(500).frames(a)] == [0, 500, 1000, 1500, 2000, 2500]


@pytest.mark.parametrize(
    "limits, message",
    [
        (Limits(-3, None, None, 1.0, 10), "--duration"),
        (Limits(0, None, None, 1.0, 10), "--duration"),
        (Limits(float("nan"), None, None, 1.0, 10), "--duration"),
        (Limits(10, 0, None, 1.0, 10), "--max-bytes"),
        (Limits(10, None, -1, 1.0, 10), "--max-frames"),
        (Limits(10, None, None, 0.0, 10), "--frame-interval"),
        (Limits(10, None, None, 1.0, 0.5), "--window"),
    ],
)
def test_bad_bounds_are_usage_errors(limits, message):
    with pytest.raises(UsageError, match=message):
        limits.check()


def test_bad_arguments_fail_before_anything_is_recorded(tmp_path):
    class NoLedger:
        def __getattr__(self, name):
            raise AssertionError(f"the ledger was used: {name}")

    for url in ("ftp://x/live.m3u8", "not a url", ""):
        with pytest.raises(UsageError):
            capture_livestream(url, case="C", duration=5, ledger=NoLedger())
    with pytest.raises(UsageError, match="case"):
        capture_livestream("http://127.0.0.1:1/x.m3u8", case=" ", duration=5, ledger=NoLedger())
    with pytest.raises(UsageError, match="--mode"):
        capture_livestream("http://127.0.0.1:1/x.m3u8", case="C", duration=5, mode="rtmp", ledger=NoLedger())


# -- the recorder's HTTP client ---------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    connections: set[int] = set()

    def log_message(self, *a):
        pass

    def do_GET(self):
        _Handler.connections.add(id(self.connection))
        body = b"0123456789" * 1000
        if self.path == "/short":
            self.send_response(200)
            self.send_header("Content-Length", str(len(body) * 2))
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
            return
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (body[:4000], body[4000:]):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
            return
        if self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/body")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Quiet(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # the capped fetch hangs up mid-body on purpose


@pytest.fixture
def plain_server():
    srv = _Quiet(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    _Handler.connections.clear()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_fetcher_reuses_a_keep_alive_connection(tmp_path, plain_server):
    f = Fetcher(tmp_path)
    want = hashlib.sha256(b"0123456789" * 1000).hexdigest()
    for _ in range(3):
        ex = f.get(plain_server + "/body")[-1]
        assert ex.ok and ex.sha256 == want and ex.size == 10000
        assert hashlib.sha256(ex.body.read_bytes()).hexdigest() == want
    f.close()
    assert len(_Handler.connections) == 1


def test_fetcher_follows_redirects_and_keeps_every_hop(tmp_path, plain_server):
    hops = Fetcher(tmp_path).get(plain_server + "/moved")
    assert [h.status for h in hops] == [302, 200] and hops[-1].url.endswith("/body")


def test_fetcher_marks_short_and_capped_bodies(tmp_path, plain_server):
    f = Fetcher(tmp_path)
    short = f.get(plain_server + "/short")[-1]
    assert not short.ok and short.truncated == "disconnect" and short.size == 10000 and short.notes
    capped = f.get(plain_server + "/body", max_body=2500)[-1]
    assert capped.truncated == "length" and capped.size == 2500 and not capped.ok
    # the connection cut short by the cap must not poison the next request
    assert f.get(plain_server + "/body")[-1].ok


def test_chunked_response_is_stored_unframed_with_true_length(tmp_path, plain_server):
    ex = Fetcher(tmp_path).get(plain_server + "/chunked")[-1]
    assert ex.ok and ex.size == 10000
    headers = dict(_fix_headers(ex))
    assert headers["X-Archive-Orig-Transfer-Encoding"] == "chunked" and headers["Content-Length"] == "10000"
    assert "Transfer-Encoding" not in headers


def test_fetch_failed_without_a_server(tmp_path, closed_port):
    with pytest.raises(FetchFailed, match="connection refused"):
        Fetcher(tmp_path).get(f"http://127.0.0.1:{closed_port}/x.m3u8")


def test_fix_headers_leaves_an_exact_length_alone():
    ex = Exchange("http://x/", "GET", "GET / HTTP/1.1", [], 0.0, status=200, response_headers=[("Content-Length", "5")], size=5)
    assert _fix_headers(ex) == [("Content-Length", "5")] and not ex.notes
