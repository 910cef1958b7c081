"""Checks before the page opens: the clock, the outbound address, a clean browser context."""

from __future__ import annotations

import asyncio
from typing import Any

from .environment import clock_check, extensions_check, outbound_ip, profile_check, user_data_dir
from .network import _short
from .state import CaptureState


async def environment_check(s: CaptureState) -> None:
    """Clock and outbound address, checked before the browser context opens."""
    opt = s.opt
    # Both have network timeouts of their own; the deadline bounds them too.
    (clock, warnings), ip = await asyncio.wait_for(
        asyncio.gather(
            asyncio.to_thread(
                clock_check,
                time_source=opt.time_source,
                anchor=s.anchor,
                max_offset=opt.max_clock_offset,
                proxy=s.browser.proxy,
            ),
            asyncio.to_thread(outbound_ip, opt.ip_echo, proxy=s.browser.proxy),
        ),
        max(1.0, s.work_left()),
    )
    s.check = {"clock": clock, "outbound_ip": ip}
    s.log(
        "clock",
        "system clock checked" if clock.get("offset_ms") is not None else "system clock not checked",
        **{k: clock[k] for k in ("source", "offset_ms", "within_limit") if k in clock},
    )
    s.log("outbound-ip", f"outbound IP {ip.get('ip') or 'unknown'}", **{k: v for k, v in ip.items() if k != "ip"})
    for w in warnings:
        s.warn(w)


async def clean_check(s: CaptureState, ctx: Any) -> dict[str, Any]:
    """What the new context held before the page opened (before ``ctx.new_page``); see ``extensions``."""
    state = await asyncio.wait_for(ctx.storage_state(), s.step_timeout)
    session = s.opt.session.facts() if s.opt.session is not None else None
    profile = profile_check(
        state, len(ctx.pages),
        user_data_dir(s.browser.facts.command_line if s.browser.facts else []), session,
    )
    if not profile["clean"]:
        s.warn(
            "the browser context was not empty before the capture" if session is None
            else f"the browser context did not hold exactly the cookies of session {session['name']}"
        )
    s.log(
        "profile",
        "clean-environment check",
        **{k: profile[k] for k in ("cookies_before", "origins_with_storage_before", "pages_before")},
    )
    return profile


async def extensions(s: CaptureState) -> dict[str, Any]:
    """Any browser extension present: from the browser's flags and its running targets.

    The browser's, not the context's: this may run while the capture's page opens.
    """
    ext = extensions_check(s.browser.facts.command_line if s.browser.facts else [])
    # What is running says more than flags: any extension would show as a target.
    try:
        targets = await asyncio.wait_for(s.browser.browser.new_browser_cdp_session(), s.step_timeout)
        try:
            infos = (await asyncio.wait_for(targets.send("Target.getTargets"), s.step_timeout)).get(
                "targetInfos", []
            )
        finally:
            await asyncio.wait_for(targets.detach(), s.step_timeout)
        ext["extension_targets"] = sorted(
            t.get("url", "") for t in infos if str(t.get("url", "")).startswith("chrome-extension://")
        )
        ext["none"] = ext["none"] and not ext["extension_targets"]
    except Exception as e:
        ext["extension_targets_error"] = _short(e)
    if ext["loaded_by_flag"] or ext.get("extension_targets"):
        s.warn("browser extensions were present during the capture")
    return ext
