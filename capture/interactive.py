"""Interactive capture: the investigator drives a visible browser, we record.

    import threading
    from capture.interactive import capture_interactive
    done = threading.Event()          # set it when the investigator is finished
    ex = capture_interactive("https://shop.example/", case="SAMR-2026-017",
                             operator="Li Wei", done=done)

The browser opens headed (on the user's display, or on a private Xvfb when
there is none), loads the URL and is handed over: the investigator logs in,
searches, navigates to the listing. All traffic goes into the exhibit's WARC,
every page loaded in the main window is listed with its time and
snapshotted (viewport screenshot and DOM), the whole session is recorded
as the process video, and when ``done`` fires the final state is captured
(screenshots, DOM, MHTML) and sealed as one exhibit.

``done`` is a ``threading.Event``, or an async function given the
Playwright page that returns when the investigator is finished (tests pass
a script that clicks through pages; the CLI waits for Enter on stdin).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO

from ledger.errors import EnvironmentProblem
from ledger.exhibit import Exhibit

from . import xvfb
from .browser import Browser
from .options import CaptureOptions, check_url
from .page import _check_case, _open_ledger, _run, latest_anchor, workdir
from .session import Interaction, PageCapture, capture_into

if TYPE_CHECKING:
    from ledger.log import AtCapture

class VirtualDisplay:
    """A private Xvfb server for a headed browser on a machine without a display.

    ``with VirtualDisplay() as display:`` gives ``":N"``; Xvfb picks a free
    display number itself (``-displayfd``), so parallel captures do not collide.
    """

    def __init__(self, width: int = 1920, height: int = 1080):
        self.size = f"{width}x{height}x24"
        self.proc: subprocess.Popen[bytes] | None = None
        self.display: str | None = None

    def __enter__(self) -> str:
        if shutil.which("Xvfb") is None:
            raise EnvironmentProblem(
                "an interactive capture needs a display: set DISPLAY, or install Xvfb (apt-get install xvfb)"
            )
        self.proc, self.display = xvfb.start_xvfb(self.size, extra=("-noreset",))
        return self.display

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        xvfb.end(self.proc)
        self.proc = None


def until_event(event: threading.Event, poll: float = 0.1) -> Interaction:
    """Done when ``event`` is set (from any thread)."""

    async def wait(_page: Any) -> None:
        # Polling keeps no thread blocked on the event if the capture fails first.
        while not event.is_set():
            await asyncio.sleep(poll)

    return wait


def until_enter(stream: TextIO | None = None, prompt: Callable[[], None] | None = None) -> Interaction:
    """Done when a line (Enter) or end of input arrives on ``stream`` (stdin)."""

    async def wait(_page: Any) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def read() -> None:
            try:
                (stream or sys.stdin).readline()
            except (OSError, ValueError):
                pass
            loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(None))

        if prompt is not None:
            prompt()
        # A daemon thread: a read still pending when the capture fails must not keep the process alive.
        threading.Thread(target=read, name="evidence-enter", daemon=True).start()
        await fut

    return wait


def _interaction(done: threading.Event | Interaction) -> Interaction:
    if isinstance(done, threading.Event):
        return until_event(done)
    if not callable(done):
        raise TypeError("done must be a threading.Event or an async function of the page")
    return done


async def interactive_into(
    url: str,
    workdir: Path,
    *,
    options: CaptureOptions,
    done: threading.Event | Interaction,
    case: str | None = None,
    operator: str | None = None,
    note: str | None = None,
    anchor: dict[str, Any] | None = None,
) -> PageCapture:
    """Run one interactive capture into ``workdir`` with a headed browser of its own."""
    interaction = _interaction(done)
    display = None if os.environ.get("DISPLAY") else VirtualDisplay()
    try:
        screen = display.__enter__() if display is not None else None
        async with Browser(proxy=options.proxy, headless=False, display=screen) as browser:
            return await capture_into(
                browser, url, workdir, options=options, case=case, operator=operator, note=note,
                anchor=anchor, interaction=interaction,
            )
    finally:
        if display is not None:
            display.__exit__(None, None, None)


def capture_interactive(
    url: str,
    *,
    case: str,
    done: threading.Event | Interaction,
    operator: str | None = None,
    note: str | None = None,
    home: Path | str | None = None,
    ledger: Any = None,
    at_capture: AtCapture | None = None,
    **options: Any,
) -> Exhibit:
    """Hand a visible browser to the investigator; seal everything as one exhibit when ``done``.

    The process video is on unless ``record_process=False`` is passed.
    """
    url = check_url(url)
    case = _check_case(case)
    options.setdefault("record_process", True)
    opts = CaptureOptions.from_kwargs(options)
    interaction = _interaction(done)
    led, owned = _open_ledger(ledger, home)
    try:
        anchor = latest_anchor(led)
        with workdir("evidence-interactive-") as tmp:
            pc = _run(
                interactive_into(
                    url, tmp / "page", options=opts, done=interaction, case=case, operator=operator,
                    note=note, anchor=anchor,
                )
            )
            return led.seal_exhibit(case, pc.artifacts, pc.info, at_capture=at_capture)
    finally:
        if owned:
            led.close()
