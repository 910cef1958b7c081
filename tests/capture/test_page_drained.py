"""capture.page's event-loop hygiene: an interrupted capture ends with its one-line error, not tracebacks.

The flake of test_killed_capture_leaves_nothing_for_the_next, made deterministic: a SIGTERM
that lands before ``_drained`` could collect leaves it to be closed outside its loop.
"""

from __future__ import annotations

import asyncio
import gc
import sys

from capture.page import _drained, _quiet_when_cancelled


def _closed_outside_its_loop() -> list[str]:
    seen: list[str] = []
    old = sys.unraisablehook
    sys.unraisablehook = lambda u: seen.append(f"{u.exc_type.__name__}: {u.exc_value}")
    try:
        loop = asyncio.new_event_loop()
        task = loop.create_task(_drained(asyncio.sleep(30)))
        loop.run_until_complete(asyncio.sleep(0.01))  # _drained is now suspended in its try
        loop.close()  # as a process that was interrupted: the task never finished
        del task
        gc.collect()
    finally:
        sys.unraisablehook = old
    return seen


def test_drained_closed_outside_its_loop_prints_nothing():
    assert _closed_outside_its_loop() == []


def test_quiet_handler_passes_on_real_errors():
    loop = asyncio.new_event_loop()
    got: list[dict] = []
    loop.default_exception_handler = got.append  # type: ignore[method-assign]
    try:
        _quiet_when_cancelled(loop, {"message": "x", "exception": asyncio.CancelledError()})
        _quiet_when_cancelled(loop, {"message": "x", "exception": KeyboardInterrupt()})
        _quiet_when_cancelled(loop, {"message": "Task was destroyed but it is pending!"})
        assert got == []
        # control: anything else reaches the default handler
        _quiet_when_cancelled(loop, {"message": "boom", "exception": ValueError("boom")})
        assert [c["message"] for c in got] == ["boom"]
    finally:
        loop.close()
