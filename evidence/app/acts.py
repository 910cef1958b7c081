"""Acts on a home: capture, attest, the extraction record, export (each signs or writes)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from capture import capture_page
from ledger.errors import UsageError
from ledger.log import AtCapture, Cosigner, Ledger, declared_facts
from ledger.record import Record

from ..case import ExportSummary, export_case
from ..extraction import FORMATS, ExtractionRecord, build_record, missing, write_record

ProgressFn = Callable[[str], None]


@dataclass(frozen=True)
class OfficerUnlock:
    """An officer and the passphrase typed for this one act (never stored)."""

    name: str
    passphrase: bytes | None  # None: a key made before officers had their own, under the home's


def unlock(led: Ledger, officers: Sequence[OfficerUnlock]) -> list[Cosigner]:
    names = [o.name for o in officers]
    if len(set(names)) != len(names):
        raise UsageError("an officer is named twice")
    return [led.officer_key(o.name, o.passphrase) for o in officers]


def capture(
    led: Ledger,
    url: str,
    case: str,
    *,
    officers: Sequence[OfficerUnlock] = (),
    operator: str | None = None,
    note: str | None = None,
    proves: str | None = None,
    no_witness_reason: str | None = None,
    options: dict[str, Any] | None = None,
) -> Any:
    """Capture one page as an exhibit, co-signed at capture by ``officers`` (keys unlocked first)."""
    facts = declared_facts(proves=proves, no_witness_reason=no_witness_reason)
    cosigners = unlock(led, officers)
    at = AtCapture(tuple(cosigners), facts) if cosigners or facts else None
    if operator is None and officers:
        operator = officers[0].name
    return capture_page(url, case=case, operator=operator, note=note, ledger=led, at_capture=at, **(options or {}))


def attest(led: Ledger, index: int, officer: OfficerUnlock, statement: str | None = None, *,
           witness: dict[str, str] | None = None, holder_note: str | None = None) -> Record:
    """``officer`` attests exhibit ``index`` with their own key (unknown officer or index said first)."""
    led.signer_entry(officer.name)
    led.exhibit_record(index)
    (cosigner,) = unlock(led, [officer])
    return led.attest(index, officer.name, statement, witness=witness, holder_note=holder_note, key=cosigner.key)


@dataclass
class RecordResult:
    record: ExtractionRecord
    path: Path | None  # None: --strict and something missing, nothing written
    missing: list[str]


def extraction_record(led: Ledger, index: int, fmt: str, out: Path, *, strict: bool = False,
                      tz: str | None = None, place: str | None = None, tsa_roots: Sequence[Any] = ()) -> RecordResult:
    """Write the extraction record (电子数据提取笔录); with ``strict`` and something missing, write nothing."""
    if fmt not in FORMATS:
        raise UsageError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    rec = build_record(led, index, place=place, tz=tz, tsa_roots=list(tsa_roots))
    lacking = missing(rec)
    if strict and lacking:
        return RecordResult(rec, None, lacking)
    return RecordResult(rec, write_record(rec, fmt, out), lacking)


def export(led: Ledger, case: str, out: Path, progress: ProgressFn | None = None) -> ExportSummary:
    return export_case(led, case, out, progress=progress)

