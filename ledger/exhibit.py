"""Exhibits: a set of captured artifacts fixed by one manifest and one record.

The manifest (``exhibit.json``) lists every artifact with its name, role,
media type, size and SHA-256, plus the capture facts (``info``). Its own
SHA-256 goes into the ``exhibit`` record, so one signature and one Merkle
leaf cover every byte of the exhibit. No IO here besides hashing local files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .canonical import canonical_json
from .errors import IntegrityError
from .record import Record

MANIFEST_TYPE = "evidence-chain/exhibit"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class ArtifactFile:
    """A file produced by a capture, not yet in the store."""

    name: str
    path: Path
    media_type: str
    role: str


@dataclass(frozen=True)
class Artifact:
    name: str
    media_type: str
    role: str
    size: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "media_type": self.media_type,
            "role": self.role,
            "size": self.size,
            "sha256": self.sha256,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Artifact:
        try:
            a = cls(d["name"], d["media_type"], d["role"], int(d["size"]), d["sha256"])
        except (KeyError, TypeError, ValueError) as e:
            raise IntegrityError(f"malformed artifact entry in manifest: {e}") from None
        return a


def build_manifest(case: str, artifacts: list[Artifact], info: dict[str, Any]) -> bytes:
    """Canonical manifest bytes; names must be unique so each file is unambiguous."""
    names = [a.name for a in artifacts]
    if len(set(names)) != len(names):
        raise IntegrityError("artifact names in one exhibit must be unique")
    return canonical_json(
        {
            "type": MANIFEST_TYPE,
            "v": MANIFEST_VERSION,
            "case": case,
            "artifacts": [a.to_json() for a in artifacts],
            "info": info,
        }
    )


def exhibit_payload(manifest_sha256: str, manifest_size: int, artifacts: list[Artifact], info: dict[str, Any]) -> dict[str, Any]:
    """What the ledger record says about an exhibit: enough to find and check it."""
    payload: dict[str, Any] = {
        "manifest": {"sha256": manifest_sha256, "size": manifest_size},
        "artifacts": [{"name": a.name, "sha256": a.sha256} for a in artifacts],
    }
    for k in ("url", "final_url", "title", "operator", "started", "ended"):
        if info.get(k) is not None:
            payload[k] = info[k]
    return payload


@dataclass(frozen=True)
class Exhibit:
    index: int
    record: Record
    manifest: dict[str, Any]
    manifest_sha256: str
    artifacts: list[Artifact] = field(default_factory=list)

    @property
    def case(self) -> str:
        return self.manifest["case"]
