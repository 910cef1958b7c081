"""One exception hierarchy for the whole library.

Callers catch `EvidenceError` for anything we raise on purpose, or a subclass
to handle one origin. Foreign exceptions are translated at the boundary with
``raise ... from e`` so the original stays visible under ``--debug``.
"""

from __future__ import annotations


class EvidenceError(Exception):
    """Root of every error this library raises deliberately."""

    #: CLI exit code when this error reaches the top level (see DESIGN.md).
    exit_code = 2


class UsageError(EvidenceError):
    """Bad input from the user: a flag, a file, a value that cannot be used."""


class EnvironmentProblem(EvidenceError):
    """Something on this machine is missing or broken (browser, database server)."""

    exit_code = 3


class ConfigError(EvidenceError):
    """The evidence home or a setting is missing or inconsistent."""


class CanonicalizationError(EvidenceError):
    """A value cannot be serialised as RFC 8785 canonical JSON."""


class KeyFileError(EvidenceError):
    """A key file is missing, unreadable, or protected by another passphrase."""


class IntegrityError(EvidenceError):
    """Stored or received data does not match what it claims to be."""

    exit_code = 1


class ProofError(IntegrityError):
    """A Merkle inclusion or consistency proof does not verify."""


class SignatureError(IntegrityError):
    """A signature is missing, malformed, or does not verify."""


class RollbackError(IntegrityError):
    """The log is smaller than (or inconsistent with) a checkpoint it already signed."""


class StoreError(EvidenceError):
    """The ledger database cannot be opened or written."""

    exit_code = 3


class SchemaError(StoreError):
    """The ledger database schema is older than this library (migrate) or newer (upgrade)."""


class CaptureError(EvidenceError):
    """A capture could not be made (unreachable host, browser failure)."""

    exit_code = 3


class ExpectationFailed(EvidenceError):
    """The captured page lacks a text it was expected to show (``--expect``, a session's marker).

    Most often a login that lapsed: the site shows its login page instead.
    Nothing is appended for such a capture.
    """

    exit_code = 1


class CaseFileError(EvidenceError):
    """A case file is unusable: not a ZIP, hostile paths, missing parts."""
