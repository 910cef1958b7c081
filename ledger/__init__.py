"""The ledger: records, the RFC 6962 tree, signed checkpoints, keys, the store.

    from ledger import Ledger
    led = Ledger.open()                      # EVIDENCE_HOME or ~/.evidence
    rec = led.append("custody", {"note": "handed to court"}, case="SAMR-2026-017")
    cp = led.checkpoint()                    # StoredCheckpoint(size, root, note, created)
"""

from typing import TYPE_CHECKING, Any

from .checkpoint import Checkpoint, TlogProof
from .note import CosignatureVerifier, Verifier, sign_note, verify_note, vkey_for
from .statements import ROLES, key_add_facts, verify_key_add, verify_rotation
from .trust import RetiredVerifier, Trust

if TYPE_CHECKING:
    from .log import KEY_REQUEST, Ledger
    from .store import Store, StoredCheckpoint, StoredRecord

# Loaded on first use: ``from ledger import merkle`` runs this file, and the
# offline verifier must not pull in the store (SQLAlchemy) through it.
_LAZY = {
    "KEY_REQUEST": "log",
    "Ledger": "log",
    "Store": "store",
    "StoredCheckpoint": "store",
    "StoredRecord": "store",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value

__all__ = [
    "KEY_REQUEST",
    "ROLES",
    "Checkpoint",
    "CosignatureVerifier",
    "Ledger",
    "RetiredVerifier",
    "Store",
    "StoredCheckpoint",
    "StoredRecord",
    "TlogProof",
    "Trust",
    "Verifier",
    "key_add_facts",
    "sign_note",
    "verify_key_add",
    "verify_note",
    "verify_rotation",
    "vkey_for",
]
