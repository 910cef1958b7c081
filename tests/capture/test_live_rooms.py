"""Several rooms at once (``--urls``), stopped by a real SIGINT: every room seals its open window and ends."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from typing import Any

import pytest
from live_sources import env_for, have_ffmpeg
from test_livestream import CASE, _load_serve, manifest, new_home, served_path, wait_windows

from ledger.log import Ledger
from verify.ledger import audit_store

pytestmark = pytest.mark.skipif(not have_ffmpeg(), reason="ffmpeg not installed")


@pytest.fixture(scope="module")
def live() -> Any:
    server = _load_serve().LiveServer().start()
    yield server
    server.stop()


@pytest.mark.slow  # command-line runs: start-up of each process
def test_three_rooms_and_one_dead_until_sigint(tmp_path, live, closed_port):
    home = tmp_path / "home"
    new_home(home).close()
    rooms = [
        live.url("index"),
        live.url("index", "shop-fmp4"),
        live.url("master"),
        f"http://127.0.0.1:{closed_port}/dead.m3u8",
    ]
    (tmp_path / "rooms.txt").write_text("# today's rooms\n" + "\n".join(rooms) + "\n\n", "utf-8")
    p = subprocess.Popen(
        [sys.executable, "-m", "evidence.cli", "livestream", "--urls", str(tmp_path / "rooms.txt"), "--case", CASE,
         "--duration", "120", "--window", "2", "--concurrency", "4", "--json"],
        env=env_for(home), text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_windows(home, 7, timeout=45)  # the dead room's one window, two or more of each live room
    except AssertionError:
        p.kill()
        raise AssertionError(p.communicate()[1][-3000:]) from None
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0 and "Traceback" not in err, err
    result = json.loads(out)
    sessions = result["rooms"]
    assert [s["url"] for s in sessions] == rooms and result["failed"] == []
    with Ledger.open(home) as led:
        for s in sessions[:3]:
            assert s["end_reason"] == "interrupted" and s["segments"] > 0 and s["frames"] > 0
            end = next(led.records(start=s["end_record"]))
            assert end.kind == "livestream-end" and end.payload["windows"] == s["windows"]
            assert end.payload["ended_by"] == "interrupted"
            prev = None
            for i in s["windows"]:
                m = manifest(led, i)
                assert m["info"]["session"] == s["session"], "each room its own windows"
                assert m["info"]["prev_window"] == prev
                prev = next(led.records(start=i)).payload["manifest"]["sha256"]
                for seg in m["info"]["segments"]:
                    assert seg["sha256"] in {x.sha256 for x in live.served_by_path()[served_path(seg["url"])]}
        dead = sessions[3]
        assert dead["end_reason"] == "network-error" and dead["segments"] == 0
        assert len({s["session"] for s in sessions}) == 4
        res = audit_store(led.store, led.config.trusted_vkeys)
        assert res.ok, res.problems


@pytest.mark.slow  # command-line runs: start-up of each process
def test_a_bad_room_line_is_one_line_and_nothing_starts(tmp_path, live):
    home = tmp_path / "home"
    new_home(home).close()
    cases = [
        ([live.url("index"), "not a url"], 2, "room 2:"),
        ([], 2, "lists no URL"),
        ([live.url("index")] * 65, 2, "at most 64"),
    ]
    procs = []
    for n, (lines, code, text) in enumerate(cases):
        f = tmp_path / f"rooms{n}.txt"
        f.write_text("\n".join(lines), "utf-8")
        args = ["livestream", "--urls", str(f), "--case", CASE, "--duration", "3"]
        procs.append((args, code, text))
    procs.append(
        (
            ["livestream", live.url("index"), "--urls", str(f), "--case", CASE, "--duration", "3"],
            2,
            "either a stream URL or --urls",
        )
    )
    running = [
        (
            subprocess.Popen(
                [sys.executable, "-m", "evidence.cli", *a],
                env=env_for(home),
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            ),
            code,
            text,
        )
        for a, code, text in procs
    ]
    for p, code, text in running:
        _, err = p.communicate(timeout=90)
        errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert p.returncode == code and len(errors) == 1 and text in errors[0], err
    with Ledger.open(home) as led:
        assert [r.kind for r in led.records()] == ["log-init"]
    # control: the same file without the bad line records both rooms
    f.write_text(f"{live.url('index')}\n{live.url('index', 'still')}\n", "utf-8")
    p = subprocess.run(
        [sys.executable, "-m", "evidence.cli", "livestream", "--urls", str(f), "--case", CASE, "--duration", "3", "--window", "2"],
        env=env_for(home), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert p.returncode == 0 and p.stdout.count("room ") == 2 and "ended: duration" in p.stdout, p.stderr
