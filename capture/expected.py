"""Texts the final page must show (a saved login's marker): without them nothing is recorded."""

from __future__ import annotations

from ledger.errors import ExpectationFailed

from .environment import now_utc, rfc3339
from .network import _short
from .state import CaptureState


async def check_expected(s: CaptureState) -> None:
    """Refuse the capture when the final page lacks a text it must show (a lapsed login)."""
    texts = s.opt.expected_texts
    if not texts:
        return
    s.stage = "checking the expected text"
    try:
        shown = await s.world.eval("document.body ? document.body.innerText : ''", timeout=s.step_timeout)
    except Exception as e:
        shown = ""
        s.log("expect", f"the page's text could not be read: {_short(e)}")
    missing = [t for t in texts if t not in str(shown or "")]
    if missing:
        where = s.facts.get("url") or s.doc.get("url") or s.url
        s.log("expect", "expected text not found", missing=missing)
        raise ExpectationFailed(
            f"expected text not found (session expired?): {', '.join(repr(t) for t in missing)} "
            f"not on the final page {where}; nothing was recorded"
        )
    s.expect_result = {"texts": list(texts), "found": True, "checked": rfc3339(now_utc())}
    s.log("expect", "every expected text is on the final page", texts=list(texts))
