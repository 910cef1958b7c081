"""What a hostile page throws at the capture besides itself: dialogs, pop-ups, downloads.

Dialogs are answered at once (an open one blocks the page), pop-ups closed
unseen, downloads saved and bound to the exchange that carried them.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from ledger.exhibit import ArtifactFile

from .environment import now_utc, rfc3339
from .network import BodyFile, Hop, _short
from .state import CaptureState
from .warc import PayloadRef

MAX_DIALOGS = 50


def watch(s: CaptureState, ctx: Any, page: Any) -> None:
    """Answer the page's dialogs, close its pop-ups and save its downloads as they come."""
    page.on("dialog", lambda d: asyncio.ensure_future(dialog(s, d)))
    page.on("download", lambda d: s.download_tasks.append(asyncio.ensure_future(download(s, d))))
    ctx.on("page", lambda p: s.popup_tasks.append(asyncio.ensure_future(popup(s, p))))


async def dialog(s: CaptureState, dialog: Any) -> None:
    # Answer first: an open dialog blocks the page, and with it the capture.
    try:
        if dialog.type == "beforeunload":
            await dialog.accept()
        else:
            await dialog.dismiss()
    except Exception:
        pass
    if len(s.dialogs) < MAX_DIALOGS:
        text = str(dialog.message)
        s.dialogs.append({"type": dialog.type, "message": text[:2000], "time": rfc3339(now_utc())})
        s.log("dialog", f"{dialog.type} dialog dismissed", text=text[:200])


async def popup(s: CaptureState, popup: Any) -> None:
    entry: dict[str, Any] = {"url": popup.url, "time": rfc3339(now_utc())}
    s.popups.append(entry)
    try:
        await popup.wait_for_load_state("domcontentloaded", timeout=2000)
    except Exception:
        pass
    entry["url"] = popup.url
    s.log("popup", "pop-up window closed without capturing it", url=popup.url)
    try:
        await popup.close()
    except Exception:
        pass


async def download(s: CaptureState, download: Any) -> None:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", download.suggested_filename or "download")[:100] or "download"
    path = s.dir / f"download-{len(s.downloads)}-{name}"
    entry = {"url": download.url, "suggested_filename": download.suggested_filename, "path": path}
    s.downloads.append(entry)
    try:
        await download.save_as(path)
        entry["saved"] = True
        s.log("download", "download saved", url=download.url, filename=download.suggested_filename)
    except Exception as e:
        entry["saved"] = False
        s.warn(f"download of {download.url} failed: {_short(e)}")


async def wait_downloads(s: CaptureState) -> None:
    if s.download_tasks:
        wait = max(1.0, min(s.opt.load_timeout, s.left()))
        done, pending = await asyncio.wait(s.download_tasks, timeout=wait)
        for t in pending:
            t.cancel()


def attach_downloads(s: CaptureState, main: list[Hop]) -> None:
    """Each saved download becomes an artifact; the exchange that carried it names it in the WARC."""
    for d in s.downloads:
        if not d.get("saved"):
            continue
        path: Path = d["path"]
        s.artifacts.append(ArtifactFile(path.name, path, "application/octet-stream", "download"))
        saved = BodyFile.from_file(path, "download")
        ref = PayloadRef(path.name, saved.sha256, saved.size)
        s.download_refs[path] = ref
        # The body is stored once, as this artifact: the exchange that carried it
        # becomes a revisit record naming it (the verifier binds the two by digest).
        for hop in s.rec.order:
            if hop.url != d["url"] or hop.redirected or hop.response is None or hop.from_cache:
                continue
            if id(hop) in s.payload_of_hop:
                continue
            same = hop.body is not None and (hop.body.size, hop.body.sha256) == (saved.size, saved.sha256)
            if hop.body is None or hop.body.size == 0 or same:
                if not same:
                    hop.body = saved
                    hop.transformations.append("body taken from the browser's saved download")
                s.payload_of_hop[id(hop)] = ref
                break
