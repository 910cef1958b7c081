"""One HTTP POST with retries, exponential backoff and a hard deadline.

Anchoring talks to services we do not run. A slow or flapping service must
cost a bounded amount of time, never hang a scheduled job, and a refusal
(4xx) must not be retried into a ban. Stdlib only: these are a few small
requests per checkpoint, not a hot path.
"""

from __future__ import annotations

import http.client
import random
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import Message
from urllib.parse import urlsplit

from ledger.errors import UsageError

from .errors import AnchorUnavailable

MAX_BODY = 4 * 1024 * 1024  # no TSA token, cosignature or receipt comes near this
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
BACKOFF_FIRST = 0.25


@dataclass(frozen=True)
class Response:
    status: int
    content_type: str
    body: bytes


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirect would turn our POST into a GET elsewhere; report it instead.
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def check_url(url: str, what: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{what} URL {url!r} must be http:// or https:// with a host")
    return url


def post(
    url: str,
    body: bytes,
    *,
    content_type: str,
    accept: str,
    what: str,
    timeout: float = 10.0,
    deadline: float = 30.0,
    headers: dict[str, str] | None = None,
) -> Response:
    """POST ``body``; retry transient failures until ``deadline`` seconds have passed.

    Returns the final response for any status the caller must interpret
    (2xx, and 4xx other than 408/425/429). Raises ``AnchorUnavailable`` when
    the service stays unreachable, slow or failing past the deadline.
    """
    check_url(url, what)
    if timeout <= 0 or deadline <= 0:
        raise UsageError(f"{what}: timeout and deadline must be positive")
    stop = time.monotonic() + deadline
    hdrs = {"Content-Type": content_type, "Accept": accept, "User-Agent": "evidence-chain"}
    hdrs.update(headers or {})
    attempt = 0
    while True:
        attempt += 1
        left = stop - time.monotonic()
        reason = ""
        try:
            req = urllib.request.Request(url, data=body, headers=hdrs, method="POST")
            with _opener.open(req, timeout=max(0.05, min(timeout, left))) as resp:
                return Response(resp.status, _ctype(resp.headers), _read(resp, what))
        except urllib.error.HTTPError as e:
            payload = _read(e, what) if e.fp is not None else b""
            if e.code not in RETRY_STATUS:
                return Response(e.code, _ctype(e.headers), payload)
            reason = f"HTTP {e.code}{_snippet(payload)}"
        except urllib.error.URLError as e:
            r = e.reason
            reason = (
                "timed out"
                if isinstance(r, (TimeoutError, socket.timeout))
                else str(getattr(r, "strerror", None) or r)
            )
        except TimeoutError:
            reason = f"timed out after {min(timeout, left):.1f}s"
        except (ConnectionError, OSError) as e:
            reason = e.strerror or type(e).__name__
        except http.client.HTTPException as e:
            reason = f"bad HTTP response ({type(e).__name__})"
        # Full jitter keeps several clients from retrying in lockstep.
        pause = random.uniform(0, BACKOFF_FIRST * 2 ** (attempt - 1))
        if time.monotonic() + pause >= stop:
            raise AnchorUnavailable(
                f"{what} {url}: {reason} ({attempt} attempt{'s' if attempt > 1 else ''} in {deadline:g}s)"
            )
        time.sleep(pause)


def _read(resp: object, what: str) -> bytes:
    data = resp.read(MAX_BODY + 1)  # type: ignore[attr-defined]
    if len(data) > MAX_BODY:
        raise AnchorUnavailable(f"{what}: response larger than {MAX_BODY} bytes")
    return bytes(data)


def _ctype(headers: Message | None) -> str:
    if headers is None:
        return ""
    return (headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()


def _snippet(body: bytes) -> str:
    text = body[:120].decode("utf-8", "replace").strip().splitlines()
    return f": {text[0]}" if text else ""
