"""An interactive capture: the browser handed to the investigator, every page they reach listed.

Each main-frame page visited is snapshotted (viewport screenshot and DOM)
once it loads; the state they leave is what the capture seals.
"""

from __future__ import annotations

import asyncio
import base64
import math
from typing import Any

from ledger.errors import CaptureError
from ledger.exhibit import ArtifactFile

from .dom import dom_to
from .environment import now_utc, rfc3339
from .navigation import navigation_id
from .network import _short
from .snapshots import doc_check
from .state import CaptureState

#: pages an interactive capture snapshots (screenshot + DOM) before it only lists them
MAX_VISIT_SNAPSHOTS = 200


def watch_visits(s: CaptureState, page: Any, cdp: Any) -> None:
    """List every page the main window reaches, and snapshot it once it has loaded."""

    def navigated(frame: Any) -> None:
        if frame is not page.main_frame:
            return
        entry = {"n": len(s.visits) + 1, "url": frame.url, "time": rfc3339(now_utc())}
        s.visits.append(entry)
        s.log("visit", f"page {entry['n']}: {frame.url}")

    def loaded(_page: Any) -> None:
        if s.visits and len(s.visit_tasks) < MAX_VISIT_SNAPSHOTS:
            s.visit_tasks.append(asyncio.ensure_future(snapshot_visit(s, cdp, s.visits[-1])))

    page.on("framenavigated", navigated)
    page.on("load", loaded)


async def snapshot_visit(s: CaptureState, cdp: Any, visit: dict[str, Any]) -> None:
    """Viewport screenshot and DOM of a page the investigator reached, once it loaded."""
    stem = f"visit-{visit['n']:03d}"
    seq, nav_id = s.doc_seq, navigation_id(s)
    try:
        href = str(await s.world.eval("location.href", timeout=s.step_timeout))
        r = await cdp.send("Page.captureScreenshot", {"format": "png"})
        shot = s.dir / f"{stem}-screenshot.png"
        shot.write_bytes(base64.b64decode(r["data"]))
        visit["screenshot"] = shot.name
        dom = s.dir / f"{stem}-dom.html"
        try:
            await dom_to(s, dom)
            visit["dom"] = dom.name
        except Exception:
            dom.unlink(missing_ok=True)
            raise
        if s.visits[-1] is not visit or await doc_check(s, (seq, href)) != "same":
            # The next page committed while we were reading: what we hold
            # may be of that page, so it must not be filed under this one.
            shot.unlink(missing_ok=True)
            dom.unlink(missing_ok=True)
            del visit["screenshot"], visit["dom"]
            raise RuntimeError("the investigator left the page before its snapshot was complete")
        visit["snapshot_time"] = rfc3339(now_utc())
        visit["navigation_id"] = nav_id
        s.log("visit", f"page {visit['n']} snapshotted", screenshot=shot.name)
    except Exception as e:
        # The investigator moved on before the snapshot finished; the WARC
        # and the process video still hold the page.
        visit["snapshot_error"] = _short(e)
        s.log("visit", f"page {visit['n']} not snapshotted: {_short(e)}")


async def interact(s: CaptureState, page: Any) -> None:
    """Hand the page over until the investigator is done; then file the visits' snapshots."""
    assert s.interaction is not None
    closed = asyncio.Event()
    page.on("close", lambda _p: closed.set())
    # The first page is snapshotted before the hand-over, so it is on file
    # however quickly the investigator moves on.
    if s.visit_tasks:
        await asyncio.wait(s.visit_tasks, timeout=max(0.1, min(2 * s.step_timeout, s.work_left())))
    # The investigator takes the time they need; the deadline counts again once they are done.
    s.deadline_at = math.inf
    s.interaction_started = now_utc()
    s.log("interactive", "browser handed to the investigator")
    done = asyncio.ensure_future(s.interaction(page))
    gone = asyncio.ensure_future(closed.wait())
    try:
        await asyncio.wait({done, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if not done.done():
        done.cancel()
        raise CaptureError(
            f"the browser window was closed before the capture of {s.url} was sealed; nothing was recorded"
        )
    done.result()
    s.deadline_at = s.now() + s.opt.deadline
    s.interacted = True
    s.interaction_ended = now_utc()
    s.log("interactive", "investigator signalled done: sealing the final state", pages=len(s.visits))
    if s.visit_tasks:
        await asyncio.wait(s.visit_tasks, timeout=2 * s.step_timeout)
    if len(s.visits) > MAX_VISIT_SNAPSHOTS:
        s.warn(f"{len(s.visits)} pages visited; only the first {MAX_VISIT_SNAPSHOTS} were snapshotted")
    for v in s.visits:
        for key, role, media in (
            ("screenshot", "visit-screenshot", "image/png"),
            ("dom", "visit-dom", "text/html; charset=utf-8"),
        ):
            if key in v:
                s.artifacts.append(ArtifactFile(v[key], s.dir / v[key], media, role))
                s.snapshots.append(
                    {
                        "artifact": v[key],
                        "url": v["url"],
                        "navigation_id": v.get("navigation_id"),
                        "time": v.get("snapshot_time"),
                    }
                )
