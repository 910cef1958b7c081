"""Browser capture of web pages into exhibits.

    from capture import capture_page, capture_many
    ex = capture_page("https://shop.example/item/123", case="SAMR-2026-017", operator="Li Wei")
    batch = capture_many(urls, case="SAMR-2026-017", progress=lambda done, total, url, err: ...)

``capture_to_dir`` captures without a ledger (artifacts in a directory).
``capture_interactive`` hands a visible browser to the investigator and seals
what they visited, with the process video, when they are done.
``capture_livestream`` records a live stream (HLS, progressive, or a page that
plays one) into sealed windows of evidence::

    s = capture_livestream("https://live.example/room/7/index.m3u8", case="SAMR-2026-017", duration=600)
"""

from .browser import chromium_available, find_chromium
from .interactive import capture_interactive
from .livestream import LivestreamSession, capture_livestream
from .options import CaptureOptions
from .page import BatchResult, capture_many, capture_page, capture_to_dir
from .session import PageCapture

__all__ = [
    "BatchResult",
    "CaptureOptions",
    "LivestreamSession",
    "PageCapture",
    "capture_interactive",
    "capture_livestream",
    "capture_many",
    "capture_page",
    "capture_to_dir",
    "chromium_available",
    "find_chromium",
]
