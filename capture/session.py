"""Capture one page into a work directory: pure capture, no ledger.

``capture_into`` opens a fresh browser context, records the page load and
everything it fetches (``network.py``), scrolls to trigger lazy loading,
takes screenshots, the rendered DOM and an MHTML snapshot, reads the
certificates, and writes the WARC and JSON facts. It returns a
``PageCapture`` naming every artifact file; sealing them into the ledger is
``page.py``'s job.

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
import base64
import hashlib
import json
import math
import re
import secrets
import shutil
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ledger.errors import CaptureError, EvidenceError, ExpectationFailed
from ledger.exhibit import ArtifactFile

from . import tls
from .browser import Browser, device_descriptor
from .environment import (
    clock_check,
    environment,
    extensions_check,
    fonts,
    now_utc,
    outbound_ip,
    profile_check,
    redact_proxy,
    rfc3339,
    tool_version,
    user_data_dir,
)
from .network import UNREACHABLE, BodyFile, DevTools, Hop, NetworkRecorder, Unanswered, _short
from .options import CaptureOptions
from .tiles import StitchedPng
from .warc import PayloadRef, Resource, WarcFile, response_headers, truncation

DOM_CHUNK = 1 << 20  # characters per DevTools round trip when reading the DOM
MAX_DIALOGS = 50
#: pages an interactive capture snapshots (screenshot + DOM) before it only lists them
MAX_VISIT_SNAPSHOTS = 200
PROCESS_VIDEO = "process-video.webm"
#: snapshot rounds that may be thrown away because the page navigated, before it is frozen
MAX_SNAPSHOT_ROUNDS = 3
#: snapshot rounds taken again because the page started loading while (or just before) they were taken
MAX_LATE_ROUNDS = 2
#: scroll steps per page-script call: each call is bounded on its own
SCROLL_CHUNK = 5
#: seconds after scrolling before the network is watched for lazy loads to finish
SCROLL_PAUSE = 0.2
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
SNAPSHOT_ROLES = ("screenshot-viewport", "screenshot-full", "dom", "mhtml")

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


class CaptureLog:
    """Timestamped steps of a capture; written as JSON lines."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def __call__(self, step: str, message: str, /, **data: Any) -> None:
        self.entries.append({**data, "time": rfc3339(now_utc()), "step": step, "message": message})

    def write(self, path: Path) -> None:
        with open(path, "w", encoding="utf-8") as f:
            for e in self.entries:
                f.write(json.dumps(e, ensure_ascii=False, sort_keys=True) + "\n")


class _World:
    """An isolated JavaScript world in the page's main frame (one per document)."""

    def __init__(self, cdp: DevTools, frame_id: str):
        self.cdp = cdp
        self.frame_id = frame_id
        self.context_id: int | None = None

    async def eval(self, expression: str, timeout: float, *, recreate: bool = True) -> Any:
        """Evaluate in the world; ``recreate=False`` fails instead of entering a new document."""
        for attempt in (0, 1):
            if self.context_id is None:
                if not recreate:
                    raise RuntimeError("the document changed")
                w = await self.cdp.send(
                    "Page.createIsolatedWorld",
                    {"frameId": self.frame_id, "worldName": "evidence-capture"},
                    timeout=timeout,
                )
                self.context_id = w["executionContextId"]
            try:
                r = await self.cdp.send(
                    "Runtime.evaluate",
                    {
                        "expression": expression,
                        "contextId": self.context_id,
                        "returnByValue": True,
                        "awaitPromise": True,
                    },
                    timeout=timeout,
                )
            except Unanswered:
                raise
            except Exception as e:
                # The page navigated since the world was made: make a new one once.
                if recreate and attempt == 0 and "context" in str(e).lower():
                    self.context_id = None
                    continue
                raise
            if "exceptionDetails" in r:
                desc = r["exceptionDetails"].get("exception", {}).get("description") or r[
                    "exceptionDetails"
                ].get("text")
                raise RuntimeError(f"script failed in page: {desc}")
            return r.get("result", {}).get("value")
        return None


SCROLL_JS = """
(async (maxSteps, wait) => {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  // Two rendering steps run IntersectionObserver callbacks (lazy loading);
  // the timeout covers renderers that do not paint while headless. With the
  // page's scripts switched off no timer or frame callback ever runs: no waits.
  const frame = () => wait ? Promise.race([new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))), sleep(50)]) : Promise.resolve();
  const el = document.scrollingElement || document.documentElement;
  const height = () => Math.max(el.scrollHeight, document.body ? document.body.scrollHeight : 0);
  const atBottom = () => window.scrollY + window.innerHeight >= height() - 2;
  let steps = 0, grew = 0, last = height();
  while (steps < maxSteps && !atBottom()) {
    window.scrollBy(0, window.innerHeight);
    steps++;
    await frame();
    if (height() > last) { grew++; last = height(); }
  }
  // A whole rendering update after the last scroll (or none), then a task: observers
  // have run their callbacks, so a lazy load they start is already in flight (its
  // DevTools event arrives before this script's answer) when we watch the network.
  if (wait) await Promise.race([new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(r, 0)))), sleep(1000)]);
  return {steps, grew, height: height(), width: el.scrollWidth, reachedBottom: atBottom()};
})(%d, %s)
"""

TOP_JS = """
(async (wait) => {
  window.scrollTo(0, 0);
  if (wait) await Promise.race([new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))), new Promise((r) => setTimeout(r, 50))]);
  const el = document.scrollingElement || document.documentElement;
  return {height: Math.max(el.scrollHeight, document.body ? document.body.scrollHeight : 0), width: el.scrollWidth};
})(%s)
"""

# Open shadow roots are kept as declarative shadow DOM (<template shadowrootmode>),
# which a browser rebuilds when it opens the file; outerHTML alone drops them.
# Closed shadow roots cannot be reached by script: only the screenshots show them.
DOM_JS = """
(() => {
  const roots = [];
  const todo = [document];
  while (todo.length) {  // a loop, not recursion: a page can nest roots deeper than the stack
    const it = document.createTreeWalker(todo.pop(), NodeFilter.SHOW_ELEMENT);
    for (let el = it.nextNode(); el; el = it.nextNode()) {
      if (el.shadowRoot) { roots.push(el.shadowRoot); todo.push(el.shadowRoot); }
    }
  }
  const de = document.documentElement;
  let html = "";
  if (de && roots.length && typeof de.getHTML === "function") {
    const q = (v) => v.replace(/&/g, "&amp;").replace(/"/g, "&quot;");
    const attrs = Array.from(de.attributes, (a) => " " + a.name + '="' + q(a.value) + '"').join("");
    html = "<" + de.localName + attrs + ">" + de.getHTML({serializableShadowRoots: true, shadowRoots: roots}) +
           "</" + de.localName + ">";
  } else if (de) {
    html = de.outerHTML;
  }
  const dt = document.doctype;
  const s = (dt ? new XMLSerializer().serializeToString(dt) + "\\n" : "") + html;
  globalThis[%s] = s;
  return {length: s.length, shadowRoots: roots.length};
})()
"""

#: tile height, in device pixels, of a tall full-page screenshot (Chromium draws at most 16,384)
TILE_DEVICE_PX = 8192
#: frames whose DOM is kept, and frames listed, in document order (breadth first)
MAX_FRAME_DOMS = 50
MAX_FRAMES_LISTED = 200
#: canvases described per page, and the pixels (all canvases together) whose content is hashed:
#: encoding a canvas as PNG takes the renderer's time, so a page of huge canvases must not stall us
MAX_CANVASES = 50
MAX_CANVAS_PIXELS = 4096 * 4096

# The canvas's own pixels, from the isolated world (a page's toDataURL override
# is not seen here). A canvas that drew cross-origin content is tainted and
# cannot be read by any script; that is recorded, not hidden.
CANVAS_JS = """
(() => {
  const out = [];
  let budget = %d;
  const all = document.querySelectorAll("canvas");
  for (let i = 0; i < all.length && i < %d; i++) {
    const c = all[i], r = c.getBoundingClientRect();
    const e = {n: i + 1, id: c.id.slice(0, 200) || null, width: c.width, height: c.height,
               box: {x: Math.round(r.left + scrollX), y: Math.round(r.top + scrollY),
                     width: Math.round(r.width), height: Math.round(r.height)}};
    if (c.width * c.height > budget) { e.readable = null; e.note = "not hashed: over the pixel budget"; }
    else {
      budget -= c.width * c.height;
      try {
        const u = c.toDataURL("image/png");
        globalThis[%s + i] = u.slice(u.indexOf(",") + 1);
        e.readable = true; e.chars = globalThis[%s + i].length;
      } catch (err) { e.readable = false; e.note = String(err && err.name || err); }
    }
    out.push(e);
  }
  return {total: all.length, canvases: out};
})()
"""

PAGE_FACTS_JS = """
(() => ({
  title: document.title,
  url: location.href,
  readyState: document.readyState,
  charset: document.characterSet,
  language: navigator.language,
  userAgent: navigator.userAgent,
  screen: {width: screen.width, height: screen.height},
  devicePixelRatio: Math.round(window.devicePixelRatio * 100),
  innerWidth: window.innerWidth, innerHeight: window.innerHeight,
}))()
"""


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
    try:
        return await _Capture(browser, url, workdir, options, case, operator, note, anchor, interaction).run()
    except EvidenceError:
        raise
    except (TimeoutError, OSError, RuntimeError, ValueError, KeyError) as e:
        raise CaptureError(f"capture of {url} failed: {_short(e)}") from e
    except Exception as e:
        # Playwright's errors share no base class we can import without it.
        if type(e).__module__.startswith("playwright"):
            raise CaptureError(f"capture of {url} failed: {_short(e)}") from e
        raise


