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

The names below are loaded on first use (PEP 562), not when the package is:
``import capture.livestream`` (a livestream capture, ``python -m evidence.cli
livestream``) then costs no import of the page-capture stack (page, session,
interactive: ~0.2 s of CPU at every start). Only this package's own modules
are loaded this way; nothing here is a cycle between packages.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .browser import chromium_available, find_chromium
    from .interactive import capture_interactive
    from .livestream import LivestreamSession, capture_livestream
    from .options import CaptureOptions
    from .page import BatchResult, capture_many, capture_page, capture_to_dir
    from .session import PageCapture

#: public name -> the submodule that defines it
_WHERE = {
    "BatchResult": "page",
    "CaptureOptions": "options",
    "LivestreamSession": "livestream",
    "PageCapture": "session",
    "capture_interactive": "interactive",
    "capture_livestream": "livestream",
    "capture_many": "page",
    "capture_page": "page",
    "capture_to_dir": "page",
    "chromium_available": "browser",
    "find_chromium": "browser",
}

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
assert sorted(__all__) == sorted(_WHERE)


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'capture' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{where}", __name__), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
