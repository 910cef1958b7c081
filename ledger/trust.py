"""Which log keys a verifier trusts, and for which part of the log.

A log key lives until it is rotated away. The rotation record at index ``r``
is signed by the old key and is the last record it signs; its lifetime is the
tree of size ``r + 1`` (which ends with its own retirement):

- records signed by it must have index ``<= r`` (``< last_valid_size``);
- checkpoints signed by it must have size ``<= r + 1`` (``<= last_valid_size``).

Anything later under that key is refused, so a stolen retired key cannot
continue the log, nor re-sign a copy of it with the rotation dropped. Within
its lifetime it can still sign a *different* tree no larger than
``last_valid_size``: only witness cosignatures or anchors of later checkpoints
tell such a fork from the genuine history.

Trust directory (``--trust DIR``; an evidence home's ``keys/`` is one)::

    DIR/*.vkey                  current log keys, C2SP vkeys, one a line
    DIR/retired/<key id>.vkey   a retired log key (C2SP vkey)
    DIR/retired/<key id>.json   its lifetime, beside it:
        {"key_id": "<16 hex>", "last_valid_size": r + 1, "retired_by_record": r,
         "successor_key_id": "<16 hex>", "retired": "<RFC 3339 time>"}

Only ``last_valid_size`` is required; ``key_id`` and ``retired_by_record``,
when present, must agree with the vkey and with ``last_valid_size``. A key
listed both as current and as retired is retired: retirement only narrows
trust. Private keys are never in this format.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.config import write_atomic
from ledger.errors import EvidenceError, UsageError
from ledger.keys import key_id_for

from .note import Verifier

RETIRED_DIR = "retired"


@dataclass(frozen=True)
class RetiredVerifier(Verifier):
    """A log key that was rotated away: valid for trees up to ``last_valid_size``."""

    last_valid_size: int = 0
    retired_by_record: int | None = None
    successor_key_id: str | None = None

    @property
    def log_key_id(self) -> str:
        return key_id_for(self.public_raw)


def limit_of(v: Verifier) -> int | None:
    """The largest tree size ``v`` may sign a checkpoint for; None for a current key."""
    return v.last_valid_size if isinstance(v, RetiredVerifier) else None


def lifetimes(verifiers: Iterable[Verifier]) -> dict[str, int]:
    """Project key id -> last valid tree size, for the retired keys among ``verifiers``."""
    return {key_id_for(v.public_raw): n for v in verifiers if (n := limit_of(v)) is not None}


def beyond_lifetime(signers: Sequence[Verifier], size: int, life: dict[str, int]) -> str | None:
    """Why a checkpoint of ``size`` whose signature ``signers`` made is refused, or None.

    ``life`` maps key id -> last valid tree size (retired keys). One signer
    still within its lifetime is enough.
    """
    ids = [key_id_for(v.public_raw) for v in signers]
    if not ids or any(k not in life or size <= life[k] for k in ids):
        return None
    k = ids[0]
    return (f"checkpoint of size {size} is signed only by retired key {k}, whose lifetime ended with "
            f"record {life[k] - 1} (it signs checkpoints of size <= {life[k]} only)")


@dataclass
class Trust:
    """Pinned log keys: current ones, and retired ones with their lifetimes."""

    verifiers: list[Verifier]

    @classmethod
    def of(cls, items: Trust | Iterable[str | Verifier]) -> Trust:
        """A Trust from itself, or from vkey strings / Verifiers (all current)."""
        if isinstance(items, Trust):
            return items
        return cls._merge(Verifier.parse(i) if isinstance(i, str) else i for i in items)

    @classmethod
    def _merge(cls, verifiers: Iterable[Verifier]) -> Trust:
        by_key: dict[bytes, Verifier] = {}
        for v in verifiers:
            have = by_key.get(v.public_raw)
            if have is not None and isinstance(have, RetiredVerifier) and not isinstance(v, RetiredVerifier):
                continue  # retirement wins: it only narrows what the key may sign
            if isinstance(have, RetiredVerifier) and isinstance(v, RetiredVerifier) and have != v:
                raise UsageError(f"key {have.log_key_id} is given with two different lifetimes")
            by_key[v.public_raw] = v
        return cls(list(by_key.values()))

    def retired(self) -> dict[str, RetiredVerifier]:
        """Project key id -> its retirement."""
        return {v.log_key_id: v for v in self.verifiers if isinstance(v, RetiredVerifier)}

    def current(self) -> list[Verifier]:
        return [v for v in self.verifiers if not isinstance(v, RetiredVerifier)]

    def __bool__(self) -> bool:
        return bool(self.verifiers)

    @classmethod
    def load(cls, items: Sequence[str]) -> Trust:
        """``--trust`` arguments: each a vkey string, a file of vkeys, or a trust directory."""
        found: list[Verifier] = []
        for item in items:
            p = Path(item)
            if p.is_dir():
                found.extend(load_dir(p))
            elif p.exists() or "+" not in item:
                found.extend(_parse_lines(_read(p), p))
            else:
                found.append(_parse(item, "--trust"))
        if not found:
            raise UsageError("no verifier keys found in --trust")
        return cls._merge(found)


def load_dir(directory: Path) -> list[Verifier]:
    """Current keys (``*.vkey``) and retired keys (``retired/``) of a trust directory."""
    out: list[Verifier] = []
    for f in sorted(directory.glob("*.vkey")):
        out.extend(_parse_lines(_read(f), f))
    return out + load_retired(directory)


def load_retired(directory: Path) -> list[RetiredVerifier]:
    out: list[RetiredVerifier] = []
    rdir = directory / RETIRED_DIR
    if rdir.is_dir():
        vkeys = {f.stem: f for f in rdir.glob("*.vkey")}
        lives = {f.stem: f for f in rdir.glob("*.json")}
        for stem in sorted(set(vkeys) | set(lives)):
            if stem not in lives:
                raise UsageError(f"retired key {vkeys[stem]} has no lifetime file {stem}.json beside it")
            if stem not in vkeys:
                raise UsageError(f"retired-key lifetime {lives[stem]} has no {stem}.vkey beside it")
            out.append(_retired(vkeys[stem], lives[stem]))
    return out


def _retired(vkey_file: Path, life_file: Path) -> RetiredVerifier:
    lines = _parse_lines(_read(vkey_file), vkey_file)
    if len(lines) != 1:
        raise UsageError(f"retired key file {vkey_file} must hold exactly one vkey")
    v = lines[0]
    try:
        life = json.loads(_read(life_file))
    except ValueError as e:
        raise UsageError(f"retired-key lifetime {life_file} is not JSON: {e}") from None
    size = life.get("last_valid_size") if isinstance(life, dict) else None
    if type(size) is not int or size < 1:
        raise UsageError(f"retired-key lifetime {life_file}: last_valid_size must be a positive integer")
    kid = key_id_for(v.public_raw)
    if life.get("key_id", kid) != kid:
        raise UsageError(f"retired-key lifetime {life_file} is for key {life.get('key_id')}, but {vkey_file.name} holds key {kid}")
    by = life.get("retired_by_record", size - 1)
    if by != size - 1:
        raise UsageError(f"retired-key lifetime {life_file}: retired_by_record must be last_valid_size - 1")
    succ = life.get("successor_key_id")
    return RetiredVerifier(v.name, v.key_id, v.public, size, by, succ if isinstance(succ, str) else None)


def write_retirement(keys_dir: Path, verifier: Verifier, rotation_index: int, successor_key_id: str, when: str) -> Path:
    """Move ``verifier`` from ``keys_dir``'s current keys to ``keys_dir/retired``.

    The lifetime and the retired vkey are written (atomically) before the
    current vkey file is removed: a crash in between leaves the key listed
    twice, and retirement wins.
    """
    kid = key_id_for(verifier.public_raw)
    rdir = keys_dir / RETIRED_DIR
    rdir.mkdir(exist_ok=True)
    life: dict[str, Any] = {
        "key_id": kid,
        "last_valid_size": rotation_index + 1,
        "retired_by_record": rotation_index,
        "successor_key_id": successor_key_id,
        "retired": when,
    }
    write_atomic(rdir / f"{kid}.json", (json.dumps(life, indent=2) + "\n").encode("utf-8"))
    write_atomic(rdir / f"{kid}.vkey", (verifier.vkey + "\n").encode("utf-8"))
    (keys_dir / f"{kid}.vkey").unlink(missing_ok=True)
    return rdir / f"{kid}.json"


def _read(p: Path) -> str:
    try:
        return p.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read trust file {p}: {getattr(e, 'strerror', None) or e}") from None


def _parse_lines(text: str, where: Path) -> list[Verifier]:
    return [_parse(line.strip(), str(where)) for line in text.splitlines() if line.strip()]


def _parse(vkey: str, where: str) -> Verifier:
    try:
        return Verifier.parse(vkey)
    except EvidenceError as e:
        raise UsageError(f"{where}: not a verifier key: {e}") from None
