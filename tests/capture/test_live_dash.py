"""DASH live against ``ffmpeg -re -f dash``: a dynamic MPD, video and audio, 1 s segments."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from live_sources import FileServer, dash_source, env_for, have_ffmpeg, stop
from test_livestream import CASE, check_chain, log_lines, new_home, parallel, warc_records

from capture import dash
from capture.livestream import capture_livestream
from ledger.errors import CaptureError

pytestmark = pytest.mark.skipif(not have_ffmpeg(), reason="ffmpeg not installed")


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("dash")
    procs = [dash_source(root / "timeline"), dash_source(root / "numbered", timeline=False)]
    (root / "bad").mkdir()
    (root / "bad" / "live.mpd").write_text("<MPD type='dynamic'><Period>", "utf-8")
    srv = FileServer(root).start()
    yield root, srv
    srv.stop()
    for p in procs:
        stop(p)


def _capture(tmp_path: Path, name: str, url: str) -> Any:
    led = new_home(tmp_path / name)
    return lambda: (led, capture_livestream(url, case=CASE, ledger=led, duration=8, window=4))


def test_dash_timeline_and_numbered_segments_byte_exact_with_frames(tmp_path, sources):
    root, srv = sources
    results = parallel(
        _capture(tmp_path, "t", srv.base + "/timeline/live.mpd"),
        _capture(tmp_path, "n", srv.base + "/numbered/live.mpd"),
    )
    for (led, s), name in zip(results, ("timeline", "numbered")):
        assert s.mode == "dash" and s.end_reason == "duration" and not s.errors, (name, s.errors)
        ms = check_chain(led, s)  # windows linked, totals, audit clean
        segs = [seg for m in ms for seg in m["info"]["segments"]]
        media = [x for x in segs if not x.get("init")]
        inits = [x for x in segs if x.get("init")]
        assert {x["track"] for x in inits} == {"video", "audio"}, name
        for track in ("video", "audio"):
            nums = [x["number"] for x in media if x["track"] == track]
            assert len(nums) >= 5 and nums == list(range(nums[0], nums[0] + len(nums))), (name, track, nums)
        # every segment in the WARC is byte for byte the file ffmpeg wrote
        archived = 0
        for m in ms:
            for r in warc_records(led, m):
                if r["type"] == "response" and r["uri"].endswith(".m4s"):
                    written = (root / name / r["uri"].rsplit("/", 1)[1]).read_bytes()
                    assert r["body"] == written, r["uri"]
                    archived += 1
        assert archived == len(segs)
        frames = [f for m in ms for f in m["info"]["frames"]]
        assert len({f["sha256"] for f in frames}) >= 6, "at least 3 distinct frames per 10 s (8 s recorded)"
        assert all(f["source"].endswith(".m4s") and "stream0" in f["source"] for f in frames), (
            "frames from video only"
        )
        log = [e for m in ms for e in log_lines(led, m)]
        assert any(e["step"] == "mpd" and "dynamic MPD" in e["message"] for e in log)
        end = next(led.records(start=s.end_index)).payload
        assert end["ended_by"] == "bound"
        led.close()


@pytest.mark.slow  # command-line runs: start-up of each process
def test_an_mpd_that_is_not_xml_is_one_line_and_claims_nothing(tmp_path, sources):
    root, srv = sources
    home = tmp_path / "home"
    new_home(home).close()
    p = subprocess.run(
        [sys.executable, "-m", "evidence.cli", "livestream", srv.base + "/bad/live.mpd", "--case", CASE, "--duration", "5"],
        env=env_for(home), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert p.returncode == 3 and len(errors) == 1 and "not well-formed XML" in errors[0], p.stderr
    assert "Traceback" not in p.stderr
    from ledger.log import Ledger

    with Ledger.open(home) as led:
        recs = list(led.records())
        end = next(r for r in recs if r.kind == "livestream-end").payload
        assert end["end_reason"] == "bad-manifest" and end["segments"] == 0 and end["frames"] == 0
    # control: the same command on a well-formed live MPD records
    p = subprocess.run(
        [sys.executable, "-m", "evidence.cli", "livestream", srv.base + "/timeline/live.mpd", "--case", CASE, "--duration", "3"],
        env=env_for(home), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert p.returncode == 0 and "(dash)" in p.stdout, p.stderr


MPD = """<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic" availabilityStartTime="2026-01-01T00:00:00Z"
     minimumUpdatePeriod="PT2S" timeShiftBufferDepth="PT10S">
 <BaseURL>https://cdn.example/live/</BaseURL>
 <Period start="PT0S">
  <AdaptationSet contentType="video">
   <SegmentTemplate timescale="1000" media="v/$RepresentationID$/$Time$.m4s" initialization="v/$RepresentationID$/init.mp4">
    <SegmentTimeline><S t="5000" d="2000" r="2"/><S d="1000" r="-1"/></SegmentTimeline>
   </SegmentTemplate>
   <Representation id="low" bandwidth="300000"/>
   <Representation id="high" bandwidth="900000"/>
  </AdaptationSet>
  <AdaptationSet mimeType="audio/mp4" lang="zh">
   <Representation id="a1" bandwidth="64000">
    <SegmentTemplate timescale="48000" duration="96000" startNumber="7" media="a/$Number%04d$.m4s"/>
   </Representation>
  </AdaptationSet>
  <AdaptationSet mimeType="audio/mp4" lang="en"><Representation id="a2" bandwidth="128000">
    <SegmentTemplate duration="2" media="en/$Number$.m4s"/></Representation></AdaptationSet>
 </Period>
