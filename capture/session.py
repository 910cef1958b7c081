"""Capture one page into a work directory: pure capture, no ledger.

``capture_into`` opens a fresh browser context, records the page load and
everything it fetches (``network.py``), scrolls to trigger lazy loading,
takes screenshots, the rendered DOM and an MHTML snapshot, reads the
certificates, and writes the WARC and JSON facts. It returns a
``PageCapture`` naming every artifact file; sealing them into the ledger is
``page.py``'s job.

Every wait is bounded. Page scripts run nowhere near our own code: DOM
serialisation and scrolling run in an isolated JavaScript world, so a page
cannot tamper with them by overriding globals.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
import shutil
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from evidence.errors import CaptureError, EvidenceError
from evidence.exhibit import ArtifactFile

from . import tls
from .browser import Browser
from .environment import (
    clock_check,
    environment,
    extensions_check,
    fonts,
    now_utc,
    outbound_ip,
    rfc3339,
    tool_version,
    user_data_dir,
)
from .network import UNREACHABLE, BodyFile, Hop, NetworkRecorder, _short
from .options import CaptureOptions
from .warc import Resource, WarcFile, response_headers

DOM_CHUNK = 1 << 20  # characters per DevTools round trip when reading the DOM
MAX_DIALOGS = 50
#: pages an interactive capture snapshots (screenshot + DOM) before it only lists them
MAX_VISIT_SNAPSHOTS = 200
PROCESS_VIDEO = "process-video.webm"

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
    """An isolated JavaScript world in the page's main frame."""

    def __init__(self, cdp: Any, frame_id: str):
        self.cdp = cdp
        self.frame_id = frame_id
        self.context_id: int | None = None

    async def eval(self, expression: str, timeout: float) -> Any:
        for attempt in (0, 1):
            if self.context_id is None:
                w = await self.cdp.send(
                    "Page.createIsolatedWorld", {"frameId": self.frame_id, "worldName": "evidence-capture"}
                )
                self.context_id = w["executionContextId"]
            try:
                r = await asyncio.wait_for(
                    self.cdp.send(
                        "Runtime.evaluate",
                        {
                            "expression": expression,
                            "contextId": self.context_id,
                            "returnByValue": True,
                            "awaitPromise": True,
                        },
                    ),
                    timeout,
                )
            except TimeoutError:
                raise
            except Exception as e:
                # The page navigated since the world was made: make a new one once.
                if attempt == 0 and "context" in str(e).lower():
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
(async (maxSteps) => {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  // Two rendering steps run IntersectionObserver callbacks (lazy loading);
  // the timeout covers renderers that do not paint while headless.
  const frame = () => Promise.race([new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))), sleep(50)]);
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
  return {steps, grew, height: height(), width: el.scrollWidth, reachedBottom: atBottom()};
})(%d)
"""

TOP_JS = """
(async () => {
  window.scrollTo(0, 0);
  await Promise.race([new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))), new Promise((r) => setTimeout(r, 50))]);
  const el = document.scrollingElement || document.documentElement;
  return {height: Math.max(el.scrollHeight, document.body ? document.body.scrollHeight : 0), width: el.scrollWidth};
})()
"""

DOM_JS = """
(() => {
  const dt = document.doctype;
  const s = (dt ? new XMLSerializer().serializeToString(dt) + "\\n" : "") +
            (document.documentElement ? document.documentElement.outerHTML : "");
  globalThis[%s] = s;
  return s.length;
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

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self.log("warning", message)

    def add(self, name: str, media_type: str, role: str) -> Path:
        path = self.dir / name
        self.artifacts.append(ArtifactFile(name=name, path=path, media_type=media_type, role=role))
        return path

    # -- the capture ---------------------------------------------------------

    async def run(self) -> PageCapture:
        self.started = now_utc()
        self.log("start", f"capture of {self.url}", tool=tool_version())
        (self.dir / "bodies").mkdir(parents=True, exist_ok=True)
        opt = self.opt
        await self._environment_check()
        video: dict[str, Any] = {}
        if opt.record_process:
            video = {
                "record_video_dir": str(self.dir / "video"),
                "record_video_size": {"width": opt.viewport_width, "height": opt.viewport_height},
            }
        ctx = await self.browser.browser.new_context(
            **video,
            viewport={"width": opt.viewport_width, "height": opt.viewport_height},
            device_scale_factor=opt.device_scale_factor,
            is_mobile=opt.is_mobile,
            user_agent=opt.user_agent,
            locale=opt.locale,
            timezone_id=opt.timezone_id,
            # A bad certificate must not stop the capture of a suspect page;
            # the chain is recorded and checked separately (tls.py).
            ignore_https_errors=True,
            accept_downloads=True,
            # Service workers fetch outside the page's DevTools session, so
            # their traffic would be missing from the WARC.
            service_workers="block",
        )
        page = None
        try:
            self.profile = await self._clean_check(ctx)
            page = await ctx.new_page()
            if video:
                # Frame 0 of the video is (within a frame) this moment.
                self.video = {"started": rfc3339(now_utc())}
                self.log("video", "process video recording started")
            cdp = await ctx.new_cdp_session(page)
            self.rec = NetworkRecorder(
                cdp, self.dir / "bodies", inline_document_limit=opt.inline_document_limit, log=self.log
            )
            await self.rec.start()
            tree = await cdp.send("Page.getFrameTree")
            self.main_frame = tree["frameTree"]["frame"]["id"]
            self.world = _World(cdp, self.main_frame)
            page.on("dialog", lambda d: asyncio.ensure_future(self._dialog(d)))
            page.on(
                "download", lambda d: self._download_tasks.append(asyncio.ensure_future(self._download(d)))
            )
            ctx.on("page", lambda p: self._popup_tasks.append(asyncio.ensure_future(self._popup(p))))
            if self.interaction is not None:
                self._watch_visits(page, cdp)
            await self._navigate(page)
            main = self._main_chain()
            self._check_reachable(main)
            if self.interaction is not None:
                await self._interact(page)
                # The investigator's final state is sealed as they left it: no scrolling.
                await self._settle("final state", opt.settle_timeout)
            else:
                # Scrolling starts right away: the page's own after-load requests
                # and the lazy loads it triggers then finish in one settling wait.
                await self._scroll()
            # A page that hangs its renderer (a script that never yields) can
            # defeat any of these; the capture then goes on without that part
            # and says so, because the traffic already recorded is still evidence.
            await self._guard("screenshots", self._shots(page, cdp))
            await self._guard("rendered DOM", self._dom(cdp))
            self.facts = await self._page_facts(page)
            await self._wait_downloads()
            await self.rec.finish(timeout=min(10.0, opt.settle_timeout + 5))
            self.tls = await self._certificates()
            self.dns = await self._dns()
        finally:
            await self._close(ctx)
            if page is not None and video:
                await self._keep_video(page)
        self.ended = now_utc()
        self.log("end", "page closed; writing artifacts")
        main = self._main_chain()
        self._attach_downloads(main)
        info = self._info(main)
        self._write(info, main)
        return PageCapture(self.url, self.dir, self.artifacts, info)

    async def _guard(self, what: str, step: Any) -> None:
        before = len(self.artifacts)
        try:
            await step
        except Exception as e:
            # Drop whatever the failed step half-wrote: no partial artifact.
            for a in self.artifacts[before:]:
                a.path.unlink(missing_ok=True)
            del self.artifacts[before:]
            self.warn(f"{what} not captured: {_short(e)}")

    async def _environment_check(self) -> None:
        """Clock and outbound address, checked before the browser context opens."""
        opt = self.opt
        (clock, warnings), ip = await asyncio.gather(
            asyncio.to_thread(
                clock_check,
                time_source=opt.time_source,
                anchor=self.anchor,
                max_offset=opt.max_clock_offset,
                proxy=self.browser.proxy,
            ),
            asyncio.to_thread(outbound_ip, opt.ip_echo, proxy=self.browser.proxy),
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
        state = await ctx.storage_state()
        profile = {
            "fresh_context": True,
            "persistent_profile": False,
            "cookies_before": len(state.get("cookies", [])),
            "origins_with_storage_before": len(state.get("origins", [])),
            "pages_before": len(ctx.pages),
            "service_workers": "blocked",
            "browser_user_data_dir": user_data_dir(self.browser.facts.command_line if self.browser.facts else []),
            "statement": (
                "each capture runs in a new, empty browser context (in-memory profile: no cookies, "
                "storage, cache or history from earlier browsing); the browser itself was started "
                "with a temporary profile directory"
            ),
        }
        profile["clean"] = (
            profile["cookies_before"] == 0
            and profile["origins_with_storage_before"] == 0
            and profile["pages_before"] == 0
        )
        if not profile["clean"]:
            self.warn("the browser context was not empty before the capture")
        ext = extensions_check(self.browser.facts.command_line if self.browser.facts else [])
        # What is running says more than flags: any extension would show as a target.
        try:
            targets = (await self.browser.browser.new_browser_cdp_session())
            try:
                infos = (await targets.send("Target.getTargets")).get("targetInfos", [])
            finally:
                await targets.detach()
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

        self.log("navigate", f"goto {self.url}", load_timeout_ms=int(self.opt.load_timeout * 1000))
        try:
            await page.goto(self.url, wait_until="load", timeout=self.opt.load_timeout * 1000)
            self.log("load", "load event fired")
        except PlaywrightTimeout:
            self.load_finished = False
            self.warn(
                f"load did not finish within {self.opt.load_timeout:g} s; captured what had arrived by then"
            )
        except PlaywrightError as e:
            self.nav_error = _short(e)
            if "Download is starting" in self.nav_error:
                self.log("navigate", "the URL is a download")
            else:
                m = re.search(r"net::ERR_[A-Z_]+", self.nav_error)
                self.nav_error = m.group(0) if m else self.nav_error
                self.log("navigate", f"navigation ended with {self.nav_error}")

    def _main_chain(self) -> list[Hop]:
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
        if any(h.response is not None for h in main) or self._download_tasks:
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

    async def _scroll(self) -> None:
        """Scroll a viewport at a time to the end, so lazy content loads; bounded.

        At the end we wait for the network to settle and look again: an
        infinite-scroll page has grown by then, and scrolling resumes until
        the step budget is spent.
        """
        budget = self.opt.max_scroll_steps
        total = {"steps": 0, "grew": 0, "height": 0, "width": 0, "reachedBottom": True}
        settle = self.opt.settle_timeout if self.load_finished else min(1.0, self.opt.settle_timeout)
        try:
            while True:
                r = (
                    await self.world.eval(SCROLL_JS % (budget - total["steps"]), timeout=budget * 0.2 + 5)
                    or {}
                )
                total["steps"] += int(r.get("steps", 0))
                total["grew"] += int(r.get("grew", 0))
                total["reachedBottom"] = bool(r.get("reachedBottom"))
                await self._settle("after load and scrolling", settle)
                if total["steps"] >= budget or r.get("steps", 0) == 0:
                    break
                again = await self.world.eval(SCROLL_JS % 0, timeout=5) or {}
                if again.get("reachedBottom"):
                    break  # no growth after settling: this is the end of the page
                total["grew"] += 1
            top = await self.world.eval(TOP_JS, timeout=5) or {}
            total["height"], total["width"] = int(top.get("height", 0)), int(top.get("width", 0))
        except Exception as e:
            self.scroll = {**total, "error": _short(e)}
            self.warn(f"could not scroll the page: {_short(e)}")
            return
        self.scroll = total
        self.log("scroll", "scrolled to trigger lazy loading", **total)
        if total["steps"] >= budget and not total["reachedBottom"]:
            self.warn(
                f"scrolling stopped after {budget} steps before the end of the page "
                f"(it kept growing: infinite scroll?); page height then {total['height']} px"
            )

    async def _shots(self, page: Any, cdp: Any) -> None:
        # Straight from DevTools: Playwright's screenshot adds waits and
        # round trips we do not need once the page has settled.
        async def shot(params: dict[str, Any]) -> bytes:
            r = await asyncio.wait_for(
                cdp.send("Page.captureScreenshot", {"format": "png", **params}), self.step_timeout
            )
            return base64.b64decode(r["data"])

        self.add("screenshot-viewport.png", "image/png", "screenshot-viewport").write_bytes(await shot({}))
        metrics = await cdp.send("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics.get("contentSize") or {}
        width = max(1, int(size.get("width") or self.opt.viewport_width))
        height = max(1, int(size.get("height") or self.opt.viewport_height))
        self.scroll["content_size"] = {"width": width, "height": height}
        if height > self.opt.max_screenshot_height:
            self.warn(
                f"page is {height} px tall; the full-page screenshot shows the top "
                f"{self.opt.max_screenshot_height} px"
            )
            height = self.opt.max_screenshot_height
        clip = {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}
        data = await shot({"captureBeyondViewport": True, "clip": clip})
        self.add("screenshot-full.png", "image/png", "screenshot-full").write_bytes(data)
        self.log("screenshot", "viewport and full-page screenshots taken", width=width, height=height)

    async def _dom(self, cdp: Any) -> None:
        dom = self.add("dom.html", "text/html; charset=utf-8", "dom")
        length = await self._dom_to(dom)
        self.dom_chars = length
        self.log("dom", "rendered DOM saved", characters=length)
        if not self.opt.mhtml:
            return
        if length * 2 > self.opt.max_mhtml_bytes:
            self.warn(
                f"MHTML snapshot skipped: the page's DOM ({length:,} characters) is too large for "
                f"one DevTools message; the WARC and dom.html hold the page"
            )
            return
        try:
            snap = await asyncio.wait_for(cdp.send("Page.captureSnapshot", {"format": "mhtml"}), 60)
        except Exception as e:
            self.warn(f"MHTML snapshot failed: {_short(e)}")
            return
        self.add("page.mhtml", "multipart/related", "mhtml").write_text(snap["data"], "utf-8", newline="")
        self.log("mhtml", "MHTML snapshot saved")

    async def _dom_to(self, dom: Path) -> int:
        key = json.dumps("__evidence_dom_" + secrets.token_hex(8))
        length = int(await self.world.eval(DOM_JS % key, timeout=self.step_timeout) or 0)
        # Read in slices so a huge DOM never crosses DevTools as one message;
        # a slice never ends between the two halves of a surrogate pair.
        read_js = (
            "(() => { const s = globalThis[%s]; let e = Math.min(%d, s.length);"
            " if (e < s.length && e > %d && s.charCodeAt(e - 1) >= 0xD800 && s.charCodeAt(e - 1) < 0xDC00) e--;"
            " return [e, s.slice(%d, e)]; })()"
        )
        pos = 0
        with open(dom, "w", encoding="utf-8", errors="surrogatepass", newline="") as f:
            while pos < length:
                end, text = await self.world.eval(
                    read_js % (key, pos + DOM_CHUNK, pos, pos), timeout=self.step_timeout
                )
                f.write(text)
                pos = int(end)
        await self.world.eval(f"delete globalThis[{key}]", timeout=10)
        return length

    async def _page_facts(self, page: Any) -> dict[str, Any]:
        try:
            return dict(await self.world.eval(PAGE_FACTS_JS, timeout=self.step_timeout) or {})
        except Exception as e:
            self.log("facts", f"could not read page facts: {_short(e)}")
            return {"url": page.url}

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
        try:
            r = await asyncio.wait_for(cdp.send("Page.captureScreenshot", {"format": "png"}), self.step_timeout)
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
            if self.visits[-1] is not visit:
                # The next page committed while we were reading: what we hold
                # may be of that page, so it must not be filed under this one.
                shot.unlink(missing_ok=True)
                dom.unlink(missing_ok=True)
                del visit["screenshot"], visit["dom"]
                raise RuntimeError("the investigator left the page before its snapshot was complete")
            visit["snapshot_time"] = rfc3339(now_utc())
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
            await asyncio.wait(self._visit_tasks, timeout=2 * self.step_timeout)
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

    async def _keep_video(self, page: Any) -> None:
        """Copy the finished video into the exhibit; the recording directory goes."""
        video = {**(self.video or {}), "name": None}
        dest = self.dir / PROCESS_VIDEO
        try:
            # save_as waits until ffmpeg has finished the file, even if closing the context timed out.
            if page.video:
                await asyncio.wait_for(page.video.save_as(dest), 60)
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
            done, pending = await asyncio.wait(self._download_tasks, timeout=self.opt.load_timeout)
            for t in pending:
                t.cancel()

    async def _close(self, ctx: Any) -> None:
        if hasattr(self, "rec"):
            for body in self.rec.bodies.values():
                body.close()
        for t in self._popup_tasks:
            if not t.done():
                t.cancel()
        try:
            await asyncio.wait_for(ctx.close(), 15)
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
                chain = await asyncio.wait_for(self.rec.certificate(origin), 10)
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
        out = []
        for host, seen in sorted(hosts.items()):
            entry: dict[str, Any] = {"host": host, "browser_connected_to": sorted(seen)}
            try:
                infos = await asyncio.wait_for(loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), 3)
                entry["system_resolver"] = sorted({i[4][0] for i in infos})
            except (TimeoutError, OSError) as e:
                entry["system_resolver_error"] = str(e) or type(e).__name__
            out.append(entry)
        return out

    def _attach_downloads(self, main: list[Hop]) -> None:
        for d in self.downloads:
            if not d.get("saved"):
                continue
            path: Path = d["path"]
            self.artifacts.append(ArtifactFile(path.name, path, "application/octet-stream", "download"))
            for hop in self.rec.order:
                if hop.url == d["url"] and not hop.redirected and hop.response is not None:
                    if hop.body is None or hop.body.size == 0:
                        hop.body = BodyFile.from_file(path, "download")
                        hop.transformations.append("body taken from the browser's saved download")

    def _info(self, main: list[Hop]) -> dict[str, Any]:
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
            "device": "mobile" if self.opt.is_mobile else "desktop",
            "user_agent": self.facts.get("userAgent")
            or (self.browser.facts.user_agent if self.browser.facts else None),
        }
        info: dict[str, Any] = {
            "url": self.url,
            "final_url": self.facts.get("url") or (final.url if final else self.url),
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
        }
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

    def _check_summary(self) -> dict[str, Any]:
        """The clean-environment check in the manifest itself; the details are in environment.json."""
        b = self.browser.facts
        f = fonts()
        profile = getattr(self, "profile", {})
        return {
            "fresh_profile": bool(profile.get("clean")),
            "browser_user_data_dir": profile.get("browser_user_data_dir"),
            "extensions": profile.get("extensions"),
            "proxy": self.browser.proxy,
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
            notes = warc.exchange(hop, main=hop is final)
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
            elif a.role in ("visit-screenshot", "visit-dom"):
                kind = "screenshot-viewport" if a.role == "visit-screenshot" else "dom"
                uri = f"urn:evidence-chain:{kind}:{visit_url.get(a.name, page_url)}"
                warc.resource(Resource(uri, a.path, a.media_type), when)
            elif a.role == "download":
                d = next((d for d in self.downloads if d["path"] == a.path), None)
                uri = f"urn:evidence-chain:download:{d['url'] if d else a.name}"
                warc.resource(Resource(uri, a.path, a.media_type, refers_to_main=True), when)
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
