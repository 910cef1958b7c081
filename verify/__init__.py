"""Offline verification: whole ledgers (audit) and case files.

    from verify import verify_case
    result = verify_case("case.wacz", trust=[vkey])
    result.ok, [c for c in result.checks if not c.ok]
"""

from .case import VerificationResult, verify_case
from .ledger import audit_store
from .result import AuditResult, Check, Problem

__all__ = ["AuditResult", "Check", "Problem", "VerificationResult", "audit_store", "verify_case"]
