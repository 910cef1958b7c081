"""HTTP-FLV against ``ffmpeg -re -f flv -listen 1``, and --wait-live (FLV and HLS rooms that start late)."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import pytest
from live_sources import FileServer, flv_source, flv_tags, free_port, have_ffmpeg, stop, wait_listening
from test_livestream import CASE, check_chain, log_lines, new_home, parallel, warc_records

from capture.fetch import Exchange
from capture.livestream import capture_livestream, kind_of_response, stream_kind
from ledger.errors import CaptureError

pytestmark = pytest.mark.skipif(not have_ffmpeg(), reason="ffmpeg not installed")


def _artifact(led: Any, m: dict[str, Any], name: str) -> bytes:
    a = next(a for a in m["artifacts"] if a["name"] == name)
    with led.artifacts.open(a["sha256"]) as f:
        return f.read()


def test_flv_parts_byte_exact_frames_with_timestamps_and_wait_live(tmp_path):
    ports = free_port(), free_port()
    led, led_w = new_home(tmp_path / "flv"), new_home(tmp_path / "wait")
    src = flv_source(ports[0])
    late = [flv_source(ports[1], delay=3)]
    wait_listening(ports[0])
    try:
        (_, s), (_, sw) = parallel(
            lambda: (
                led,
                capture_livestream(
                    f"http://127.0.0.1:{ports[0]}/live.flv", case=CASE, ledger=led, duration=8, window=3
                ),
            ),
            lambda: (
                led_w,
                capture_livestream(
                    f"http://127.0.0.1:{ports[1]}/live.flv",
                    case=CASE,
                    ledger=led_w,
                    duration=5,
                    window=3,
                    wait_live=20,
                ),
            ),
        )
    finally:
        stop(src)
        for p in late:
            stop(p)
    assert s.mode == "flv" and s.end_reason == "duration" and not s.errors, s.errors
    ms = check_chain(led, s)
    parts = [seg for m in ms for seg in m["info"]["segments"]]
    assert len(parts) >= 3 and [p["part"] for p in parts] == sorted(p["part"] for p in parts)
    data = b""
    for m in ms:
        for seg in m["info"]["segments"]:
            blob = _artifact(led, m, seg["part"])
            assert hashlib.sha256(blob).hexdigest() == seg["sha256"] and seg["offset"] == len(data)
            data += blob
    whole = [r for m in ms for r in warc_records(led, m) if r["type"] == "response"]
    assert len(whole) == 1 and whole[0]["body"] == data, "the parts put together are the stream as received"
    tags = flv_tags(data)  # a clean FLV: header, tag sizes consistent from the first to the last byte kept
    assert {8, 9} <= {k for k, _ in tags} and max(t for _, t in tags) >= 6000
    frames = [f for m in ms for f in m["info"]["frames"]]
    assert len({f["sha256"] for f in frames}) >= 6
    times = [f["media_ms"] for f in frames]
    assert times == sorted(times) and all(b - a >= 1000 for a, b in zip(times, times[1:]))
    assert all(f["time_base"] == "1/1000" and isinstance(f["pts"], int) for f in frames)
    led.close()

    # --wait-live: the source started 3 s after the capture; the 5 s count from then
    assert sw.end_reason == "duration" and sw.frames >= 3, sw.errors
    msw = check_chain(led_w, sw)
    wl = msw[0]["info"]["wait_live"]
    assert wl["waited_ms"] >= 2000 and wl["checks"] >= 2
    end = next(led_w.records(start=sw.end_index)).payload
    assert end["wait_live"] == wl and end["ended_by"] == "bound"
    assert any(e["step"] == "wait-live" for e in log_lines(led_w, msw[0]))
    led_w.close()


def test_wait_live_on_hls_and_its_timeout(tmp_path):
    root = tmp_path / "srv"
    root.mkdir()
    srv = FileServer(root)
    live_at = time.monotonic() + 3
    body = b"\x47" + bytes(187)

    def playlist(h: Any) -> None:
        if time.monotonic() < live_at:
            h.send(404, b"room not live", "text/plain")
            return
        n = int(time.monotonic() - live_at) + 1
        lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:1", "#EXT-X-MEDIA-SEQUENCE:0"]
        for i in range(n):
            lines += ["#EXTINF:1.0,", f"s{i}.ts"]
        h.send(200, "\n".join(lines).encode(), "application/vnd.apple.mpegurl")

    srv.routes["/room/index.m3u8"] = playlist
    srv.routes["/never/index.m3u8"] = lambda h: h.send(404, b"never", "text/plain")
    for i in range(60):
        srv.routes[f"/room/s{i}.ts"] = lambda h: h.send(200, body, "video/mp2t")
    srv.start()
    try:
        led = new_home(tmp_path / "w")
        s = capture_livestream(
            srv.base + "/room/index.m3u8", case=CASE, ledger=led, duration=3, window=2, wait_live=15
        )
        assert s.end_reason == "duration" and s.segments >= 2
        ms = check_chain(led, s)
        assert ms[0]["info"]["wait_live"]["checks"] >= 3 and ms[0]["info"]["wait_live"]["waited_ms"] >= 2000
        led.close()
        # a room that never goes live: one line, nothing recorded
        led = new_home(tmp_path / "n")
        t0 = time.monotonic()
        with pytest.raises(CaptureError, match="not live after 2 s") as e:
            capture_livestream(srv.base + "/never/index.m3u8", case=CASE, ledger=led, duration=3, wait_live=2)
        assert "\n" not in str(e.value) and "404" in str(e.value) and time.monotonic() - t0 < 6
        assert [r.kind for r in led.records()] == ["log-init"]
        # control: without --wait-live the same 404 is recorded as a failed capture at once
        s = capture_livestream(srv.base + "/never/index.m3u8", case=CASE, ledger=led, duration=3)
        assert s.end_reason == "http-error" and s.segments == 0
        led.close()
    finally:
        srv.stop()


@pytest.mark.parametrize(
    "ctype, head, kind",
    [
        ("application/octet-stream", b"FLV\x01\x05\x00\x00\x00\x09", "flv"),
        ("video/x-flv", b"", "flv"),
        ("application/octet-stream", b'<?xml version="1.0"?>\n<MPD type="dynamic">', "dash"),
        ("application/dash+xml", b"", "dash"),
        ("text/plain", b"#EXTM3U\n#EXT-X-TARGETDURATION:1", "hls"),
        ("video/mp4", b"\x00\x00\x00\x18ftypisom", "progressive"),
        # controls: the same first bytes inside an HTML page are a page
        ("text/html", b"<html><body>FLV\x01 #EXTM3U <MPD></body></html>", "page"),
        ("application/octet-stream", b"\x00FLV", "page"),
    ],
)
def test_auto_mode_by_type_and_first_bytes(tmp_path, ctype, head, kind):
    body = tmp_path / "body"
    body.write_bytes(head)
    ex = Exchange(
        "http://x/room/7",
        "GET",
        "GET /room/7 HTTP/1.1",
        [],
        0.0,
        200,
        "HTTP/1.1 200 OK",
        [("Content-Type", ctype)],
    )
    ex.body, ex.size = body, len(head)
    assert kind_of_response(ex) == kind
    assert stream_kind("http://x/live/room.FLV?t=1") == "flv" and stream_kind("http://x/live.mpd") == "dash"
