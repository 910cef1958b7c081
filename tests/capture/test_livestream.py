"""Livestream capture against a live HLS stream generated on 127.0.0.1 by ffmpeg.

One server (``examples/live-stream/serve.py``) runs for the module; each
capture asks for its own scenario token, so its playlist state (end, stall,
errors) starts at its first request. Captures that do not depend on each
other run in threads to keep the module's wall time short.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import pytest
from warcio.archiveiterator import ArchiveIterator

from capture import capture_livestream
from ledger.log import Ledger
from verify.ledger import audit_store

ROOT = Path(__file__).resolve().parents[2]
CASE = "SAMR-2026-LIVE"

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None and not os.environ.get("CI"), reason="ffmpeg not installed")


def _load_serve() -> Any:
    spec = importlib.util.spec_from_file_location("live_stream_serve", ROOT / "examples" / "live-stream" / "serve.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up by name
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def live() -> Any:
    server = _load_serve().LiveServer().start()
    yield server
    server.stop()


def new_home(path: Path) -> Ledger:
    return Ledger.init(path, unencrypted=True, origin="test.example/live")


def capture(tmp_path: Path, name: str, url: str, **kw: Any) -> tuple[Ledger, Any]:
    return _capture(new_home(tmp_path / name), url, **kw)


def capture_later(tmp_path: Path, name: str, url: str, **kw: Any) -> Any:
    """A capture job for ``parallel``; its home is made now, in this thread (alembic is not thread-safe)."""
    led = new_home(tmp_path / name)
    return lambda: _capture(led, url, **kw)


def _capture(led: Ledger, url: str, **kw: Any) -> tuple[Ledger, Any]:
    kw.setdefault("duration", 5)
    kw.setdefault("window", 2)
    return led, capture_livestream(url, case=CASE, ledger=led, **kw)


def parallel(*jobs: Any) -> list[Any]:
    with ThreadPoolExecutor(len(jobs)) as pool:
        return [f.result() for f in [pool.submit(j) for j in jobs]]


def manifest(led: Ledger, index: int) -> dict[str, Any]:
    rec = next(led.records(start=index))
    assert rec.index == index and rec.kind == "exhibit"
    with led.artifacts.open(rec.payload["manifest"]["sha256"]) as f:
        return json.loads(f.read())


def windows(led: Ledger, session: Any) -> list[dict[str, Any]]:
    return [manifest(led, i) for i in session.windows]


def end_record(led: Ledger, session: Any) -> Any:
    rec = next(led.records(start=session.end_index))
    assert rec.kind == "livestream-end"
    return rec


def artifact(led: Ledger, m: dict[str, Any], name: str) -> bytes:
    a = next(a for a in m["artifacts"] if a["name"] == name)
    with led.artifacts.open(a["sha256"]) as f:
        data = f.read()
    assert hashlib.sha256(data).hexdigest() == a["sha256"]
    return data


def warc_records(led: Ledger, m: dict[str, Any]) -> list[dict[str, Any]]:
    warc = next(a["name"] for a in m["artifacts"] if a["role"] == "warc")
    out = []
    for r in ArchiveIterator(io.BytesIO(artifact(led, m, warc))):
        body = r.raw_stream.read()
        out.append(
            {
                "type": r.rec_type,
                "uri": r.rec_headers.get_header("WARC-Target-URI"),
                "status": int(r.http_headers.get_statuscode()) if r.rec_type == "response" else None,
                "truncated": r.rec_headers.get_header("WARC-Truncated"),
                "sha256": hashlib.sha256(body).hexdigest(),
                "body": body,
            }
        )
    return out


def log_lines(led: Ledger, m: dict[str, Any]) -> list[dict[str, Any]]:
    name = next(a["name"] for a in m["artifacts"] if a["role"] == "capture-log")
    return [json.loads(ln) for ln in artifact(led, m, name).decode().splitlines()]


def served_path(uri: str) -> str:
    p = urlsplit(uri)
    return p.path + (f"?{p.query}" if p.query else "")


def check_chain(led: Ledger, session: Any) -> list[dict[str, Any]]:
    """Windows linked in order, end record totals equal the windows' sums, audit clean."""
    ms = windows(led, session)
    assert ms, "no window was sealed"
    prev = None
    for n, (idx, m) in enumerate(zip(session.windows, ms)):
        info = m["info"]
        assert info["type"] == "livestream-window" and info["session"] == session.session and m["case"] == CASE
        assert info["window"] == n or n > 0  # empty windows are not sealed, so numbers may skip
        assert info["prev_window"] == (prev[1] if prev else None)
        assert info["prev_window_record"] == (prev[0] if prev else None)
        prev = (idx, next(led.records(start=idx)).payload["manifest"]["sha256"])
    end = end_record(led, session).payload
    assert end["session"] == session.session and end["windows"] == session.windows
    assert end["last_window"] == prev[1]
    assert end["frames"] == sum(len(m["info"]["frames"]) for m in ms) == session.frames
    assert end["segments"] == session.segments
    assert end["bytes"] == sum(m["info"]["bytes"] for m in ms) == session.bytes
    assert end["duplicates"] == session.duplicates == sum(
        m["info"]["repeats_of_previous"] + sum(f["repeats"] for f in m["info"]["frames"]) for m in ms
    )
    res = audit_store(led.store, led.config.trusted_vkeys)
    assert res.ok, res.problems
    return ms


