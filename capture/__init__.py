"""Browser capture of web pages into exhibits.

    from capture import capture_page, capture_many
    ex = capture_page("https://shop.example/item/123", case="SAMR-2026-017", operator="Li Wei")
    batch = capture_many(urls, case="SAMR-2026-017", progress=lambda done, total, url, err: ...)

``capture_to_dir`` captures without a ledger (artifacts in a directory).
"""

from .browser import chromium_available, find_chromium
from .options import CaptureOptions
from .page import BatchResult, capture_many, capture_page, capture_to_dir
from .session import PageCapture

__all__ = [
    "BatchResult",
    "CaptureOptions",
    "PageCapture",
    "capture_many",
    "capture_page",
    "capture_to_dir",
    "chromium_available",
    "find_chromium",
]
