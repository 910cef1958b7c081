"""The process video: Playwright's recording of the browser session, kept as an artifact."""

from __future__ import annotations

import asyncio
import shutil
from typing import Any

from ledger.exhibit import ArtifactFile

from .network import _short
from .state import CaptureState

PROCESS_VIDEO = "process-video.webm"


def video_context_options(s: CaptureState) -> dict[str, Any]:
    """Browser-context arguments that record the session, when the capture asks for it."""
    if not s.opt.record_process:
        return {}
    return {
        "record_video_dir": str(s.dir / "video"),
        "record_video_size": {"width": s.opt.viewport_width, "height": s.opt.viewport_height},
    }


async def keep_video(s: CaptureState, page: Any) -> None:
    """Copy the finished video into the exhibit; the recording directory goes."""
    video = {**(s.video or {}), "name": None}
    dest = s.dir / PROCESS_VIDEO
    try:
        # save_as waits until ffmpeg has finished the file, even if closing the context timed out.
        if page.video:
            await asyncio.wait_for(page.video.save_as(dest), max(5.0, min(60.0, s.left())))
    except Exception as e:
        dest.unlink(missing_ok=True)
        video["error"] = _short(e)
    if dest.is_file() and dest.stat().st_size > 0:
        s.artifacts.append(ArtifactFile(dest.name, dest, "video/webm", "process-video"))
        video.update(name=dest.name, size=dest.stat().st_size, codec="VP9 in WebM (Playwright screencast)")
        s.log("video", "process video saved", size=video["size"])
    else:
        s.warn(f"the process video was not recorded{': ' + video['error'] if 'error' in video else ''}")
    s.video = video
    # Pop-ups get videos of their own; they were closed unseen, so theirs go.
    shutil.rmtree(s.dir / "video", ignore_errors=True)
