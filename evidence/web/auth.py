"""Who is logged in to `evidence serve`, their CSRF token, and how fast one may guess passwords.

Sessions live in the server's memory only: a restart logs everyone out, and
nothing secret is written to disk. The cookie holds a random token (32 bytes),
never the user name; the CSRF token is a second random value bound to the
session and compared in constant time.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from evidence.users import User

COOKIE = "evidence_session"
IDLE_SECONDS = 8 * 3600


@dataclass
class WebSession:
    token: str
    user: User
    csrf: str
    seen: float = field(default_factory=time.monotonic)

    def csrf_ok(self, value: str | None) -> bool:
        return isinstance(value, str) and hmac.compare_digest(value.encode(), self.csrf.encode())


class Sessions:
    def __init__(self, idle: float = IDLE_SECONDS):
        self.idle = idle
        self._by_token: dict[str, WebSession] = {}
        self._lock = threading.Lock()

    def new(self, user: User) -> WebSession:
        s = WebSession(secrets.token_urlsafe(32), user, secrets.token_urlsafe(32))
        with self._lock:
            self._by_token[s.token] = s
        return s

    def get(self, token: str | None) -> WebSession | None:
        if not token:
            return None
        now = time.monotonic()
        with self._lock:
            s = self._by_token.get(token)
            if s is None:
                return None
            if now - s.seen > self.idle:
                del self._by_token[token]
                return None
            s.seen = now
            return s

    def drop(self, token: str | None) -> None:
        with self._lock:
            self._by_token.pop(token or "", None)

    def drop_user(self, name: str) -> None:
        with self._lock:
            for t in [t for t, s in self._by_token.items() if s.user.name == name]:
                del self._by_token[t]


class LoginLimiter:
    """At most ``limit`` failed logins per key (user name, client address) in ``window`` seconds."""

    def __init__(self, limit: int = 5, window: float = 300.0):
        self.limit = limit
        self.window = window
        self._fails: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._fails.setdefault(key, deque())
        while q and now - q[0] > self.window:
            q.popleft()
        return q

    def retry_after(self, keys: list[str]) -> float:
        """Seconds until a key may try again (0: it may try now)."""
        now = time.monotonic()
        with self._lock:
            waits = [self.window - (now - q[0]) for q in (self._recent(k, now) for k in keys) if len(q) >= self.limit]
        return max(waits, default=0.0)

    def failed(self, keys: list[str]) -> None:
        now = time.monotonic()
        with self._lock:
            for k in keys:
                self._recent(k, now).append(now)

    def succeeded(self, keys: list[str]) -> None:
        with self._lock:
            for k in keys:
                self._fails.pop(k, None)
