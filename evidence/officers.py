"""Officers' own passphrases, and unlocking their keys before any work starts.

An officer's private key is encrypted with that officer's passphrase, not
the evidence home's, so that a signature by it means the officer took part.
Where the passphrase comes from, first that applies:

``EVIDENCE_OFFICER_PASSPHRASE_FILE``
    a JSON file ``{"NAME": "passphrase", ...}`` (for scripts with several
    officers; keep it private, e.g. mode 0600)
``EVIDENCE_OFFICER_PASSPHRASE``
    one passphrase, for every officer the file does not name
the terminal
    a hidden prompt per officer (``getpass``), when stdin is a terminal
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from ledger.errors import UsageError

ENV = "EVIDENCE_OFFICER_PASSPHRASE"
ENV_FILE = "EVIDENCE_OFFICER_PASSPHRASE_FILE"


def _from_file() -> dict[str, str]:
    path = os.environ.get(ENV_FILE)
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as e:
        raise UsageError(f"cannot read {ENV_FILE} {path}: {e.strerror or e}") from None
    except ValueError:
        raise UsageError(f"{ENV_FILE} {path} is not a JSON object of officer name -> passphrase") from None
    if not isinstance(doc, dict) or not all(isinstance(v, str) for v in doc.values()):
        raise UsageError(f"{ENV_FILE} {path} is not a JSON object of officer name -> passphrase")
    return doc


def officer_passphrase(name: str, *, confirm: bool = False) -> bytes:
    """The passphrase of officer ``name``: from the file, the variable, or a hidden prompt."""
    value = _from_file().get(name)
    if value is None:
        value = os.environ.get(ENV) or None
    if value is None:
        if not sys.stdin.isatty():
            raise UsageError(
                f"no passphrase for officer {name!r}: run in a terminal to be asked, or set {ENV} "
                f"(or {ENV_FILE} for several officers)"
            )
        try:
            value = getpass.getpass(f"Passphrase of officer {name}: ", stream=sys.stderr)
            if confirm and getpass.getpass(f"Passphrase of officer {name} (again): ", stream=sys.stderr) != value:
                raise UsageError(f"the two passphrases given for officer {name!r} differ")
        except EOFError:
            raise UsageError(f"no passphrase given for officer {name!r}") from None
    if not value:
        raise UsageError(f"the passphrase of officer {name!r} must not be empty")
    return value.encode("utf-8")


def unlock_officers(led: Any, names: Sequence[str]) -> tuple[Any, ...]:
    """Each named officer's key, unlocked with their passphrase and checked against the ledger.

    Unknown names are refused before any passphrase is asked for.
    """
    seen: list[str] = []
    for n in names:
        if n in seen:
            raise UsageError(f"officer {n!r} is named twice")
        seen.append(n)
    entries = {}
    for n in seen:
        entry = entries[n] = led.signer_entry(n)
        if entry.get("role") != "officer":
            raise UsageError(f"{n!r} holds a {entry.get('role')} key, not an officer's")
    # A key registered before officers had their own passphrases is under the home's.
    return tuple(led.officer_key(n, officer_passphrase(n) if entries[n].get("own_passphrase") else None) for n in seen)
