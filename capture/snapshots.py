"""Screenshots, DOM, MHTML and page facts, taken in rounds, all of one document.

After each step the document is checked (a round trip through the renderer,
so every earlier navigation event has arrived), and a round that saw a
navigation is thrown away and taken again of the new document. A page that
keeps navigating is frozen for a last round; a page that started loading
more while it was looked at is looked at again.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from ledger.exhibit import ArtifactFile

from .dom import dom, mhtml, read_global
from .environment import now_utc, rfc3339
from .navigation import freeze, navigation_id, wait_for_document
from .network import Unanswered, _short
from .options import POST_LOAD_WAIT
from .renderer import responsive, unstick
from .screenshots import shot_full, shot_viewport
from .scrolling import scroll
from .state import CaptureState

#: snapshot rounds that may be thrown away because the page navigated, before it is frozen
MAX_SNAPSHOT_ROUNDS = 3
#: snapshot rounds taken again because the page started loading while (or just before) they were taken
MAX_LATE_ROUNDS = 2
SNAPSHOT_ROLES = ("screenshot-viewport", "screenshot-full", "dom", "mhtml")
SNAPSHOTS = ("viewport screenshot", "full-page screenshot", "rendered DOM", "MHTML snapshot")
#: the default wait (``CaptureOptions.post_load_wait``) in milliseconds: a page's timers due this long
#: after its load event (a price fetched 300 ms after load) are waited for, on the page's own clock,
#: before a capture is taken to show the page's final state
POST_LOAD_MS = round(POST_LOAD_WAIT * 1000)
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

# Our timer, due post_load_wait after the load event, runs only after every page timer due
# before it (timers run in order of their due time, in the one event loop of the frame),
# however slowly a loaded machine schedules the renderer: wall time would only guess.
# A request such a timer starts is in flight (its DevTools event sent) before we answer.
AFTER_LOAD_JS = """
(async (ms) => {
  const nav = performance.getEntriesByType("navigation")[0];
  const end = nav ? nav.loadEventEnd : 0;
  if (!end) return null;  // not loaded (yet): nothing to measure from
  const due = end + ms - performance.now();
  if (due > 0) await new Promise((r) => setTimeout(r, due));
  return Math.max(0, Math.round(due));
})(%d)
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


async def snapshots(s: CaptureState, page: Any) -> None:
    """Screenshots, DOM, MHTML and facts, all of one document."""
    navigated = late = 0
    while navigated <= MAX_SNAPSHOT_ROUNDS:
        if navigated == MAX_SNAPSHOT_ROUNDS and s.frozen is None:
            await freeze(s)
        await wait_for_document(s)
        if s.interaction is None and s.scrolled_seq != s.doc_seq:
            await scroll(s)
        kept = (len(s.artifacts), len(s.snapshots), dict(s.snapshot_errors))
        seen = s.rec.requests_seen
        if await snapshot_round(s):
            if late < MAX_LATE_ROUNDS and not s.renderer_stuck and await loaded_late(s, seen):
                # A request the page started after we looked (a timer's XHR, an
                # observer's fetch) would be in the WARC but not in the DOM or the
                # screenshots: look again, so both show the same state.
                late += 1
                drop_round(s, kept)
                if not s.scroll.get("cut"):
                    # The scroll budget is the capture's, not the round's: a cut
                    # (infinite) list is not scrolled further, only looked at again.
                    s.scrolled_seq = -1
                s.log("snapshot", "the page loaded more while it was being captured; snapshots taken again", round=late)
                continue
            return
        navigated += 1
        s.log("snapshot", "the page navigated during the snapshots; they are taken again", round=navigated)
    for what in SNAPSHOTS:
        s.snapshot_errors.setdefault(what, "the page did not stay on one document long enough")


async def loaded_late(s: CaptureState, seen: int) -> bool:
    """Whether the page started requests since ``seen`` (after settling them).

    Not before the page's own clock has passed ``post_load_wait`` after its load
    event: a timer that fetches the price 300 ms after load must have run, also
    when the machine is so busy that our rounds were done before it fired.
    """
    if s.scripts_stopped is not None:
        return False
    await after_load(s)
    await s.settle("after the snapshots", min(s.opt.settle_timeout, max(0.1, s.work_left())))
    return s.rec.requests_seen > seen and s.work_left() > 0


async def after_load(s: CaptureState) -> None:
    """Wait until the page's own clock is ``post_load_wait`` past its load event (at once if it is)."""
    ms = round(s.opt.post_load_wait * 1000)
    if s.scripts_stopped is not None:
        return  # with the page's scripts off, no timer of theirs (or ours) runs
    if ms <= 0:
        s.warn(
            "the page's timers after its load event were not waited for (post_load_wait 0): what a "
            "timer fetches or draws after load may be in the WARC but missing from the screenshots and DOM"
        )
        return
    try:
        waited = await s.world.eval(AFTER_LOAD_JS % ms, timeout=s.probe_timeout + ms / 1000, recreate=False)
    except Exception as e:
        # A busy or departed document: the rounds' own checks deal with it.
        s.log("settle", f"the page's clock could not be read: {_short(e)}")
        return
    if waited is not None:
        s.log("settle", f"waited {int(waited)} ms on the page's clock for its timers due within {ms} ms of load")


