"""Loading the page and following its main-frame documents: chains, reachability, freezing.

One document per exhibit: main-frame navigations are followed from DevTools
events; a page that keeps navigating is frozen (new documents refused,
scripts off) so that one document can be captured whole.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any
from urllib.parse import urlsplit

from ledger.errors import CaptureError

from .environment import now_utc, rfc3339
from .network import UNREACHABLE, DevTools, Hop, _short
from .state import CaptureState

#: why the main frame navigated (Page.frameRequestedNavigation reasons) -> info cause
NAVIGATION_CAUSES = {
    "scriptInitiated": "script",
    "formSubmissionGet": "script",
    "formSubmissionPost": "script",
    "anchorClick": "script",
    "reload": "script",
    "metaTagRefresh": "meta-refresh",
    "httpHeaderRefresh": "meta-refresh",
}


async def navigate(s: CaptureState, page: Any) -> None:
    """Open the URL and wait (bounded) for its load event; a failure is kept for the reachability check."""
    from playwright.async_api import Error as PlaywrightError
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    wait = min(s.opt.load_timeout, max(0.5, s.work_left()))
    s.log("navigate", f"goto {s.url}", load_timeout_ms=int(wait * 1000))
    try:
        await page.goto(s.url, wait_until="load", timeout=wait * 1000)
        s.log("load", "load event fired")
    except PlaywrightTimeout:
        s.load_finished = False
        s.warn(f"load did not finish within {wait:g} s; captured what had arrived by then")
    except PlaywrightError as e:
        s.nav_error = _short(e)
        if "Download is starting" in s.nav_error:
            s.log("navigate", "the URL is a download")
        else:
            m = re.search(r"net::ERR_[A-Z_]+", s.nav_error)
            s.nav_error = m.group(0) if m else s.nav_error
            s.log("navigate", f"navigation ended with {s.nav_error}")


def main_chain(s: CaptureState) -> list[Hop]:
    """The main document's request and redirects: of the document snapshotted, else the current one."""
    if not s.recording:
        return []
    loader = s.snapshot_loader or s.doc.get("loader")
    if loader:
        for hops in reversed(list(s.rec.hops.values())):
            first = hops[0]
            if first.resource_type == "Document" and first.frame_id == s.main_frame and first.loader_id == loader:
                return hops
    chains: Any = s.rec.hops.values()
    if s.interaction is not None and s.interacted:
        # After the investigator navigated, the page sealed is the last one loaded.
        chains = reversed(
            [h for h in chains if h[0].resource_type == "Document" and h[0].frame_id == s.main_frame and h[-1].response is not None]
        )
    for hops in chains:
        first = hops[0]
        if first.resource_type == "Document" and first.frame_id == s.main_frame:
            return hops
    return []


def check_reachable(s: CaptureState, main: list[Hop]) -> None:
    """Refuse a capture of nothing: no response for the main document (and no download)."""
    if s.reach_checked:
        return
    if any(h.response is not None for h in main) or s.download_tasks:
        s.reach_checked = True
        if s.nav_error == "net::ERR_TOO_MANY_REDIRECTS":
            s.warn(
                f"redirect loop: Chromium gave up after {len(main) - 1} redirects (net::ERR_TOO_MANY_REDIRECTS)"
            )
        elif s.nav_error and "Download is starting" not in s.nav_error:
            s.warn(f"navigation ended with {s.nav_error}")
        return
    err = (main[-1].failed if main else None) or s.nav_error or "no response"
    reason = UNREACHABLE.get(err, "no response from the server")
    host = urlsplit(s.url).netloc
    raise CaptureError(f"cannot capture {s.url}: {reason} for {host} ({err}); nothing was recorded")


