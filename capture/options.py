"""What a capture may be asked to do, checked before any browser starts."""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ledger.errors import UsageError
from ledger.sessions import LoginSession

from .browser import device_descriptor
from .environment import check_proxy

#: the default ``post_load_wait``: a page's timers due up to a second after its load event (a price
#: fetched 300 ms after load) are in the screenshots and DOM, however busy the machine
POST_LOAD_WAIT = 1.0


@dataclass(frozen=True)
class CaptureOptions:
    """Bounds and device for one page capture.

    Every wait is bounded so a hostile page cannot hold a capture hostage;
    when a bound is hit the capture goes on and says so in its warnings.
    """

    viewport_width: int = 1366
    viewport_height: int = 768
    device_scale_factor: float = 1
    is_mobile: bool = False
    has_touch: bool = False
    user_agent: str | None = None
    locale: str | None = None
    timezone_id: str | None = None
    #: seconds to wait for the page's ``load`` event
    load_timeout: float = 30.0
    #: seconds to wait, after load and after scrolling, for requests to finish
    settle_timeout: float = 5.0
    #: seconds after the page's load event, on the page's own clock, that its timers are waited
    #: for before the snapshots are taken to show its final state (what a timer due by then
    #: fetched is in the DOM and screenshots). The wait overlaps scrolling and the first round
    #: of snapshots, so it costs only what is left of it then. 0 turns it off, with a warning
    post_load_wait: float = POST_LOAD_WAIT
    #: scroll steps (one viewport each) to trigger lazy loading; infinite scroll stops here
    max_scroll_steps: int = 30
    #: the full-page screenshot is cut at this height (CSS pixels), with a warning; pages
    #: taller than Chromium can draw at once (16,384 px) are shot in tiles and stitched
    max_screenshot_height: int = 100_000
    #: MHTML snapshots come back from Chromium as one message; skip them past this size
    max_mhtml_bytes: int = 32 * 1024 * 1024
    #: seconds the whole capture may take, from start to sealed artifacts; None means
    #: load_timeout + settle_timeout + 60. When it is reached the capture stops and
    #: keeps what it obtained, with a warning (see ``deadline``)
    capture_deadline: float | None = None
    #: proxy server for the browser, e.g. "http://proxy:3128" (recorded in the environment)
    proxy: str | None = None
    #: extra PEM files of trusted roots for the certificate check (besides the system store)
    trust_roots: tuple[Path, ...] = field(default_factory=tuple)
    #: keep an MHTML snapshot (Page.captureSnapshot)
    mhtml: bool = True
    #: record the browser session as a WebM video (the "process video" of the exhibit)
    record_process: bool = False
    #: HTTP(S) URL whose Date header the system clock is checked against; without
    #: it, the latest RFC 3161 anchor in the ledger is the reference
    time_source: str | None = None
    #: seconds the system clock may be off the reference before the exhibit warns
    max_clock_offset: float = 2.0
    #: HTTP(S) endpoint answering with the caller's public IP address (plain or JSON)
    ip_echo: str | None = None
    #: a Playwright device descriptor name ("iPhone 13"); when set, its user agent,
    #: viewport, scale factor, touch and mobile flags replace the fields above
    device: str | None = None
    #: a saved login the browser context starts from (its cookies are not written back)
    session: LoginSession | None = None
    #: texts the final page's rendered text must contain, else the capture is refused
    #: (the session's own marker is added to them)
    expect: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.device is not None:
            d = device_descriptor(self.device)
            # The descriptor wins over the separate fields: a device is all of them or none.
            object.__setattr__(self, "viewport_width", int(d["viewport"]["width"]))
            object.__setattr__(self, "viewport_height", int(d["viewport"]["height"]))
            object.__setattr__(self, "device_scale_factor", d["device_scale_factor"])
            object.__setattr__(self, "is_mobile", bool(d["is_mobile"]))
            object.__setattr__(self, "has_touch", bool(d["has_touch"]))
            object.__setattr__(self, "user_agent", d["user_agent"])
        if self.session is not None and not isinstance(self.session, LoginSession):
            raise UsageError("session must be a saved LoginSession (ledger.sessions)")
        if isinstance(self.expect, str) or not all(isinstance(t, str) and t.strip() for t in self.expect):
            raise UsageError("each expected text must be a non-empty string")
        object.__setattr__(self, "expect", tuple(self.expect))
        for name in ("viewport_width", "viewport_height"):
            v = getattr(self, name)
            if not isinstance(v, int) or not 100 <= v <= 10000:
                raise UsageError(f"{name} must be a whole number of pixels between 100 and 10000, not {v!r}")
        v = self.device_scale_factor
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.5 <= v <= 5:
            raise UsageError(f"device_scale_factor must be between 0.5 and 5, not {v!r}")
        for name in ("load_timeout", "settle_timeout"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0 < v <= 3600:
                raise UsageError(f"{name} must be between 0 and 3600 seconds, not {v!r}")
        v = self.post_load_wait
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 60:
            raise UsageError(f"post_load_wait must be between 0 and 60 seconds, not {v!r}")
        v = self.capture_deadline
        if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or not 1 <= v <= 86400):
            raise UsageError(f"capture_deadline must be between 1 and 86400 seconds, not {v!r}")
        if not isinstance(self.max_scroll_steps, int) or not 0 <= self.max_scroll_steps <= 1000:
            raise UsageError(f"max_scroll_steps must be between 0 and 1000, not {self.max_scroll_steps!r}")
        v = self.max_screenshot_height
        if not isinstance(v, int) or isinstance(v, bool) or not 100 <= v <= 1_000_000:
            raise UsageError(f"max_screenshot_height must be between 100 and 1000000 pixels, not {v!r}")
        object.__setattr__(self, "trust_roots", tuple(Path(p) for p in self.trust_roots))
        for p in self.trust_roots:
            if not p.is_file():
                raise UsageError(f"trust root file {p} does not exist")
        for name in ("time_source", "ip_echo"):
            v = getattr(self, name)
            if v is not None:
                try:
                    parts = urlsplit(v)
                    parts.port  # noqa: B018 - raises on a malformed port
                except ValueError:
                    parts = None
                if not parts or parts.scheme not in ("http", "https") or not parts.hostname:
                    raise UsageError(f"{name} must be an http:// or https:// URL, not {v!r}")
        v = self.max_clock_offset
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 < v <= 86400:
            raise UsageError(f"max_clock_offset must be between 0 and 86400 seconds, not {v!r}")
        check_proxy(self.proxy)

    @property
    def expected_texts(self) -> tuple[str, ...]:
        """What the final page must show: ``expect`` and the session's logged-in marker."""
        marker = self.session.marker if self.session is not None else None
        return self.expect + ((marker,) if marker and marker not in self.expect else ())

    @property
    def deadline(self) -> float:
        """Seconds the whole capture may take."""
        if self.capture_deadline is not None:
            return float(self.capture_deadline)
        return self.load_timeout + self.settle_timeout + 60.0

    @classmethod
    def from_kwargs(cls, options: dict[str, Any]) -> CaptureOptions:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise UsageError(f"unknown capture option(s): {', '.join(unknown)}")
        return cls(**options)

    def to_json(self) -> dict[str, Any]:
        session = self.session
        d = asdict(self)
        # Only what may travel in a case file: the name and facts, never the cookies.
        d["session"] = session.facts() if session is not None else None
        d["expect"] = list(self.expect)
        d["trust_roots"] = [str(p) for p in self.trust_roots]
        # Canonical JSON has no floats: timeouts are recorded in milliseconds.
        d["load_timeout_ms"] = int(d.pop("load_timeout") * 1000)
        d["settle_timeout_ms"] = int(d.pop("settle_timeout") * 1000)
        d["post_load_wait_ms"] = round(d.pop("post_load_wait") * 1000)
        d["max_clock_offset_ms"] = round(d.pop("max_clock_offset") * 1000)
        d.pop("capture_deadline")
        d["capture_deadline_ms"] = int(self.deadline * 1000)
        return d


def check_url(url: str) -> str:
    """Return ``url`` if a browser can be sent there, else raise UsageError."""
    if not isinstance(url, str) or not url.strip():
        raise UsageError("a capture needs a URL")
    url = url.strip()
    if any(c.isspace() for c in url):
        raise UsageError(f"URL contains white space: {url!r}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise UsageError(f"not a valid URL: {url!r} ({e})") from None
    if parts.scheme not in ("http", "https"):
        raise UsageError(f"only http:// and https:// URLs can be captured, not {url!r}")
    host = parts.hostname
    if not host:
        raise UsageError(f"URL has no host: {url!r}")
    if port == 0:
        raise UsageError(f"URL has port 0: {url!r}")
    if host.startswith("[") or ":" in host:
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            raise UsageError(f"URL has an invalid host: {url!r}") from None
    return url
