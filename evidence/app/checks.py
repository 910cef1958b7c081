"""Offline verification of a case file (needs neither the database layer nor a browser)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from verify.case import VerificationResult, verify_case
from verify.report import write_report


def verify(path: Path, *, report: Path | None = None, **checks: Any) -> VerificationResult:
    """Verify a case file offline (``checks``: ``verify_case``'s keywords); write the bilingual report when asked."""
    res = verify_case(path, **checks)
    if report is not None:
        write_report(res, path, report)
    return res


def checks_failing_first(res: VerificationResult) -> Iterator[Any]:
    yield from (c for c in res.checks if not c.ok)
    yield from (c for c in res.checks if c.ok)