async def track_navigations(s: CaptureState, cdp: DevTools) -> None:
    """Follow the main frame's documents from DevTools events (``s.doc``, ``s.doc_seq``, ``s.navigations``)."""
    main = s.main_frame

    def requested(e: dict[str, Any]) -> None:
        if e.get("frameId") == main:
            s.nav_reason = e.get("reason")
            s.nav_pending = True

    def started(e: dict[str, Any]) -> None:
        if e.get("frameId") == main and e.get("navigationType") == "differentDocument":
            s.nav_pending = True

    def navigated(e: dict[str, Any]) -> None:
        f = e.get("frame") or {}
        if f.get("id") != main or f.get("parentId"):
            return
        url = str(f.get("url", "")) + str(f.get("urlFragment", ""))
        reason, s.nav_reason = s.nav_reason, None
        s.doc = {"loader": f.get("loaderId"), "url": url, "history": 0, "loaded": False}
        s.doc_seq += 1
        s.nav_pending = False
        s.world.context_id = None
        # No reason means the browser itself started it: our goto, or the investigator.
        cause = NAVIGATION_CAUSES.get(reason or "", "script") if reason else "initial"
        entry = {
            "url": url,
            "time": rfc3339(now_utc()),
            "navigation_id": f.get("loaderId") or str(s.doc_seq),
            "cause": cause,
            "reason": reason or "browser-initiated",
        }
        s.navigations.append(entry)
        s.log("navigation", f"main frame navigated to {url}", cause=cause, navigation_id=entry["navigation_id"])

    def within(e: dict[str, Any]) -> None:
        if e.get("frameId") != main:
            return
        s.doc["history"] += 1
        s.doc["url"] = e.get("url")
        s.doc_seq += 1
        entry = {
            "url": e.get("url"),
            "time": rfc3339(now_utc()),
            "navigation_id": navigation_id(s),
            "cause": "history",
            "reason": e.get("navigationType") or "same-document",
        }
        s.navigations.append(entry)
        s.log("navigation", f"main frame changed its URL to {e.get('url')} (same document)")

    def loaded(_e: dict[str, Any]) -> None:
        s.doc["loaded"] = True

    def stopped(e: dict[str, Any]) -> None:
        if e.get("frameId") == main:
            s.nav_pending = False

    cdp.on("Page.frameRequestedNavigation", requested)
    cdp.on("Page.frameStartedNavigating", started)
    cdp.on("Page.frameNavigated", navigated)
    cdp.on("Page.navigatedWithinDocument", within)
    cdp.on("Page.loadEventFired", loaded)
    cdp.on("Page.frameStoppedLoading", stopped)
    await cdp.send("Page.enable")


def navigation_id(s: CaptureState) -> str:
    """The current document's id: its loader, and the same-document navigations since."""
    loader = s.doc.get("loader") or "0"
    n = s.doc.get("history", 0)
    return f"{loader}.{n}" if n else str(loader)


async def wait_for_document(s: CaptureState) -> None:
    """After a navigation, wait (bounded) for the new document to load and settle."""
    if s.waited_seq == s.doc_seq and not s.nav_pending:
        return
    s.stage = "waiting for the document the page navigated to"
    end = s.now() + min(s.opt.load_timeout, max(0.0, s.work_left()))
    while s.now() < end and (s.nav_pending or not s.doc["loaded"]):
        await asyncio.sleep(0.05)
    if s.nav_pending or not s.doc["loaded"]:
        s.log("navigation", f"{s.doc['url']} had not finished loading when the snapshots began")
    await s.settle("after the navigation", min(s.opt.settle_timeout, max(0.1, s.work_left())))
    s.waited_seq = s.doc_seq


async def freeze(s: CaptureState) -> None:
    """Hold the page on its current document: refuse new ones, stop its scripts."""
    s.frozen = rfc3339(now_utc())
    try:
        await s.rec.block_navigations(s.main_frame)
        if s.scripts_stopped is None:
            await s.cdp.send("Emulation.setScriptExecutionDisabled", {"value": True})
            s.scripts_stopped = s.frozen
        await s.cdp.send("Page.stopLoading")
    except Exception as e:
        s.log("navigation", f"could not hold the page on one document: {_short(e)}")
    s.warn(
        f"the page kept navigating ({len(s.navigations)} navigations seen); at {s.frozen} further "
        "navigations were refused and page scripts switched off, so that one document could be captured whole"
    )


def navigation_list(s: CaptureState) -> list[dict[str, Any]]:
    """Main-frame navigations seen, each HTTP redirect of one as an entry of its own."""
    out: list[dict[str, Any]] = []
    for nav in s.navigations:
        chain: list[Hop] = []
        if nav["cause"] != "history":
            chain = next(
                (
                    hops
                    for hops in s.rec.hops.values()
                    if hops[0].resource_type == "Document"
                    and hops[0].frame_id == s.main_frame
                    and hops[0].loader_id == nav["navigation_id"]
                ),
                [],
            )
        if len(chain) < 2:
            out.append(dict(nav))
            continue
        for i, hop in enumerate(chain):
            out.append(
                {
                    **nav,
                    "url": hop.url,
                    "time": rfc3339(hop.wall_time) if hop.wall_time else nav["time"],
                    "cause": nav["cause"] if i == 0 else "redirect",
                }
            )
    return out