def drop_round(s: CaptureState, kept: tuple[int, int, dict[str, str]]) -> None:
    """Forget the snapshots taken since ``kept`` (the files are written again)."""
    n_artifacts, n_snapshots, errors = kept
    for a in s.artifacts[n_artifacts:]:
        a.path.unlink(missing_ok=True)
    del s.artifacts[n_artifacts:]
    del s.snapshots[n_snapshots:]
    s.snapshot_errors = errors


async def doc_check(s: CaptureState, ident: tuple[int, str]) -> str:
    """"same", "changed" or "stuck": has the document changed since ``ident``?

    The round trip goes through the renderer, so every navigation event it
    sent before answering has been handled by the time it returns.
    """
    for attempt in (0, 1):
        try:
            href = await s.world.eval("location.href", timeout=s.probe_timeout, recreate=False)
        except Unanswered:
            if attempt == 0 and await unstick(s, "taking snapshots"):
                continue
            return "stuck"
        except Exception:
            return "changed"
        return "same" if (s.doc_seq, href) == ident else "changed"
    return "stuck"


async def snapshot_round(s: CaptureState) -> bool:
    """One round of snapshots; False (and nothing kept) if the page navigated meanwhile."""
    s.stage = "taking screenshots, DOM and MHTML"
    if not await responsive(s, "taking snapshots"):
        for what in SNAPSHOTS:
            s.snapshot_errors.setdefault(what, "the renderer does not answer")
        return True
    try:
        href = str(await s.world.eval("location.href", timeout=s.step_timeout))
    except Unanswered:
        s.renderer_stuck = not await unstick(s, "taking snapshots")
        return s.renderer_stuck
    except Exception as e:
        s.log("snapshot", f"could not read the document's address: {_short(e)}")
        return False
    ident = (s.doc_seq, href)
    nav_id = navigation_id(s)
    loader = s.doc.get("loader")
    steps: list[tuple[str, Callable[[CaptureState], Awaitable[list[ArtifactFile]]]]] = [
        ("viewport screenshot", shot_viewport),
        ("full-page screenshot", shot_full),
        ("rendered DOM", dom),
        ("MHTML snapshot", mhtml),
        ("page facts", page_facts),
    ]
    taken: list[tuple[ArtifactFile, dict[str, Any]]] = []
    errors: dict[str, str] = {}
    facts: dict[str, Any] = {}
    try:
        for what, step in steps:
            error: Exception | None = None
            try:
                made = await step(s)
            except Exception as e:
                made, error = [], e
            state = await doc_check(s, ident)
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
                s.log("snapshot", f"{what} not taken: {_short(error)}")
                continue
            when = rfc3339(now_utc())
            if what == "page facts":
                facts = s.step_facts
            for a in made:
                taken.append((a, {"artifact": a.name, "url": href, "navigation_id": nav_id, "time": when}))
    finally:
        # Whatever passed its check is of this one document, also when the
        # deadline cuts the round short.
        for a, snap in taken:
            s.artifacts.append(a)
            s.snapshots.append(snap)
        if taken or facts:
            s.snapshot_loader = loader
            s.facts = facts or {"url": href}
        s.snapshot_errors.update(errors)
    return True


async def page_facts(s: CaptureState) -> list[ArtifactFile]:
    """Title, address, character set, screen and canvases of the page (no file: they go into the info)."""
    s.step_facts = dict(await s.world.eval(PAGE_FACTS_JS, timeout=s.step_timeout) or {})
    try:
        s.step_facts["canvases"] = await canvases(s)
    except Unanswered:
        raise
    except Exception as e:
        # The page's facts stand without the canvases; the screenshots still show them.
        s.step_facts["canvases"] = {"total": None, "listed": [], "error": _short(e)}
        s.log("facts", f"canvases not read: {_short(e)}")
    return []


async def canvases(s: CaptureState) -> dict[str, Any]:
    """Every canvas of the page: size, place, and the SHA-256 of its pixels as PNG where readable."""
    key = "__evidence_canvas_" + secrets.token_hex(8)
    r = await s.world.eval(
        CANVAS_JS % (MAX_CANVAS_PIXELS, MAX_CANVASES, json.dumps(key), json.dumps(key)), timeout=s.step_timeout
    ) or {}
    out = list(r.get("canvases") or [])
    for i, c in enumerate(out):
        chars = c.pop("chars", None)
        if not c.get("readable") or chars is None:
            c["png_sha256"] = None
            continue
        h = hashlib.sha256()
        # Base64 slices of the data URL decode on their own: DOM_CHUNK is a multiple of 4.
        await read_global(
            s, s.world, json.dumps(f"{key}{i}"), int(chars), lambda t, h=h: h.update(base64.b64decode(t))
        )
        c["png_sha256"] = h.hexdigest()
    total = int(r.get("total", len(out)))
    if total:
        s.log("facts", f"{total} canvas element(s) on the page", readable=sum(1 for c in out if c.get("readable")))
    return {
        "total": total,
        "listed": out,
        "statement": (
            "canvas pixels are drawn by script and are not in the DOM; the screenshots show them. "
            "png_sha256 is the SHA-256 of the canvas's own pixels as PNG (toDataURL), read from an isolated "
            "script world; a canvas that drew content from another origin is tainted and cannot be read"
        ),
    } if total else {"total": 0, "listed": []}
