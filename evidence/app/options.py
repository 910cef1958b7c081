"""Page-capture options every face offers the same way: a saved login, a device, expected texts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from capture.browser import device_descriptor, devices
from ledger.errors import UsageError
from ledger.sessions import SessionStore

if TYPE_CHECKING:
    from ledger.log import Ledger


def page_options(led: Ledger, *, session: str | None, device: str | None, expect: Sequence[str]) -> dict[str, Any]:
    """CaptureOptions arguments for a saved login, a device and expected texts, checked now.

    The session is unlocked (home passphrase) before any browser starts; an
    unknown session or device is one line (UsageError). Used by capture,
    crawl, watch and the web app's capture form.
    """
    out: dict[str, Any] = {"expect": tuple(expect)}
    if any(not t.strip() for t in expect):
        raise UsageError("--expect must not be empty")
    if device is not None:
        device_descriptor(device)
        out["device"] = device
    if session is not None:
        out["session"] = SessionStore.of_home(led.home.root).load(session)
    return out


def choices(led: Ledger) -> tuple[list[str], list[str]]:
    """Saved session names and device names, for a form's choices."""
    return SessionStore.of_home(led.home.root).names(), sorted(devices())
