"""The exhibit's info: what was captured, of what, how and when, and what it lacks (the warnings)."""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import urlsplit

from .browser import device_descriptor
from .environment import fonts, redact_proxy, rfc3339, tool_version
from .navigation import navigation_list
from .network import Hop
from .state import CaptureState


def outcome_warnings(s: CaptureState, main: list[Hop]) -> None:
    """What the exhibit lacks or holds only in part, said in its warnings."""
    final = main[-1] if main else None
    if final is not None and final.truncated and final.truncated["reason"] != "unspecified":
        t = final.truncated
        of = f" of {t['declared_length']:,} announced" if t.get("declared_length") is not None else ""
        s.warn(
            f"the main document is incomplete: {t['received_length']:,}{of} bytes received ({t['note']}); "
            f"kept as received, marked WARC-Truncated: {t['reason']}"
        )
    cut = [
        h
        for h in s.rec.order
        if h is not final and h.truncated and h.truncated["reason"] != "unspecified"
    ]
    if cut:

        def one(h: Hop) -> str:
            t = h.truncated or {}
            of = f" of {t['declared_length']:,}" if t.get("declared_length") is not None else ""
            return f"{h.url} ({t.get('received_length', 0):,}{of} bytes)"

        listed = ", ".join(one(h) for h in cut[:5]) + (f" and {len(cut) - 5} more" if len(cut) > 5 else "")
        s.warn(
            f"{len(cut)} response(s) arrived incomplete and are kept as received, marked WARC-Truncated: {listed}"
        )
    moved = s.navigations[1:]
    if moved and s.interaction is None:
        causes = ", ".join(sorted({n["cause"] for n in moved}))
        first = s.navigations[0]["url"] if s.navigations else s.url
        s.warn(
            f"the page navigated by itself after it was opened ({len(moved)} time(s), by {causes}): "
            f"screenshots, DOM and MHTML are of {s.facts.get('url') or s.doc.get('url')}; "
            f"the earlier document(s), from {first}, are in the WARC and listed in navigations"
        )
    have = {a.role for a in s.artifacts}
    wanted = {
        "viewport screenshot": "screenshot-viewport",
        "full-page screenshot": "screenshot-full",
        "rendered DOM": "dom",
    }
    if s.opt.mhtml:
        wanted["MHTML snapshot"] = "mhtml"
    if s.interaction is None or s.interacted:
        for what, role in wanted.items():
            if role in have:
                continue
            if role == "mhtml" and any(w.startswith("MHTML snapshot skipped") for w in s.warnings):
                continue
            why = s.snapshot_errors.get(what) or (
                "capture deadline reached" if s.deadline_hit else "not reached"
            )
            s.warn(f"{what} not captured: {why}")


