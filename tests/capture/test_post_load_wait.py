"""The wait on the page's own clock after its load event (``CaptureOptions.post_load_wait``).

The default window and its guarantee are tested in ``test_hard_pages.py``
(a timer at the end of the window); here the option itself: a longer window
catches a later timer, 0 switches the wait off and the exhibit says so.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hard_fixtures import XHR_PRICE, HardShop

from capture.options import POST_LOAD_WAIT, CaptureOptions
from capture.snapshots import POST_LOAD_MS
from ledger.errors import UsageError

OFF_WARNING = "were not waited for (post_load_wait 0)"


def test_post_load_wait_is_checked_and_recorded_in_milliseconds():
    for bad in (-0.1, 61, True, "1"):
        with pytest.raises(UsageError, match="post_load_wait"):
            CaptureOptions(post_load_wait=bad)
    # Control: the bounds themselves are accepted, and the default is the one the snapshots use.
    assert CaptureOptions(post_load_wait=0).post_load_wait == 0
    assert CaptureOptions(post_load_wait=60).to_json()["post_load_wait_ms"] == 60000
    d = CaptureOptions(post_load_wait=2.5).to_json()
    assert d["post_load_wait_ms"] == 2500 and "post_load_wait" not in d
    assert CaptureOptions().post_load_wait == POST_LOAD_WAIT and POST_LOAD_MS == round(POST_LOAD_WAIT * 1000)


@pytest.fixture(scope="module")
def hard(serve):
    shop = HardShop(serve)
    yield shop
    shop.stop()


def capture(browser, hard, path: str, tmp_path: Path, **options: Any) -> Any:
    return browser.capture(hard.url(path), tmp_path / re.sub(r"\W+", "_", path), **options)


def log_messages(pc: Any) -> list[str]:
    lines = pc.artifact("capture-log").path.read_text("utf-8").splitlines()
    return [json.loads(line)["message"] for line in lines]


@pytest.mark.browser
def test_a_longer_window_waits_for_a_later_timer(browser, hard, tmp_path):
    # The timer is due 2.5 s after load: past the default window, inside this one.
    pc = capture(browser, hard, "/xhr-price?after=2500", tmp_path, post_load_wait=3)
    assert XHR_PRICE in pc.artifact("dom").path.read_text()
    assert any("timers due within 3000 ms of load" in m for m in log_messages(pc))
    assert not any(OFF_WARNING in w for w in pc.warnings)


@pytest.mark.browser
def test_no_window_is_a_warning(browser, hard, tmp_path):
    pc = capture(browser, hard, "/xhr-price?after=600000", tmp_path, post_load_wait=0)
    assert any(OFF_WARNING in w for w in pc.warnings)
    assert not any("on the page's clock" in m for m in log_messages(pc))
    # Control: the same page with the default window waits, and does not warn.
    pc = capture(browser, hard, "/xhr-price?after=600000", tmp_path / "default")
    assert not any(OFF_WARNING in w for w in pc.warnings)
    assert any(f"timers due within {POST_LOAD_MS} ms of load" in m for m in log_messages(pc))
