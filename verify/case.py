"""Offline verification of a case file: no database, no network, no browser.

    from verify import verify_case
    result = verify_case("case.wacz", trust=["log.example+1234abcd+AQ..."])
    result.ok, result.trusted, result.first_failure

Every check is reported on its own (file digests, WARC record digests,
manifests, record signatures and keys, prev links, inclusion proofs,
checkpoint signatures, consistency, anchors, attestations). Trust comes only
from the keys the caller pins; the bundle's own keys make a result
"self-declared" (``trusted`` is False).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evidence.case import CaseReader
from evidence.errors import CaseFileError, EvidenceError
from evidence.keys import key_id_for
from evidence.record import Record, parse_record
from ledger import merkle
from ledger.checkpoint import Checkpoint, parse_proof
from ledger.log import verify_key_add, verify_rotation
from ledger.note import CosignatureVerifier, Verifier, verify_note

from .result import Check


@dataclass
class VerificationResult:
    path: str
    case: str | None = None
    origin: str | None = None
    trusted: bool = False
    checks: list[Check] = field(default_factory=list)
    exhibits: list[dict[str, Any]] = field(default_factory=list)
    attestations: list[dict[str, Any]] = field(default_factory=list)
    anchors: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def first_failure(self) -> Check | None:
        return next((c for c in self.checks if not c.ok), None)

    def add(self, name: str, ok: bool, detail: str = "", where: str | None = None) -> bool:
        self.checks.append(Check(name, ok, detail, where))
        return ok

    def to_json(self) -> dict[str, Any]:
        first = self.first_failure
        return {
            "path": self.path,
            "ok": self.ok,
            "trusted": self.trusted,
            "case": self.case,
            "origin": self.origin,
            "first_failure": first.to_json() if first else None,
            "checkpoint": self.checkpoint,
            "exhibits": self.exhibits,
            "attestations": self.attestations,
            "anchors": self.anchors,
            "checks": [c.to_json() for c in self.checks],
        }


def verify_case(
    path: Path | str,
    *,
    trust: Sequence[str] = (),
    tsa_roots: Sequence[Any] = (),
    witnesses: Sequence[str] = (),
    min_witnesses: int = 0,
) -> VerificationResult:
    """Verify a case file. Raises CaseFileError only when it cannot be read at all."""
    res = VerificationResult(str(path))
    with CaseReader(path) as z:
        _verify(z, res, list(trust), list(tsa_roots), [CosignatureVerifier.parse(w) for w in witnesses], min_witnesses)
    return res


def _verify(
    z: CaseReader,
    res: VerificationResult,
    trust: list[str],
    tsa_roots: list[Any],
    witnesses: list[CosignatureVerifier],
    min_witnesses: int,
) -> None:
    if "datapackage.json" not in z or "evidence/case.json" not in z:
        raise CaseFileError(f"{z.path}: not an evidence-chain case file (datapackage.json or evidence/case.json missing)")
    package = z.json("datapackage.json")
    case = z.json("evidence/case.json")
    if not isinstance(package, dict) or not isinstance(package.get("resources"), list) or not isinstance(case, dict):
        raise CaseFileError(f"{z.path}: datapackage.json or evidence/case.json has the wrong shape")
    res.case, res.origin = str(case.get("case")), str(case.get("origin"))

    digests = _check_files(z, res, package)

    # Trust: pinned keys, else the bundle's own (self-declared).
    own = [z.read(n).decode("utf-8", "replace").strip() for n in sorted(z.iter_names("keys/"))]
    try:
        verifiers = [Verifier.parse(v) for v in (trust or own)]
    except EvidenceError as e:
        raise CaseFileError(f"unusable verifier key: {e}") from None
    res.trusted = bool(trust)
    res.add(
        "trust",
        True,
        "checkpoint and record keys pinned by the verifier" if trust else "untrusted, self-declared: the bundle's own keys were used (pin keys with --trust)",
    )
    if not verifiers:
        res.add("trust", False, "no verifier keys: none given and none in the bundle")
        return

    notes = _check_checkpoints(z, res, case, verifiers)
    records = _check_records(z, res, case, verifiers, notes)
    _check_exhibits(z, res, case, records, digests)
    _check_attestations(res, records)
    _check_anchors(z, res, records, notes, tsa_roots, witnesses, min_witnesses)


def _check_files(z: CaseReader, res: VerificationResult, package: dict[str, Any]) -> dict[str, str]:
    """Every file hashed once, against datapackage.json; WARC records checked too."""
    listed: dict[str, tuple[str, int]] = {}
    for r in package["resources"]:
        try:
            p, h, n = r["path"], r["hash"], int(r["bytes"])
            algo, hexd = h.split(":", 1)
        except (KeyError, TypeError, ValueError, AttributeError):
            res.add("datapackage", False, f"malformed resource entry {str(r)[:80]}", "datapackage.json")
            continue
        if algo != "sha256":
            res.add("datapackage", False, f"unsupported hash {algo}", p)
            continue
        if p in listed:
            res.add("datapackage", False, "listed twice", p)
        listed[p] = (hexd.lower(), n)
    digests: dict[str, str] = {}
    for name in z.names():
        if name in ("datapackage.json", "datapackage-digest.json"):
            continue
        if name not in listed:
            res.add("file-digest", False, "in the ZIP but not listed in datapackage.json", name)
            continue
        try:
            got, n = z.sha256(name)
        except CaseFileError as e:
            res.add("file-digest", False, str(e).split(": ", 1)[-1], name)
            continue
        want, wn = listed[name]
        ok = got == want and n == wn
        res.add("file-digest", ok, f"sha256 {got}" if ok else f"sha256 {got} ({n} bytes), datapackage says {want} ({wn} bytes)", name)
        if ok:
            digests[name] = got
    for p in listed:
        if p not in z:
            res.add("file-digest", False, "listed in datapackage.json but missing from the ZIP", p)
    if "datapackage-digest.json" in z:
        import hashlib

        try:
            d = z.json("datapackage-digest.json")
            want = str(d["hash"]).split(":", 1)[1]
            got = hashlib.sha256(z.read("datapackage.json")).hexdigest()
            res.add("datapackage-digest", got == want, f"sha256 {got}" if got == want else f"sha256 {got}, digest file says {want}", "datapackage.json")
        except (KeyError, IndexError, TypeError, CaseFileError) as e:
            res.add("datapackage-digest", False, f"malformed: {e}", "datapackage-digest.json")
    for name in z.iter_names("archive/"):
        if name in digests:
            _check_warc(z, res, name)
    return digests


def _check_warc(z: CaseReader, res: VerificationResult, name: str) -> None:
    from warcio.archiveiterator import ArchiveIterator
    from warcio.exceptions import ArchiveLoadFailed

    count = 0
    try:
        with z.open(name) as f:
            it = ArchiveIterator(f, check_digests=True)
            for rec in it:
                stream = rec.content_stream()
                while stream.read(1 << 20):
                    pass
                count += 1
                chunked = (rec.http_headers.get_header("Transfer-Encoding") or "").lower() == "chunked" if rec.http_headers else False
                problems = [p for p in rec.digest_checker.problems if not (chunked and "payload" in p)]
                if rec.digest_checker.passed is False and problems:
                    rid = rec.rec_headers.get_header("WARC-Record-ID")
                    res.add("warc-record-digest", False, f"record {rid} at offset {it.get_record_offset()}: {'; '.join(problems)}", name)
                    return
    except (ArchiveLoadFailed, ValueError, OSError, EOFError, EvidenceError) as e:
        res.add("warc-record-digest", False, f"malformed WARC after {count} record(s): {str(e).splitlines()[0] if str(e) else type(e).__name__}", name)
        return
    res.add("warc-record-digest", True, f"{count} WARC records, block and payload digests match", name)


def _check_checkpoints(z: CaseReader, res: VerificationResult, case: dict[str, Any], verifiers: list[Verifier]) -> dict[int, tuple[str, Checkpoint]]:
    notes: dict[int, tuple[str, Checkpoint]] = {}
    for name in sorted(z.iter_names("checkpoints/")):
        try:
            note = z.read(name, 1 << 20).decode("utf-8")
            body = Checkpoint.parse(verify_note(note, verifiers).text)
            if body.origin != res.origin:
                raise EvidenceError(f"checkpoint origin {body.origin!r} is not the case's log {res.origin!r}")
            if name != f"checkpoints/{body.size}.note":
                raise EvidenceError(f"file name does not match the checkpoint size {body.size}")
            notes[body.size] = (note, body)
            res.add("checkpoint-signature", True, f"size {body.size}, root {body.root.hex()}, signed by {res.origin}", name)
        except (EvidenceError, UnicodeDecodeError) as e:
            res.add("checkpoint-signature", False, str(e), name)
    main = case.get("checkpoint", {}).get("size") if isinstance(case.get("checkpoint"), dict) else None
    if main not in notes:
        res.add("checkpoint-signature", False, f"the case checkpoint (size {main}) is missing or does not verify", "evidence/case.json")
    elif notes:
        res.checkpoint = {"size": main, "root": notes[main][1].root.hex(), "note": notes[main][0]}
    sizes = sorted(notes)
    for a, b in zip(sizes, sizes[1:]):
        name = f"consistency/{a}-{b}.proof"
        try:
            text = z.read(name, 1 << 16).decode("ascii")
            proof = [base64.b64decode(line, validate=True) for line in text.split()]
            merkle.verify_consistency(a, b, proof, notes[a][1].root, notes[b][1].root)
            res.add("consistency", True, f"checkpoint {b} extends checkpoint {a}", name)
        except (EvidenceError, UnicodeDecodeError, binascii.Error, ValueError) as e:
            res.add("consistency", False, str(e), name)
    return notes


def _check_records(
    z: CaseReader,
    res: VerificationResult,
    case: dict[str, Any],
    verifiers: list[Verifier],
    notes: dict[int, tuple[str, Checkpoint]],
) -> dict[int, Record]:
    keys = {key_id_for(v.public_raw): v.public_raw for v in verifiers}
    roles: dict[str, str] = {}
    names: dict[str, str] = {}
    records: dict[int, Record] = {}
    listed = case.get("records") if isinstance(case.get("records"), list) else []
    present = sorted(int(n[8:-5]) for n in z.iter_names("records/") if n[8:-5].isdigit() and n.endswith(".json"))
    if sorted(listed) != present:
        res.add("records", False, f"case.json lists records {listed[:10]}, the bundle holds {present[:10]}", "evidence/case.json")
    main = case.get("checkpoint", {}).get("size") if isinstance(case.get("checkpoint"), dict) else None
    from evidence.keys import public_from_raw

    for idx in present:
        name = f"records/{idx}.json"
        where = f"record {idx}"
        try:
            rec = parse_record(z.read(name, 16 << 20), expect_index=idx)
        except (EvidenceError, CaseFileError) as e:
            res.add("record-form", False, str(e), name)
            continue
        records[idx] = rec
        raw = keys.get(rec.key_id)
        if raw is None:
            res.add("record-signature", False, f"signed by key {rec.key_id}, which is not trusted", where)
        else:
            try:
                rec.verify(public_from_raw(raw))
                if roles.get(rec.key_id) == "officer" and rec.kind != "attestation":
                    raise EvidenceError(f"officer key {rec.key_id} may sign only attestations")
                res.add("record-signature", True, f"{rec.kind} signed by key {rec.key_id}" + (f" ({names[rec.key_id]})" if rec.key_id in names else ""), where)
            except EvidenceError as e:
                res.add("record-signature", False, str(e), where)
                raw = None
        if raw is not None and rec.kind == "key-rotation":
            try:
                new = verify_rotation(rec.payload)
                keys.pop(rec.key_id, None)
                keys[key_id_for(new)] = new
            except EvidenceError as e:
                res.add("record-signature", False, str(e), where)
        if raw is not None and rec.kind == "key-add":
            try:
                kid, new, nm, role = verify_key_add(rec.payload)
                keys[kid], roles[kid], names[kid] = new, role, nm
            except EvidenceError as e:
                res.add("record-signature", False, str(e), where)
        prev = records.get(idx - 1)
        if prev is not None:
            ok = rec.prev == prev.leaf.hex()
            res.add("prev-link", ok, f"links to record {idx - 1}" if ok else f"prev does not match the leaf of record {idx - 1}", where)
        # inclusion proof against the case checkpoint
        pname = f"proofs/{idx}.tlog-proof"
        try:
            proof = parse_proof(z.read(pname, 1 << 20).decode("utf-8"))
            if proof.index != idx:
                raise EvidenceError(f"proof is for index {proof.index}")
            body = Checkpoint.parse(verify_note(proof.note, verifiers).text)
            if main in notes and (body.size, body.root) != (notes[main][1].size, notes[main][1].root):
                raise EvidenceError("proof's checkpoint is not the case checkpoint")
            merkle.verify_inclusion(rec.leaf, idx, body.size, proof.hashes, body.root)
            res.add("inclusion-proof", True, f"in the tree of size {body.size}", where)
        except (EvidenceError, UnicodeDecodeError) as e:
            res.add("inclusion-proof", False, str(e), pname)
    return records


def _check_exhibits(z: CaseReader, res: VerificationResult, case: dict[str, Any], records: dict[int, Record], digests: dict[str, str]) -> None:
    entries = {e.get("index"): e for e in case.get("exhibits", []) if isinstance(e, dict)}
    from evidence.canonical import loads

    for idx, rec in sorted(records.items()):
        if rec.kind != "exhibit":
            continue
        where = f"record {idx}"
        entry = entries.get(idx)
        mname = f"exhibits/{idx}-exhibit.json"
        if entry is None or mname not in z:
            res.add("manifest", False, "exhibit manifest missing from the bundle", where)
            continue
        want = rec.payload.get("manifest", {}).get("sha256") if isinstance(rec.payload.get("manifest"), dict) else None
        got = digests.get(mname)
        if got is None or got != want:
            res.add("manifest", False, f"manifest sha256 {got} but the record says {want}", mname)
            continue
        res.add("manifest", True, f"sha256 {got} matches record {idx}", mname)
        try:
            manifest = loads(z.read(mname))
            arts = manifest["artifacts"]
            info = manifest.get("info", {})
        except (EvidenceError, KeyError, TypeError) as e:
            res.add("manifest", False, f"unreadable manifest: {e}", mname)
            continue
        files = entry.get("artifacts", {}) if isinstance(entry.get("artifacts"), dict) else {}
        summary = {"index": idx, "url": info.get("url"), "final_url": info.get("final_url"), "title": info.get("title"),
                   "operator": info.get("operator"), "started": info.get("started"), "ended": info.get("ended"),
                   "time": rec.time, "key_id": rec.key_id, "artifacts": [], "screenshot": None}
        for a in arts:
            zpath = files.get(a.get("name"))
            ok = zpath is not None and digests.get(zpath) == a.get("sha256") and zpath in z and z.size(zpath) == a.get("size")
            detail = f"sha256 {a.get('sha256')}" if ok else f"{a.get('name')}: file {zpath} does not match the manifest (sha256 {digests.get(zpath) if zpath else None})"
            res.add("artifact-digest", ok, detail, zpath or f"{where}:{a.get('name')}")
            summary["artifacts"].append({"name": a.get("name"), "role": a.get("role"), "media_type": a.get("media_type"), "size": a.get("size"), "sha256": a.get("sha256"), "path": zpath})
            if a.get("role") == "screenshot-viewport" and ok:
                summary["screenshot"] = zpath
        res.exhibits.append(summary)


def _check_attestations(res: VerificationResult, records: dict[int, Record]) -> None:
    for idx, rec in sorted(records.items()):
        if rec.kind != "attestation":
            continue
        target = rec.payload.get("exhibit_index")
        ex = records.get(target) if isinstance(target, int) else None
        ok = ex is not None and ex.kind == "exhibit" and ex.leaf.hex() == rec.payload.get("exhibit_leaf") and target < idx
        res.add("attestation", ok, f"exhibit {target} attested by {rec.payload.get('officer')}" if ok else f"attestation does not match exhibit {target}", f"record {idx}")
        if ok:
            res.attestations.append({"index": idx, "exhibit_index": target, "officer": rec.payload.get("officer"), "time": rec.time, "key_id": rec.key_id, "statement": rec.payload.get("statement")})


def _check_anchors(
    z: CaseReader,
    res: VerificationResult,
    records: dict[int, Record],
    notes: dict[int, tuple[str, Checkpoint]],
    tsa_roots: list[Any],
    witnesses: list[CosignatureVerifier],
    min_witnesses: int,
) -> None:
    from ledger.anchors import check_anchor_record

    def load(digest: str) -> bytes:
        return z.read(f"anchors/{digest}", 64 << 20)

    cosigned: dict[int, set[str]] = {}
    for idx, rec in sorted(records.items()):
        if rec.kind != "anchor":
            continue
        p = rec.payload
        size = p.get("checkpoint_size")
        if size not in notes:
            res.add("anchor", False, f"anchors checkpoint {size}, which is not in the bundle", f"record {idx}")
            continue
        chk = check_anchor_record(p, load, notes[size][0], roots=tsa_roots, witnesses=witnesses, deposits={}, where=f"record {idx}")
        detail = chk.detail + ("" if chk.verified else " (intact; not verified: no TSA root / witness key given)")
        res.add(chk.name, chk.ok, detail, chk.where)
        res.anchors.append({"index": idx, "type": p.get("type"), "service": p.get("tsa") or p.get("witness") or p.get("service"), "time": chk.time or p.get("time"), "checkpoint_size": size, "verified": chk.ok and chk.verified})
        if chk.ok and chk.verified and p.get("type") == "witness":
            cosigned.setdefault(size, set()).add(str(p.get("witness")))
    if min_witnesses:
        best = max((len(v) for v in cosigned.values()), default=0)
        res.add("witness-policy", best >= min_witnesses, f"{best} trusted witness cosignature(s) on one checkpoint; policy needs {min_witnesses}")