def info(s: CaptureState, main: list[Hop]) -> dict[str, Any]:
    """The exhibit's ``info``: written into the manifest, the record and the extraction record."""
    assert s.started is not None and s.ended is not None
    outcome_warnings(s, main)
    final = main[-1] if main else None
    redirects = [{"url": h.url, "status": h.status, "location": h.location} for h in main if h.redirected]
    server = None
    if final is not None and final.remote_ip:
        server = {"ip": final.remote_ip.strip("[]"), "port": final.remote_port}
    main_tls = None
    if final is not None:
        p = urlsplit(final.url)
        main_tls = next((t for t in s.tls if t["origin"] == f"{p.scheme}://{p.netloc}"), None)
    status = final.status if final is not None else None
    if status is not None and status >= 400:
        s.warn(f"the server answered HTTP {status}")
    vp = {
        "width": s.opt.viewport_width,
        "height": s.opt.viewport_height,
        "device_scale_factor": s.opt.device_scale_factor,
        "is_mobile": s.opt.is_mobile,
        "has_touch": s.opt.has_touch,
        "device": "mobile" if s.opt.is_mobile else "desktop",
        "device_name": s.opt.device,
        "user_agent": s.facts.get("userAgent")
        or (s.browser.facts.user_agent if s.browser.facts else None),
    }
    out: dict[str, Any] = {
        "url": s.url,
        "final_url": s.facts.get("url") or s.doc.get("url") or (final.url if final else s.url),
        "title": s.facts.get("title"),
        "status": status,
        "redirects": redirects,
        "server": server,
        "tls": main_tls,
        "started": rfc3339(s.started),
        "ended": rfc3339(s.ended),
        "time_source": "system-clock",
        "case": s.case,
        "operator": s.operator,
        "note": s.note,
        "viewport": vp,
        "browser": {"name": s.browser.facts.name, "version": s.browser.facts.version}
        if s.browser.facts
        else None,
        "tool": tool_version(),
        "load_finished": s.load_finished,
        "exchanges": sum(1 for h in s.rec.order if h.response is not None),
        "dialogs": s.dialogs,
        "popups": [p["url"] for p in s.popups],
        "downloads": [
            {"url": d["url"], "filename": d["suggested_filename"]}
            for d in s.downloads
            if d.get("saved")
        ],
        "warnings": s.warnings,
        "mode": "interactive" if s.interaction is not None else "automatic",
        "environment_check": check_summary(s),
        "capture_deadline_ms": int(s.opt.deadline * 1000),
        "deadline_reached": s.deadline_hit,
        "navigations": navigation_list(s),
        # One entry per screenshot, DOM and MHTML: the document it was taken of.
        "snapshots": [dict(x) for x in s.snapshots],
        **content_info(s),
    }
    if s.opt.device is not None:
        out["device"] = {
            "name": s.opt.device,
            "descriptor": device_descriptor(s.opt.device),
            "source": "Playwright device descriptors",
            "engine": "Chromium (the descriptor's user agent, viewport, scale factor, touch and mobile flags are emulated)",
        }
    if s.opt.session is not None:
        out["session"] = s.opt.session.facts()
    if s.expect_result:
        out["expect"] = s.expect_result
    if s.scripts_stopped is not None:
        out["page_scripts_stopped"] = s.scripts_stopped
    if s.frozen is not None:
        out["navigation_frozen"] = {"time": s.frozen, "refused": list(s.rec.blocked_navigations)}
    if s.video is not None:
        out["process_video"] = s.video
    if s.interaction is not None:
        # Not handed over at all when the deadline came during loading.
        started, ended = s.interaction_started, s.interaction_ended
        out["interaction"] = {
            "handed_over": rfc3339(started) if started else None,
            "sealed": rfc3339(ended) if ended else None,
            "statement": (
                "the investigator used the browser between these times; every page loaded in the "
                "main window is listed in visits, the final state is sealed as they left it"
            ),
        }
        out["visits"] = [dict(v) for v in s.visits]
    return out


def content_info(s: CaptureState) -> dict[str, Any]:
    """What the page held that a plain DOM and screenshot do not show: frames, shadow roots, canvases, tiles."""
    kept = {a.name for a in s.artifacts}
    out: dict[str, Any] = {}
    frames = [dict(f) for f in s.frames]
    for f in frames:
        if f.get("artifact") not in kept:  # of a snapshot round thrown away, or never read
            f.pop("artifact", None)
            f.pop("shadow_roots", None)
    if frames:
        out["frames"] = frames
    if "dom.html" in kept:
        out["shadow_roots"] = {
            "open_kept": s.main_shadow_roots,
            "statement": (
                "open shadow roots are kept in dom.html as declarative shadow DOM "
                "(<template shadowrootmode>); closed ones cannot be read by script and appear only in "
                "the screenshots"
            ),
        }
    canvases = s.facts.get("canvases")
    if canvases and (canvases.get("total") or canvases.get("error")):
        out["canvases"] = canvases
    shot = s.full_shot
    if shot and "screenshot-full.png" in kept:
        out["full_screenshot"] = dict(shot)
    return out


def check_summary(s: CaptureState) -> dict[str, Any]:
    """The clean-environment check in the manifest itself; the details are in environment.json."""
    b = s.browser.facts
    f = fonts()
    profile = s.profile
    return {
        "fresh_profile": bool(profile.get("clean")) and not profile.get("logged_in_session"),
        "profile": profile.get("profile"),
        "logged_in_session": profile.get("logged_in_session"),
        "browser_user_data_dir": profile.get("browser_user_data_dir"),
        "extensions": profile.get("extensions"),
        "proxy": redact_proxy(s.browser.proxy),
        "hostname": socket.gethostname(),
        "tool": tool_version(),
        "browser": f"{b.name} {b.version}" if b else None,
        "headless": b.headless if b else None,
        "fonts": {"families": len(f["families"]), "chinese": f["chinese"]},
        "clock": s.check.get("clock"),
        "outbound_ip": s.check.get("outbound_ip"),
    }
