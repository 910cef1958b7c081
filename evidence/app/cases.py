"""Reading a home's cases and exhibits for display (no writes)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

from ledger.canonical import loads
from ledger.casefacts import CaseInfo, case_info
from ledger.digest import sha256_hex
from ledger.errors import IntegrityError, UsageError
from ledger.record import Record

if TYPE_CHECKING:
    from ledger.log import Ledger

#: JSON facts of an exhibit read for display; larger ones are shown as "too large"
MAX_FACTS = 8 * 1024 * 1024
JSON_ROLES = ("network", "environment", "tls")


@dataclass
class CaseSummary:
    case: str
    exhibits: list[int] = field(default_factory=list)
    records: int = 0
    attestations: int = 0
    anchors: int = 0
    urls: list[str] = field(default_factory=list)
    last_time: str = ""
    facts: CaseInfo | None = None

    def matches(self, query: str) -> bool:
        """Case id, party or any captured URL contains ``query`` (case-insensitive)."""
        q = query.casefold().strip()
        if not q:
            return True
        hay = [self.case, *self.urls]
        if self.facts is not None:
            hay += [self.facts.party or "", self.facts.cause or ""]
        return any(q in h.casefold() for h in hay)


def list_cases(led: Ledger) -> list[CaseSummary]:
    """Every case of the ledger with its counts, most recently active first."""
    cases: dict[str, CaseSummary] = {}
    for rec in led.records():
        if not rec.case:
            continue
        s = cases.setdefault(rec.case, CaseSummary(rec.case))
        s.records += 1
        s.last_time = max(s.last_time, rec.time)
        if rec.kind == "exhibit":
            s.exhibits.append(rec.index)
            url = rec.payload.get("url")
            if isinstance(url, str) and url not in s.urls:
                s.urls.append(url)
        elif rec.kind == "attestation":
            s.attestations += 1
        elif rec.kind in ("anchor", "exhibit-deposit"):
            s.anchors += 1
    for s in cases.values():
        s.facts = case_info(led, s.case)
    return sorted(cases.values(), key=lambda s: s.last_time, reverse=True)


@dataclass
class CaseView:
    case: str
    facts: CaseInfo | None
    records: list[Record]
    exhibits: list[Record]
    anchored: bool


def case_view(led: Ledger, case: str) -> CaseView:
    records = list(led.records(case=case))
    if not records:
        raise UsageError(f"no case {case!r} in this ledger")
    exhibits = [r for r in records if r.kind == "exhibit"]
    anchored = any(r.kind in ("anchor", "exhibit-deposit") for r in led.records())
    return CaseView(case, case_info(led, case), records, exhibits, anchored)


@dataclass
class ExhibitView:
    record: Record
    manifest: dict[str, Any]
    artifacts: list[dict[str, Any]]
    facts: dict[str, Any]  # role -> parsed JSON (network, environment, tls), or {"unreadable": why}
    capture_log: list[dict[str, Any]]
    attestations: list[Record]

    @property
    def info(self) -> dict[str, Any]:
        info = self.manifest.get("info")
        return info if isinstance(info, dict) else {}

    def artifact(self, name: str) -> dict[str, Any]:
        for a in self.artifacts:
            if a.get("name") == name:
                return a
        raise UsageError(f"exhibit {self.record.index} has no artifact {name!r}")

    def first(self, role: str) -> dict[str, Any] | None:
        return next((a for a in self.artifacts if a.get("role") == role), None)


def _verified_bytes(led: Ledger, sha256: str, limit: int) -> bytes:
    with led.artifacts.open(sha256) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise UsageError(f"larger than {limit >> 20} MiB")
    if sha256_hex(data) != sha256:
        raise IntegrityError(f"artifact sha256:{sha256} in the store does not match its digest")
    return data


def exhibit_view(led: Ledger, index: int) -> ExhibitView:
    """An exhibit's record, its manifest (checked against the record) and its readable facts."""
    rec = led.exhibit_record(index)
    msha = str(rec.payload.get("manifest", {}).get("sha256", ""))
    manifest = loads(_verified_bytes(led, msha, MAX_FACTS))
    if not isinstance(manifest, dict) or manifest.get("case") != rec.case:
        raise IntegrityError(f"the manifest of record {index} does not belong to case {rec.case!r}")
    arts = [a for a in manifest.get("artifacts", []) if isinstance(a, dict)]
    listed = {(a.get("name"), a.get("sha256")) for a in rec.payload.get("artifacts", [])}
    if {(a.get("name"), a.get("sha256")) for a in arts} != listed:
        raise IntegrityError(f"the manifest of record {index} lists other artifacts than the record")
    facts: dict[str, Any] = {}
    log: list[dict[str, Any]] = []
    for a in arts:
        role = a.get("role")
        if role in JSON_ROLES or role == "capture-log":
            try:
                data = _verified_bytes(led, str(a["sha256"]), MAX_FACTS)
                if role == "capture-log":
                    log = [e for e in (json.loads(x) for x in data.decode("utf-8").splitlines() if x.strip()) if isinstance(e, dict)]
                else:
                    facts[str(role)] = json.loads(data)
            except (ValueError, UsageError, OSError) as e:
                facts[str(role)] = {"unreadable": str(e)}
    attestations = [r for r in led.records(case=rec.case, start=index + 1)
                    if r.kind == "attestation" and r.payload.get("exhibit_index") == index]
    return ExhibitView(rec, manifest, arts, facts, log, attestations)


def open_artifact(led: Ledger, index: int, name: str) -> tuple[dict[str, Any], BinaryIO]:
    """An artifact of exhibit ``index`` by its name in the manifest, opened for streaming."""
    view = exhibit_view(led, index)
    a = view.artifact(name)
    return a, led.artifacts.open(str(a["sha256"]))
