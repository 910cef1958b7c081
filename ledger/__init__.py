"""The ledger: records, the RFC 6962 tree, signed checkpoints, keys, the store.

    from ledger import Ledger
    led = Ledger.open()                      # EVIDENCE_HOME or ~/.evidence
    rec = led.append("custody", {"note": "handed to court"}, case="SAMR-2026-017")
    cp = led.checkpoint()                    # StoredCheckpoint(size, root, note, created)
"""

from .checkpoint import Checkpoint, TlogProof
from .log import KEY_REQUEST, ROLES, Ledger, key_add_facts, verify_key_add, verify_rotation
from .note import CosignatureVerifier, Verifier, sign_note, verify_note, vkey_for
from .store import Store, StoredCheckpoint, StoredRecord
from .trust import RetiredVerifier, Trust

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
