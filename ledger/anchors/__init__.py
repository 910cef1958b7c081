"""Anchors: outside evidence of time and of a single history for a checkpoint.

A log signed by one key proves little against its keeper, who could rewrite
and re-sign. Anchors bring in third parties:

- ``tsa``: RFC 3161 timestamp tokens (a TSA vouches the checkpoint existed at a time);
- ``witness``: C2SP tlog-witness cosignatures (a witness refuses to sign two histories);
- ``deposit``: any outside deposit service (judicial blockchain, notary) via an adapter.

    from ledger.anchors import anchor_checkpoint, load_roots, Witness, HttpJsonDeposit
    results = anchor_checkpoint(led, tsa_urls=["https://tsa.example/tsr"],
                                roots=load_roots(["tsa-root.pem"]))
    checks = audit_anchors(led, roots=load_roots(["tsa-root.pem"]))

Verification functions (``verify_timestamp``, ``verify_cosignatures``,
``check_anchor_record``, ``DepositAdapter.verify``) take bytes and trust
material only: no database, no network.
"""

from .deposit import DepositAdapter, FieldMap, HttpJsonDeposit, Receipt, ReceiptCheck, submit_and_verify
from .errors import (
    AnchorRejected,
    AnchorUnavailable,
    CosignatureError,
    ReceiptError,
    TimestampMismatch,
    UntrustedTimestamp,
    WitnessConflict,
    WitnessPolicyError,
)
from .run import (
    ANCHOR_KIND,
    EXHIBIT_DEPOSIT,
    AnchorCheck,
    AnchorResult,
    Witness,
    anchor_checkpoint,
    audit_anchors,
    check_anchor_record,
    needs_anchor,
    parse_interval,
    run_every,
)
from .tsa import (
    Timestamp,
    TimestampInfo,
    load_roots,
    request_timestamp,
    roots_from_env,
    timestamp,
    verify_timestamp,
)
from .witness import (
    Cosignature,
    WitnessClient,
    WitnessPolicy,
    WitnessServer,
    verify_cosignatures,
    with_cosignatures,
)

__all__ = [
    "ANCHOR_KIND",
    "EXHIBIT_DEPOSIT",
    "AnchorCheck",
    "AnchorRejected",
    "AnchorResult",
    "AnchorUnavailable",
    "Cosignature",
    "CosignatureError",
    "DepositAdapter",
    "FieldMap",
    "HttpJsonDeposit",
    "Receipt",
    "ReceiptCheck",
    "ReceiptError",
    "Timestamp",
    "TimestampInfo",
    "TimestampMismatch",
    "UntrustedTimestamp",
    "Witness",
    "WitnessClient",
    "WitnessConflict",
    "WitnessPolicy",
    "WitnessPolicyError",
    "WitnessServer",
    "anchor_checkpoint",
    "audit_anchors",
    "check_anchor_record",
    "load_roots",
    "needs_anchor",
    "parse_interval",
    "request_timestamp",
    "roots_from_env",
    "run_every",
    "submit_and_verify",
    "timestamp",
    "verify_cosignatures",
    "verify_timestamp",
    "with_cosignatures",
]