# -- HLS ----------------------------------------------------------------------------


def test_hls_segments_frames_and_windows(tmp_path, live):
    from PIL import Image

    t0 = time.monotonic()
    led, s = capture(tmp_path, "h", live.url("index"), duration=5, window=2, operator="Li Wei")
    took = time.monotonic() - t0
    assert s.mode == "hls" and s.end_reason == "duration" and not s.errors
    assert 5 <= took < 12  # the duration bound, plus sealing the last window
    ms = check_chain(led, s)
    assert len(ms) >= 2
    served = live.served_by_path()

    # every segment the windows list was archived with exactly the served bytes
    segs = [seg for m in ms for seg in m["info"]["segments"]]
    assert len(segs) == s.segments >= 5
    seqs = [seg["seq"] for seg in segs]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a segment was skipped"
    archived = {}
    for m in ms:
        for r in warc_records(led, m):
            if r["type"] == "response":
                assert r["sha256"] in {x.sha256 for x in served[served_path(r["uri"])]}, r["uri"]
                archived[r["uri"]] = r["sha256"]
    for seg in segs:
        assert seg["status"] == 200 and archived[seg["url"]] == seg["sha256"]
        assert seg["sha256"] in {x.sha256 for x in served[served_path(seg["url"])]}
    assert any(u.endswith("index.m3u8") for u in archived), "playlists are archived too"

    # decoded frames: one per second of media, PTS increasing, the price overlay changing
    frames = [f for m in ms for f in m["info"]["frames"]]
    assert len(frames) == s.frames >= 5 and all(f["kind"] == "frame" for f in frames)
    assert len({f["sha256"] for f in frames}) == len(frames)
    times = [f["media_ms"] for f in frames]
    assert times == sorted(times) and all(b - a >= 1000 for a, b in zip(times, times[1:]))
    assert all(f["time_base"] and isinstance(f["pts"], int) for f in frames)
    price_strips = set()
    for m in ms:
        for f in m["info"]["frames"]:
            im = Image.open(io.BytesIO(artifact(led, m, f["name"])))
            assert im.size == (320, 180)
            price_strips.add(hashlib.sha256(im.crop((0, 150, 200, 180)).tobytes()).hexdigest())
    assert len(price_strips) >= 4, "the price overlay should change from second to second"

    first = ms[0]
    assert any(a["role"] == "environment" for a in first["artifacts"])
    assert first["info"]["operator"] == "Li Wei" and first["info"]["url"] == s.url
    log = log_lines(led, ms[-1])
    assert log[-1]["step"] == "end" and log[-1]["reason"] == "duration"


def test_fmp4_via_master_playlist_to_the_end_of_the_stream(tmp_path, live):
    led, s = capture(tmp_path, "f", live.url("master", "shop-fmp4", "end-2"), duration=20, window=2)
    assert s.end_reason == "stream-ended" and not s.errors
    ms = check_chain(led, s)
    log = [e for m in ms for e in log_lines(led, m)]
    assert any(e["step"] == "variant" and e["bandwidth"] == 400000 for e in log)
    assert any("ENDLIST" in e["message"] for e in log)
    segs = [seg for m in ms for seg in m["info"]["segments"]]
    assert segs[0].get("init") and segs[0]["url"].endswith("/init.mp4")
    frames = [f for m in ms for f in m["info"]["frames"]]
    # the init section was joined to each fragment, or nothing would have decoded
    assert len(frames) == len(segs) - 1 >= 3 and len({f["sha256"] for f in frames}) == len(frames)


