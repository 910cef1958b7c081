"""Offline verification of a case file: no database, no network, no browser.

    from verify import verify_case
    result = verify_case("case.wacz", trust=["log.example+1234abcd+AQ..."])
    result.ok, result.trusted, result.first_failure, result.exit_code()

Every check is reported on its own: each file's digest against
``datapackage.json``, every WARC record's digests, each manifest against its
record, each artifact against its manifest, each record's form, key and
signature, ``prev`` links, inclusion proofs, checkpoint signatures,
consistency between checkpoints, completeness against the ``case-export``
record, attestations and anchors.

Trust: only the log keys passed as ``trust`` (C2SP vkeys) are trusted. Without
them the bundle's own keys are used and every check can still pass, but the
result says ``trusted: False`` ("untrusted, self-declared"): anyone can build
a self-consistent bundle with a key of their own. Record keys need no
pinning: they are introduced by records (log-init, key-rotation, key-add)
that the trusted checkpoint commits to. TSA roots work the same way:
``tsa_roots`` are trusted, roots shipped in the bundle are self-declared.

Speed: every file is read once. Files are hashed on a thread pool (hashlib
and zlib release the GIL, so two threads use two cores); WARCs are checked
record by record from the same chunks, with the file hash of a large WARC in a
side thread. Small evidence files are kept from that pass, so the bytes that
are parsed are the bytes that were hashed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evidence.case import (
    CASE_JSON,
    DATAPACKAGE,
    DATAPACKAGE_DIGEST,
    EXPORT_KIND,
    FILE_TYPE,
    FILE_VERSION,
    CaseReader,
    case_map_bytes,
    checkpoint_path,
    consistency_path,
    datapackage_digest,
    key_path,
    load_json,
    manifest_path,
    proof_path,
    record_path,
)
from evidence.errors import CaseFileError, EvidenceError, IntegrityError
from evidence.keys import key_id_for, public_from_raw
from evidence.record import GENESIS_PREV, Record, parse_record
from ledger import merkle
from ledger.checkpoint import Checkpoint, parse_consistency, parse_proof
from ledger.log import verify_key_add, verify_rotation
from ledger.note import CosignatureVerifier, Verifier, verify_note

from .result import Check
from .warc import WarcChecker, WarcSummary

READ_CHUNK = 4 << 20
KEEP_MAX = 4 << 20  # small evidence files kept in memory from the hash pass
SIDE_HASH_MIN = 32 << 20  # WARCs above this hash in a side thread
MAX_NOTE = 64 << 10
MAX_PROOF = 64 << 10
MAX_RECORD = 16 << 20
_RECORD_FILE = re.compile(r"evidence/record-(0|[1-9][0-9]{0,18})\.json")


# What export_case writes into case.json: nothing more, nothing less.
_MAP_FIELDS = {"type", "v", "case", "origin", "exported", "software", "checkpoint", "export_record", "records",
               "exhibits", "checkpoints", "consistency", "keys", "anchors", "tsa_roots"}
_ENTRY_FIELDS = {
    "checkpoint": {"size", "path"}, "checkpoints": {"size", "path"}, "consistency": {"old", "new", "path"},
    "records": {"index", "kind", "path", "proof"}, "exhibits": {"index", "manifest", "artifacts"},
    "keys": {"key_id", "vkey", "path"}, "anchors": {"index", "type", "checkpoint_size", "blobs"},
}


@dataclass
class VerificationResult:
    path: str
    case: str | None = None
    origin: str | None = None
    trusted: bool = False  # the checkpoint verified under a key the caller pinned
    tsa_trusted: bool = False  # every verified TSA token chains to a root the caller gave
    checks: list[Check] = field(default_factory=list)
    exhibits: list[dict[str, Any]] = field(default_factory=list)
    attestations: list[dict[str, Any]] = field(default_factory=list)
    anchors: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # path -> sha256, bytes

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def first_failure(self) -> Check | None:
        return next((c for c in self.checks if not c.ok), None)

    def add(self, name: str, ok: bool, detail: str = "", where: str | None = None) -> bool:
        self.checks.append(Check(name, ok, detail, where))
        return ok

    def exit_code(self, require_trust: bool = False) -> int:
        """0 valid, 1 invalid (or untrusted when trust is required); 2 is raised as CaseFileError."""
        if not self.ok or (require_trust and not self.trusted):
            return 1
        return 0

    def verdict(self) -> str:
        first = self.first_failure
        if first is not None:
            return f"INVALID: {first.where or first.name}: {first.detail}"
        if not self.trusted:
            return "INTACT but UNTRUSTED: every check passed against the bundle's own self-declared key (pin the log key with --trust)"
        return "VALID: every check passed; the checkpoint is signed by a pinned key"

    def to_json(self) -> dict[str, Any]:
        first = self.first_failure
        return {
            "path": self.path,
            "ok": self.ok,
            "trusted": self.trusted,
            "tsa_trusted": self.tsa_trusted,
            "verdict": self.verdict(),
            "case": self.case,
            "origin": self.origin,
            "first_failure": first.to_json() if first else None,
            "warnings": self.warnings,
            "checkpoint": self.checkpoint,
            "exhibits": self.exhibits,
            "attestations": self.attestations,
            "anchors": self.anchors,
            "checks": [c.to_json() for c in self.checks],
        }


@dataclass
class _Hashed:
    sha256: str | None
    size: int
    data: bytes | None = None
    warc: WarcSummary | None = None
    error: str | None = None


def verify_case(
    path: Path | str,
    *,
    trust: Sequence[str] = (),
    tsa_roots: Sequence[Any] = (),
    witnesses: Sequence[str] = (),
    min_witnesses: int = 0,
    now: float | None = None,
    workers: int = 2,
) -> VerificationResult:
    """Verify a case file. Raises ``CaseFileError`` only when it cannot be used at all (exit 2)."""
    try:
        pinned = [Verifier.parse(v) for v in trust]
        wit = [CosignatureVerifier.parse(w) for w in witnesses]
    except EvidenceError as e:
        raise CaseFileError(f"unusable trusted key: {e}") from None
    res = VerificationResult(str(path))
    with CaseReader(path) as z:
        if DATAPACKAGE not in z or CASE_JSON not in z:
            raise CaseFileError(f"{Path(path).name} is not an evidence-chain case file ({DATAPACKAGE} or {CASE_JSON} missing)")
        _Run(z, res, pinned, list(tsa_roots), wit, min_witnesses, now, workers).run()
    return res


def _is_warc(name: str) -> bool:
    return name.startswith("archive/") and (name.endswith(".warc.gz") or name.endswith(".warc"))


def _hash_entry(z: CaseReader, name: str, keep: bool) -> _Hashed:
    h = hashlib.sha256()
    n = 0
    parts: list[bytes] | None = [] if keep else None
    checker = WarcChecker() if _is_warc(name) else None
    try:
        if checker is not None and z.size(name) >= SIDE_HASH_MIN:
            # Pipeline: the side thread hashes chunk k while this one inflates and checks it.
            with ThreadPoolExecutor(1) as side:
                pending = None
                for chunk in z.iter_chunks(name, READ_CHUNK):
                    if pending is not None:
                        pending.result()
                    pending = side.submit(h.update, chunk)
                    checker.feed(chunk)
                    n += len(chunk)
                if pending is not None:
                    pending.result()
        else:
            for chunk in z.iter_chunks(name, READ_CHUNK):
                h.update(chunk)
                n += len(chunk)
                if checker is not None:
                    checker.feed(chunk)
                if parts is not None:
                    parts.append(chunk)
    except IntegrityError as e:
        return _Hashed(None, n, error=str(e))
    return _Hashed(
        h.hexdigest(), n, b"".join(parts) if parts is not None else None, checker.close() if checker else None
    )


class _Run:
    """One verification: state shared by the steps, each of which adds checks."""

    def __init__(
        self,
        z: CaseReader,
        res: VerificationResult,
        pinned: list[Verifier],
        tsa_roots: list[Any],
        witnesses: list[CosignatureVerifier],
        min_witnesses: int,
        now: float | None,
        workers: int,
    ):
        self.z, self.res = z, res
        self.pinned, self.tsa_roots, self.witnesses = pinned, tsa_roots, witnesses
        self.min_witnesses, self.now, self.workers = min_witnesses, now, max(1, workers)
        self.hashed: dict[str, _Hashed] = {}
        self.good: dict[str, str] = {}  # path -> sha256 of files that match datapackage.json
        self.records: dict[int, Record] = {}
        self.notes: dict[int, tuple[bytes, Checkpoint]] = {}
        self.case: dict[str, Any] = {}
        self.key_names: dict[str, str] = {}
        self._key_files: dict[str, tuple[str, Verifier] | str] | None = None  # key id -> name given by its key-add record

    # -- helpers ------------------------------------------------------------------

    def add(self, name: str, ok: bool, detail: str = "", where: str | None = None) -> bool:
        return self.res.add(name, ok, detail, where)

    def data(self, name: str, cap: int) -> bytes:
        """Bytes of a small file, as hashed in the first pass (IntegrityError if unusable)."""
        h = self.hashed.get(name)
        if h is None:
            raise IntegrityError(f"{name} is missing from the case file")
        if h.error:
            raise IntegrityError(h.error)
        if h.size > cap:
            raise IntegrityError(f"{name} is {h.size} bytes, more than the {cap}-byte limit for it")
        if h.data is None:
            return self.z.read(name, cap)
        return h.data

    # -- steps --------------------------------------------------------------------------

    def run(self) -> None:
        self.hash_files()
        self.check_datapackage()
        try:
            case = load_json(self.data(CASE_JSON, 64 << 20), CASE_JSON)
            if not isinstance(case, dict) or case.get("type") != FILE_TYPE or not isinstance(case.get("case"), str):
                raise IntegrityError(f"{CASE_JSON} is not an evidence-chain case description")
        except EvidenceError as e:
            self.add("case-file", False, str(e), CASE_JSON)
            return
        self.case = case
        self.res.case, self.res.origin = case["case"], str(case.get("origin"))
        verifiers = self.trust()
        if verifiers is None:
            return
        self.check_checkpoints(verifiers)
        self.check_records()
        self.check_completeness()
        # Before the exhibits: a damaged map would otherwise surface as a
        # missing file somewhere else instead of as itself.
        self.check_map()
        self.check_exhibits()
        self.check_attestations()
        self.check_anchors()
        self.summarise()

    def hash_files(self) -> None:
        names = [n for n in self.z.names() if n not in (DATAPACKAGE, DATAPACKAGE_DIGEST)]
        names.sort(key=self.z.size, reverse=True)  # big first: the pool ends evenly

        def job(name: str) -> tuple[str, _Hashed]:
            keep = not name.startswith("archive/") and self.z.size(name) <= KEEP_MAX
            return name, _hash_entry(self.z, name, keep)

        if self.workers == 1:
            results = [job(n) for n in names]
        else:
            with ThreadPoolExecutor(self.workers) as pool:
                results = list(pool.map(job, names))
        self.hashed = dict(results)

    def check_datapackage(self) -> None:
        z = self.z
        listed: dict[str, tuple[str, int]] = {}
        raw = b""
        try:
            raw = z.read(DATAPACKAGE, 64 << 20)
            self.hashed[DATAPACKAGE] = _Hashed(hashlib.sha256(raw).hexdigest(), len(raw))
            package = load_json(raw, DATAPACKAGE)
            if not isinstance(package, dict) or not isinstance(package.get("resources"), list):
                raise IntegrityError(f"{DATAPACKAGE} has no resources list")
            for r in package["resources"]:
                try:
                    p, h, n = r["path"], r["hash"], r["bytes"]
                    algo, hexd = h.split(":", 1)
                    if algo != "sha256" or not isinstance(p, str) or type(n) is not int:
                        raise ValueError
                except (KeyError, TypeError, ValueError, AttributeError):
                    raise IntegrityError(f"{DATAPACKAGE}: malformed resource entry {str(r)[:80]}") from None
                if p in listed:
                    raise IntegrityError(f"{DATAPACKAGE}: {p} is listed twice")
                listed[p] = (hexd.lower(), n)
        except EvidenceError as e:
            self.add("datapackage", False, str(e), DATAPACKAGE)
        if DATAPACKAGE not in self.hashed:
            pass  # already reported as unreadable
        elif DATAPACKAGE_DIGEST in z:
            try:
                raw_d = z.read(DATAPACKAGE_DIGEST, 1 << 16)
                d = load_json(raw_d, DATAPACKAGE_DIGEST)
                want = str(d["hash"]).split(":", 1)[1] if isinstance(d, dict) and "hash" in d else None
                got = self.hashed[DATAPACKAGE].sha256
                if got != want:
                    self.add("datapackage-digest", False, f"sha256 {got}, {DATAPACKAGE_DIGEST} says {want}", DATAPACKAGE)
                elif raw_d != datapackage_digest(raw):
                    self.add("datapackage-digest", False, "altered: not the exact form evidence-chain writes", DATAPACKAGE_DIGEST)
                else:
                    self.add("datapackage-digest", True, f"sha256 {got}", DATAPACKAGE)
            except (EvidenceError, IndexError, KeyError) as e:
                self.add("datapackage-digest", False, f"unusable: {e}", DATAPACKAGE_DIGEST)
        else:
            self.add("datapackage-digest", False, f"{DATAPACKAGE_DIGEST} is missing", DATAPACKAGE_DIGEST)
        for name in sorted(self.hashed, key=lambda n: (not n.startswith("evidence/"), n)):
            if name == DATAPACKAGE:
                continue
            h = self.hashed[name]
            self.res.files[name] = {"sha256": h.sha256, "bytes": h.size}
            if h.error:
                self.add("file-digest", False, h.error, name)
                continue
            if name not in listed:
                self.add("file-digest", False, f"not listed in {DATAPACKAGE} (sha256 {h.sha256})", name)
                continue
            want, wn = listed[name]
            ok = h.sha256 == want and h.size == wn
            self.add("file-digest", ok, f"sha256 {h.sha256}, {h.size} bytes" if ok
                     else f"sha256 {h.sha256} ({h.size} bytes), but {DATAPACKAGE} says {want} ({wn} bytes)", name)
            if ok and h.sha256:
                self.good[name] = h.sha256
        for p in listed:
            if p not in self.hashed:
                self.add("file-digest", False, f"listed in {DATAPACKAGE} but missing from the ZIP", p)
        for name, h in sorted(self.hashed.items()):
            if h.warc is not None:
                self.add("warc-digests", h.warc.ok, h.warc.detail() if h.warc.ok else "; ".join(h.warc.errors[:3]), name)

    def key_files(self) -> dict[str, tuple[str, Verifier] | str]:
        """Each key file case.json names: (its text, the parsed key), or why it is unusable. Parsed once."""
        if self._key_files is None:
            self._key_files = {}
            for k in self.case.get("keys") or []:
                path = str(k.get("path")) if isinstance(k, dict) else CASE_JSON
                try:
                    vkey = self.data(path, 4096).decode("utf-8").strip()
                    self._key_files[path] = (vkey, Verifier.parse(vkey))
                except (EvidenceError, UnicodeDecodeError) as e:
                    self._key_files[path] = f"unusable verifier key: {e}"
        return self._key_files

    def trust(self) -> list[Verifier] | None:
        if self.pinned:
            self.res.trusted = True  # until a checkpoint fails to verify under the pinned keys
            return self.pinned
        # Unusable key files are reported by check_keys.
        own = [kf[1] for kf in self.key_files().values() if not isinstance(kf, str)]
        self.res.warnings.append(
            "untrusted, self-declared: no log key was pinned, so the bundle's own key(s) were used; "
            "anyone can make a self-consistent bundle with a key of their own"
        )
        if not own:
            self.add("checkpoint-signature", False, "no verifier key given and none in the bundle", CASE_JSON)
            return None
        return own

    def check_checkpoints(self, verifiers: list[Verifier]) -> None:
        trust_word = "pinned key" if self.pinned else "untrusted, self-declared key"
        cps = self.case.get("checkpoints") or []
        main = self.case.get("checkpoint") if isinstance(self.case.get("checkpoint"), dict) else {}
        for entry in cps:
            size, path = (entry.get("size"), entry.get("path")) if isinstance(entry, dict) else (None, None)
            where = str(path)
            try:
                raw = self.data(str(path), MAX_NOTE)
                v = verify_note(raw, verifiers)
                body = Checkpoint.parse(v.text)
                if body.origin != self.res.origin:
                    raise IntegrityError(f"checkpoint origin {body.origin!r} is not the case's log {self.res.origin!r}")
                if body.size != size:
                    raise IntegrityError(f"note is for size {body.size}, but the case file says {size}")
                self.notes[body.size] = (raw, body)
                signers = ", ".join(f"{x.name}+{x.key_id.hex()}" for x in v.verified_by)
                self.add("checkpoint-signature", True,
                         f"size {body.size}, root {body.root.hex()}, signed by {signers} ({trust_word})", where)
            except (EvidenceError, UnicodeDecodeError) as e:
                if self.pinned:
                    self.res.trusted = False
                self.add("checkpoint-signature", False, str(e), where)
        msize = main.get("size") if isinstance(main, dict) else None
        if msize not in self.notes:
            self.res.trusted = False
            self.add("checkpoint-signature", False, f"the case checkpoint (size {msize}) is missing or does not verify", CASE_JSON)
        else:
            raw, body = self.notes[msize]
            self.res.checkpoint = {"size": body.size, "root": body.root.hex(), "origin": body.origin,
                                   "path": main.get("path"), "note": raw.decode("utf-8")}
        sizes = sorted(self.notes)
        if sizes and msize in self.notes and sizes[-1] != msize:
            self.add("checkpoint-signature", False, f"the bundle holds checkpoint {sizes[-1]}, newer than its case checkpoint {msize}", CASE_JSON)
        cons = {(c.get("old"), c.get("new")): c.get("path") for c in self.case.get("consistency") or [] if isinstance(c, dict)}
        for a, b in zip(sizes, sizes[1:]):
            path = cons.get((a, b))
            where = str(path) if path else f"checkpoints {a}->{b}"
            try:
                if path is None:
                    raise IntegrityError(f"no consistency proof from checkpoint {a} to {b}")
                old, new, hashes = parse_consistency(self.data(str(path), MAX_PROOF).decode("utf-8"))
                if (old, new) != (a, b):
                    raise IntegrityError(f"proof is for sizes {old}->{new}, not {a}->{b}")
                merkle.verify_consistency(a, b, hashes, self.notes[a][1].root, self.notes[b][1].root)
                self.add("consistency", True, f"checkpoint {b} extends checkpoint {a}", where)
            except (EvidenceError, UnicodeDecodeError) as e:
                self.add("consistency", False, str(e), where)

    def check_records(self) -> None:
        listed = self.case.get("records") or []
        declared: dict[int, Any] = {}
        for r in listed:
            if isinstance(r, dict) and type(r.get("index")) is int:
                declared[r["index"]] = r
        present = {int(m.group(1)) for n in self.hashed if (m := _RECORD_FILE.fullmatch(n))}
        for idx in sorted(present - set(declared)):
            self.add("record-list", False, f"record {idx} is in the ZIP but not in {CASE_JSON}", record_path(idx))
        for idx in sorted(set(declared) - present):
            self.add("record-list", False, f"record {idx} is listed in {CASE_JSON} but its file is missing", record_path(idx))
        for idx in sorted(present):
            try:
                self.records[idx] = parse_record(self.data(record_path(idx), MAX_RECORD), expect_index=idx)
            except EvidenceError as e:
                self.add("record-form", False, str(e), record_path(idx))
        if any(r.origin != self.res.origin for r in self.records.values()):
            bad = next(i for i, r in sorted(self.records.items()) if r.origin != self.res.origin)
            self.add("record-form", False, f"record of another log ({self.records[bad].origin!r})", record_path(bad))
        self.check_keys()
        prev: Record | None = None
        for idx, rec in sorted(self.records.items()):
            if idx == 0 and rec.prev != GENESIS_PREV:
                self.add("prev-link", False, "record 0 must have the genesis prev", record_path(0))
            if prev is not None and prev.index == idx - 1:
                ok = rec.prev == prev.leaf.hex()
                self.add("prev-link", ok, f"links to record {idx - 1}" if ok
                         else f"prev {rec.prev[:16]}... is not the leaf of record {idx - 1} ({prev.leaf.hex()[:16]}...)", record_path(idx))
            prev = rec
        main = self.res.checkpoint
        for idx, rec in sorted(self.records.items()):
            where = proof_path(idx)
            try:
                if main is None:
                    raise IntegrityError("no verified case checkpoint to prove inclusion against")
                raw = self.data(where, MAX_PROOF)
                proof = parse_proof(raw.decode("utf-8"))
                if proof.index != idx:
                    raise IntegrityError(f"proof is for index {proof.index}, not {idx}")
                note_raw, body = self.notes[main["size"]]
                if proof.note.encode("utf-8") != note_raw:
                    raise IntegrityError(f"proof is against another checkpoint than the case checkpoint (size {body.size})")
                merkle.verify_inclusion(rec.leaf, idx, body.size, proof.hashes, body.root)
                self.add("inclusion-proof", True, f"record {idx} is in the tree of size {body.size}", where)
            except (EvidenceError, UnicodeDecodeError) as e:
                self.add("inclusion-proof", False, str(e), where)

    def check_keys(self) -> None:
        """Signatures, with keys introduced by log-init, key-rotation and key-add records in order."""
        active: dict[str, tuple[bytes, str]] = {}  # key id -> (raw key, role: log, writer, officer)
        names: dict[str, str] = {}
        log_keys: set[bytes] = set()
        for idx, rec in sorted(self.records.items()):
            where = record_path(idx)
            try:
                if rec.kind == "log-init":
                    if idx != 0:
                        raise IntegrityError("a log-init record must be record 0")
                    raw = base64.b64decode(str(rec.payload.get("public_key")), validate=True)
                    if key_id_for(raw) != rec.key_id:
                        raise IntegrityError("log-init names a key id that does not match its public key")
                    active[rec.key_id] = (raw, "log")
                    log_keys.add(raw)
                key = active.get(rec.key_id)
                if key is None:
                    raise IntegrityError(f"signed by key {rec.key_id}, which no earlier record in the bundle introduces")
                rec.verify(public_from_raw(key[0]))
                role = key[1]
                if role == "officer" and rec.kind != "attestation":
                    raise IntegrityError(f"officer key {rec.key_id} may sign only attestations, not {rec.kind!r}")
                if rec.kind == "key-rotation":
                    if role != "log" or rec.payload.get("old_key_id") != rec.key_id:
                        raise IntegrityError("key-rotation is not signed by the log key it retires")
                    new = verify_rotation(rec.payload)
                    del active[rec.key_id]
                    active[key_id_for(new)] = (new, "log")
                    log_keys.add(new)
                elif rec.kind == "key-add":
                    if role == "officer":
                        raise IntegrityError("an officer key cannot add keys")
                    kid, new, nm, new_role = verify_key_add(rec.payload)
                    active[kid] = (new, new_role)
                    names[kid] = nm
                    self.key_names[kid] = nm
                who = f" ({names[rec.key_id]})" if rec.key_id in names else ""
                self.add("record-signature", True, f"{rec.kind} signed by {role} key {rec.key_id}{who}", where)
            except (EvidenceError, binascii.Error, ValueError) as e:
                self.add("record-signature", False, str(e).removeprefix(f"record {idx}: "), where)
        # A shipped verifier key is only a convenience, but one the records do
        # not introduce would let a bundle declare a key of its own choosing.
        for path, kf in self.key_files().items():
            if isinstance(kf, str):
                self.add("key-file", False, kf, path)
                continue
            v = kf[1]
            ok = v.public_raw in log_keys and v.name == self.case.get("origin")
            self.add("key-file", ok, f"log key {key_id_for(v.public_raw)}, introduced by the records" if ok
                     else "not a key of this log introduced by the bundle's records", path)

    def check_completeness(self) -> None:
        e = self.case.get("export_record")
        if e is None:
            self.res.warnings.append("no case-export record: a bundle that lost records cannot be told from a complete one")
            return
        rec = self.records.get(e) if type(e) is int else None
        where = record_path(e) if type(e) is int else CASE_JSON
        if rec is None or rec.kind != EXPORT_KIND or rec.case != self.res.case:
            self.add("completeness", False, f"export record {e!r} is missing or is not this case's {EXPORT_KIND} record", where)
            return
        listed: dict[int, str] = {}
        for item in rec.payload.get("records") or []:
            if isinstance(item, dict) and type(item.get("index")) is int:
                listed[item["index"]] = str(item.get("leaf"))
        problems = []
        for idx in sorted(set(listed) | set(self.records)):
            if idx == e:
                continue
            if idx not in self.records:
                problems.append((idx, f"record {idx} named by the export record is missing from the bundle"))
            elif idx not in listed:
                problems.append((idx, f"record {idx} is in the bundle but not in the export record"))
            elif listed[idx] != self.records[idx].leaf.hex():
                problems.append((idx, f"record {idx} differs from the one the export record names"))
        for idx, why in problems[:20]:
            self.add("completeness", False, why, record_path(idx))
        if not problems:
            self.add("completeness", True, f"all {len(listed)} records named by export record {e} are present and unchanged", where)
        derived = rec.payload.get("derived")
        if isinstance(derived, dict):
            for name, want in sorted(derived.items()):
                got = self.hashed[name].sha256 if name in self.hashed else None
                self.add("derived-file", got == want,
                         f"sha256 {got} as export record {e} states" if got == want
                         else f"sha256 {got}, export record {e} states {want}", name)
        for idx, r in sorted(self.records.items()):
            if r.kind == EXPORT_KIND and idx > e:
                self.add("completeness", False, f"a newer export record ({idx}) is in the bundle than the one it names", record_path(idx))

    def check_map(self) -> None:
        """case.json is unsigned: hold every field to what the verified files and records say.

        Paths must be the ones derived from indexes and sizes, kinds and times
        must match the records, and the bytes must be in the exact written
        form, so no byte of the map can change without a failed check.
        """
        c = self.case
        bad: list[str] = []
        try:
            if self.data(CASE_JSON, 64 << 20) != case_map_bytes(c):
                bad.append("not in the exact form evidence-chain writes")
        except EvidenceError as e:
            bad.append(str(e))
        if set(c) != _MAP_FIELDS or c.get("v") != FILE_VERSION:
            bad.append(f"fields {sorted(set(c) ^ _MAP_FIELDS)} or version {c.get('v')!r}")
        for field_, want in _ENTRY_FIELDS.items():
            v = c.get(field_)
            for x in (v if isinstance(v, list) else [v]):
                if not isinstance(x, dict) or set(x) != want:
                    bad.append(f"{field_} entry {str(x)[:60]}")
        main = c.get("checkpoint")
        if not isinstance(main, dict) or main.get("path") != checkpoint_path(main.get("size")):  # type: ignore[arg-type]
            bad.append("case checkpoint path")
        for cp in c.get("checkpoints") or []:
            if not isinstance(cp, dict) or cp.get("path") != checkpoint_path(cp.get("size")):  # type: ignore[arg-type]
                bad.append(f"checkpoint entry {str(cp)[:60]}")
        for x in c.get("consistency") or []:
            if not isinstance(x, dict) or x.get("path") != consistency_path(x.get("old"), x.get("new")):  # type: ignore[arg-type]
                bad.append(f"consistency entry {str(x)[:60]}")
        for r in c.get("records") or []:
            idx = r.get("index") if isinstance(r, dict) else None
            rec = self.records.get(idx) if type(idx) is int else None
            if rec is None or r != {"index": idx, "kind": rec.kind, "path": record_path(idx), "proof": proof_path(idx)}:
                bad.append(f"record entry {str(r)[:60]}")
        for x in c.get("exhibits") or []:
            idx = x.get("index") if isinstance(x, dict) else None
            if type(idx) is not int or x.get("manifest") != manifest_path(idx):
                bad.append(f"exhibit entry {str(x)[:60]}")
        for k in c.get("keys") or []:
            if not isinstance(k, dict) or k.get("path") != key_path(str(k.get("key_id"))):
                bad.append(f"key entry {str(k)[:60]}")
                continue
            kf = self.key_files().get(k["path"])
            if isinstance(kf, str) or kf is None or kf[0] != k.get("vkey") or key_id_for(kf[1].public_raw) != k.get("key_id"):
                bad.append(f"key entry {str(k)[:60]}")
        for a in c.get("anchors") or []:
            idx = a.get("index") if isinstance(a, dict) else None
            rec = self.records.get(idx) if type(idx) is int else None
            if rec is None or a.get("type") != rec.payload.get("type") or a.get("checkpoint_size") != rec.payload.get("checkpoint_size"):
                bad.append(f"anchor entry {str(a)[:60]}")
                continue
            for sha, path in (a.get("blobs") or {}).items():
                if not re.fullmatch(rf"evidence/anchor-{idx}-(token\.tsr|chain\.pem|cosignature\.txt|receipt\.bin)", str(path)) \
                        or self.good.get(str(path)) != sha:
                    bad.append(f"anchor {idx} blob {path}")
        roots = c.get("tsa_roots") or []
        if roots != [f"evidence/tsa-root-{n}.pem" for n in range(1, len(roots) + 1)]:
            bad.append("tsa_roots")
        e = c.get("export_record")
        rec = self.records.get(e) if type(e) is int else None
        if rec is not None and rec.kind == EXPORT_KIND:
            if c.get("exported") != rec.time:
                bad.append(f"exported time {c.get('exported')!r} is not export record {e}'s {rec.time!r}")
            if c.get("software") != rec.payload.get("software"):
                bad.append("software")
        if 0 in self.records and c.get("origin") != self.records[0].origin:
            bad.append("origin")
        if bad:
            self.add("case-map", False, "disagrees with the verified content: " + "; ".join(bad[:5]), CASE_JSON)
        else:
            self.add("case-map", True, "every entry matches the verified files and records", CASE_JSON)

    def check_exhibits(self) -> None:
        entries = {x.get("index"): x for x in self.case.get("exhibits") or [] if isinstance(x, dict)}
        case_exhibits = {i for i, r in self.records.items() if r.kind == "exhibit" and r.case == self.res.case}
        for idx in sorted(set(entries) - case_exhibits):
            self.add("manifest", False, f"{CASE_JSON} lists exhibit {idx}, which is not an exhibit record of this case", CASE_JSON)
        for idx in sorted(case_exhibits):
            rec = self.records[idx]
            entry = entries.get(idx) or {}
            mpath = str(entry.get("manifest") or f"evidence/exhibit-{idx}.json")
            m = rec.payload.get("manifest") if isinstance(rec.payload.get("manifest"), dict) else {}
            want = m.get("sha256")
            got = self.hashed[mpath].sha256 if mpath in self.hashed else None
            if got is None or got != want:
                self.add("manifest-digest", False, f"manifest sha256 {got}, but record {idx} says {want}", mpath)
                continue
            self.add("manifest-digest", True, f"sha256 {got} matches record {idx}", mpath)
            try:
                manifest = load_json(self.data(mpath, 64 << 20), mpath)
                arts = manifest["artifacts"]
                info = manifest.get("info") or {}
                if manifest.get("case") != rec.case:
                    raise IntegrityError(f"manifest is for case {manifest.get('case')!r}")
                names_m = [(a["name"], a["sha256"]) for a in arts]
                names_r = [(a.get("name"), a.get("sha256")) for a in rec.payload.get("artifacts") or []]
                if names_m != names_r:
                    raise IntegrityError(f"manifest and record {idx} list different artifacts")
            except (EvidenceError, KeyError, TypeError) as e:
                self.add("manifest", False, f"unusable manifest: {e}", mpath)
                continue
            files = entry.get("artifacts") if isinstance(entry.get("artifacts"), dict) else {}
            summary: dict[str, Any] = {
                "index": idx, "url": info.get("url"), "final_url": info.get("final_url"), "title": info.get("title"),
                "operator": info.get("operator"), "started": info.get("started"), "ended": info.get("ended"),
                "time": rec.time, "key_id": rec.key_id, "manifest": mpath, "manifest_sha256": want,
                "artifacts": [], "screenshot": None, "anchor": None,
            }
            shots: dict[str, str] = {}
            for a in arts:
                zpath = files.get(a.get("name"))
                h = self.hashed.get(zpath) if isinstance(zpath, str) else None
                if h is None:
                    ok, detail = False, f"artifact {a.get('name')!r} of exhibit {idx} is missing from the bundle"
                elif h.sha256 != a.get("sha256") or h.size != a.get("size"):
                    ok, detail = False, (f"artifact {a.get('name')!r} of exhibit {idx}: file has sha256 {h.sha256} "
                                         f"({h.size} bytes), the manifest says {a.get('sha256')} ({a.get('size')} bytes)")
                else:
                    ok, detail = True, f"{a.get('name')} of exhibit {idx}: sha256 {h.sha256} matches the manifest"
                self.add("artifact-digest", ok, detail, zpath if isinstance(zpath, str) else f"exhibit {idx}: {a.get('name')}")
                summary["artifacts"].append({k: a.get(k) for k in ("name", "role", "media_type", "size", "sha256")} | {"path": zpath, "ok": ok})
                if ok and str(a.get("role", "")).startswith("screenshot") and isinstance(zpath, str):
                    shots[str(a.get("role"))] = zpath
            summary["screenshot"] = shots.get("screenshot-viewport") or shots.get("screenshot-full") or next(iter(shots.values()), None)
            self.res.exhibits.append(summary)

    def check_attestations(self) -> None:
        for idx, rec in sorted(self.records.items()):
            if rec.kind != "attestation":
                continue
            target = rec.payload.get("exhibit_index")
            ex = self.records.get(target) if type(target) is int else None
            ok = ex is not None and ex.kind == "exhibit" and target < idx and ex.leaf.hex() == rec.payload.get("exhibit_leaf")
            officer = rec.payload.get("officer")
            registered = self.key_names.get(rec.key_id)
            if not ok:
                why = f"attestation does not match exhibit record {target} in the bundle"
            elif registered != officer:
                ok, why = False, f"signed by key {rec.key_id} registered to {registered!r}, not to the attesting officer {officer!r}"
            else:
                why = f"exhibit {target} attested by {officer} (key {rec.key_id})"
            self.add("attestation", ok, why, record_path(idx))
            if ok:
                self.res.attestations.append({"index": idx, "exhibit_index": target, "officer": rec.payload.get("officer"),
                                              "time": rec.time, "key_id": rec.key_id, "statement": rec.payload.get("statement")})

    def check_anchors(self) -> None:
        from ledger.anchors import check_anchor_record

        entries = {a.get("index"): a for a in self.case.get("anchors") or [] if isinstance(a, dict)}
        anchor_recs = {i: r for i, r in self.records.items() if r.kind == "anchor"}
        for idx in sorted(set(entries) - set(anchor_recs)):
            self.add("anchor", False, f"{CASE_JSON} lists anchor {idx}, which is not an anchor record in the bundle", CASE_JSON)
        roots, self_declared = self.tsa_root_set()
        cosigned: dict[int, set[str]] = {}
        all_tsa_trusted = True
        for idx, rec in sorted(anchor_recs.items()):
            p = rec.payload
            where = record_path(idx)
            size = p.get("checkpoint_size")
            if size not in self.notes:
                self.add("anchor", False, f"anchors checkpoint {size}, which is not a verified checkpoint of the bundle", where)
                continue
            if idx < size:
                self.add("anchor", False, f"anchor record lies inside the checkpoint of size {size} it anchors", where)
                continue
            blobs = (entries.get(idx) or {}).get("blobs") or {}

            def load(digest: str, blobs: dict[str, Any] = blobs) -> bytes:
                path = blobs.get(digest)
                if not isinstance(path, str):
                    raise KeyError(f"no file for sha256:{digest[:16]}...")
                try:
                    return self.data(path, 16 << 20)
                except EvidenceError as e:
                    raise KeyError(str(e)) from None

            note_raw = self.notes[size][0]
            chk = check_anchor_record(p, load, note_raw, roots=roots, witnesses=self.witnesses, where=where, now=self.now)
            detail, verified, when = chk.detail, chk.ok and chk.verified, chk.time
            kind = p.get("type")
            if chk.ok and kind == "rfc3161":
                if not chk.verified:
                    detail, when = self.tsa_unverified(p, load, note_raw, detail)
                    all_tsa_trusted = False
                elif self_declared:
                    detail += " (TSA root self-declared in the bundle: untrusted)"
                    all_tsa_trusted = False
                else:
                    detail += " (TSA root given by the verifier)"
            elif chk.ok and not chk.verified:
                detail += " (intact; not verified: no key given)"
            self.add(chk.name, chk.ok, detail, where)
            self.res.anchors.append({"index": idx, "type": kind, "service": p.get("tsa") or p.get("witness") or p.get("service"),
                                     "time": when or p.get("time"), "checkpoint_size": size, "ok": chk.ok, "verified": verified,
                                     "trusted": verified and not (kind == "rfc3161" and self_declared),
                                     "files": sorted(v for v in blobs.values() if isinstance(v, str))})
            if verified and kind == "witness":
                cosigned.setdefault(size, set()).add(str(p.get("witness")))
        self.res.tsa_trusted = all_tsa_trusted and any(a["type"] == "rfc3161" and a["verified"] for a in self.res.anchors)
        if self.min_witnesses:
            best = max((len(v) for v in cosigned.values()), default=0)
            self.add("witness-policy", best >= self.min_witnesses,
                     f"{best} trusted witness cosignature(s) on one checkpoint; the policy needs {self.min_witnesses}", CASE_JSON)

    def tsa_root_set(self) -> tuple[list[Any], bool]:
        """The caller's TSA roots, else roots shipped in the bundle (self-declared)."""
        if self.tsa_roots:
            return self.tsa_roots, False
        from cryptography import x509

        roots = []
        paths = [p for p in self.case.get("tsa_roots") or [] if isinstance(p, str)]
        for path in paths:
            try:
                roots.extend(x509.load_pem_x509_certificates(self.data(path, 1 << 20)))
            except (EvidenceError, ValueError) as e:
                self.add("tsa-root", False, f"unusable TSA root certificate: {e}", path)
        return roots, True

    def tsa_unverified(self, p: dict[str, Any], load: Any, note: bytes, detail: str) -> tuple[str, str | None]:
        """Without any TSA root: still check the token is over this checkpoint and read its time."""
        try:
            from rfc3161_client import decode_timestamp_response

            tst = decode_timestamp_response(load(p["token_sha256"])).tst_info
            alg = {32: "sha256", 48: "sha384", 64: "sha512"}.get(len(tst.message_imprint.message), "sha256")
            if tst.message_imprint.message != hashlib.new(alg, note).digest():
                return detail + "; the token is NOT over this checkpoint", None
            t = tst.gen_time.strftime("%Y-%m-%dT%H:%M:%SZ")
            warning = "a timestamp's signature was not verified: pass the TSA's root certificate with --tsa-root"
            if warning not in self.res.warnings:
                self.res.warnings.append(warning)
            return (f"token over this checkpoint asserts {t}; its signature was not verified: "
                    "no TSA root certificate given (--tsa-root) or shipped"), t
        except Exception as e:  # the token decoder raises its own ASN.1 error types
            return f"{detail}; token unreadable: {str(e).splitlines()[0] if str(e) else type(e).__name__}", None

    def summarise(self) -> None:
        """Per exhibit: the earliest verified anchor whose checkpoint covers its record."""
        for ex in self.res.exhibits:
            covering = [a for a in self.res.anchors if a["ok"] and a["checkpoint_size"] > ex["index"] and a.get("time")]
            if covering:
                first = min(covering, key=lambda a: str(a["time"]))
                ex["anchor"] = {k: first[k] for k in ("index", "type", "service", "time", "checkpoint_size", "verified", "trusted")}
