"""Interactive capture: a headed browser, the investigator's pages, one exhibit with its video."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import sys
import threading

import av
import pytest

from capture.interactive import VirtualDisplay, capture_interactive, until_enter
from ledger.errors import CaptureError

pytestmark = pytest.mark.browser


@pytest.fixture(autouse=True)
def _display():
    if not os.environ.get("DISPLAY") and shutil.which("Xvfb") is None and not os.environ.get("CI"):
        pytest.skip("no DISPLAY and no Xvfb (apt-get install xvfb)")


def test_pages_visited_and_video_in_one_exhibit(home, shop):
    async def investigator(page):
        # An investigator reads each page for a moment; the snapshot is taken meanwhile.
        await page.goto(shop.url("/zh-a"))
        await page.wait_for_timeout(2000)
        await page.goto(shop.url("/zh-b"))
        await page.wait_for_timeout(2000)

    ex = capture_interactive(shop.url("/item/123"), case="C-I", operator="Li Wei", ledger=home, done=investigator, settle_timeout=1)
    info = ex.manifest["info"]
    assert info["mode"] == "interactive" and info["final_url"] == shop.url("/zh-b")
    assert [v["url"] for v in info["visits"]] == [shop.url("/item/123"), shop.url("/zh-a"), shop.url("/zh-b")]
    assert info["interaction"]["handed_over"] <= info["interaction"]["sealed"]
    assert info["environment_check"]["headless"] is False
    arts = {a.name: a for a in ex.artifacts}
    for v in info["visits"]:
        assert "snapshot_error" not in v, v
        # Every page visited has its own screenshot and DOM, hashed in the manifest.
        assert arts[v["screenshot"]].role == "visit-screenshot" and arts[v["dom"]].role == "visit-dom"
    dom_b = home.artifacts.path_for(arts[info["visits"][2]["dom"]].sha256).read_text("utf-8")
    assert "正品行货全国联保" in dom_b
    video = next(a for a in ex.artifacts if a.role == "process-video")
    assert video.media_type == "video/webm"
    with av.open(str(home.artifacts.path_for(video.sha256))) as c:
        assert sum(1 for _ in c.decode(video=0)) > 0
    assert {"name": video.name, "sha256": video.sha256} in ex.record.payload["artifacts"]
    assert "screenshot-full" in {a.role for a in ex.artifacts}


def test_event_seals_and_closing_the_window_records_nothing(home, shop):
    done = threading.Event()
    timer = threading.Timer(1.5, done.set)
    timer.start()
    ex = capture_interactive(shop.url("/zh-a"), case="C-I", ledger=home, done=done, record_process=False, settle_timeout=1)
    assert [v["url"] for v in ex.manifest["info"]["visits"]] == [shop.url("/zh-a")]
    assert not any(a.role == "process-video" for a in ex.artifacts)
    size = home.size()

    async def closes_window(page):
        await page.close()
        await asyncio.sleep(60)

    with pytest.raises(CaptureError, match="closed before"):
        capture_interactive(shop.url("/zh-a"), case="C-I", ledger=home, done=closes_window, settle_timeout=1)
    assert home.size() == size


def test_until_enter_reads_a_line():
    r, w = os.pipe()
    reader = os.fdopen(r)
    wait = until_enter(reader)

    async def go():
        task = asyncio.ensure_future(wait(None))
        await asyncio.sleep(0.2)
        assert not task.done()
        os.write(w, b"\n")
        await asyncio.wait_for(task, 5)

    asyncio.run(go())
    os.close(w)
    reader.close()


@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb not installed")
def test_virtual_display():
    with VirtualDisplay(800, 600) as display:
        assert display.startswith(":")
        vd_proc = subprocess.run(["xdpyinfo", "-display", display], capture_output=True) if shutil.which("xdpyinfo") else None
        assert vd_proc is None or vd_proc.returncode == 0


def test_cli_interactive_with_enter(tmp_path, shop):
    home = tmp_path / "home"
    env = dict(os.environ, EVIDENCE_HOME=str(home), COLUMNS="200")
    subprocess.run([sys.executable, "-m", "evidence.cli", "init", "--no-passphrase"], env=env, check=True, capture_output=True)
    p = subprocess.Popen(
        [sys.executable, "-m", "evidence.cli", "capture", "--interactive", shop.url("/zh-a"), "--case", "C-I", "--json", "--settle-timeout", "1"],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    # Enter is pressed a little after the browser is up; the page is sealed then.
    out, err = p.communicate("\n", timeout=180)
    assert p.returncode == 0, err
    assert "press Enter" in err.replace("\n", " ") or "Press Enter" in err.replace("\n", " ")
    import json

    ex = json.loads(out)["exhibits"][0]
    assert ex["pages_visited"] == 1 and ex["process_video"]
    assert len(hashlib.sha256(b"").hexdigest()) == len(ex["process_video"])
