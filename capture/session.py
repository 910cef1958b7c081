"""Capture one page into a work directory: pure capture, no ledger.

``capture_into`` opens a fresh browser context, records the page load and
everything it fetches (``network.py``), scrolls to trigger lazy loading,
takes screenshots, the rendered DOM and an MHTML snapshot, reads the
certificates, and writes the WARC and JSON facts. It returns a
``PageCapture`` naming every artifact file; sealing them into the ledger is
``page.py``'s job.

This module is the order of the steps; each step is a module of its own,
working on one ``CaptureState`` (``state.py``):

    preflight.py      clock, outbound address, a clean context
    navigation.py     loading, the main frame's documents and chains, reachability, freezing
    renderer.py       a page script that never yields is stopped
    scrolling.py      lazy content loads
    snapshots.py      rounds of screenshots (screenshots.py), DOM and MHTML (dom.py), page facts
    visits.py         the investigator's pages (interactive captures)
    popups.py         dialogs, pop-ups, downloads
    process_video.py  the recording of the session
    netfacts.py       certificates and DNS
    pageinfo.py       the info and its warnings
    artifacts.py      the WARC and the JSON files

Every wait is bounded, and the whole capture has a deadline
(``CaptureOptions.deadline``): every DevTools call goes through a bounded
session, and the browser work runs as one task that is cancelled when the
deadline (less a reserve for closing and writing) is reached; what was
obtained by then is written, with a warning. A page whose script never
yields is stopped (``Runtime.terminateExecution``, then page scripts off)
so it can still be captured, and says so.

One document per exhibit: main-frame navigations are followed from DevTools
events. Screenshots, DOM, MHTML and page facts are taken in rounds; after
each step the document is checked (a round trip through the renderer, so
every earlier navigation event has arrived), and a round that saw a
navigation is thrown away and taken again of the new document. A page that
keeps navigating is frozen (new documents refused, scripts off) for a last
round. ``info["snapshots"]`` names the document of every snapshot,
``info["navigations"]`` lists the main-frame navigations seen.

Page scripts run nowhere near our own code: DOM serialisation and scrolling
run in an isolated JavaScript world, so a page cannot tamper with them by
overriding globals.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.errors import CaptureError, EvidenceError
from ledger.exhibit import ArtifactFile

from . import artifacts, navigation, netfacts, pageinfo, popups, preflight, process_video, snapshots, visits
from .browser import Browser
from .environment import now_utc, rfc3339, tool_version
from .expected import check_expected
from .network import DevTools, NetworkRecorder, _short
from .options import CaptureOptions
from .renderer import responsive
from .state import CaptureState
from .warc import truncation
from .world import World

#: ``interaction(page)`` returns when the investigator is done with the page
Interaction = Callable[[Any], Awaitable[None]]


@dataclass
class PageCapture:
    """Artifacts of one capture, on disk in ``workdir``, and the facts about it."""

    url: str
    workdir: Path
    artifacts: list[ArtifactFile]
    info: dict[str, Any]

    @property
    def warnings(self) -> list[str]:
        return list(self.info.get("warnings", []))

    def artifact(self, role: str) -> ArtifactFile:
        for a in self.artifacts:
            if a.role == role:
                return a
        raise KeyError(role)


def context_options(opt: CaptureOptions) -> dict[str, Any]:
    """Browser-context arguments for ``opt``: device emulation and the saved login, if any.

    Crawl, livestream page mode and watches open their contexts with these too.
    The storage state is handed over as a copy: the context's own changes
    (cookies the page sets) stay in the context and are never saved back.
    """
    kw: dict[str, Any] = {
        "viewport": {"width": opt.viewport_width, "height": opt.viewport_height},
        "device_scale_factor": opt.device_scale_factor,
        "is_mobile": opt.is_mobile,
        "has_touch": opt.has_touch,
        "user_agent": opt.user_agent,
    }
    if opt.session is not None:
        kw["storage_state"] = json.loads(json.dumps(opt.session.storage_state))
    return kw


async def capture_into(
    browser: Browser,
    url: str,
    workdir: Path,
    *,
    options: CaptureOptions,
    case: str | None = None,
    operator: str | None = None,
    note: str | None = None,
    anchor: dict[str, Any] | None = None,
    interaction: Interaction | None = None,
) -> PageCapture:
    """Capture ``url`` into ``workdir`` (which must exist and be empty).

    ``anchor`` is the ledger's latest RFC 3161 anchor (``gen_time``,
    ``record_time``), the clock reference when no ``time_source`` is set.
    With ``interaction``, the page is handed over after loading (see
    ``interactive.py``) and every main-frame page visited until it returns
    is listed and snapshotted; the state it leaves is what is sealed.

    Raises CaptureError when the page cannot be captured at all; anything
    the browser throws is translated here, so callers see one error type.
    """
    state = CaptureState(browser, url, workdir, options, case, operator, note, anchor, interaction)
    try:
        return await _Capture(state).run()
    except EvidenceError:
        raise
    except (TimeoutError, OSError, RuntimeError, ValueError, KeyError) as e:
        raise CaptureError(f"capture of {url} failed: {_short(e)}") from e
    except Exception as e:
        # Playwright's errors share no base class we can import without it.
        if type(e).__module__.startswith("playwright"):
            raise CaptureError(f"capture of {url} failed: {_short(e)}") from e
        raise


async def _together(*steps: Awaitable[Any]) -> list[Any]:
    """Run ``steps`` at once; when one fails (or the capture is cancelled), none is left running."""
    tasks = [asyncio.ensure_future(step) for step in steps]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for t in tasks:
            t.cancel()


class _Capture:
    """The order of one capture's steps; what they find is in ``self.s``."""

    def __init__(self, state: CaptureState):
        self.s = state

    async def run(self) -> PageCapture:
        s = self.s
        s.started = now_utc()
        s.deadline_at = s.now() + s.opt.deadline
        s.log("start", f"capture of {s.url}", tool=tool_version(), deadline_ms=int(s.opt.deadline * 1000))
        (s.dir / "bodies").mkdir(parents=True, exist_ok=True)
        try:
            await self._within_deadline()
            if not s.recording:
                raise CaptureError(
                    f"cannot capture {s.url}: the capture deadline ({s.opt.deadline:g} s) was reached "
                    f"while {s.stage}; nothing was recorded"
                )
            s.finishing = True
            navigation.check_reachable(s, navigation.main_chain(s))
            await popups.wait_downloads(s)
            await s.rec.finish(timeout=max(1.0, min(10.0, s.opt.settle_timeout + 5, s.left())))
            for hop in s.rec.order:
                hop.truncated = truncation(hop)
            # The browser's certificates and this machine's resolver: neither waits for the other.
            s.tls, s.dns = await _together(netfacts.certificates(s), netfacts.dns(s))
        finally:
            s.finishing = True
            if s.ctx is not None:
                await self._close(s.ctx)
            if s.page is not None and s.opt.record_process:
                await process_video.keep_video(s, s.page)
        s.ended = now_utc()
        s.log("end", "page closed; writing artifacts")
        main = navigation.main_chain(s)
        popups.attach_downloads(s, main)
        info = pageinfo.info(s, main)
        artifacts.write(s, info, main)
        return PageCapture(s.url, s.dir, s.artifacts, info)

    async def _within_deadline(self) -> None:
        """Run the browser work; at the deadline, cancel it and keep what it obtained."""
        s = self.s
        task = asyncio.ensure_future(self._browse())
        try:
            while not task.done():
                remaining = s.work_left()
                if remaining <= 0:
                    s.deadline_hit = True
                    stage = s.stage
                    task.cancel()
                    await asyncio.wait({task})
                    s.warn(
                        f"the capture deadline ({s.opt.deadline:g} s) was reached while {stage}; "
                        "what had been obtained by then is kept"
                    )
                    break
                # Re-read the deadline each time: an interactive hand-over moves it.
                await asyncio.wait({task}, timeout=min(remaining, 1.0))
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait({task})
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]

    async def _browse(self) -> None:
        s = self.s
        opt = s.opt
        s.stage = "checking the environment"
        await preflight.environment_check(s)
        video = process_video.video_context_options(s)
        s.stage = "opening a browser context"
        s.ctx = ctx = await asyncio.wait_for(
            s.browser.browser.new_context(
                **video,
                **context_options(opt),
                locale=opt.locale,
                timezone_id=opt.timezone_id,
                # A bad certificate must not stop the capture of a suspect page;
                # the chain is recorded and checked separately (tls.py).
                ignore_https_errors=True,
                accept_downloads=True,
                # Service workers fetch outside the page's DevTools session, so
                # their traffic would be missing from the WARC.
                service_workers="block",
            ),
            s.step_timeout,
        )
        s.profile = await preflight.clean_check(s, ctx)
        # Opening a page is the longest step before the load; the browser-wide extension
        # check needs no page, so it runs meanwhile.
        s.page, s.profile["extensions"] = await _together(
            asyncio.wait_for(ctx.new_page(), s.step_timeout), preflight.extensions(s)
        )
        page = s.page
        if video:
            # Frame 0 of the video is (within a frame) this moment.
            s.video = {"started": rfc3339(now_utc())}
            s.log("video", "process video recording started")
        session = await asyncio.wait_for(ctx.new_cdp_session(page), s.step_timeout)
        s.cdp = cdp = DevTools(session, s.step_timeout, limit=s.call_limit)
        s.rec = NetworkRecorder(cdp, s.dir / "bodies", log=s.log, stream_timeout=s.probe_timeout)
        # Independent round trips, all before the page loads anything: sent together.
        _, tree = await _together(s.rec.start(), cdp.send("Page.getFrameTree"))
        s.main_frame = tree["frameTree"]["frame"]["id"]
        s.world = World(cdp, s.main_frame)
        await navigation.track_navigations(s, cdp)
        popups.watch(s, ctx, page)
        if s.interaction is not None:
            visits.watch_visits(s, page, cdp)
        s.stage = "loading the page"
        await navigation.navigate(s, page)
        s.waited_seq = s.doc_seq
        navigation.check_reachable(s, navigation.main_chain(s))
        await responsive(s, "loading the page")
        if s.interaction is not None:
            s.stage = "handing the browser to the investigator"
            await visits.interact(s, page)
            # The investigator's final state is sealed as they left it: no scrolling.
            await s.settle("final state", opt.settle_timeout)
        s.stage = "taking screenshots, DOM and MHTML"
        await snapshots.snapshots(s, page)
        await check_expected(s)

    async def _close(self, ctx: Any) -> None:
        """Close the context (and every page of it); what is still running is cancelled."""
        s = self.s
        if s.recording:
            for body in s.rec.bodies.values():
                body.close()
        for t in [*s.popup_tasks, *s.visit_tasks, *s.download_tasks]:
            if not t.done():
                t.cancel()
        try:
            await asyncio.wait_for(ctx.close(), max(2.0, min(15.0, s.left())))
        except Exception as e:
            s.log("close", f"closing the browser context: {_short(e)}")
        if s.popups:
            s.warn(f"the page opened {len(s.popups)} pop-up window(s); closed without capturing")
        if s.dialogs:
            s.log("dialogs", f"{len(s.dialogs)} JavaScript dialog(s) dismissed")
