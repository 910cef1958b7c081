"""Errors raised while anchoring a checkpoint or re-checking an anchor.

Grouped by what the operator should do: ``AnchorUnavailable`` (try later or
another service), ``AnchorRejected`` (the service refused: fix the request
or the configuration), and the ``IntegrityError`` family (the answer cannot
be trusted: never stored, and a stored one that fails is evidence of
tampering).
"""

from __future__ import annotations

from ledger.errors import EnvironmentProblem, IntegrityError, RollbackError, SignatureError


class AnchorUnavailable(EnvironmentProblem):
    """A TSA, witness or deposit service was unreachable, too slow, or failing (5xx)."""


class AnchorRejected(EnvironmentProblem):
    """The service answered but refused: a rejected timestamp, an HTTP 4xx."""


class TimestampMismatch(IntegrityError):
    """A timestamp token is for other data, another nonce, or another hash algorithm."""


class UntrustedTimestamp(SignatureError):
    """A timestamp token's signature or certificate chain does not lead to a configured root."""


class CosignatureError(SignatureError):
    """A witness cosignature is missing, malformed, or does not verify."""


class WitnessConflict(RollbackError):
    """A witness has seen a different or larger history of this log (HTTP 409)."""


class WitnessPolicyError(IntegrityError):
    """Fewer valid witness cosignatures than the verification policy requires."""


class ReceiptError(IntegrityError):
    """A deposit receipt is malformed or does not commit to the checkpoint."""
