"""Saved login sessions: a browser's storage state, encrypted at rest in the home.

    from ledger.sessions import SessionStore, LoginSession
    store = SessionStore.of_home(home_root)           # passphrase: EVIDENCE_KEY_PASSPHRASE
    store.save(LoginSession.new("shop-buyer", state, made_by="Li Wei", marker="我的订单"))
    s = store.load("shop-buyer")                      # s.storage_state goes to the browser
    s.facts()                                         # what an exhibit records: never a cookie value

A session is a Playwright storage state (cookies and per-origin local
storage): whoever holds one is logged in as the investigator. It is kept in
``HOME/sessions/NAME.session`` (mode 0600, written atomically), encrypted with
AES-256-GCM under a key derived by scrypt from the home passphrase; the
name and the KDF parameters are authenticated with it, so a file renamed to
another session's name does not open. It never goes into a case file: an
exhibit records the name, who made it and when, and the cookies' names and
domains (``facts``).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from .config import default_home, fsync_dir, passphrase_from_env, write_atomic
from .errors import ConfigError, KeyFileError, UsageError

FORMAT = "evidence-chain-session/1"
SUFFIX = ".session"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: scrypt cost: ~32 MiB and a tenth of a second per unlock
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
#: a storage-state file larger than this is not a browser's login
MAX_STATE_BYTES = 16 * 1024 * 1024
SAME_SITE = ("Strict", "Lax", "None")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise UsageError(
            f"session name {name!r} is not usable: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def validate_storage_state(state: Any, where: str = "storage state") -> dict[str, Any]:
    """``state`` if it has the shape of a Playwright storage state, else UsageError naming the fault."""

    def bad(what: str) -> UsageError:
        return UsageError(f"{where} is not a Playwright storage state: {what}")

    if not isinstance(state, dict):
        raise bad("not a JSON object")
    cookies, origins = state.get("cookies"), state.get("origins")
    if not isinstance(cookies, list):
        raise bad('no "cookies" list')
    if not isinstance(origins, list):
        raise bad('no "origins" list')
    for i, c in enumerate(cookies):
        if not isinstance(c, dict):
            raise bad(f"cookie {i} is not an object")
        for k in ("name", "value", "domain", "path"):
            if not isinstance(c.get(k), str):
                raise bad(f'cookie {i} has no string "{k}"')
        if not c["domain"]:
            raise bad(f"cookie {i} has an empty domain")
        exp = c.get("expires", -1)
        if isinstance(exp, bool) or not isinstance(exp, (int, float)):
            raise bad(f'cookie {i} "expires" is not a number')
        for k in ("httpOnly", "secure"):
            if k in c and not isinstance(c[k], bool):
                raise bad(f'cookie {i} "{k}" is not true or false')
        if "sameSite" in c and c["sameSite"] not in SAME_SITE:
            raise bad(f'cookie {i} "sameSite" is not Strict, Lax or None')
    for i, o in enumerate(origins):
        if not isinstance(o, dict) or not isinstance(o.get("origin"), str):
            raise bad(f'origin {i} has no string "origin"')
        if not o["origin"].startswith(("http://", "https://")):
            raise bad(f"origin {i} is not an http(s) origin")
        items = o.get("localStorage", [])
        if not isinstance(items, list):
            raise bad(f'origin {i} "localStorage" is not a list')
        for j, it in enumerate(items):
            if not (isinstance(it, dict) and isinstance(it.get("name"), str) and isinstance(it.get("value"), str)):
                raise bad(f"origin {i} localStorage item {j} is not a name/value pair of strings")
    return state


def read_storage_state(path: Path) -> dict[str, Any]:
    """A storage-state JSON file, checked (one-line UsageError otherwise)."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_STATE_BYTES + 1)
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from None
    if len(data) > MAX_STATE_BYTES:
        raise UsageError(f"{path} is larger than {MAX_STATE_BYTES // (1024 * 1024)} MiB: not a storage state")
    try:
        state = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise UsageError(f"{path} is not a Playwright storage state: not JSON") from None
    return validate_storage_state(state, str(path))