def test_stall_http_errors_and_broken_segments_end_cleanly(tmp_path, live):
    jobs = {
        "stall": capture_later(tmp_path, "stall", live.url("index", "shop", "stall-1"), duration=20),
        "error": capture_later(tmp_path, "error", live.url("index", "shop", "error-1"), duration=20),
        "badseg": capture_later(tmp_path, "badseg", live.url("index", "shop", "badseg-1"), duration=4),
        "drop": capture_later(tmp_path, "drop", live.url("index", "shop", "drop-1"), duration=4),
        "gone": capture_later(tmp_path, "gone", "http://127.0.0.1:9/live/index.m3u8", duration=4),
    }
    t0 = time.monotonic()
    results = dict(zip(jobs, parallel(*jobs.values())))
    assert time.monotonic() - t0 < 15

    def events(name: str) -> list[dict[str, Any]]:
        led, s = results[name]
        return [e for m in check_chain(led, s) for e in log_lines(led, m)]

    led, s = results["stall"]
    assert s.end_reason == "stalled" and s.segments >= 5
    assert any(e["step"] == "playlist" and "no new segment" in e["message"] and e["level"] == "warning" for e in events("stall"))

    led, s = results["error"]
    assert s.end_reason == "http-error" and s.segments >= 5
    ev = events("error")
    assert sum("503" in e["message"] for e in ev if e["level"] == "error") == 3
    assert end_record(led, s).payload["errors"] == len(s.errors) == 3

    led, s = results["badseg"]
    assert s.end_reason == "duration"
    bad = [seg for m in windows(led, s) for seg in m["info"]["segments"] if seg["status"] == 500]
    assert len(bad) == 1
    assert any(e["step"] == "segment" and e["status"] == 500 for e in events("badseg"))
    seqs = [seg["seq"] for m in windows(led, s) for seg in m["info"]["segments"]]
    assert max(seqs) > bad[0]["seq"], "the capture went on after the broken segment"

    led, s = results["drop"]
    assert s.end_reason == "duration"
    cut = [r for m in windows(led, s) for r in warc_records(led, m) if r["truncated"]]
    assert len(cut) == 1 and cut[0]["truncated"] == "disconnect"
    served = live.served_by_path()[served_path(cut[0]["uri"])]
    assert served[0].complete is False and cut[0]["sha256"] == served[0].sha256

    led, s = results["gone"]
    assert s.end_reason == "network-error" and s.segments == 0 and "connection refused" in s.errors[0]
    assert any(e["level"] == "error" and "connection refused" in e["message"] for e in events("gone"))


def test_bounds_and_dedupe(tmp_path, live):
    jobs = [
        capture_later(tmp_path, "frames", live.url("index"), duration=20, max_frames=3),
        capture_later(tmp_path, "bytes", live.url("index"), duration=20, max_bytes=150_000),
        capture_later(tmp_path, "dup", live.url("index", "still"), duration=6, window=3, dedupe=True),
        capture_later(tmp_path, "nodup", live.url("index", "still"), duration=6, window=3),
    ]
    t0 = time.monotonic()
    (led_f, sf), (led_b, sb), (led_d, sd), (led_n, sn) = parallel(*jobs)
    assert time.monotonic() - t0 < 12

    assert sf.end_reason == "max-frames" and sf.frames == 3
    check_chain(led_f, sf)

    assert sb.end_reason == "max-bytes" and sb.bytes <= 150_000
    ms = check_chain(led_b, sb)
    records = [r for m in ms for r in warc_records(led_b, m) if r["type"] == "response"]
    assert sum(len(r["body"]) for r in records) == sb.bytes
    assert records[-1]["truncated"] == "length"

    # the still picture changes its price every 4 s: stored frames differ, repeats are counted
    assert sd.end_reason == "duration" and sd.duplicates >= 4
    ms = check_chain(led_d, sd)
    assert sd.frames + sd.duplicates >= 9
    assert ms[0]["info"]["dedupe"]["method"].startswith("grayscale thumbnail")
    assert sn.duplicates == 0 and sn.frames >= 9 and windows(led_n, sn)[0]["info"]["dedupe"] is None
    assert sd.frames < sn.frames


def test_progressive_download_in_window_parts(tmp_path, live):
    led, s = capture(tmp_path, "p", live.base + "/clip.mp4?rate=150000", duration=20, window=1)
    assert s.mode == "progressive" and s.end_reason == "stream-ended" and not s.errors
    ms = check_chain(led, s)
    assert len(ms) >= 2
    clip = live.clip.read_bytes()
    parts = b"".join(artifact(led, m, seg["part"]) for m in ms for seg in m["info"]["segments"])
    assert parts == clip, "the window parts put together are the served file"
    whole = [r for m in ms for r in warc_records(led, m) if r["type"] == "response"]
    assert len(whole) == 1 and whole[0]["sha256"] == hashlib.sha256(clip).hexdigest()
    frames = [f for m in ms for f in m["info"]["frames"]]
    assert [f["media_ms"] for f in frames] == [0, 1000, 2000, 3000, 4000, 5000]


