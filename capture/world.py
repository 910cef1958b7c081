"""An isolated JavaScript world in one frame: where our scripts run, out of the page's reach.

Page scripts share the DOM with this world but not its globals, so a page
cannot tamper with our DOM serialisation or scrolling by overriding them.
"""

from __future__ import annotations

from typing import Any

from .network import DevTools, Unanswered


class World:
    """An isolated JavaScript world in a frame of the page (one per document)."""

    def __init__(self, cdp: DevTools, frame_id: str):
        self.cdp = cdp
        self.frame_id = frame_id
        self.context_id: int | None = None

    async def eval(self, expression: str, timeout: float, *, recreate: bool = True) -> Any:
        """Evaluate in the world; ``recreate=False`` fails instead of entering a new document."""
        for attempt in (0, 1):
            if self.context_id is None:
                if not recreate:
                    raise RuntimeError("the document changed")
                w = await self.cdp.send(
                    "Page.createIsolatedWorld",
                    {"frameId": self.frame_id, "worldName": "evidence-capture"},
                    timeout=timeout,
                )
                self.context_id = w["executionContextId"]
            try:
                r = await self.cdp.send(
                    "Runtime.evaluate",
                    {
                        "expression": expression,
                        "contextId": self.context_id,
                        "returnByValue": True,
                        "awaitPromise": True,
                    },
                    timeout=timeout,
                )
            except Unanswered:
                raise
            except Exception as e:
                # The page navigated since the world was made: make a new one once.
                if recreate and attempt == 0 and "context" in str(e).lower():
                    self.context_id = None
                    continue
                raise
            if "exceptionDetails" in r:
                desc = r["exceptionDetails"].get("exception", {}).get("description") or r[
                    "exceptionDetails"
                ].get("text")
                raise RuntimeError(f"script failed in page: {desc}")
            return r.get("result", {}).get("value")
        return None