@dataclass(frozen=True)
class LoginSession:
    """One saved login: the storage state and who made it, when."""

    name: str
    made_at: str
    made_by: str | None
    storage_state: dict[str, Any] = field(repr=False)
    marker: str | None = None
    #: "login" (a browser the officer logged in with) or "import" (a storage-state file)
    source: str = "login"
    #: the address the login started at
    url: str | None = None

    def __post_init__(self) -> None:
        check_name(self.name)
        validate_storage_state(self.storage_state, f"session {self.name}")
        if self.marker is not None and not self.marker.strip():
            raise UsageError("the logged-in marker must not be empty")

    @classmethod
    def new(
        cls,
        name: str,
        storage_state: dict[str, Any],
        *,
        made_by: str | None,
        marker: str | None = None,
        source: str = "login",
        url: str | None = None,
    ) -> LoginSession:
        return cls(name, _now(), made_by, storage_state, marker, source, url)

    def cookies(self) -> list[dict[str, Any]]:
        """Name, domain, path and expiry of each cookie; never its value."""
        out = []
        for c in self.storage_state["cookies"]:
            exp = c.get("expires", -1)
            out.append({
                "name": c["name"],
                "domain": c["domain"],
                "path": c["path"],
                "expires": None if exp is None or exp < 0 else
                dt.datetime.fromtimestamp(exp, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            })
        return out

    def facts(self) -> dict[str, Any]:
        """What an exhibit and `session show` say about the session (no secret in it)."""
        return {
            "name": self.name,
            "made_at": self.made_at,
            "made_by": self.made_by,
            "source": self.source,
            "url": self.url,
            "marker": self.marker,
            "cookies": self.cookies(),
            "origins_with_storage": [
                {"origin": o["origin"], "local_storage_keys": len(o.get("localStorage", []))}
                for o in self.storage_state["origins"]
            ],
        }

    def to_plain(self) -> dict[str, Any]:
        return {
            "name": self.name, "made_at": self.made_at, "made_by": self.made_by, "marker": self.marker,
            "source": self.source, "url": self.url, "storage_state": self.storage_state,
        }


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def _aad(header: dict[str, Any]) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _derive(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase)


class SessionStore:
    """The encrypted sessions of one home."""

    def __init__(self, root: Path, passphrase: bytes | None):
        self.dir = Path(root) / "sessions"
        self._passphrase = passphrase

    @classmethod
    def of_home(cls, root: Path | str | None = None, passphrase: bytes | None = None) -> SessionStore:
        return cls(Path(root) if root is not None else default_home(),
                   passphrase if passphrase is not None else passphrase_from_env())

    @property
    def passphrase(self) -> bytes | None:
        return self._passphrase

    def check_unlocked(self) -> None:
        """ConfigError now, before a browser opens, if sessions cannot be encrypted or opened."""
        self._key_passphrase()

    def _key_passphrase(self) -> bytes:
        if not self._passphrase:
            raise ConfigError(
                "sessions are stored encrypted with the home passphrase: set EVIDENCE_KEY_PASSPHRASE "
                "(a home made with --no-passphrase cannot keep sessions)"
            )
        return self._passphrase

    def path(self, name: str) -> Path:
        return self.dir / f"{check_name(name)}{SUFFIX}"

    def names(self) -> list[str]:
        if not self.dir.is_dir():
            return []
        return sorted(p.name[: -len(SUFFIX)] for p in self.dir.iterdir()
                      if p.name.endswith(SUFFIX) and NAME_RE.fullmatch(p.name[: -len(SUFFIX)]))

    def exists(self, name: str) -> bool:
        return self.path(name).is_file()

    def save(self, session: LoginSession, *, replace: bool = False) -> Path:
        passphrase = self._key_passphrase()
        path = self.path(session.name)
        if path.exists() and not replace:
            raise UsageError(f"session {session.name} already exists: delete it first, or pass --replace")
        salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
        header = {
            "format": FORMAT,
            "name": session.name,
            "kdf": {"name": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P, "salt": _b64(salt)},
            "cipher": "AES-256-GCM",
            "nonce": _b64(nonce),
        }
        key = _derive(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
        plain = json.dumps(session.to_plain(), ensure_ascii=False, sort_keys=True).encode("utf-8")
        sealed = AESGCM(key).encrypt(nonce, plain, _aad(header))
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        write_atomic(path, json.dumps({**header, "ciphertext": _b64(sealed)}).encode("ascii"), mode=0o600)
        return path

    def load(self, name: str) -> LoginSession:
        path = self.path(name)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            have = self.names()
            hint = f" (saved: {', '.join(have)})" if have else " (none saved: `evidence session login` or `session import`)"
            raise UsageError(f"no session named {name}{hint}") from None
        except OSError as e:
            raise KeyFileError(f"cannot read session {name}: {e.strerror or e}") from None
        passphrase = self._key_passphrase()
        try:
            env = json.loads(raw)
            header = {k: env[k] for k in ("format", "name", "kdf", "cipher", "nonce")}
            kdf = header["kdf"]
            if header["format"] != FORMAT or header["cipher"] != "AES-256-GCM" or kdf.get("name") != "scrypt":
                raise ValueError("unknown format")
            # Bounded so a planted file cannot make us spend gigabytes on the KDF.
            n, r, p = int(kdf["n"]), int(kdf["r"]), int(kdf["p"])
            if not (2**14 <= n <= 2**20 and 1 <= r <= 16 and 1 <= p <= 4):
                raise ValueError("KDF parameters out of range")
            key = _derive(passphrase, base64.b64decode(kdf["salt"]), n, r, p)
            plain = AESGCM(key).decrypt(base64.b64decode(header["nonce"]), base64.b64decode(env["ciphertext"]), _aad(header))
        except InvalidTag:
            raise KeyFileError(f"cannot open session {name}: wrong passphrase or damaged file") from None
        except (ValueError, KeyError, TypeError, AttributeError):
            raise KeyFileError(f"session file {path} is damaged") from None
        if header["name"] != name:
            raise KeyFileError(f"session file {path} holds session {header['name']!r}, not {name!r}")
        d = json.loads(plain)
        return LoginSession(
            name=d["name"], made_at=d["made_at"], made_by=d.get("made_by"), storage_state=d["storage_state"],
            marker=d.get("marker"), source=d.get("source", "login"), url=d.get("url"),
        )

    def delete(self, name: str) -> None:
        path = self.path(name)
        try:
            path.unlink()
        except FileNotFoundError:
            raise UsageError(f"no session named {name}") from None
        fsync_dir(self.dir)
