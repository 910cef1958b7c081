"""``--mode resolve``: a room page on 127.0.0.1 resolved by yt-dlp's generic extractor to a real-time HLS stream."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from live_sources import VIDEO, X264, FileServer, ffmpeg, have_ffmpeg, stop, wait_for
from test_livestream import CASE, check_chain, end_record, log_lines, run, warc_records

from capture.livestream import capture_livestream
from capture.resolve import resolve
from ledger.errors import UsageError
from ledger.log import Ledger
from ledger.sessions import LoginSession

pytestmark = pytest.mark.skipif(not have_ffmpeg(), reason="ffmpeg not installed")

ROOM = (
    b"<!doctype html><html><head><title>Room 7</title></head><body><h1>live sale</h1>"
    b'<video controls autoplay><source src="/hls/live.m3u8" type="application/x-mpegURL"></video></body></html>'
)
EMPTY = b"<!doctype html><html><head><title>Room 8</title></head><body><p>the host is away</p></body></html>"


@pytest.fixture(scope="module")
def room(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FileServer, Path]]:
    """A real-time ffmpeg HLS source under /hls/, the room page playing it, a page with no media."""
    root = tmp_path_factory.mktemp("room")
    hls = root / "hls"
    hls.mkdir()
    src = ffmpeg(
        "-re", *VIDEO, "-t", "120", *X264,
        "-f", "hls", "-hls_time", "1", "-hls_list_size", "6", "-hls_flags", "temp_file",
        "-hls_segment_filename", str(hls / "seg-%05d.ts"), str(hls / "live.m3u8"),
    )  # fmt: skip
    srv = FileServer(root)
    cookies: list[str | None] = []

    def page(body: bytes) -> Any:
        def answer(h: Any) -> None:
            cookies.append(h.headers.get("Cookie"))
            h.send(200, body, "text/html; charset=utf-8")

        return answer

    srv.routes["/room/7"] = page(ROOM)
    srv.routes["/room/8"] = page(EMPTY)
    srv.cookies = cookies  # type: ignore[attr-defined]
    srv.start()
    try:
        wait_for(hls / "live.m3u8", text="#EXTINF")
        yield srv, hls
    finally:
        stop(src)
        srv.stop()


def _new_home(path: Path) -> Path:
    Ledger.init(path, unencrypted=True, origin="test.example/live").close()
    return path


def _count(home: Path) -> int:
    with Ledger.open(home) as led:
        return sum(1 for _ in led.records())


@pytest.mark.slow  # an 8 s capture and three CLI runs: about 30 s
def test_room_page_resolved_recorded_archived_and_a_page_without_media_refused(tmp_path, room):
    srv, hls = room
    home = _new_home(tmp_path / "home")
    before = _count(home)

    # a page with no media: one line, exit 2, nothing appended
    r = run(home, "livestream", srv.base + "/room/8", "--mode", "resolve", "--duration", "8", "--case", CASE)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "found no stream" in lines[0] and "/room/8" in lines[0], r.stderr
    assert _count(home) == before

    # control: the room page with a <video><source> is resolved and recorded as HLS
    r = run(
        home, "livestream", srv.base + "/room/7", "--mode", "resolve", "--duration", "8", "--window", "4",
        "--case", CASE, "--json",
    )  # fmt: skip
    assert r.returncode == 0, (r.stdout, r.stderr)
    s = json.loads(r.stdout)
    assert s["mode"] == "hls" and s["url"] == srv.base + "/hls/live.m3u8", s
    assert s["segments"] >= 4 and s["frames"] >= 3 and len(s["windows"]) >= 2
    with Ledger.open(home) as led:
        session = SimpleNamespace(
            **{k: s[k] for k in ("windows", "session", "frames", "segments", "bytes", "duplicates")}
        )
        session.end_index = s["end_record"]
        ms = check_chain(led, session)  # windows linked, totals, audit_store clean
        facts = ms[0]["info"]["resolved"]
        assert facts["resolver"] == "yt-dlp" and facts["version"]
        assert facts["matched_by"] == "Generic" and facts["extractor"], facts
        assert facts["room_url"] == srv.base + "/room/7"
        assert facts["urls"] == [srv.base + "/hls/live.m3u8"] == [facts["recorded_url"]]
        assert facts["format"]["protocol"].startswith("m3u8") and "User-Agent" in facts["request_headers"]
        assert all(m["info"]["resolved"] == facts for m in ms)
        assert end_record(led, session).payload["resolved"] == facts
        # the room page as served is in the first window's WARC, request and response
        recs = warc_records(led, ms[0])
        page = [x for x in recs if x["uri"] == srv.base + "/room/7"]
        assert [x["type"] for x in page] == ["request", "response"] and page[1]["body"] == ROOM
        assert any(f["url"] == srv.base + "/room/7" and f["status"] == 200 for f in facts["fetches"])
        assert any(e["step"] == "resolve" for e in log_lines(led, ms[0]))
        # and the stream's segments after it, byte-exact as the source wrote them (when still on disk)
        segs = [
            x
            for m in ms
            for x in warc_records(led, m)
            if x["type"] == "response" and x["uri"].endswith(".ts")
        ]
        assert len(segs) >= 4
        on_disk = [x for x in segs if (hls / x["uri"].rsplit("/", 1)[1]).exists()]
        assert on_disk and all((hls / x["uri"].rsplit("/", 1)[1]).read_bytes() == x["body"] for x in on_disk)
    a = run(home, "audit", "--json")
    assert a.returncode == 0, (a.stdout, a.stderr)


def test_session_cookies_sent_by_the_resolver_and_hashed_in_the_exhibit(tmp_path, room):
    srv, _ = room
    secret = "s3cr3t-login-token"
    login = LoginSession.new(
        "buyer",
        {
            "cookies": [
                {"name": "sid", "value": secret, "domain": "127.0.0.1", "path": "/", "expires": -1,
                 "httpOnly": True, "secure": False, "sameSite": "Lax"},
            ],
            "origins": [],
        },
        made_by="test",
    )  # fmt: skip
    n = len(srv.cookies)
    r = resolve(srv.base + "/room/7", login)
    try:
        assert srv.cookies[n:] == [f"sid={secret}"], "the page was fetched with the saved login's cookie"
        page = r.exchanges[0]
        sent = dict(page.request_headers)
        assert sent["Cookie"].startswith("sha256:") and secret not in json.dumps(r.facts)
        assert r.facts["fetches"][0]["request_headers"]["Cookie"] == sent["Cookie"]
        assert r.facts["session_cookies"] == 1
    finally:
        r.close()
    # control: without a login no cookie goes out
    n = len(srv.cookies)
    r = resolve(srv.base + "/room/7")
    r.close()
    assert srv.cookies[n:] == [None] and "Cookie" not in dict(r.exchanges[0].request_headers)
    # a login is taken by resolve (and page) mode, refused where the fetcher sends no cookies
    with pytest.raises(UsageError, match="--session"):
        capture_livestream(srv.base + "/hls/live.m3u8", case=CASE, duration=1, mode="hls", login=login)


def test_resolver_errors_are_one_line(tmp_path, room, closed_port):
    srv, _ = room
    with pytest.raises(UsageError, match="found no stream") as e:
        resolve(srv.base + "/room/8")
    assert "\n" not in str(e.value)
    with pytest.raises(Exception, match="cannot reach") as e:
        resolve(f"http://127.0.0.1:{closed_port}/room/1")
    assert "\n" not in str(e.value) and type(e.value).__name__ == "CaptureError"
    # control: the same resolver on the media page finds the stream
    r = resolve(srv.base + "/room/7")
    r.close()
    assert r.url == srv.base + "/hls/live.m3u8"
