"""The page's main thread: is it answering, and stopping a script that never yields."""

from __future__ import annotations

import asyncio

from .environment import now_utc, rfc3339
from .network import Unanswered, _short
from .state import CaptureState


async def responsive(s: CaptureState, why: str) -> bool:
    """True when the renderer answers a trivial script; else try to unstick it."""
    if s.renderer_stuck:
        return False
    try:
        await s.cdp.send("Runtime.evaluate", {"expression": "0"}, timeout=s.probe_timeout)
        return True
    except Unanswered:
        return await unstick(s, why)
    except Exception:
        return True  # answered, with an error (a document going away): it is alive


async def unstick(s: CaptureState, why: str) -> bool:
    """Stop a page script that keeps the renderer's main thread busy, once.

    Terminating alone is not enough (a timer would start the loop again),
    so page scripts are switched off first: that message waits in the
    renderer's queue and runs as soon as the termination frees it.
    """
    if s.renderer_stuck:
        return False
    if s.scripts_stopped is None:
        when = rfc3339(now_utc())
        s.scripts_stopped = when
        disable = s.cdp.issue("Emulation.setScriptExecutionDisabled", {"value": True})
        await asyncio.sleep(0)
        try:
            await s.cdp.send("Runtime.terminateExecution", timeout=s.probe_timeout)
            await s.cdp.wait(disable, "Emulation.setScriptExecutionDisabled", timeout=s.probe_timeout)
            await s.cdp.send("Runtime.evaluate", {"expression": "0"}, timeout=s.probe_timeout)
        except Exception as e:
            s.log("renderer", f"the renderer still does not answer: {_short(e)}")
        else:
            s.warn(
                f"a page script kept the browser's main thread busy for more than {s.probe_timeout:g} s "
                f"while {why} (it never yielded); at {when} it was stopped (Runtime.terminateExecution) "
                "and page scripts were switched off, so the page was captured as it stood then"
            )
            return True
    s.renderer_stuck = True
    s.warn(
        f"the page's renderer stopped answering while {why}; screenshots, DOM and MHTML could not be "
        "taken. The network traffic received is in the WARC"
    )
    return False


def js_waits(s: CaptureState) -> str:
    """Whether our scripts may wait on the page's timers and frames (not once its scripts are off)."""
    return "false" if s.scripts_stopped is not None else "true"