</MPD>"""


def test_mpd_templates_timeline_and_clock_numbering():
    mpd = dash.parse(MPD, "https://cdn.example/room/live.mpd")
    assert mpd.dynamic and mpd.minimum_update_s == 2 and mpd.time_shift_s == 10
    video, audio = mpd.tracks
    assert (video.rep_id, audio.rep_id) == ("high", "a1"), "best video; the first audio set only"
    assert video.init_uri == "https://cdn.example/live/v/high/init.mp4"
    now = mpd.availability_start + 15.7  # 15.7 s after the availability start
    v = video.segments(mpd, now)
    assert [s.uri.rsplit("/", 1)[1] for s in v[:4]] == ["5000.m4s", "7000.m4s", "9000.m4s", "11000.m4s"]
    # r="-1" repeats to the live edge: 1 s segments from 11 s up to the last one ended by 15.7 s
    assert [s.time for s in v[3:]] == [11000, 12000, 13000, 14000]
    a = audio.segments(mpd, now)
    # 2 s segments numbered from the clock: 15.7 s - 0.5 s margin -> segments 0..6 ended, 5 kept (10 s buffer)
    assert [s.uri.rsplit("/", 1)[1] for s in a] == [
        "0009.m4s",
        "0010.m4s",
        "0011.m4s",
        "0012.m4s",
        "0013.m4s",
    ]
    assert a[0].start_ms == 4000 and a[-1].duration_ms == 2000
    assert dash.fill("x-$Number%05d$-$$-$Bandwidth$", "r", 5, number=42) == "x-00042-$-5"
    with pytest.raises(CaptureError, match=r"\$Time\$"):
        dash.fill("$Time$", "r", 1, number=1)


@pytest.mark.parametrize(
    "text, message",
    [
        ("not xml at all", "not well-formed XML"),
        ("<html><body/></html>", "root element is <html>"),
        ("<MPD type='dynamic'/>", "no Period"),
        (
            "<MPD><Period><AdaptationSet contentType='video'><Representation id='1'><SegmentList/></Representation></AdaptationSet></Period></MPD>",
            "SegmentList",
        ),
        (
            "<!DOCTYPE x [<!ENTITY a 'aaaaaaaaaa'><!ENTITY b '&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;'><!ENTITY c '&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;'><!ENTITY d '&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;'><!ENTITY e '&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;'><!ENTITY f '&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;'><!ENTITY g '&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;'>]><MPD a='&g;'/>",
            "not",
        ),
    ],
)
def test_bad_mpds_are_one_line(text, message):
    with pytest.raises(CaptureError, match=message) as e:
        dash.parse(text, "http://x/live.mpd")
    assert "\n" not in str(e.value)
    # control: the well-formed MPD parses
    assert dash.parse(MPD, "http://x/live.mpd").tracks
