"""Where things live and which settings are in force.

Precedence everywhere: explicit argument (CLI flag), then environment
(`EVIDENCE_HOME`, `EVIDENCE_DB_URL`, `EVIDENCE_KEY_PASSPHRASE`,
`EVIDENCE_CHROMIUM`), then defaults. The home holds the pinned identity of
the log (config.json), the signing keys, the SQLite ledger and the artifact
store.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError

CONFIG_NAME = "config.json"
CHECKPOINT_NAME = "latest-checkpoint.note"


def default_home() -> Path:
    return Path(os.environ.get("EVIDENCE_HOME") or Path.home() / ".evidence")


@dataclass(frozen=True)
class Home:
    """The evidence home directory and the paths inside it."""

    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    @property
    def store_dir(self) -> Path:
        return self.root / "store"

    @property
    def sqlite_path(self) -> Path:
        return self.root / "ledger.db"

    def db_url(self, override: str | None = None) -> str:
        url = override or os.environ.get("EVIDENCE_DB_URL")
        if url:
            return url
        cfg = self.load_config() if self.config_path.exists() else None
        if cfg and cfg.db_url:
            return cfg.db_url
        return f"sqlite:///{self.sqlite_path}"

    def load_config(self) -> HomeConfig:
        try:
            raw = json.loads(self.config_path.read_text("utf-8"))
        except FileNotFoundError:
            raise ConfigError(
                f"no evidence home at {self.root} (run `evidence init` or set EVIDENCE_HOME)"
            ) from None
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot read {self.config_path}: {e}") from e
        try:
            return HomeConfig(
                origin=raw["origin"],
                key_id=raw["key_id"],
                trusted_vkeys=list(raw.get("trusted_vkeys", [])),
                db_url=raw.get("db_url"),
                extra={k: v for k, v in raw.items() if k not in HomeConfig.KNOWN},
            )
        except (KeyError, TypeError) as e:
            raise ConfigError(f"{self.config_path} is missing field {e}") from e

    def save_config(self, cfg: HomeConfig) -> None:
        data = dict(cfg.extra)
        data.update(
            origin=cfg.origin, key_id=cfg.key_id, trusted_vkeys=cfg.trusted_vkeys
        )
        if cfg.db_url:
            data["db_url"] = cfg.db_url
        write_atomic(self.config_path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))

    @property
    def checkpoint_path(self) -> Path:
        """The latest checkpoint this home signed, kept outside the database (rollback guard)."""
        return self.root / CHECKPOINT_NAME

    @property
    def retired_keys_dir(self) -> Path:
        """Private keys of rotated-away log keys (still encrypted), out of keys/."""
        return self.root / "keys-retired"


@dataclass
class HomeConfig:
    """config.json: the log's name, its current signing key, pinned public keys."""

    KNOWN = frozenset({"origin", "key_id", "trusted_vkeys", "db_url"})

    origin: str
    key_id: str
    trusted_vkeys: list[str] = field(default_factory=list)
    db_url: str | None = None
    extra: dict[str, object] = field(default_factory=dict)


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old file or the new one.

    Temp file beside it, fsync, rename over, fsync the directory (the rename
    itself must reach the disk before anyone relies on the new content).
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def passphrase_from_env() -> bytes | None:
    value = os.environ.get("EVIDENCE_KEY_PASSPHRASE")
    return value.encode("utf-8") if value else None
