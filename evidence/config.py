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
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", "utf-8")
        os.replace(tmp, self.config_path)


@dataclass
class HomeConfig:
    """config.json: the log's name, its current signing key, pinned public keys."""

    KNOWN = frozenset({"origin", "key_id", "trusted_vkeys", "db_url"})

    origin: str
    key_id: str
    trusted_vkeys: list[str] = field(default_factory=list)
    db_url: str | None = None
    extra: dict[str, object] = field(default_factory=dict)


def passphrase_from_env() -> bytes | None:
    value = os.environ.get("EVIDENCE_KEY_PASSPHRASE")
    return value.encode("utf-8") if value else None
