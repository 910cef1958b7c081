"""Page mode of a livestream capture: Chromium plays the page, we keep what it got.

Chromium is launched by ``capture.browser`` with one more flag,
``--autoplay-policy=no-user-gesture-required``, so a player starts without a
click. Unless the screen recording is off (``Recorder.screen_record``), the
browser runs headed and fullscreen on a private display whose picture and
sound are recorded as one continuous video, a part per window
(``screenrec.py``). Every response the page receives is archived from a CDP session's
Network events (status, headers as Chromium reports them, the body from
``Network.getResponseBody`` once loading finished); media segments among
them are also decoded into frames. At each interval
a viewport screenshot records what a viewer saw, overlays (price tags,
chat) included, with the player's state (``currentTime``, paused, ended).

Bodies come from the browser after it removed Content-Encoding and chunked
framing: the record's headers are adjusted to match (``fetch.py``). A body
larger than ``PAGE_BODY_LIMIT`` is not read (CDP returns bodies whole, in
memory); the exchange is archived with its headers and marked truncated.
CDP hands text bodies over as text: they are stored UTF-8 encoded, which
differs from the served bytes only for text in another charset (playlists
are ASCII; media comes base64-encoded, byte-exact).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .browser import FLAGS, Browser
from .fetch import Exchange
from .frames import FRAGMENT_START, Sampler, is_init_section, joined, mp4_boxes
from .recorder import Recorder, decode_into, environment_file
from .screenrec import ScreenRecording
from .warc import _split_header_map

PAGE_BODY_LIMIT = 32 * 1024 * 1024
LOAD_TIMEOUT_MS = 30_000
SCREENSHOT_TIMEOUT_MS = 10_000
VIEWPORT = {"width": 1280, "height": 720}
#: the player has neither fetched media nor advanced for this long: stalled
STALL_SECONDS = 15.0
MEDIA_TYPES = ("video/", "audio/", "application/vnd.apple.mpegurl", "application/x-mpegurl", "application/dash+xml")
SEGMENT_EXT = (".ts", ".m4s", ".mp4", ".m4v", ".aac", ".webm", ".m4a", ".cmfv", ".cmfa")
VIDEO_STATE = """() => {
  const v = document.querySelector('video');
  if (!v) return null;
  return {currentTime: v.currentTime, paused: v.paused, ended: v.ended, readyState: v.readyState,
          error: v.error ? v.error.code : null, src: v.currentSrc || v.src || ''};
}"""


class LiveBrowser(Browser):
    """``capture.browser.Browser`` with autoplay allowed (a player must start on its own).

    Ctrl-C in a terminal signals the whole process group: the Playwright
    driver would die, or close Chromium, before the open window is sealed.
    The driver is started with SIGINT ignored (inherited across exec) and
    told not to handle signals for the browser, so only we see it and the
    capture ends the way it ends on a bound.

    ``screen``: the environment of a private display and sound server
    (``ScreenRecording.env``); the browser then runs headed there, sound on.
    """

    def __init__(self, screen: dict[str, str] | None = None):
        super().__init__(headless=screen is None, display=(screen or {}).get("DISPLAY"))
        self.screen = screen

    async def __aenter__(self) -> LiveBrowser:
        if threading.current_thread() is not threading.main_thread():
            await super().__aenter__()
            return self
        ours = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            await super().__aenter__()
        finally:
            signal.signal(signal.SIGINT, ours)
        return self

    async def _launch(self, sandbox: bool) -> Any:
        args = [*FLAGS, "--autoplay-policy=no-user-gesture-required"]
        env = None
        if self.screen is not None:
            w, h = VIEWPORT["width"], VIEWPORT["height"]
            # --kiosk: no "press Esc to exit full screen" bubble over the page once it goes fullscreen
            args += ["--window-position=0,0", f"--window-size={w},{h}", "--kiosk"]
            # X11 on our display, never a Wayland compositor the user happens to run.
            env = {**{k: v for k, v in os.environ.items() if k != "WAYLAND_DISPLAY"}, **self.screen}
        return await self._pw.chromium.launch(
            executable_path=str(self.executable),
            args=args,
            headless=self.screen is None,
            # Headless is muted (nothing to hear); the recorded one must play its sound.
            ignore_default_args=["--mute-audio"] if self.screen is not None else None,
            env=env,
            chromium_sandbox=sandbox,
            proxy={"server": self.proxy} if self.proxy else None,
            # The driver would close the browser on these signals before we seal the open window.
            handle_sigint=False,
            handle_sigterm=False,
            handle_sighup=False,
        )


def run_page(rec: Recorder) -> None:
    with ScreenRecording(rec, VIEWPORT["width"], VIEWPORT["height"]) as screen:
        asyncio.run(_Page(rec, screen).run())


def _header(headers: dict[str, str], name: str) -> str | None:
    name = name.lower()
    return next((v for k, v in headers.items() if k.lower() == name), None)


def _is_segment(url: str, content_type: str) -> bool:
    ct = content_type.split(";")[0].strip().lower()
    if "mpegurl" in ct:
        return False
    path = urlsplit(url).path.lower()
    return ct.startswith(("video/", "audio/")) or path.endswith(SEGMENT_EXT)


class _Page:
    def __init__(self, rec: Recorder, screen: ScreenRecording):
        self.rec = rec
        self.screen = screen
        self.tmp = rec.workdir.parent / "page-bodies"
        self.tmp.mkdir(exist_ok=True)
        self.n = 0
        self.pending: set[asyncio.Task[None]] = set()
        self.decode_lock = asyncio.Lock()
        self.sampler = Sampler(int(rec.limits.frame_interval * 1000))
        self.last_media = time.monotonic()
        self.init: Path | None = None
        self.cdp: Any = None
        #: CDP request id -> request facts, until the exchange is archived
        self.requests: dict[str, dict[str, Any]] = {}

    async def run(self) -> None:
        rec = self.rec
        async with LiveBrowser(self.screen.env) as b:
            environment_file(rec, b.facts.to_json() if b.facts else {})
            # A saved login goes in as a copy: cookies the room sets stay in this context, never saved back.
            state = {"storage_state": json.loads(json.dumps(rec.login.storage_state))} if rec.login is not None else {}
            ctx = await b.browser.new_context(viewport=VIEWPORT, **state)
            try:
                page = await ctx.new_page()
                self.cdp = await ctx.new_cdp_session(page)
                self.cdp.on("Network.requestWillBeSent", self._on_request)
                self.cdp.on("Network.responseReceived", self._on_response)
                self.cdp.on("Network.loadingFinished", self._on_finished)
                self.cdp.on("Network.loadingFailed", self._on_failed)
                if self.screen.env is not None:
                    await self._fullscreen()
                # Bodies stay in Chromium's buffer until we ask for them.
                await self.cdp.send(
                    "Network.enable",
                    {"maxResourceBufferSize": PAGE_BODY_LIMIT, "maxTotalBufferSize": 4 * PAGE_BODY_LIMIT},
                )
                try:
                    await page.goto(rec.url, wait_until="load", timeout=LOAD_TIMEOUT_MS)
                except Exception as e:
                    rec.log("load", f"page did not load: {str(e).splitlines()[0]}", level="error")
                    rec.stop("network-error")
                await self._watch(page)
                if self.pending:
                    # Responses still being read belong to the capture: give them a moment.
                    await asyncio.wait(self.pending, timeout=5)
            finally:
                # The recording ends on the page as it was, before its window closes.
                await asyncio.to_thread(self.screen.stop)
                await ctx.close()

    async def _fullscreen(self) -> None:
        # The display is the viewport's size: fullscreen, the page fills it (no tabs, no address bar).
        try:
            win = await self.cdp.send("Browser.getWindowForTarget")
            await self.cdp.send(
                "Browser.setWindowBounds", {"windowId": win["windowId"], "bounds": {"windowState": "fullscreen"}}
            )
        except Exception as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            why = f"the browser window is not fullscreen ({first}): the recording shows its frame"
            self.rec.log("screen", why, level="warning")

    async def _watch(self, page: Any) -> None:
        rec = self.rec
        interval = rec.limits.frame_interval
        next_shot = time.monotonic()
        last_time: float | None = None
        last_progress = time.monotonic()
        while not rec.stopping:
            now = time.monotonic()
            if now >= next_shot:
                state = await self._state(page)
                await self._shoot(page, state)
                late = int((time.monotonic() - next_shot) // interval)
                if late:
                    rec.log("screenshot", f"{late} screenshot interval(s) skipped: the browser was too slow", level="warning")
                next_shot += (late + 1) * interval
                if state is not None:
                    if state.get("ended"):
                        rec.log("player", "the video element reports the stream ended")
                        rec.stop("stream-ended")
                    elif state.get("error") is not None:
                        rec.log("player", f"the video element reports media error {state['error']}", level="error")
                        rec.stop("http-error")
                    ct = state.get("currentTime")
                    if ct != last_time:
                        last_time, last_progress = ct, time.monotonic()
                quiet = time.monotonic() - max(last_progress, self.last_media)
                if quiet > STALL_SECONDS:
                    rec.log("player", f"no playback progress and no media fetched for {quiet:.0f} s", level="warning")
                    rec.stop("stalled")
            await asyncio.to_thread(rec.tick)
            await asyncio.sleep(max(0.0, min(0.2, next_shot - time.monotonic())))

    async def _state(self, page: Any) -> dict[str, Any] | None:
        try:
            return await asyncio.wait_for(page.evaluate(VIDEO_STATE), 5)
        except Exception:
            return None

    async def _shoot(self, page: Any, state: dict[str, Any] | None) -> None:
        try:
            png = await page.screenshot(type="png", timeout=SCREENSHOT_TIMEOUT_MS)
        except Exception as e:
            self.rec.log("screenshot", f"screenshot failed: {str(e).splitlines()[0]}", level="warning")
            return
        facts: dict[str, Any] = {"page_url": page.url}
        if state is not None:
            # Reported by the page's own script context: a player state, not a measurement of ours.
            facts["player"] = {
                "media_ms": int((state.get("currentTime") or 0) * 1000),
                "paused": bool(state.get("paused")),
                "ended": bool(state.get("ended")),
                "ready_state": state.get("readyState"),
                "src": state.get("src") or "",
            }
        await asyncio.to_thread(self.rec.frame_png, png, "screenshot", **facts)

    # -- network, from a CDP session ----------------------------------------
    #
    # Playwright keeps a Request and a Response object for every exchange of a
    # page until the page closes: a live page polling its playlist would grow
    # our memory for as long as it plays. CDP events are plain dicts, dropped
    # as soon as the exchange is archived.

    def _on_request(self, e: dict[str, Any]) -> None:
        req = e.get("request") or {}
        redirect = e.get("redirectResponse")
        rid = e.get("requestId")
        if redirect is not None and rid in self.requests:
            # The same request id goes on to the next hop: archive this one now.
            self._spawn(self._archive(self.requests.pop(rid), redirect, None))
        if self.rec.stopping or urlsplit(req.get("url", "")).scheme not in ("http", "https"):
            return
        self.requests[rid] = {"request": req, "wall": e.get("wallTime") or time.time()}

    def _on_response(self, e: dict[str, Any]) -> None:
        r = self.requests.get(e.get("requestId"))
        if r is None:
            return
        r["response"] = e.get("response") or {}
        r["received"] = time.time()
        ctype = _header(r["response"].get("headers") or {}, "content-type") or r["response"].get("mimeType", "")
        if _is_segment(r["request"].get("url", ""), ctype) or ctype.split(";")[0].strip().lower().startswith(MEDIA_TYPES):
            self.last_media = time.monotonic()

    def _on_finished(self, e: dict[str, Any]) -> None:
        r = self.requests.pop(e.get("requestId"), None)
        if r is not None and "response" in r:
            self._spawn(self._archive(r, r["response"], e["requestId"]))

    def _on_failed(self, e: dict[str, Any]) -> None:
        r = self.requests.pop(e.get("requestId"), None)
        if r is not None:
            r["failed"] = e.get("errorText") or "failed"
            self._spawn(self._archive(r, r.get("response"), None))

    def _spawn(self, coro: Any) -> None:
        t = asyncio.ensure_future(coro)
        self.pending.add(t)
        t.add_done_callback(self.pending.discard)

    async def _archive(self, r: dict[str, Any], resp: dict[str, Any] | None, body_id: str | None) -> None:
        rec = self.rec
        req = r["request"]
        url = req.get("url", "")
        p = urlsplit(url)
        target = (p.path or "/") + (f"?{p.query}" if p.query else "")
        req_headers = _split_header_map(req.get("headers") or {})
        if not any(k.lower() == "host" for k, _ in req_headers):
            req_headers.insert(0, ("Host", p.netloc))
        method = req.get("method", "GET")
        ex = Exchange(url, method, f"{method} {target} HTTP/1.1", req_headers, r["wall"])
        if resp is None:
            ex.notes.append(f"no response: {r.get('failed')}")
            await asyncio.to_thread(rec.exchange, ex)
            rec.log("network", f"{url}: no response ({r.get('failed')})", level="warning")
            return
        headers = _split_header_map(resp.get("headers") or {})
        status = int(resp.get("status") or 0)
        ex.status = status
        ex.status_line = f"HTTP/1.1 {status} {resp.get('statusText') or ''}".rstrip()
        ex.response_headers = headers
        ex.received = r.get("received") or time.time()
        ex.remote_ip = (resp.get("remoteIPAddress") or "").strip("[]") or None
        ex.decoded = True
        proto = resp.get("protocol") or "unknown protocol"
        ex.notes.append(f"status line and headers as Chromium reports them ({proto}; written as HTTP/1.1)")
        if r.get("failed"):
            ex.truncated = "disconnect"
            ex.notes.append(f"loading failed: {r['failed']}")
        elif body_id is None:
            ex.complete = True
            ex.notes.append("redirect body is not exposed by Chromium; stored empty")
        else:
            await self._body(body_id, ex, headers)
        segment = _is_segment(url, _header(resp.get("headers") or {}, "content-type") or "")
        try:
            facts = {"seq": None, "duration_ms": None} if segment else None
            await asyncio.to_thread(rec.exchange, ex, segment=facts)
            if segment and ex.ok and ex.body is not None:
                async with self.decode_lock:  # in arrival order, one at a time
                    await asyncio.to_thread(self._decode, ex.body, url)
        finally:
            if ex.body is not None:
                ex.body.unlink(missing_ok=True)

    def _decode(self, body: Path, url: str) -> None:
        # The page's player (MSE) joins fMP4 fragments to the init section it
        # appended first; we see only responses, so we do the same by content.
        boxes = mp4_boxes(body)
        if is_init_section(boxes):
            self.init = self.tmp / "init-section"
            shutil.copyfile(body, self.init)
            return
        src = body
        if self.init is not None and boxes and boxes[0] in FRAGMENT_START:
            src = joined(self.init, body, self.tmp / "joined")
        try:
            decode_into(self.rec, self.sampler, src, url)
        finally:
            if src != body:
                src.unlink(missing_ok=True)

    async def _body(self, request_id: str, ex: Exchange, headers: list[tuple[str, str]]) -> None:
        length = next((v for k, v in headers if k.lower() == "content-length"), None)
        if length is not None and length.strip().isdigit() and int(length) > PAGE_BODY_LIMIT:
            ex.truncated = "length"
            ex.notes.append(f"body of {length} bytes not read in page mode (limit {PAGE_BODY_LIMIT}); capture the media URL directly")
            return
        left = self.rec.bytes_left()
        try:
            got = await self.cdp.send("Network.getResponseBody", {"requestId": request_id})
            data = base64.b64decode(got["body"]) if got.get("base64Encoded") else got["body"].encode("utf-8")
        except Exception as e:
            ex.truncated = "unspecified"
            ex.notes.append(f"no body could be read: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
            return
        if left is not None and len(data) > left:
            data = data[:left]
            ex.truncated = "length"
        else:
            ex.complete = True
        self.n += 1
        path = Path(self.tmp) / f"body-{self.n:08d}"
        path.write_bytes(data)
        ex.body, ex.size, ex.sha256 = path, len(data), hashlib.sha256(data).hexdigest()
