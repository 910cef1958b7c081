"""Low-Latency HLS from a fixture server publishing ffmpeg-made segments as parts in real time."""

from __future__ import annotations

from typing import Any

import pytest
from live_sources import LowLatency, have_ffmpeg
from test_livestream import CASE, check_chain, new_home, warc_records

from capture import hls
from capture.livestream import capture_livestream

pytestmark = pytest.mark.skipif(not have_ffmpeg(), reason="ffmpeg not installed")


@pytest.fixture
def ll(tmp_path: Any) -> Any:
    src = LowLatency(tmp_path / "ll").start()
    yield src
    src.stop()


def test_parts_archived_as_served_blocking_reloads_frames_from_whole_segments(tmp_path, ll):
    led = new_home(tmp_path / "h")
    s = capture_livestream(ll.url, case=CASE, ledger=led, duration=8, window=3)
    assert s.mode == "hls" and s.end_reason == "duration" and not s.errors, s.errors
    ms = check_chain(led, s)
    entries = [x for m in ms for x in m["info"]["segments"]]
    parts = [x for x in entries if "part" in x]
    assert len(parts) >= 20, "about 4 parts a second"
    # every part as the packager wrote it
    for m in ms:
        for r in warc_records(led, m):
            if r["type"] == "response" and r["uri"].endswith(".ts"):
                assert r["body"] == (ll.root / "ll" / r["uri"].rsplit("/", 1)[1]).read_bytes(), r["uri"]
    # parts, not whole segments, once the capture is at the live edge: each segment's parts in order
    by_seq: dict[int, list[int]] = {}
    for x in parts:
        by_seq.setdefault(x["seq"], []).append(x["part"])
    whole_segments = [seq for seq, js in by_seq.items() if sorted(js) == [0, 1, 2, 3]]
    assert len(whole_segments) >= 5
    # and they put together make the segment ffmpeg wrote, which is what was decoded
    frames = [f for m in ms for f in m["info"]["frames"]]
    assert len({f["sha256"] for f in frames}) >= 5
    assert {f["seq"] for f in frames} <= set(whole_segments) | {x["seq"] for x in entries if "part" not in x}
    # blocking reloads were used (no polling delay), with the next part asked for
    assert len(ll.blocking) >= 10
    assert any(part > 0 for _, part in ll.blocking)
    led.close()


def test_ll_playlist_parsing():
    text = "\n".join(
        [
            "#EXTM3U", "#EXT-X-TARGETDURATION:2", "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.0",
            "#EXT-X-PART-INF:PART-TARGET=0.5", "#EXT-X-MEDIA-SEQUENCE:10",
            '#EXT-X-PART:DURATION=0.5,URI="a.p0.ts",INDEPENDENT=YES', '#EXT-X-PART:DURATION=0.5,URI="a.p1.ts"',
            "#EXTINF:1.0,", "a.ts",
            '#EXT-X-PART:DURATION=0.5,URI="b.p0.ts"', '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="b.p1.ts"',
        ]
    )  # fmt: skip
    pl = hls.parse(text, "https://cdn.example/live/index.m3u8?token=t")
    assert isinstance(pl, hls.MediaPlaylist)
    assert pl.can_block_reload and pl.part_target_ms == 500 and pl.next_seq == 11
    assert [p.uri.rsplit("/", 1)[1] for p in pl.segments[0].parts] == ["a.p0.ts", "a.p1.ts"]
    assert pl.segments[0].parts[0].independent and not pl.segments[0].parts[1].independent
    assert [p.uri.rsplit("/", 1)[1] for p in pl.parts] == ["b.p0.ts"]
    assert pl.preload_hint == "https://cdn.example/live/b.p1.ts?token=t".split("?")[0]
    assert hls.blocking_url("https://cdn.example/live/index.m3u8?token=t", 11, 1) == (
        "https://cdn.example/live/index.m3u8?token=t&_HLS_msn=11&_HLS_part=1"
    )
    # a byte-range hint is not a part URI we can fetch whole: ignored (control: the plain hint above is kept)
    pl = hls.parse(
        text.replace('URI="b.p1.ts"', 'URI="b.ts",BYTERANGE-START=100'), "https://cdn.example/live/index.m3u8"
    )
    assert isinstance(pl, hls.MediaPlaylist) and pl.preload_hint is None