class _Capture:
    def __init__(
        self,
        browser: Browser,
        url: str,
        workdir: Path,
        options: CaptureOptions,
        case: str | None,
        operator: str | None,
        note: str | None,
        anchor: dict[str, Any] | None = None,
        interaction: Interaction | None = None,
    ):
        self.browser = browser
        self.anchor = anchor
        self.interaction = interaction
        self.visits: list[dict[str, Any]] = []
        self._visit_tasks: list[asyncio.Task[Any]] = []
        self.check: dict[str, Any] = {}
        self.video: dict[str, Any] | None = None
        self.url = url
        self.dir = workdir
        self.opt = options
        self.case, self.operator, self.note = case, operator, note
        self.log = CaptureLog()
        self.warnings: list[str] = []
        self.dialogs: list[dict[str, Any]] = []
        self.popups: list[dict[str, Any]] = []
        self.downloads: list[dict[str, Any]] = []
        # Saved downloads by artifact path, and the exchange (by id) whose body each one is.
        self._download_refs: dict[Path, PayloadRef] = {}
        self._payload_of_hop: dict[int, PayloadRef] = {}
        self._download_tasks: list[asyncio.Task[Any]] = []
        self._popup_tasks: list[asyncio.Task[Any]] = []
        self.artifacts: list[ArtifactFile] = []
        self.facts: dict[str, Any] = {}
        self.scroll: dict[str, Any] = {}
        self.tls: list[dict[str, Any]] = []
        self.dns: list[dict[str, Any]] = []
        self.load_finished = True
        self.nav_error: str | None = None
        # Bound for one page operation (screenshot, script): long enough for a
        # heavy page, short enough that a hung renderer cannot stall us for long.
        self.step_timeout = 10 + 2 * options.settle_timeout
        # How long a cheap "are you there" script may go unanswered before the
        # page's own script is taken to be blocking the renderer.
        self.probe_timeout = max(2.0, min(5.0, options.settle_timeout))
        # The end of the browser work is the deadline less this reserve, kept
        # for reading what is left, closing the page and writing the artifacts.
        self.reserve = min(15.0, max(3.0, options.deadline * 0.2))
        self.deadline_at = math.inf
        self.deadline_hit = False
        self.finishing = False
        self.stage = "starting"
        self.ctx: Any = None
        self.page: Any = None
        self._reach_checked = False
        # The main frame's document as DevTools reports it.
        self.main_frame = ""
        self.doc: dict[str, Any] = {"loader": None, "url": None, "history": 0, "loaded": False}
        self.doc_seq = 0
        self.nav_pending = False
        self._nav_reason: str | None = None
        self.navigations: list[dict[str, Any]] = []
        self.snapshots: list[dict[str, Any]] = []
        self.snapshot_loader: str | None = None
        self.snapshot_errors: dict[str, str] = {}
        self.frozen: str | None = None
        self.scripts_stopped: str | None = None
        self.renderer_stuck = False
        self._waited_seq = -1
        self._scrolled_seq = -1

    def warn(self, message: str) -> None:
        if message in self.warnings:
            return  # a retaken snapshot round meets the same facts again
        self.warnings.append(message)
        self.log("warning", message)

    def add(self, name: str, media_type: str, role: str) -> Path:
        path = self.dir / name
        self.artifacts.append(ArtifactFile(name=name, path=path, media_type=media_type, role=role))
        return path

    # -- time ------------------------------------------------------------------

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def left(self) -> float:
        """Seconds to the capture's deadline."""
        return self.deadline_at - self._now()

    def work_left(self) -> float:
        """Seconds the browser work may still take (the deadline less the reserve)."""
        return self.left() - self.reserve

    def _call_limit(self) -> float:
        if self.finishing:
            return max(1.0, self.left())
        return max(0.05, self.work_left())

    # -- the capture ---------------------------------------------------------

    async def run(self) -> PageCapture:
        self.started = now_utc()
        self.deadline_at = self._now() + self.opt.deadline
        self.log(
            "start", f"capture of {self.url}", tool=tool_version(), deadline_ms=int(self.opt.deadline * 1000)
        )
        (self.dir / "bodies").mkdir(parents=True, exist_ok=True)
        video = bool(self.opt.record_process)
        try:
            await self._within_deadline()
            if not hasattr(self, "rec"):
                raise CaptureError(
                    f"cannot capture {self.url}: the capture deadline ({self.opt.deadline:g} s) was reached "
                    f"while {self.stage}; nothing was recorded"
                )
            self.finishing = True
            self._check_reachable(self._main_chain())
            await self._wait_downloads()
            await self.rec.finish(timeout=max(1.0, min(10.0, self.opt.settle_timeout + 5, self.left())))
            for hop in self.rec.order:
                hop.truncated = truncation(hop)
            self.tls = await self._certificates()
            self.dns = await self._dns()
        finally:
            self.finishing = True
            if self.ctx is not None:
                await self._close(self.ctx)
            if self.page is not None and video:
                await self._keep_video(self.page)
        self.ended = now_utc()
        self.log("end", "page closed; writing artifacts")
        main = self._main_chain()
        self._attach_downloads(main)
        info = self._info(main)
        self._write(info, main)
        return PageCapture(self.url, self.dir, self.artifacts, info)

    async def _within_deadline(self) -> None:
        """Run the browser work; at the deadline, cancel it and keep what it obtained."""
        task = asyncio.ensure_future(self._browse())
        try:
            while not task.done():
                remaining = self.work_left()
                if remaining <= 0:
                    self.deadline_hit = True
                    stage = self.stage
                    task.cancel()
                    await asyncio.wait({task})
                    self.warn(
                        f"the capture deadline ({self.opt.deadline:g} s) was reached while {stage}; "
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
        opt = self.opt
        self.stage = "checking the environment"
        await self._environment_check()
        video: dict[str, Any] = {}
        if opt.record_process:
            video = {
                "record_video_dir": str(self.dir / "video"),
                "record_video_size": {"width": opt.viewport_width, "height": opt.viewport_height},
            }
        self.stage = "opening a browser context"
        self.ctx = ctx = await asyncio.wait_for(
            self.browser.browser.new_context(
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
            self.step_timeout,
        )
        self.profile = await self._clean_check(ctx)
        self.page = page = await asyncio.wait_for(ctx.new_page(), self.step_timeout)
        if video:
            # Frame 0 of the video is (within a frame) this moment.
            self.video = {"started": rfc3339(now_utc())}
            self.log("video", "process video recording started")
        session = await asyncio.wait_for(ctx.new_cdp_session(page), self.step_timeout)
        self.cdp = cdp = DevTools(session, self.step_timeout, limit=self._call_limit)
        self.rec = NetworkRecorder(cdp, self.dir / "bodies", log=self.log, stream_timeout=self.probe_timeout)
        await self.rec.start()
        tree = await cdp.send("Page.getFrameTree")
        self.main_frame = tree["frameTree"]["frame"]["id"]
        self.world = _World(cdp, self.main_frame)
        await self._track_navigations(cdp)
        page.on("dialog", lambda d: asyncio.ensure_future(self._dialog(d)))
        page.on("download", lambda d: self._download_tasks.append(asyncio.ensure_future(self._download(d))))
        ctx.on("page", lambda p: self._popup_tasks.append(asyncio.ensure_future(self._popup(p))))
        if self.interaction is not None:
            self._watch_visits(page, cdp)
        self.stage = "loading the page"
        await self._navigate(page)
        self._waited_seq = self.doc_seq
        self._check_reachable(self._main_chain())
        await self._responsive("loading the page")
        if self.interaction is not None:
            self.stage = "handing the browser to the investigator"
            await self._interact(page)
            # The investigator's final state is sealed as they left it: no scrolling.
            await self._settle("final state", opt.settle_timeout)
        self.stage = "taking screenshots, DOM and MHTML"
        await self._snapshots(page)
        await self._check_expected()

    async def _check_expected(self) -> None:
        """Refuse the capture when the final page lacks a text it must show (a lapsed login)."""
        texts = self.opt.expected_texts
        if not texts:
            return
        self.stage = "checking the expected text"
        try:
            shown = await self.world.eval(
                "document.body ? document.body.innerText : ''", timeout=self.step_timeout
            )
        except Exception as e:
            shown = ""
            self.log("expect", f"the page's text could not be read: {_short(e)}")
        missing = [t for t in texts if t not in str(shown or "")]
        if missing:
            where = self.facts.get("url") or self.doc.get("url") or self.url
            self.log("expect", "expected text not found", missing=missing)
            raise ExpectationFailed(
                f"expected text not found (session expired?): {', '.join(repr(t) for t in missing)} "
                f"not on the final page {where}; nothing was recorded"
            )
        self.expect_result = {"texts": list(texts), "found": True, "checked": rfc3339(now_utc())}
        self.log("expect", "every expected text is on the final page", texts=list(texts))

    async def _environment_check(self) -> None:
        """Clock and outbound address, checked before the browser context opens."""
        opt = self.opt
        # Both have network timeouts of their own; the deadline bounds them too.
        (clock, warnings), ip = await asyncio.wait_for(
            asyncio.gather(
                asyncio.to_thread(
                    clock_check,
                    time_source=opt.time_source,
                    anchor=self.anchor,
                    max_offset=opt.max_clock_offset,
                    proxy=self.browser.proxy,
                ),
                asyncio.to_thread(outbound_ip, opt.ip_echo, proxy=self.browser.proxy),
            ),
            max(1.0, self.work_left()),
        )
        self.check = {"clock": clock, "outbound_ip": ip}
        self.log(
            "clock",
            "system clock checked" if clock.get("offset_ms") is not None else "system clock not checked",
            **{k: clock[k] for k in ("source", "offset_ms", "within_limit") if k in clock},
        )
        self.log("outbound-ip", f"outbound IP {ip.get('ip') or 'unknown'}", **{k: v for k, v in ip.items() if k != "ip"})
        for w in warnings:
            self.warn(w)

    async def _clean_check(self, ctx: Any) -> dict[str, Any]:
        state = await asyncio.wait_for(ctx.storage_state(), self.step_timeout)
        session = self.opt.session.facts() if self.opt.session is not None else None
        profile = profile_check(
            state, len(ctx.pages),
            user_data_dir(self.browser.facts.command_line if self.browser.facts else []), session,
        )
        if not profile["clean"]:
            self.warn(
                "the browser context was not empty before the capture" if session is None
                else f"the browser context did not hold exactly the cookies of session {session['name']}"
            )
        ext = extensions_check(self.browser.facts.command_line if self.browser.facts else [])
        # What is running says more than flags: any extension would show as a target.
        try:
            targets = await asyncio.wait_for(self.browser.browser.new_browser_cdp_session(), self.step_timeout)
            try:
                infos = (await asyncio.wait_for(targets.send("Target.getTargets"), self.step_timeout)).get(
                    "targetInfos", []
                )
            finally:
                await asyncio.wait_for(targets.detach(), self.step_timeout)
            ext["extension_targets"] = sorted(
                t.get("url", "") for t in infos if str(t.get("url", "")).startswith("chrome-extension://")
            )
            ext["none"] = ext["none"] and not ext["extension_targets"]
        except Exception as e:
            ext["extension_targets_error"] = _short(e)
        profile["extensions"] = ext
        if ext["loaded_by_flag"] or ext.get("extension_targets"):
            self.warn("browser extensions were present during the capture")
        self.log(
            "profile",
            "clean-environment check",
            **{k: profile[k] for k in ("cookies_before", "origins_with_storage_before", "pages_before")},
        )
        return profile

    async def _navigate(self, page: Any) -> None:
        from playwright.async_api import Error as PlaywrightError
        from playwright.async_api import TimeoutError as PlaywrightTimeout

        wait = min(self.opt.load_timeout, max(0.5, self.work_left()))
        self.log("navigate", f"goto {self.url}", load_timeout_ms=int(wait * 1000))
        try:
            await page.goto(self.url, wait_until="load", timeout=wait * 1000)
            self.log("load", "load event fired")
        except PlaywrightTimeout:
            self.load_finished = False
            self.warn(f"load did not finish within {wait:g} s; captured what had arrived by then")
        except PlaywrightError as e:
            self.nav_error = _short(e)
            if "Download is starting" in self.nav_error:
                self.log("navigate", "the URL is a download")
            else:
                m = re.search(r"net::ERR_[A-Z_]+", self.nav_error)
                self.nav_error = m.group(0) if m else self.nav_error
                self.log("navigate", f"navigation ended with {self.nav_error}")

    def _main_chain(self) -> list[Hop]:
        """The main document's request and redirects: of the document snapshotted, else the current one."""
        if not hasattr(self, "rec"):
            return []
        loader = self.snapshot_loader or self.doc.get("loader")
        if loader:
            for hops in reversed(list(self.rec.hops.values())):
                first = hops[0]
                if first.resource_type == "Document" and first.frame_id == self.main_frame and first.loader_id == loader:
                    return hops
        chains: Any = self.rec.hops.values()
        if self.interaction is not None and getattr(self, "interacted", False):
            # After the investigator navigated, the page sealed is the last one loaded.
            chains = reversed(
                [h for h in chains if h[0].resource_type == "Document" and h[0].frame_id == self.main_frame and h[-1].response is not None]
            )
        for hops in chains:
            first = hops[0]
            if first.resource_type == "Document" and first.frame_id == self.main_frame:
                return hops
        return []

    def _check_reachable(self, main: list[Hop]) -> None:
        if self._reach_checked:
            return
        if any(h.response is not None for h in main) or self._download_tasks:
            self._reach_checked = True
            if self.nav_error == "net::ERR_TOO_MANY_REDIRECTS":
                self.warn(
                    f"redirect loop: Chromium gave up after {len(main) - 1} redirects (net::ERR_TOO_MANY_REDIRECTS)"
                )
            elif self.nav_error and "Download is starting" not in self.nav_error:
                self.warn(f"navigation ended with {self.nav_error}")
            return
        err = (main[-1].failed if main else None) or self.nav_error or "no response"
        reason = UNREACHABLE.get(err, "no response from the server")
        host = urlsplit(self.url).netloc
        raise CaptureError(f"cannot capture {self.url}: {reason} for {host} ({err}); nothing was recorded")

    async def _settle(self, why: str, timeout: float, quiet: float = 0.1) -> bool:
        loop = asyncio.get_running_loop()
        start = loop.time()
        end = start + timeout
        while loop.time() < end:
            if not self.rec.inflight and loop.time() - self.rec.last_activity >= quiet:
                self.log("settle", f"{why}: network quiet after {int((loop.time() - start) * 1000)} ms")
                return True
            await asyncio.sleep(0.02)
        pending = len(self.rec.inflight)
        self.log("settle", f"{why}: {pending} request(s) still open after {timeout:g} s")
        return False

    # -- the page's main thread ----------------------------------------------

    async def _responsive(self, why: str) -> bool:
        """True when the renderer answers a trivial script; else try to unstick it."""
        if self.renderer_stuck:
            return False
        try:
            await self.cdp.send("Runtime.evaluate", {"expression": "0"}, timeout=self.probe_timeout)
            return True
        except Unanswered:
            return await self._unstick(why)
        except Exception:
            return True  # answered, with an error (a document going away): it is alive

    async def _unstick(self, why: str) -> bool:
        """Stop a page script that keeps the renderer's main thread busy, once.

        Terminating alone is not enough (a timer would start the loop again),
        so page scripts are switched off first: that message waits in the
        renderer's queue and runs as soon as the termination frees it.
        """
        if self.renderer_stuck:
            return False
        if self.scripts_stopped is None:
            when = rfc3339(now_utc())
            self.scripts_stopped = when
            disable = self.cdp.issue("Emulation.setScriptExecutionDisabled", {"value": True})
            await asyncio.sleep(0)
            try:
                await self.cdp.send("Runtime.terminateExecution", timeout=self.probe_timeout)
                await self.cdp.wait(disable, "Emulation.setScriptExecutionDisabled", timeout=self.probe_timeout)
                await self.cdp.send("Runtime.evaluate", {"expression": "0"}, timeout=self.probe_timeout)
            except Exception as e:
                self.log("renderer", f"the renderer still does not answer: {_short(e)}")
            else:
                self.warn(
                    f"a page script kept the browser's main thread busy for more than {self.probe_timeout:g} s "
                    f"while {why} (it never yielded); at {when} it was stopped (Runtime.terminateExecution) "
                    "and page scripts were switched off, so the page was captured as it stood then"
                )
                return True
        self.renderer_stuck = True
        self.warn(
            f"the page's renderer stopped answering while {why}; screenshots, DOM and MHTML could not be "
            "taken. The network traffic received is in the WARC"
        )
        return False

    # -- scrolling -------------------------------------------------------------

    def _js_waits(self) -> str:
        """Whether our scripts may wait on the page's timers and frames (not once its scripts are off)."""
        return "false" if self.scripts_stopped is not None else "true"

    async def _scroll_eval(self, expression: str, steps: int) -> dict[str, Any]:
        timeout = self.probe_timeout + steps * 0.25
        try:
            return await self.world.eval(expression, timeout=timeout) or {}
        except Unanswered:
            if not await self._unstick("scrolling"):
                raise
            return await self.world.eval(expression, timeout=timeout) or {}

    async def _scroll(self) -> None:
        """Scroll a viewport at a time to the end, so lazy content loads; bounded.

        At the end we wait for the network to settle and look again: an
        infinite-scroll page has grown by then, and scrolling resumes until
        the step budget is spent.
        """
        self._scrolled_seq = self.doc_seq
        self.stage = "scrolling the page"
        budget = self.opt.max_scroll_steps
        total = {"steps": 0, "grew": 0, "height": 0, "width": 0, "reachedBottom": True}
        settle = self.opt.settle_timeout if self.load_finished else min(1.0, self.opt.settle_timeout)
        try:
            if not await self._responsive("scrolling"):
                raise RuntimeError("the renderer does not answer")
            idle = 0
            while True:
                moved = 0
                while total["steps"] < budget:
                    n = min(SCROLL_CHUNK, budget - total["steps"])
                    r = await self._scroll_eval(SCROLL_JS % (n, self._js_waits()), n)
                    done = int(r.get("steps", 0))
                    moved += done
                    total["steps"] += done
                    total["grew"] += int(r.get("grew", 0))
                    total["reachedBottom"] = bool(r.get("reachedBottom"))
                    if total["reachedBottom"] or done < n:
                        break
                if moved:
                    # Observers fire and start their fetches a frame or more after the
                    # scroll; the network is only worth watching once they have.
                    await asyncio.sleep(min(SCROLL_PAUSE, max(0.0, self.work_left())))
                await self._settle("after load and scrolling", settle)
                if total["steps"] >= budget:
                    break
                # A round without scrolling still looks again: a page that fills itself
                # after load (an observer's fetch) has grown by now. Two such rounds in a
                # row end it, so a page that flips its height cannot keep us here.
                idle = 0 if moved else idle + 1
                if idle > 1:
                    break
                again = await self._scroll_eval(SCROLL_JS % (0, self._js_waits()), 0)
                if again.get("reachedBottom"):
                    break  # no growth after settling: this is the end of the page
                total["grew"] += 1
            top = await self._scroll_eval(TOP_JS % self._js_waits(), 1)
            total["height"], total["width"] = int(top.get("height", 0)), int(top.get("width", 0))
        except Exception as e:
            self.scroll = {**total, "error": _short(e)}
            self.warn(f"could not scroll the page: {_short(e)}")
            return
        self.scroll = total
        self.log("scroll", "scrolled to trigger lazy loading", **total)
        if total["steps"] >= budget and not total["reachedBottom"]:
            self.scroll["cut"] = True
            why = (
                f"it grew {total['grew']} time(s) while scrolled: infinite scroll? Items further down were not loaded"
                if total["grew"]
                else "it is longer than that; content that loads only when scrolled into view may be missing below"
            )
            self.warn(
                f"scrolling stopped after {budget} steps before the end of the page ({why}); "
                f"page height then {total['height']:,} px"
            )

    # -- navigations -------------------------------------------------------------

    async def _track_navigations(self, cdp: DevTools) -> None:
        main = self.main_frame

        def requested(e: dict[str, Any]) -> None:
            if e.get("frameId") == main:
                self._nav_reason = e.get("reason")
                self.nav_pending = True

        def started(e: dict[str, Any]) -> None:
            if e.get("frameId") == main and e.get("navigationType") == "differentDocument":
                self.nav_pending = True

        def navigated(e: dict[str, Any]) -> None:
            f = e.get("frame") or {}
            if f.get("id") != main or f.get("parentId"):
                return
            url = str(f.get("url", "")) + str(f.get("urlFragment", ""))
            reason, self._nav_reason = self._nav_reason, None
            self.doc = {"loader": f.get("loaderId"), "url": url, "history": 0, "loaded": False}
            self.doc_seq += 1
            self.nav_pending = False
            self.world.context_id = None
            # No reason means the browser itself started it: our goto, or the investigator.
            cause = NAVIGATION_CAUSES.get(reason or "", "script") if reason else "initial"
            entry = {
                "url": url,
                "time": rfc3339(now_utc()),
                "navigation_id": f.get("loaderId") or str(self.doc_seq),
                "cause": cause,
                "reason": reason or "browser-initiated",
            }
            self.navigations.append(entry)
            self.log("navigation", f"main frame navigated to {url}", cause=cause, navigation_id=entry["navigation_id"])

        def within(e: dict[str, Any]) -> None:
            if e.get("frameId") != main:
                return
            self.doc["history"] += 1
            self.doc["url"] = e.get("url")
            self.doc_seq += 1
            entry = {
                "url": e.get("url"),
                "time": rfc3339(now_utc()),
                "navigation_id": self._navigation_id(),
                "cause": "history",
                "reason": e.get("navigationType") or "same-document",
            }
            self.navigations.append(entry)
            self.log("navigation", f"main frame changed its URL to {e.get('url')} (same document)")

        def loaded(_e: dict[str, Any]) -> None:
            self.doc["loaded"] = True

        def stopped(e: dict[str, Any]) -> None:
            if e.get("frameId") == main:
                self.nav_pending = False

        cdp.on("Page.frameRequestedNavigation", requested)
        cdp.on("Page.frameStartedNavigating", started)
        cdp.on("Page.frameNavigated", navigated)
        cdp.on("Page.navigatedWithinDocument", within)
        cdp.on("Page.loadEventFired", loaded)
        cdp.on("Page.frameStoppedLoading", stopped)
        await cdp.send("Page.enable")

    def _navigation_id(self) -> str:
        loader = self.doc.get("loader") or "0"
        n = self.doc.get("history", 0)
        return f"{loader}.{n}" if n else str(loader)

    async def _wait_for_document(self) -> None:
        """After a navigation, wait (bounded) for the new document to load and settle."""
        if self._waited_seq == self.doc_seq and not self.nav_pending:
            return
        self.stage = "waiting for the document the page navigated to"
        end = self._now() + min(self.opt.load_timeout, max(0.0, self.work_left()))
        while self._now() < end and (self.nav_pending or not self.doc["loaded"]):
            await asyncio.sleep(0.05)
        if self.nav_pending or not self.doc["loaded"]:
            self.log("navigation", f"{self.doc['url']} had not finished loading when the snapshots began")
        await self._settle("after the navigation", min(self.opt.settle_timeout, max(0.1, self.work_left())))
        self._waited_seq = self.doc_seq

    async def _freeze(self) -> None:
        """Hold the page on its current document: refuse new ones, stop its scripts."""
        self.frozen = rfc3339(now_utc())
        try:
            await self.rec.block_navigations(self.main_frame)
            if self.scripts_stopped is None:
                await self.cdp.send("Emulation.setScriptExecutionDisabled", {"value": True})
                self.scripts_stopped = self.frozen
            await self.cdp.send("Page.stopLoading")
        except Exception as e:
            self.log("navigation", f"could not hold the page on one document: {_short(e)}")
        self.warn(
            f"the page kept navigating ({len(self.navigations)} navigations seen); at {self.frozen} further "
            "navigations were refused and page scripts switched off, so that one document could be captured whole"
        )

    # -- snapshots -----------------------------------------------------------------

    async def _snapshots(self, page: Any) -> None:
        """Screenshots, DOM, MHTML and facts, all of one document."""
        navigated = late = 0
        while navigated <= MAX_SNAPSHOT_ROUNDS:
            if navigated == MAX_SNAPSHOT_ROUNDS and self.frozen is None:
                await self._freeze()
            await self._wait_for_document()
            if self.interaction is None and self._scrolled_seq != self.doc_seq:
                await self._scroll()
            kept = (len(self.artifacts), len(self.snapshots), dict(self.snapshot_errors))
            seen = self.rec.requests_seen
            if await self._snapshot_round():
                if late < MAX_LATE_ROUNDS and not self.renderer_stuck and await self._loaded_late(seen):
                    # A request the page started after we looked (a timer's XHR, an
                    # observer's fetch) would be in the WARC but not in the DOM or the
                    # screenshots: look again, so both show the same state.
                    late += 1
                    self._drop_round(kept)
                    if not self.scroll.get("cut"):
                        # The scroll budget is the capture's, not the round's: a cut
                        # (infinite) list is not scrolled further, only looked at again.
                        self._scrolled_seq = -1
                    self.log("snapshot", "the page loaded more while it was being captured; snapshots taken again", round=late)
                    continue
                return
            navigated += 1
            self.log("snapshot", "the page navigated during the snapshots; they are taken again", round=navigated)
        for what in ("viewport screenshot", "full-page screenshot", "rendered DOM", "MHTML snapshot"):
            self.snapshot_errors.setdefault(what, "the page did not stay on one document long enough")

    async def _loaded_late(self, seen: int) -> bool:
        """Whether the page started requests since ``seen`` (after settling them)."""
        if self.scripts_stopped is not None:
            return False
        await self._settle("after the snapshots", min(self.opt.settle_timeout, max(0.1, self.work_left())))
        return self.rec.requests_seen > seen and self.work_left() > 0

    def _drop_round(self, kept: tuple[int, int, dict[str, str]]) -> None:
        """Forget the snapshots taken since ``kept`` (the files are written again)."""
        n_artifacts, n_snapshots, errors = kept
        for a in self.artifacts[n_artifacts:]:
            a.path.unlink(missing_ok=True)
        del self.artifacts[n_artifacts:]
        del self.snapshots[n_snapshots:]
        self.snapshot_errors = errors

    async def _doc_check(self, ident: tuple[int, str]) -> str:
        """"same", "changed" or "stuck": has the document changed since ``ident``?

        The round trip goes through the renderer, so every navigation event it
        sent before answering has been handled by the time it returns.
        """
        for attempt in (0, 1):
            try:
                href = await self.world.eval("location.href", timeout=self.probe_timeout, recreate=False)
            except Unanswered:
                if attempt == 0 and await self._unstick("taking snapshots"):
                    continue
                return "stuck"
            except Exception:
                return "changed"
            return "same" if (self.doc_seq, href) == ident else "changed"
        return "stuck"

    async def _snapshot_round(self) -> bool:
        """One round of snapshots; False (and nothing kept) if the page navigated meanwhile."""
        self.stage = "taking screenshots, DOM and MHTML"
        if not await self._responsive("taking snapshots"):
            for what in ("viewport screenshot", "full-page screenshot", "rendered DOM", "MHTML snapshot"):
                self.snapshot_errors.setdefault(what, "the renderer does not answer")
            return True
        try:
            href = str(await self.world.eval("location.href", timeout=self.step_timeout))
        except Unanswered:
            self.renderer_stuck = not await self._unstick("taking snapshots")
            return self.renderer_stuck
        except Exception as e:
            self.log("snapshot", f"could not read the document's address: {_short(e)}")
            return False
        ident = (self.doc_seq, href)
        nav_id = self._navigation_id()
        loader = self.doc.get("loader")
        steps: list[tuple[str, Callable[[], Awaitable[list[ArtifactFile]]]]] = [
            ("viewport screenshot", self._shot_viewport),
            ("full-page screenshot", self._shot_full),
            ("rendered DOM", self._dom),
            ("MHTML snapshot", self._mhtml),
            ("page facts", self._page_facts),
        ]
        taken: list[tuple[ArtifactFile, dict[str, Any]]] = []
        errors: dict[str, str] = {}
        facts: dict[str, Any] = {}
        try:
            for what, step in steps:
                error: Exception | None = None
                try:
                    made = await step()
                except Exception as e:
                    made, error = [], e
                state = await self._doc_check(ident)
                if state != "same":
                    for a in made:
                        a.path.unlink(missing_ok=True)
                    if state == "changed":
                        for a, _ in taken:
                            a.path.unlink(missing_ok=True)
                        taken.clear()
                        facts.clear()
                        return False
                    errors[what] = "the renderer stopped answering"
                    break
                if error is not None:
                    errors[what] = _short(error)
                    self.log("snapshot", f"{what} not taken: {_short(error)}")
                    continue
                when = rfc3339(now_utc())
                if what == "page facts":
                    facts = self._step_facts
                for a in made:
                    taken.append((a, {"artifact": a.name, "url": href, "navigation_id": nav_id, "time": when}))
        finally:
            # Whatever passed its check is of this one document, also when the
            # deadline cuts the round short.
            for a, snap in taken:
                self.artifacts.append(a)
                self.snapshots.append(snap)
            if taken or facts:
                self.snapshot_loader = loader
                self.facts = facts or {"url": href}
            self.snapshot_errors.update(errors)
        return True

    async def _screenshot(self, params: dict[str, Any]) -> bytes:
        # Straight from DevTools: Playwright's screenshot adds waits and
        # round trips we do not need once the page has settled.
        r = await self.cdp.send("Page.captureScreenshot", {"format": "png", **params})
        return base64.b64decode(r["data"])

    async def _shot_viewport(self) -> list[ArtifactFile]:
        path = self.dir / "screenshot-viewport.png"
        params: dict[str, Any] = {}
        if self.opt.device_scale_factor != 1:
            # As the full-page shot: device pixels need the scale asked for explicitly.
            vv = (await self.cdp.send("Page.getLayoutMetrics")).get("cssVisualViewport") or {}
            params["clip"] = {
                "x": vv.get("pageX", 0), "y": vv.get("pageY", 0),
                "width": vv.get("clientWidth", self.opt.viewport_width),
                "height": vv.get("clientHeight", self.opt.viewport_height),
                "scale": self.opt.device_scale_factor,
            }
        path.write_bytes(await self._screenshot(params))
        return [ArtifactFile("screenshot-viewport.png", path, "image/png", "screenshot-viewport")]

    async def _shot_full(self) -> list[ArtifactFile]:
        """The whole page; taller than one tile, shot in tiles and stitched into one PNG."""
        metrics = await self.cdp.send("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics.get("contentSize") or {}
        width = max(1, int(size.get("width") or self.opt.viewport_width))
        height = max(1, int(size.get("height") or self.opt.viewport_height))
        self.scroll["content_size"] = {"width": width, "height": height}
        if height > self.opt.max_screenshot_height:
            self.warn(
                f"page is {height:,} px tall; the full-page screenshot shows the top "
                f"{self.opt.max_screenshot_height:,} px (max_screenshot_height)"
            )
            height = self.opt.max_screenshot_height
        # Tiles in CSS pixels small enough that, at the device's scale, each stays
        # well under Chromium's texture limit.
        tile = max(256, int(TILE_DEVICE_PX // max(1.0, float(self.opt.device_scale_factor))))
        path = self.dir / "screenshot-full.png"
        shot: dict[str, Any] = {"width_css": width, "height_css": height, "tile_height_css": tile}
        if height <= tile:
            # Device pixels (CSS x scale factor): our session's screenshots are drawn at CSS size otherwise.
            clip = {"x": 0, "y": 0, "width": width, "height": height, "scale": self.opt.device_scale_factor}
            path.write_bytes(await self._screenshot({"captureBeyondViewport": True, "clip": clip}))
            shot["tiles"] = 1
        else:
            png = StitchedPng(path)
            try:
                for top in range(0, height, tile):
                    h = min(tile, height - top)
                    clip = {"x": 0, "y": top, "width": width, "height": h, "scale": self.opt.device_scale_factor}
                    data = await self._screenshot({"captureBeyondViewport": True, "clip": clip})
                    # Decoding and compressing a tile takes a second or so: off the event loop.
                    await asyncio.to_thread(png.add, data)
                png.close()
            except BaseException:
                png.abort()
                raise
            shot.update(tiles=png.tiles, width_px=png.width, height_px=png.rows)
            shot["statement"] = (
                f"the page is taller than one screenshot can be drawn; it was shot in {png.tiles} tiles of at "
                f"most {tile:,} CSS px, top to bottom, and their pixel rows joined into this one PNG unchanged"
            )
        self.full_shot = shot
        self.log("screenshot", "viewport and full-page screenshots taken", width=width, height=height,
                 tiles=shot["tiles"])
        return [ArtifactFile("screenshot-full.png", path, "image/png", "screenshot-full")]

    async def _dom(self) -> list[ArtifactFile]:
        path = self.dir / "dom.html"
        try:
            length = await self._dom_to(path)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        self.dom_chars = length
        self.main_shadow_roots = self.dom_shadow_roots
        self.log("dom", "rendered DOM saved", characters=length, shadow_roots=self.dom_shadow_roots)
        return [ArtifactFile("dom.html", path, "text/html; charset=utf-8", "dom"), *await self._frame_doms()]

    async def _mhtml(self) -> list[ArtifactFile]:
        if not self.opt.mhtml:
            return []
        length = getattr(self, "dom_chars", 0)
        if length * 2 > self.opt.max_mhtml_bytes:
            self.warn(
                f"MHTML snapshot skipped: the page's DOM ({length:,} characters) is too large for "
                f"one DevTools message; the WARC and dom.html hold the page"
            )
            return []
        snap = await self.cdp.send("Page.captureSnapshot", {"format": "mhtml"}, timeout=60)
        path = self.dir / "page.mhtml"
        path.write_text(snap["data"], "utf-8", newline="")
        self.log("mhtml", "MHTML snapshot saved")
        return [ArtifactFile("page.mhtml", path, "multipart/related", "mhtml")]

    async def _frame_doms(self) -> list[ArtifactFile]:
        """The DOM of every frame in the page, each a file of its own, listed in ``frames``.

        Each is read in an isolated world of that frame, as the main DOM is;
        a frame that cannot be read (gone, or in another renderer process)
        is listed with the reason.
        """
        self.frames = []
        try:
            tree = (await self.cdp.send("Page.getFrameTree"))["frameTree"]
        except Exception as e:
            self.log("dom", f"frames not listed: {_short(e)}")
            return []
        frames: list[dict[str, Any]] = []
        stuck = False
        made: list[ArtifactFile] = []
        ids = {tree["frame"]["id"]: 0}
        todo = [(c, tree["frame"]["id"]) for c in tree.get("childFrames", [])]
        unlisted = 0
        while todo:
            node, parent = todo.pop(0)
            f = node["frame"]
            n = len(frames) + 1
            if n > MAX_FRAMES_LISTED:
                unlisted += 1
                todo.extend((c, f["id"]) for c in node.get("childFrames", []))
                continue
            ids[f["id"]] = n
            todo.extend((c, f["id"]) for c in node.get("childFrames", []))
            entry: dict[str, Any] = {
                "n": n,
                "url": str(f.get("url", "")) + str(f.get("urlFragment", "")),
                "name": str(f.get("name") or "")[:200] or None,
                "parent": ids.get(parent, 0),
                "origin": f.get("securityOrigin"),
            }
            frames.append(entry)
            if n > MAX_FRAME_DOMS:
                entry["error"] = f"more than {MAX_FRAME_DOMS} frames: not serialised"
                continue
            if stuck:
                entry["error"] = "not read: the renderer stopped answering"
                continue
            name = f"dom-frame-{n:03d}.html"
            path = self.dir / name
            try:
                await self._dom_to(path, _World(self.cdp, f["id"]))
            except Exception as e:
                stuck = isinstance(e, Unanswered)
                path.unlink(missing_ok=True)
                entry["error"] = _short(e)
                self.log("dom", f"DOM of frame {n} not read: {_short(e)}", url=entry["url"])
                continue
            entry["artifact"] = name
            entry["shadow_roots"] = self.dom_shadow_roots
            made.append(ArtifactFile(name, path, "text/html; charset=utf-8", "frame-dom"))
        if len(frames) > MAX_FRAME_DOMS:
            listed = f", the first {MAX_FRAMES_LISTED} listed" if unlisted else ""
            self.warn(
                f"the page has {len(frames) + unlisted} frames; the DOM of the first {MAX_FRAME_DOMS} is kept{listed}"
            )
        self.frames = frames
        if frames:
            self.log("dom", f"DOM of {len(made)} of {len(frames)} frame(s) saved")
        return made

    async def _read_global(self, world: _World, key: str, length: int, write: Callable[[str], Any]) -> None:
        """Hand ``globalThis[key]`` (a string) to ``write`` in slices, then delete it.

        Slices keep a huge string from crossing DevTools as one message; a
        slice never ends between the two halves of a surrogate pair.
        """
        read_js = (
            "(() => { const s = globalThis[%s]; let e = Math.min(%d, s.length);"
            " if (e < s.length && e > %d && s.charCodeAt(e - 1) >= 0xD800 && s.charCodeAt(e - 1) < 0xDC00) e--;"
            " return [e, s.slice(%d, e)]; })()"
        )
        pos = 0
        while pos < length:
            end, text = await world.eval(read_js % (key, pos + DOM_CHUNK, pos, pos), timeout=self.step_timeout)
            write(text)
            pos = int(end)
        await world.eval(f"delete globalThis[{key}]", timeout=10)

    async def _dom_to(self, dom: Path, world: _World | None = None) -> int:
        world = world or self.world
        key = json.dumps("__evidence_dom_" + secrets.token_hex(8))
        r = await world.eval(DOM_JS % key, timeout=self.step_timeout) or {}
        length = int(r.get("length", 0))
        self.dom_shadow_roots = int(r.get("shadowRoots", 0))
        with open(dom, "w", encoding="utf-8", errors="surrogatepass", newline="") as f:
            await self._read_global(world, key, length, f.write)
        return length

    async def _page_facts(self) -> list[ArtifactFile]:
        self._step_facts = dict(await self.world.eval(PAGE_FACTS_JS, timeout=self.step_timeout) or {})
        try:
            self._step_facts["canvases"] = await self._canvases()
        except Unanswered:
            raise
        except Exception as e:
            # The page's facts stand without the canvases; the screenshots still show them.
            self._step_facts["canvases"] = {"total": None, "listed": [], "error": _short(e)}
            self.log("facts", f"canvases not read: {_short(e)}")
        return []

    async def _canvases(self) -> dict[str, Any]:
        """Every canvas of the page: size, place, and the SHA-256 of its pixels as PNG where readable."""
        key = "__evidence_canvas_" + secrets.token_hex(8)
        r = await self.world.eval(
            CANVAS_JS % (MAX_CANVAS_PIXELS, MAX_CANVASES, json.dumps(key), json.dumps(key)), timeout=self.step_timeout
        ) or {}
        out = list(r.get("canvases") or [])
        for i, c in enumerate(out):
            chars = c.pop("chars", None)
            if not c.get("readable") or chars is None:
                c["png_sha256"] = None
                continue
            h = hashlib.sha256()
            # Base64 slices of the data URL decode on their own: DOM_CHUNK is a multiple of 4.
            await self._read_global(
                self.world, json.dumps(f"{key}{i}"), int(chars), lambda t, h=h: h.update(base64.b64decode(t))
            )
            c["png_sha256"] = h.hexdigest()
        total = int(r.get("total", len(out)))
        if total:
            self.log("facts", f"{total} canvas element(s) on the page", readable=sum(1 for c in out if c.get("readable")))
        return {
            "total": total,
            "listed": out,
            "statement": (
                "canvas pixels are drawn by script and are not in the DOM; the screenshots show them. "
                "png_sha256 is the SHA-256 of the canvas's own pixels as PNG (toDataURL), read from an isolated "
                "script world; a canvas that drew content from another origin is tainted and cannot be read"
            ),
        } if total else {"total": 0, "listed": []}

    # -- interactive capture and the process video ------------------------------

    def _watch_visits(self, page: Any, cdp: Any) -> None:
        def navigated(frame: Any) -> None:
            if frame is not page.main_frame:
                return
            entry = {"n": len(self.visits) + 1, "url": frame.url, "time": rfc3339(now_utc())}
            self.visits.append(entry)
            self.log("visit", f"page {entry['n']}: {frame.url}")

        def loaded(_page: Any) -> None:
            if self.visits and len(self._visit_tasks) < MAX_VISIT_SNAPSHOTS:
                self._visit_tasks.append(asyncio.ensure_future(self._snapshot_visit(cdp, self.visits[-1])))

        page.on("framenavigated", navigated)
        page.on("load", loaded)

    async def _snapshot_visit(self, cdp: Any, visit: dict[str, Any]) -> None:
        """Viewport screenshot and DOM of a page the investigator reached, once it loaded."""
        stem = f"visit-{visit['n']:03d}"
        seq, nav_id = self.doc_seq, self._navigation_id()
        try:
            href = str(await self.world.eval("location.href", timeout=self.step_timeout))
            r = await cdp.send("Page.captureScreenshot", {"format": "png"})
            shot = self.dir / f"{stem}-screenshot.png"
            shot.write_bytes(base64.b64decode(r["data"]))
            visit["screenshot"] = shot.name
            dom = self.dir / f"{stem}-dom.html"
            try:
                await self._dom_to(dom)
                visit["dom"] = dom.name
            except Exception:
                dom.unlink(missing_ok=True)
                raise
            if self.visits[-1] is not visit or await self._doc_check((seq, href)) != "same":
                # The next page committed while we were reading: what we hold
                # may be of that page, so it must not be filed under this one.
                shot.unlink(missing_ok=True)
                dom.unlink(missing_ok=True)
                del visit["screenshot"], visit["dom"]
                raise RuntimeError("the investigator left the page before its snapshot was complete")
            visit["snapshot_time"] = rfc3339(now_utc())
            visit["navigation_id"] = nav_id
            self.log("visit", f"page {visit['n']} snapshotted", screenshot=shot.name)
        except Exception as e:
            # The investigator moved on before the snapshot finished; the WARC
            # and the process video still hold the page.
            visit["snapshot_error"] = _short(e)
            self.log("visit", f"page {visit['n']} not snapshotted: {_short(e)}")

    async def _interact(self, page: Any) -> None:
        assert self.interaction is not None
        closed = asyncio.Event()
        page.on("close", lambda _p: closed.set())
        # The first page is snapshotted before the hand-over, so it is on file
        # however quickly the investigator moves on.
        if self._visit_tasks:
            await asyncio.wait(self._visit_tasks, timeout=max(0.1, min(2 * self.step_timeout, self.work_left())))
        # The investigator takes the time they need; the deadline counts again once they are done.
        self.deadline_at = math.inf
        self.interaction_started = now_utc()
        self.log("interactive", "browser handed to the investigator")
        done = asyncio.ensure_future(self.interaction(page))
        gone = asyncio.ensure_future(closed.wait())
        try:
            await asyncio.wait({done, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if not done.done():
            done.cancel()
            raise CaptureError(
                f"the browser window was closed before the capture of {self.url} was sealed; nothing was recorded"
            )
        done.result()
        self.deadline_at = self._now() + self.opt.deadline
        self.interacted = True
        self.interaction_ended = now_utc()
        self.log("interactive", "investigator signalled done: sealing the final state", pages=len(self.visits))
        if self._visit_tasks:
            await asyncio.wait(self._visit_tasks, timeout=2 * self.step_timeout)
        if len(self.visits) > MAX_VISIT_SNAPSHOTS:
            self.warn(f"{len(self.visits)} pages visited; only the first {MAX_VISIT_SNAPSHOTS} were snapshotted")
        for v in self.visits:
            for key, role, media in (
                ("screenshot", "visit-screenshot", "image/png"),
                ("dom", "visit-dom", "text/html; charset=utf-8"),
            ):
                if key in v:
                    self.artifacts.append(ArtifactFile(v[key], self.dir / v[key], media, role))
                    self.snapshots.append(
                        {
                            "artifact": v[key],
                            "url": v["url"],
                            "navigation_id": v.get("navigation_id"),
                            "time": v.get("snapshot_time"),
                        }
                    )

    async def _keep_video(self, page: Any) -> None:
        """Copy the finished video into the exhibit; the recording directory goes."""
        video = {**(self.video or {}), "name": None}
        dest = self.dir / PROCESS_VIDEO
        try:
            # save_as waits until ffmpeg has finished the file, even if closing the context timed out.
            if page.video:
                await asyncio.wait_for(page.video.save_as(dest), max(5.0, min(60.0, self.left())))
        except Exception as e:
            dest.unlink(missing_ok=True)
            video["error"] = _short(e)
        if dest.is_file() and dest.stat().st_size > 0:
            self.artifacts.append(ArtifactFile(dest.name, dest, "video/webm", "process-video"))
            video.update(name=dest.name, size=dest.stat().st_size, codec="VP9 in WebM (Playwright screencast)")
            self.log("video", "process video saved", size=video["size"])
        else:
            self.warn(f"the process video was not recorded{': ' + video['error'] if 'error' in video else ''}")
        self.video = video
        # Pop-ups get videos of their own; they were closed unseen, so theirs go.
        shutil.rmtree(self.dir / "video", ignore_errors=True)

    # -- hostile-page handlers -------------------------------------------------

    async def _dialog(self, dialog: Any) -> None:
        # Answer first: an open dialog blocks the page, and with it the capture.
        try:
            if dialog.type == "beforeunload":
                await dialog.accept()
            else:
                await dialog.dismiss()
        except Exception:
            pass
        if len(self.dialogs) < MAX_DIALOGS:
            text = str(dialog.message)
            self.dialogs.append({"type": dialog.type, "message": text[:2000], "time": rfc3339(now_utc())})
            self.log("dialog", f"{dialog.type} dialog dismissed", text=text[:200])

    async def _popup(self, popup: Any) -> None:
        entry: dict[str, Any] = {"url": popup.url, "time": rfc3339(now_utc())}
        self.popups.append(entry)
        try:
            await popup.wait_for_load_state("domcontentloaded", timeout=2000)
        except Exception:
            pass
        entry["url"] = popup.url
        self.log("popup", "pop-up window closed without capturing it", url=popup.url)
        try:
            await popup.close()
        except Exception:
            pass

    async def _download(self, download: Any) -> None:
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", download.suggested_filename or "download")[:100] or "download"
        path = self.dir / f"download-{len(self.downloads)}-{name}"
        entry = {"url": download.url, "suggested_filename": download.suggested_filename, "path": path}
        self.downloads.append(entry)
        try:
            await download.save_as(path)
            entry["saved"] = True
            self.log("download", "download saved", url=download.url, filename=download.suggested_filename)
        except Exception as e:
            entry["saved"] = False
            self.warn(f"download of {download.url} failed: {_short(e)}")

    async def _wait_downloads(self) -> None:
        if self._download_tasks:
            wait = max(1.0, min(self.opt.load_timeout, self.left()))
            done, pending = await asyncio.wait(self._download_tasks, timeout=wait)
            for t in pending:
                t.cancel()

    async def _close(self, ctx: Any) -> None:
        if hasattr(self, "rec"):
            for body in self.rec.bodies.values():
                body.close()
        for t in [*self._popup_tasks, *self._visit_tasks, *self._download_tasks]:
            if not t.done():
                t.cancel()
        try:
            await asyncio.wait_for(ctx.close(), max(2.0, min(15.0, self.left())))
        except Exception as e:
            self.log("close", f"closing the browser context: {_short(e)}")
        if self.popups:
            self.warn(f"the page opened {len(self.popups)} pop-up window(s); closed without capturing")
        if self.dialogs:
            self.log("dialogs", f"{len(self.dialogs)} JavaScript dialog(s) dismissed")

    # -- facts ---------------------------------------------------------------------

    async def _certificates(self) -> list[dict[str, Any]]:
        out = []
        seen: dict[str, Hop] = {}
        for hop in self.rec.order:
            sec = (hop.response or {}).get("securityDetails")
            if sec:
                p = urlsplit(hop.url)
                origin = f"{p.scheme}://{p.netloc}"
                seen.setdefault(origin, hop)
        pem_parts = []
        for origin, hop in seen.items():
            sec = hop.response["securityDetails"]  # type: ignore[index]
            try:
                chain = await asyncio.wait_for(self.rec.certificate(origin), max(1.0, min(10.0, self.left())))
            except Exception as e:
                chain = []
                self.log("tls", f"could not read the certificate of {origin}: {_short(e)}")
            host = urlsplit(origin).hostname or ""
            check = tls.validate(chain, host, self.started, self.opt.trust_roots)
            entry = {
                "origin": origin,
                "protocol": sec.get("protocol"),
                "key_exchange": sec.get("keyExchange") or sec.get("keyExchangeGroup"),
                "cipher": sec.get("cipher"),
                "certificate": tls.describe(chain[0]) if chain else None,
                "chain_length": len(chain),
                "validation": check,
                "browser_security_state": (hop.response or {}).get("securityState"),
            }
            out.append(entry)
            if chain:
                pem_parts.append(
                    f"# {origin}: certificate chain as received by the browser, leaf first\n{tls.to_pem(chain)}"
                )
            if check.get("self_signed"):
                self.warn(f"self-signed certificate at {origin}")
            if check.get("valid") is False:
                self.warn(f"the certificate of {origin} does not validate: {check.get('error')}")
            self.log("tls", f"certificate of {origin} recorded", valid=check.get("valid"))
        if pem_parts:
            self.add("certificates.pem", "application/x-pem-file", "certificates").write_text(
                "".join(pem_parts), "ascii"
            )
        return out

    async def _dns(self) -> list[dict[str, Any]]:
        hosts: dict[str, set[str]] = {}
        for hop in self.rec.order:
            host = urlsplit(hop.url).hostname
            if host and hop.remote_ip:
                hosts.setdefault(host, set()).add(f"{hop.remote_ip}:{hop.remote_port}")
        loop = asyncio.get_running_loop()

        async def ask(host: str, seen: set[str]) -> dict[str, Any]:
            entry: dict[str, Any] = {"host": host, "browser_connected_to": sorted(seen)}
            try:
                infos = await asyncio.wait_for(loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), 3)
                entry["system_resolver"] = sorted({i[4][0] for i in infos})
            except (TimeoutError, OSError) as e:
                entry["system_resolver_error"] = str(e) or type(e).__name__
            return entry

        # All at once: the answer of one slow resolver must not wait for another's.
        return list(await asyncio.gather(*(ask(h, seen) for h, seen in sorted(hosts.items()))))

    def _attach_downloads(self, main: list[Hop]) -> None:
        for d in self.downloads:
            if not d.get("saved"):
                continue
            path: Path = d["path"]
            self.artifacts.append(ArtifactFile(path.name, path, "application/octet-stream", "download"))
            saved = BodyFile.from_file(path, "download")
            ref = PayloadRef(path.name, saved.sha256, saved.size)
            self._download_refs[path] = ref
            # The body is stored once, as this artifact: the exchange that carried it
            # becomes a revisit record naming it (the verifier binds the two by digest).
            for hop in self.rec.order:
                if hop.url != d["url"] or hop.redirected or hop.response is None or hop.from_cache:
                    continue
                if id(hop) in self._payload_of_hop:
                    continue
                same = hop.body is not None and (hop.body.size, hop.body.sha256) == (saved.size, saved.sha256)
                if hop.body is None or hop.body.size == 0 or same:
                    if not same:
                        hop.body = saved
                        hop.transformations.append("body taken from the browser's saved download")
                    self._payload_of_hop[id(hop)] = ref
                    break

    def _navigation_list(self) -> list[dict[str, Any]]:
        """Main-frame navigations seen, each HTTP redirect of one as an entry of its own."""
        out: list[dict[str, Any]] = []
        for nav in self.navigations:
            chain: list[Hop] = []
            if nav["cause"] != "history":
                chain = next(
                    (
                        hops
                        for hops in self.rec.hops.values()
                        if hops[0].resource_type == "Document"
                        and hops[0].frame_id == self.main_frame
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

    def _outcome_warnings(self, main: list[Hop]) -> None:
        """What the exhibit lacks or holds only in part, said in its warnings."""
        final = main[-1] if main else None
        if final is not None and final.truncated and final.truncated["reason"] != "unspecified":
            t = final.truncated
            of = f" of {t['declared_length']:,} announced" if t.get("declared_length") is not None else ""
            self.warn(
                f"the main document is incomplete: {t['received_length']:,}{of} bytes received ({t['note']}); "
                f"kept as received, marked WARC-Truncated: {t['reason']}"
            )
        cut = [
            h
            for h in self.rec.order
            if h is not final and h.truncated and h.truncated["reason"] != "unspecified"
        ]
        if cut:

            def one(h: Hop) -> str:
                t = h.truncated or {}
                of = f" of {t['declared_length']:,}" if t.get("declared_length") is not None else ""
                return f"{h.url} ({t.get('received_length', 0):,}{of} bytes)"

            listed = ", ".join(one(h) for h in cut[:5]) + (f" and {len(cut) - 5} more" if len(cut) > 5 else "")
            self.warn(
                f"{len(cut)} response(s) arrived incomplete and are kept as received, marked WARC-Truncated: {listed}"
            )
        moved = self.navigations[1:]
        if moved and self.interaction is None:
            causes = ", ".join(sorted({n["cause"] for n in moved}))
            first = self.navigations[0]["url"] if self.navigations else self.url
            self.warn(
                f"the page navigated by itself after it was opened ({len(moved)} time(s), by {causes}): "
                f"screenshots, DOM and MHTML are of {self.facts.get('url') or self.doc.get('url')}; "
                f"the earlier document(s), from {first}, are in the WARC and listed in navigations"
            )
        have = {a.role for a in self.artifacts}
        wanted = {
            "viewport screenshot": "screenshot-viewport",
            "full-page screenshot": "screenshot-full",
            "rendered DOM": "dom",
        }
        if self.opt.mhtml:
            wanted["MHTML snapshot"] = "mhtml"
        if self.interaction is None or getattr(self, "interacted", False):
            for what, role in wanted.items():
                if role in have:
                    continue
                if role == "mhtml" and any(w.startswith("MHTML snapshot skipped") for w in self.warnings):
                    continue
                why = self.snapshot_errors.get(what) or (
                    "capture deadline reached" if self.deadline_hit else "not reached"
                )
                self.warn(f"{what} not captured: {why}")

    def _info(self, main: list[Hop]) -> dict[str, Any]:
        self._outcome_warnings(main)
        final = main[-1] if main else None
        redirects = [{"url": h.url, "status": h.status, "location": h.location} for h in main if h.redirected]
        server = None
        if final is not None and final.remote_ip:
            server = {"ip": final.remote_ip.strip("[]"), "port": final.remote_port}
        main_tls = None
        if final is not None:
            p = urlsplit(final.url)
            main_tls = next((t for t in self.tls if t["origin"] == f"{p.scheme}://{p.netloc}"), None)
        status = final.status if final is not None else None
        if status is not None and status >= 400:
            self.warn(f"the server answered HTTP {status}")
        vp = {
            "width": self.opt.viewport_width,
            "height": self.opt.viewport_height,
            "device_scale_factor": self.opt.device_scale_factor,
            "is_mobile": self.opt.is_mobile,
            "has_touch": self.opt.has_touch,
            "device": "mobile" if self.opt.is_mobile else "desktop",
            "device_name": self.opt.device,
            "user_agent": self.facts.get("userAgent")
            or (self.browser.facts.user_agent if self.browser.facts else None),
        }
        info: dict[str, Any] = {
            "url": self.url,
            "final_url": self.facts.get("url") or self.doc.get("url") or (final.url if final else self.url),
            "title": self.facts.get("title"),
            "status": status,
            "redirects": redirects,
            "server": server,
            "tls": main_tls,
            "started": rfc3339(self.started),
            "ended": rfc3339(self.ended),
            "time_source": "system-clock",
            "case": self.case,
            "operator": self.operator,
            "note": self.note,
            "viewport": vp,
            "browser": {"name": self.browser.facts.name, "version": self.browser.facts.version}
            if self.browser.facts
            else None,
            "tool": tool_version(),
            "load_finished": self.load_finished,
            "exchanges": sum(1 for h in self.rec.order if h.response is not None),
            "dialogs": self.dialogs,
            "popups": [p["url"] for p in self.popups],
            "downloads": [
                {"url": d["url"], "filename": d["suggested_filename"]}
                for d in self.downloads
                if d.get("saved")
            ],
            "warnings": self.warnings,
            "mode": "interactive" if self.interaction is not None else "automatic",
            "environment_check": self._check_summary(),
            "capture_deadline_ms": int(self.opt.deadline * 1000),
            "deadline_reached": self.deadline_hit,
            "navigations": self._navigation_list(),
            # One entry per screenshot, DOM and MHTML: the document it was taken of.
            "snapshots": [dict(x) for x in self.snapshots],
            **self._content_info(),
        }
        if self.opt.device is not None:
            info["device"] = {
                "name": self.opt.device,
                "descriptor": device_descriptor(self.opt.device),
                "source": "Playwright device descriptors",
                "engine": "Chromium (the descriptor's user agent, viewport, scale factor, touch and mobile flags are emulated)",
            }
        if self.opt.session is not None:
            info["session"] = self.opt.session.facts()
        if getattr(self, "expect_result", None):
            info["expect"] = self.expect_result
        if self.scripts_stopped is not None:
            info["page_scripts_stopped"] = self.scripts_stopped
        if self.frozen is not None:
            info["navigation_frozen"] = {"time": self.frozen, "refused": list(self.rec.blocked_navigations)}
        if self.video is not None:
            info["process_video"] = self.video
        if self.interaction is not None:
            info["interaction"] = {
                "handed_over": rfc3339(self.interaction_started),
                "sealed": rfc3339(self.interaction_ended),
                "statement": (
                    "the investigator used the browser between these times; every page loaded in the "
                    "main window is listed in visits, the final state is sealed as they left it"
                ),
            }
            info["visits"] = [dict(v) for v in self.visits]
        return info

    def _content_info(self) -> dict[str, Any]:
        """What the page held that a plain DOM and screenshot do not show: frames, shadow roots, canvases, tiles."""
        kept = {a.name for a in self.artifacts}
        out: dict[str, Any] = {}
        frames = [dict(f) for f in getattr(self, "frames", [])]
        for f in frames:
            if f.get("artifact") not in kept:  # of a snapshot round thrown away, or never read
                f.pop("artifact", None)
                f.pop("shadow_roots", None)
        if frames:
            out["frames"] = frames
        if "dom.html" in kept:
            out["shadow_roots"] = {
                "open_kept": getattr(self, "main_shadow_roots", 0),
                "statement": (
                    "open shadow roots are kept in dom.html as declarative shadow DOM "
                    "(<template shadowrootmode>); closed ones cannot be read by script and appear only in "
                    "the screenshots"
                ),
            }
        canvases = self.facts.get("canvases")
        if canvases and (canvases.get("total") or canvases.get("error")):
            out["canvases"] = canvases
        shot = getattr(self, "full_shot", None)
        if shot and "screenshot-full.png" in kept:
            out["full_screenshot"] = dict(shot)
        return out

    def _check_summary(self) -> dict[str, Any]:
        """The clean-environment check in the manifest itself; the details are in environment.json."""
        b = self.browser.facts
        f = fonts()
        profile = getattr(self, "profile", {})
        return {
            "fresh_profile": bool(profile.get("clean")) and not profile.get("logged_in_session"),
            "profile": profile.get("profile"),
            "logged_in_session": profile.get("logged_in_session"),
            "browser_user_data_dir": profile.get("browser_user_data_dir"),
            "extensions": profile.get("extensions"),
            "proxy": redact_proxy(self.browser.proxy),
            "hostname": socket.gethostname(),
            "tool": tool_version(),
            "browser": f"{b.name} {b.version}" if b else None,
            "headless": b.headless if b else None,
            "fonts": {"families": len(f["families"]), "chinese": f["chinese"]},
            "clock": self.check.get("clock"),
            "outbound_ip": self.check.get("outbound_ip"),
        }

    def _main_headers(self, main: list[Hop]) -> dict[str, Any] | None:
        final = main[-1] if main else None
        if final is None or final.response is None:
            return None
        status_line, headers, _ = response_headers(final)
        return {"status_line": status_line, "headers": [[k, v] for k, v in headers]}

    def _write(self, info: dict[str, Any], main: list[Hop]) -> None:
        warc_path = self.add("page.warc.gz", "application/warc", "warc")
        warc = WarcFile(warc_path)
        b = self.browser.facts
        env = environment(b.to_json() if b else {}, self.browser.proxy, self.profile)
        env["check"] = self.check
        if self.video is not None:
            from .browser import video_encoder

            env["video_encoder"] = video_encoder()
        warc.warcinfo(
            {
                "software": tool_version(),
                "format": "WARC File Format 1.1",
                "conformsTo": "https://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/",
                "browser": f"{b.name} {b.version}" if b else "unknown",
                "user-agent": info["viewport"]["user_agent"] or "",
                "os": f"{env['os']['distribution'] or env['os']['system']} ({env['os']['system']} {env['os']['release']} {env['os']['machine']})",
                "hostname": env["os"]["hostname"],
                "operator": self.operator or "",
                "case": self.case or "",
                "note": self.note or "",
                "capture-start": info["started"],
                "capture-end": info["ended"],
                "time-source": "system clock of the capturing machine",
                "isPartOf": self.case or "",
            }
        )
        final = main[-1] if main else None
        for hop in self.rec.order:
            if urlsplit(hop.url).scheme not in ("http", "https"):
                continue  # data:, blob: and the like never crossed the network
            notes = warc.exchange(hop, main=hop is final, stored_as=self._payload_of_hop.get(id(hop)))
            for n in notes:
                if n not in hop.transformations:
                    hop.transformations.append(n)
            if notes:
                self.log("warc", f"{hop.method} {hop.url}: " + "; ".join(notes))
        network = {
            "main_document": {
                "url": final.url if final else None,
                "redirect_chain": [h.summary() for h in main],
                "response": self._main_headers(main),
            },
            "exchanges": [h.summary() for h in self.rec.order],
            "tls": self.tls,
            "dns": {
                "statement": (
                    "Chromium does not report its DNS answers; browser_connected_to is the address each "
                    "connection actually used, system_resolver is this machine's resolver asked right after the capture"
                ),
                "hosts": self.dns,
            },
            "dialogs": self.dialogs,
            "popups": self.popups,
            "downloads": [
                {k: str(v) if isinstance(v, Path) else v for k, v in d.items()} for d in self.downloads
            ],
            "scroll": self.scroll,
            "page": self.facts,
        }
        net_path = self.add("network.json", "application/json", "network")
        net_path.write_text(json.dumps(network, ensure_ascii=False, indent=1, sort_keys=True), "utf-8")
        env_path = self.add("environment.json", "application/json", "environment")
        env_path.write_text(json.dumps(env, ensure_ascii=False, indent=1, sort_keys=True), "utf-8")
        log_path = self.add("capture-log.jsonl", "application/x-ndjson", "capture-log")
        self.log("warc", "exchanges written; adding resources and metadata", records=warc.records)
        self.log.write(log_path)
        page_url = info["final_url"]
        when = info["ended"]
        roles = {
            "screenshot-full": f"urn:evidence-chain:screenshot-full:{page_url}",
            "screenshot-viewport": f"urn:evidence-chain:screenshot-viewport:{page_url}",
            "dom": f"urn:evidence-chain:dom:{page_url}",
            "mhtml": f"urn:evidence-chain:mhtml:{page_url}",
            "certificates": f"urn:evidence-chain:certificates:{page_url}",
            "process-video": f"urn:evidence-chain:process-video:{page_url}",
        }
        visit_url = {v[k]: v["url"] for v in self.visits for k in ("screenshot", "dom") if k in v}
        for a in list(self.artifacts):
            if a.role in roles:
                warc.resource(Resource(roles[a.role], a.path, a.media_type, refers_to_main=True), when)
            elif a.role == "frame-dom":
                frame_url = next((f["url"] for f in getattr(self, "frames", []) if f.get("artifact") == a.name), page_url)
                warc.resource(Resource(f"urn:evidence-chain:frame-dom:{frame_url}", a.path, a.media_type), when)
            elif a.role in ("visit-screenshot", "visit-dom"):
                kind = "screenshot-viewport" if a.role == "visit-screenshot" else "dom"
                uri = f"urn:evidence-chain:{kind}:{visit_url.get(a.name, page_url)}"
                warc.resource(Resource(uri, a.path, a.media_type), when)
            elif a.role == "download":
                ref = self._download_refs[a.path]
                if ref in self._payload_of_hop.values():
                    continue  # its exchange's revisit record already names it
                d = next((d for d in self.downloads if d["path"] == a.path), None)
                uri = f"urn:evidence-chain:download:{d['url'] if d else a.name}"
                warc.payload_reference(uri, ref, when)
        for a, uri in (
            (log_path, f"urn:evidence-chain:capture-log:{page_url}"),
            (net_path, f"urn:evidence-chain:network:{page_url}"),
            (env_path, f"urn:evidence-chain:environment:{page_url}"),
        ):
            media = "application/x-ndjson" if a is log_path else "application/json"
            warc.resource(Resource(uri, a, media, record_type="metadata", refers_to_main=True), when)
        warc.close()
        # The bodies live on in the WARC; the scratch copies go.
        shutil.rmtree(self.dir / "bodies", ignore_errors=True)
        # The WARC goes first in the manifest: it is the primary artifact.
        self.artifacts.sort(key=lambda x: x.role != "warc")