# -- a page that plays the stream --------------------------------------------------


@pytest.mark.browser
def test_page_that_plays_the_stream_until_ctrl_c(tmp_path, live):
    """The command on a page, stopped the way a terminal does it: SIGINT to the whole process group."""
    home = tmp_path / "page"
    new_home(home).close()
    p = cli(home, "livestream", live.url("page", "shop-fmp4"), "--case", CASE, "--duration", "60", "--window", "2", "--json", start_new_session=True)
    try:
        wait_windows(home, 4, timeout=45)
    except AssertionError:
        os.killpg(p.pid, signal.SIGKILL)
        raise AssertionError(f"stderr of the capture: {p.communicate()[1][-3000:]}") from None
    os.killpg(p.pid, signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0 and "Traceback" not in err and not err.strip(), err
    d = json.loads(out)
    s = SimpleNamespace(**d, end_index=d["end_record"])
    assert s.mode == "page" and s.end_reason == "interrupted" and not s.errors
    led = Ledger.open(home)
    ms = check_chain(led, s)
    shots = [f for m in ms for f in m["info"]["frames"] if f["kind"] == "screenshot"]
    decoded = [f for m in ms for f in m["info"]["frames"] if f["kind"] == "frame"]
    assert len(shots) >= 4 and len({f["sha256"] for f in shots}) == len(shots)
    playing = [f for f in shots if f["player"]["ready_state"] >= 2]
    assert playing and max(f["player"]["media_ms"] for f in playing) > 0
    assert len(decoded) >= 3, "fMP4 fragments from the page were joined to their init section and decoded"
    served = live.served_by_path()
    uris = set()
    for m in ms:
        for r in warc_records(led, m):
            if r["type"] == "response" and r["status"] == 200 and "/hls/" in r["uri"]:
                assert r["sha256"] in {x.sha256 for x in served[served_path(r["uri"])]}, r["uri"]
                uris.add(r["uri"].rsplit("/", 1)[1])
    assert {"index.m3u8", "init.mp4"} <= uris and sum(u.endswith(".m4s") for u in uris) >= 5
    assert any(a["role"] == "environment" for a in ms[0]["artifacts"])
    assert any(e["step"] == "signal" for e in log_lines(led, ms[-1]))
    led.close()


# -- the command, killed and interrupted ---------------------------------------------


def cli(home: Path, *args: str, tmpdir: Path | None = None, **kw: Any) -> subprocess.Popen[str]:
    env = dict(os.environ, EVIDENCE_HOME=str(home), COLUMNS="200", PYTHONPATH=str(ROOT))
    if tmpdir is not None:
        # Not for Chromium: its profile's socket path must stay under 108 bytes.
        tmpdir.mkdir(exist_ok=True)
        env["TMPDIR"] = str(tmpdir)
    return subprocess.Popen(
        [sys.executable, "-m", "evidence.cli", *args], env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw,
    )  # fmt: skip


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    p = cli(home, *args)
    out, err = p.communicate(timeout=120)
    assert "Traceback" not in err, err
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def wait_windows(home: Path, n: int, timeout: float = 30) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with Ledger.open(home) as led:
            count = sum(1 for r in led.records() if r.kind == "exhibit")
        if count >= n:
            return count
        time.sleep(0.3)
    raise AssertionError(f"fewer than {n} windows sealed after {timeout} s")


def test_sigkill_leaves_sealed_windows_verifiable_and_sigint_closes(tmp_path, live):
    homes = {k: tmp_path / k for k in ("kill", "int")}
    for h in homes.values():
        new_home(h).close()
    args = ("--case", CASE, "--duration", "60", "--window", "1", "--json")
    # TMPDIR: what the killed capture leaves behind stays inside the test's directory
    killed = cli(homes["kill"], "livestream", live.url("index"), *args, tmpdir=tmp_path / "tmp")
    interrupted = cli(homes["int"], "livestream", live.url("index"), *args, tmpdir=tmp_path / "tmp")
    try:
        wait_windows(homes["kill"], 3)
        wait_windows(homes["int"], 2)
    finally:
        killed.send_signal(signal.SIGKILL)
        interrupted.send_signal(signal.SIGINT)
    killed.communicate(timeout=30)
    out, err = interrupted.communicate(timeout=30)
    assert killed.returncode == -signal.SIGKILL

    # killed: every sealed window is intact and provable, the open one is simply absent
    # from the ledger; its files are left unsealed in the temporary directory
    assert list((tmp_path / "tmp").glob("evidence-live-*/windows/w*/window-*.warc.gz"))
    p = run(homes["kill"], "audit")
    assert p.returncode == 0, p.stderr
    with Ledger.open(homes["kill"]) as led:
        recs = list(led.records())
        assert [r.kind for r in recs if r.kind == "livestream-end"] == []
        exhibits = [r for r in recs if r.kind == "exhibit"]
        assert len(exhibits) >= 3
        prev = None
        for r in exhibits:
            m = manifest(led, r.index)
            led.artifacts.check(r.payload["manifest"]["sha256"])
            for a in m["artifacts"]:
                led.artifacts.check(a["sha256"])
            assert [x["sha256"] for x in r.payload["artifacts"]] == [a["sha256"] for a in m["artifacts"]]
            assert m["info"]["prev_window"] == prev
            prev = r.payload["manifest"]["sha256"]
            for seg in m["info"]["segments"]:
                assert seg["sha256"] in {x.sha256 for x in live.served_by_path()[served_path(seg["url"])]}

    # interrupted: a clean end with the close record
    assert "Traceback" not in err and interrupted.returncode == 0, err
    session = json.loads(out)
    assert session["end_reason"] == "interrupted" and session["end_record"] is not None
    with Ledger.open(homes["int"]) as led:
        end = next(led.records(start=session["end_record"]))
        assert end.kind == "livestream-end" and end.payload["end_reason"] == "interrupted"
        assert end.payload["windows"] == session["windows"] and end.payload["frames"] == session["frames"] > 0
        log = log_lines(led, manifest(led, session["windows"][-1]))
        assert any(e["step"] == "signal" and "SIGINT" in e["message"] for e in log)
    assert run(homes["int"], "audit").returncode == 0


def test_cli_reports_bad_input_in_one_line(tmp_path, live, closed_port):
    home = tmp_path / "home"
    new_home(home).close()
    url = live.url("index")
    cases = [
        ((url, "--case", CASE, "--duration", "-5"), 2, "--duration"),
        (("not a url", "--case", CASE, "--duration", "5"), 2, "URL"),
        (("ftp://127.0.0.1/x.m3u8", "--case", CASE, "--duration", "5"), 2, "http"),
        ((url, "--case", CASE, "--duration", "5", "--frame-interval", "0"), 2, "--frame-interval"),
        ((url, "--case", CASE, "--duration", "5", "--max-frames", "0"), 2, "--max-frames"),
        ((f"http://127.0.0.1:{closed_port}/room/7", "--case", CASE, "--duration", "5"), 3, "connection refused"),
        ((f"http://127.0.0.1:{closed_port}/live.m3u8", "--case", CASE, "--duration", "5"), 3, "nothing was recorded"),
    ]
    procs = [(cli(home, "livestream", *a), code, text) for a, code, text in cases]
    for p, code, text in procs:
        out, err = p.communicate(timeout=60)
        assert "Traceback" not in err
        assert p.returncode == code, (p.args, p.returncode, err)
        errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and text in errors[0], err
    with Ledger.open(home) as led:
        kinds = [r.kind for r in led.records()]
    # bad arguments recorded nothing; the unreachable playlist left its window log and end record
    assert kinds == ["log-init", "exhibit", "livestream-end"]
    p = run(home, "livestream", url, "--case", CASE, "--duration", "3", "--window", "2", "--operator", "Li Wei")
    assert p.returncode == 0 and "window(s) sealed" in p.stdout and "ended: duration" in p.stdout


def test_losing_the_open_window_on_disk_is_one_error_and_sealed_windows_stay(tmp_path, live, monkeypatch):
    import tempfile
    import threading

    from ledger.errors import CaptureError

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    led = new_home(tmp_path / "home")

    def pull_the_disk() -> None:
        wait_windows(tmp_path / "home", 1)
        for d in scratch.glob("evidence-live-*/windows"):
            shutil.rmtree(d)

    t = threading.Thread(target=pull_the_disk)
    t.start()
    with pytest.raises(CaptureError, match="could not be sealed") as e:
        capture_livestream(live.url("index"), case=CASE, ledger=led, duration=20, window=1)
    t.join()
    assert "\n" not in str(e.value) and "no end record" in str(e.value)
    kinds = [r.kind for r in led.records()]
    assert kinds.count("exhibit") >= 1 and "livestream-end" not in kinds
    assert audit_store(led.store, led.config.trusted_vkeys).ok
    led.close()
