"""The state one page capture shares between its steps, and the clock they all keep.

``session.py`` runs the steps in order; each step module (``navigation.py``,
``scrolling.py``, ``snapshots.py``, ...) is a set of functions over one
``CaptureState``. What a step finds (warnings, artifacts, facts) goes into
the state, so the steps need not know each other's results beyond its fields.
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ledger.exhibit import ArtifactFile

from .browser import Browser
from .environment import now_utc, rfc3339
from .network import DevTools, NetworkRecorder
from .options import CaptureOptions
from .warc import PayloadRef
from .world import World


class CaptureLog:
    """Timestamped steps of a capture; written as JSON lines."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def __call__(self, step: str, message: str, /, **data: Any) -> None:
        self.entries.append({**data, "time": rfc3339(now_utc()), "step": step, "message": message})

    def write(self, path: Path) -> None:
        with open(path, "w", encoding="utf-8") as f:
            for e in self.entries:
                f.write(json.dumps(e, ensure_ascii=False, sort_keys=True) + "\n")


@dataclass(eq=False)
class CaptureState:
    """Everything one capture knows, from the first step to the files written."""

    browser: Browser
    url: str
    dir: Path
    opt: CaptureOptions
    case: str | None = None
    operator: str | None = None
    note: str | None = None
    #: the ledger's latest RFC 3161 anchor: the clock reference when no time source is set
    anchor: dict[str, Any] | None = None
    #: ``interaction(page)`` returns when the investigator is done (interactive captures)
    interaction: Any = None

    log: CaptureLog = field(default_factory=CaptureLog)
    warnings: list[str] = field(default_factory=list)
    artifacts: list[ArtifactFile] = field(default_factory=list)
    started: datetime | None = None
    ended: datetime | None = None
    stage: str = "starting"

    # -- the clock: every wait is bounded by the capture's deadline
    deadline_at: float = math.inf
    deadline_hit: bool = False
    #: set once the browser work is over: calls may then use the reserve
    finishing: bool = False

    # -- the browser: set while it opens, absent before (``hasattr`` says whether it got that far)
    ctx: Any = None
    page: Any = None
    cdp: DevTools = field(init=False, repr=False)
    rec: NetworkRecorder = field(init=False, repr=False)
    world: World = field(init=False, repr=False)

    # -- environment (preflight.py)
    check: dict[str, Any] = field(default_factory=dict)
    profile: dict[str, Any] = field(default_factory=dict)

    # -- loading and navigations (navigation.py)
    load_finished: bool = True
    nav_error: str | None = None
    reach_checked: bool = False
    #: the main frame's id and its document as DevTools reports it
    main_frame: str = ""
    doc: dict[str, Any] = field(
        default_factory=lambda: {"loader": None, "url": None, "history": 0, "loaded": False}
    )
    doc_seq: int = 0
    nav_pending: bool = False
    nav_reason: str | None = None
    navigations: list[dict[str, Any]] = field(default_factory=list)
    frozen: str | None = None
    #: the document sequence number last waited for, and last scrolled
    waited_seq: int = -1
    scrolled_seq: int = -1

    # -- the renderer (renderer.py)
    scripts_stopped: str | None = None
    renderer_stuck: bool = False

    # -- scrolling and snapshots (scrolling.py, snapshots.py, screenshots.py, dom.py)
    scroll: dict[str, Any] = field(default_factory=dict)
    snapshots: list[dict[str, Any]] = field(default_factory=list)
    snapshot_loader: str | None = None
    snapshot_errors: dict[str, str] = field(default_factory=dict)
    #: the page's facts of the snapshot round kept, and those the current round read
    facts: dict[str, Any] = field(default_factory=dict)
    step_facts: dict[str, Any] = field(default_factory=dict)
    full_shot: dict[str, Any] | None = None
    frames: list[dict[str, Any]] = field(default_factory=list)
    dom_chars: int = 0
    dom_shadow_roots: int = 0
    main_shadow_roots: int = 0
    expect_result: dict[str, Any] | None = None

    # -- the investigator (visits.py) and the process video (process_video.py)
    visits: list[dict[str, Any]] = field(default_factory=list)
    visit_tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    interacted: bool = False
    interaction_started: datetime | None = None
    interaction_ended: datetime | None = None
    video: dict[str, Any] | None = None

    # -- what the page did besides itself (popups.py)
    dialogs: list[dict[str, Any]] = field(default_factory=list)
    popups: list[dict[str, Any]] = field(default_factory=list)
    popup_tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    downloads: list[dict[str, Any]] = field(default_factory=list)
    download_tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    #: saved downloads by artifact path, and the exchange (by id) whose body each one is
    download_refs: dict[Path, PayloadRef] = field(default_factory=dict)
    payload_of_hop: dict[int, PayloadRef] = field(default_factory=dict)

    # -- servers (netfacts.py)
    tls: list[dict[str, Any]] = field(default_factory=list)
    dns: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        opt = self.opt
        # Bound for one page operation (screenshot, script): long enough for a
        # heavy page, short enough that a hung renderer cannot stall us for long.
        self.step_timeout = 10 + 2 * opt.settle_timeout
        # How long a cheap "are you there" script may go unanswered before the
        # page's own script is taken to be blocking the renderer.
        self.probe_timeout = max(2.0, min(5.0, opt.settle_timeout))
        # The end of the browser work is the deadline less this reserve, kept
        # for reading what is left, closing the page and writing the artifacts.
        self.reserve = min(15.0, max(3.0, opt.deadline * 0.2))

    def warn(self, message: str) -> None:
        if message in self.warnings:
            return  # a retaken snapshot round meets the same facts again
        self.warnings.append(message)
        self.log("warning", message)

    def add(self, name: str, media_type: str, role: str) -> Path:
        path = self.dir / name
        self.artifacts.append(ArtifactFile(name=name, path=path, media_type=media_type, role=role))
        return path

    @property
    def recording(self) -> bool:
        """Whether the network recorder started (a capture can end before it does)."""
        return hasattr(self, "rec")

    # -- time ------------------------------------------------------------------

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def left(self) -> float:
        """Seconds to the capture's deadline."""
        return self.deadline_at - self.now()

    def work_left(self) -> float:
        """Seconds the browser work may still take (the deadline less the reserve)."""
        return self.left() - self.reserve

    def call_limit(self) -> float:
        if self.finishing:
            return max(1.0, self.left())
        return max(0.05, self.work_left())

    async def settle(self, why: str, timeout: float, quiet: float = 0.1) -> bool:
        """Wait (bounded) until no request is open and none started for ``quiet`` seconds."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        end = start + timeout
        while loop.time() < end:
            if not self.rec.inflight and loop.time() - self.rec.last_activity >= quiet:
                self.log("settle", f"{why}: network quiet after {int((loop.time() - start) * 1000)} ms")
                return True
            await asyncio.sleep(0.02)
        pending = len(self.rec.inflight)
        self.log("settle", f"{why}: {pending} request(s) still open after {timeout:g} s")
        return False
