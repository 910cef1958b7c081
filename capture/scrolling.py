"""Scrolling a page a viewport at a time, so that lazy content loads; bounded."""

from __future__ import annotations

import asyncio
from typing import Any

from .network import Unanswered, _short
from .renderer import js_waits, responsive, unstick
from .state import CaptureState

#: scroll steps per page-script call: each call is bounded on its own
SCROLL_CHUNK = 5
#: seconds after scrolling before the network is watched for lazy loads to finish, when the
#: page did not render a frame after the last scroll (then nothing proves its observers ran)
SCROLL_PAUSE = 0.2

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
  // "rendered" says the frames came; after the timeout nothing proves the observers ran.
  const rendered = wait && await Promise.race([new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(() => r(true), 0)))), sleep(1000).then(() => false)]);
  return {steps, grew, height: height(), width: el.scrollWidth, reachedBottom: atBottom(), rendered};
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


async def _scroll_eval(s: CaptureState, expression: str, steps: int) -> dict[str, Any]:
    timeout = s.probe_timeout + steps * 0.25
    try:
        return await s.world.eval(expression, timeout=timeout) or {}
    except Unanswered:
        if not await unstick(s, "scrolling"):
            raise
        return await s.world.eval(expression, timeout=timeout) or {}


async def scroll(s: CaptureState) -> None:
    """Scroll a viewport at a time to the end, so lazy content loads; bounded.

    At the end we wait for the network to settle and look again: an
    infinite-scroll page has grown by then, and scrolling resumes until
    the step budget is spent.
    """
    s.scrolled_seq = s.doc_seq
    s.stage = "scrolling the page"
    budget = s.opt.max_scroll_steps
    total = {"steps": 0, "grew": 0, "height": 0, "width": 0, "reachedBottom": True}
    settle = s.opt.settle_timeout if s.load_finished else min(1.0, s.opt.settle_timeout)
    try:
        if not await responsive(s, "scrolling"):
            raise RuntimeError("the renderer does not answer")
        idle = 0
        while True:
            moved = 0
            rendered = False
            while total["steps"] < budget:
                n = min(SCROLL_CHUNK, budget - total["steps"])
                r = await _scroll_eval(s, SCROLL_JS % (n, js_waits(s)), n)
                done = int(r.get("steps", 0))
                moved += done
                # Each call ends with its frame wait, after every scroll so far: the last one counts.
                rendered = r.get("rendered") is True
                total["steps"] += done
                total["grew"] += int(r.get("grew", 0))
                total["reachedBottom"] = bool(r.get("reachedBottom"))
                if total["reachedBottom"] or done < n:
                    break
            if moved and not rendered:
                # Observers fire and start their fetches a frame or more after the
                # scroll; the network is only worth watching once they have. When the
                # page rendered two frames and a task after the last scroll, they have.
                await asyncio.sleep(min(SCROLL_PAUSE, max(0.0, s.work_left())))
            await s.settle("after load and scrolling", settle)
            if total["steps"] >= budget:
                break
            # A round without scrolling still looks again: a page that fills itself
            # after load (an observer's fetch) has grown by now. Two such rounds in a
            # row end it, so a page that flips its height cannot keep us here.
            idle = 0 if moved else idle + 1
            if idle > 1:
                break
            again = await _scroll_eval(s, SCROLL_JS % (0, js_waits(s)), 0)
            if again.get("reachedBottom"):
                break  # no growth after settling: this is the end of the page
            total["grew"] += 1
        top = await _scroll_eval(s, TOP_JS % js_waits(s), 1)
        total["height"], total["width"] = int(top.get("height", 0)), int(top.get("width", 0))
    except Exception as e:
        s.scroll = {**total, "error": _short(e)}
        s.warn(f"could not scroll the page: {_short(e)}")
        return
    s.scroll = total
    s.log("scroll", "scrolled to trigger lazy loading", **total)
    if total["steps"] >= budget and not total["reachedBottom"]:
        s.scroll["cut"] = True
        why = (
            f"it grew {total['grew']} time(s) while scrolled: infinite scroll? Items further down were not loaded"
            if total["grew"]
            else "it is longer than that; content that loads only when scrolled into view may be missing below"
        )
        s.warn(
            f"scrolling stopped after {budget} steps before the end of the page ({why}); "
            f"page height then {total['height']:,} px"
        )
