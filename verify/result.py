"""Structured verification results: every check, not just a bool."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Check:
    """One named check and its outcome, with where it applies."""

    name: str
    ok: bool
    detail: str = ""
    where: str | None = None  # record index, file name, checkpoint size...

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "where": self.where}


@dataclass(frozen=True)
class Problem:
    index: int | None
    what: str

    def __str__(self) -> str:
        return f"record {self.index}: {self.what}" if self.index is not None else self.what


@dataclass
class AuditResult:
    size: int = 0
    checks: list[Check] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    truncated: bool = False  # stopped collecting problems after the cap

    @property
    def ok(self) -> bool:
        return not self.problems and all(c.ok for c in self.checks)

    @property
    def first_problem(self) -> Problem | None:
        indexed = [p for p in self.problems if p.index is not None]
        if indexed:
            return min(indexed, key=lambda p: p.index)  # type: ignore[arg-type, return-value]
        return self.problems[0] if self.problems else None

    def to_json(self) -> dict[str, Any]:
        first = self.first_problem
        return {
            "ok": self.ok,
            "size": self.size,
            "first_bad_index": first.index if first else None,
            "first_problem": str(first) if first else None,
            "problems": [{"index": p.index, "what": p.what} for p in self.problems],
            "problems_truncated": self.truncated,
            "checks": [c.to_json() for c in self.checks],
        }
