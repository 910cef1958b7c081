"""A visible browser the officer logs in with; its storage state becomes a saved session.

    from capture.login import login_state
    from capture.interactive import until_enter
    state = login_state("https://shop.example/login", done=until_enter())

The browser opens headed (on the user's display, or on a private Xvfb when
there is none, as ``capture --interactive`` does), in a new, empty context,
at ``url``. When ``done`` returns (Enter on the terminal), the context's
storage state (cookies and local storage) is read and the browser closed.
Nothing of the login is recorded as evidence: it is preparation, not capture.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from ledger.errors import CaptureError

from .browser import Browser
from .interactive import VirtualDisplay, _interaction
from .page import _run
from .session import Interaction

LOGIN_LOAD_TIMEOUT = 60.0


async def _login(url: str, done: Interaction, proxy: str | None, user_agent: str | None) -> dict[str, Any]:
    from playwright.async_api import Error as PlaywrightError

    display = None if os.environ.get("DISPLAY") else VirtualDisplay()
    try:
        screen = display.__enter__() if display is not None else None
        async with Browser(proxy=proxy, headless=False, display=screen) as browser:
            ctx = await browser.browser.new_context(user_agent=user_agent, service_workers="block")
            try:
                page = await ctx.new_page()
                try:
                    await page.goto(url, wait_until="load", timeout=LOGIN_LOAD_TIMEOUT * 1000)
                except PlaywrightError as e:
                    # A slow login page is still usable; an unreachable one is not.
                    if "net::ERR_" in str(e):
                        raise CaptureError(f"cannot open {url} for the login: {str(e).splitlines()[0]}") from None
                await done(page)
                return await ctx.storage_state()
            finally:
                await ctx.close()
    finally:
        if display is not None:
            display.__exit__(None, None, None)


def login_state(
    url: str,
    *,
    done: threading.Event | Interaction,
    proxy: str | None = None,
    user_agent: str | None = None,
) -> dict[str, Any]:
    """Open ``url`` in a visible browser; when ``done``, return its Playwright storage state."""
    return _run(_login(url, _interaction(done), proxy, user_agent))
