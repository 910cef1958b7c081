"""Accounts of the web app (`evidence serve`): ``HOME/users.json``.

A user has a name, an Argon2id hash of the password (argon2-cffi's defaults,
RFC 9106's second recommended profile) and, optionally, the registered officer
the user acts as. Being logged in as that user lets the web app *ask* for the
officer's passphrase; it never holds it: an officer's signature still needs
the officer's own passphrase, typed in the form each time.

The file is private (mode 0600), replaced atomically, and changed under an
exclusive lock so two `evidence user add` runs cannot lose each other's user.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from ledger.config import fsync_dir
from ledger.errors import StoreError, UsageError
from ledger.record import utc_now

USERS_FILE = "users.json"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
MIN_PASSWORD = 10
MAX_PASSWORD = 1024
_hasher = PasswordHasher()
_dummy: list[str] = []


def _dummy_hash() -> str:
    """Verified against when the name is unknown, so a wrong name costs what a wrong password does
    (made on first use: hashing at import would slow every command of the CLI)."""
    if not _dummy:
        _dummy.append(_hasher.hash("not a password of anyone"))
    return _dummy[0]


@dataclass(frozen=True)
class User:
    name: str
    officer: str | None
    created: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "officer": self.officer, "created": self.created}


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UsageError(f"user name {name!r}: use 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit")
    return name


def check_password(password: str) -> str:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise UsageError(f"password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters long")
    return password


class Users:
    """The accounts file of one evidence home."""

    def __init__(self, home_root: Path):
        self.path = Path(home_root) / USERS_FILE

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as e:
            raise StoreError(f"cannot read {self.path}: {e.strerror or e}") from None
        try:
            doc = json.loads(raw)
            users = doc["users"]
            if not isinstance(users, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise StoreError(f"{self.path} is not an accounts file this tool wrote") from None
        return users

    @contextmanager
    def _locked(self) -> Iterator[dict[str, dict[str, Any]]]:
        lock_path = self.path.with_name(USERS_FILE + ".lock")
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise StoreError(f"cannot lock {lock_path}: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            users = self._read()
            yield users
            self._write(users)
        finally:
            os.close(fd)

    def _write(self, users: dict[str, dict[str, Any]]) -> None:
        data = json.dumps({"v": 1, "users": users}, indent=1, sort_keys=True).encode()
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".users-", suffix=".tmp")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        fsync_dir(self.path.parent)

    def add(self, name: str, password: str, officer: str | None = None) -> User:
        check_name(name)
        check_password(password)
        with self._locked() as users:
            if name in users:
                raise UsageError(f"user {name!r} exists already (remove it first)")
            user = User(name, officer, utc_now())
            users[name] = {**user.to_json(), "hash": _hasher.hash(password)}
        return user

    def remove(self, name: str) -> None:
        with self._locked() as users:
            if users.pop(name, None) is None:
                raise UsageError(f"no user {name!r}")

    def list(self) -> list[User]:
        return [User(n, u.get("officer"), u.get("created", "")) for n, u in sorted(self._read().items())]

    def get(self, name: str) -> User | None:
        u = self._read().get(name)
        return None if u is None else User(name, u.get("officer"), u.get("created", ""))

    def authenticate(self, name: str, password: str) -> User | None:
        """The user if the password is theirs, else None (same cost either way)."""
        if len(password) > MAX_PASSWORD:
            return None
        u = self._read().get(name) if isinstance(name, str) else None
        try:
            _hasher.verify(u["hash"] if u else _dummy_hash(), password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if u is None:
            return None
        return User(name, u.get("officer"), u.get("created", ""))
