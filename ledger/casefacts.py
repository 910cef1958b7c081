"""Case facts (案由, 当事人/对象, 执法单位, 地点) as signed ``case-info`` records.

    rec = set_case_info(ledger, "SAMR-2026-017", cause="销售假冒注册商标的商品", party="某某旗舰店（某平台）")
    facts = case_info(ledger, "SAMR-2026-017")     # the latest, or None

The extraction record must name the cause and the party of the case (2016
两高一部规定 art. 14). Keeping them as records of the case, rather than as
settings of one home, means they are signed, dated, exported in the case file
with every other record of the case, and checked by the verifier like any
record. A later ``case-info`` supersedes an earlier one as a whole; both stay
in the log, so a correction is visible as one.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .errors import UsageError
from .record import parse_record

KIND = "case-info"
FIELDS = ("cause", "party", "unit", "place")
MAX_TEXT = 2000


@dataclass(frozen=True)
class CaseInfo:
    case: str
    cause: str | None
    party: str | None
    unit: str | None
    place: str | None
    index: int  # the record that set them
    time: str


def _text(name: str, value: str | None, *, required: bool) -> str | None:
    if value is None or not str(value).strip():
        if required:
            raise UsageError(f"--{name} must not be empty")
        return None
    value = str(value).strip()
    # One line without control characters: a record read aloud or printed
    # must not hide text behind a carriage return or a bidi override.
    bad = next((c for c in value if unicodedata.category(c) in ("Cc", "Cf") and c not in "\u200d"), None)
    if bad is not None:
        raise UsageError(f"--{name} must be one line of text without control characters (found U+{ord(bad):04X})")
    if len(value) > MAX_TEXT:
        raise UsageError(f"--{name} is {len(value)} characters; at most {MAX_TEXT}")
    return value


def set_case_info(
    ledger: Any, case: str, *, cause: str, party: str, unit: str | None = None, place: str | None = None
) -> Any:
    """Append a signed ``case-info`` record for ``case``; returns the record."""
    case_id = _text("case", case, required=True)
    payload = {
        "cause": _text("cause", cause, required=True),
        "party": _text("party", party, required=True),
        "unit": _text("unit", unit, required=False),
        "place": _text("place", place, required=False),
    }
    return ledger.append(KIND, payload, case=case_id)


def latest(records: Iterable[Any], case: str) -> CaseInfo | None:
    """The latest ``case-info`` of ``case`` among parsed records (any order)."""
    best = None
    for r in records:
        if r.kind == KIND and r.case == case and (best is None or r.index > best.index):
            best = r
    if best is None:
        return None
    p = best.payload

    def get(k: str) -> str | None:
        v = p.get(k)
        return v if isinstance(v, str) and v.strip() else None

    return CaseInfo(case, get("cause"), get("party"), get("unit"), get("place"), best.index, best.time)


def case_info(ledger: Any, case: str) -> CaseInfo | None:
    """The latest case facts of ``case`` in the ledger, or None."""

    recs = (parse_record(s.body, expect_index=s.index) for s in ledger.store.iter_records(case=case, kind=KIND))
    return latest(recs, case)
