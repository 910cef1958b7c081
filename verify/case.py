"""Offline verification of a case file: no database, no network, no browser.

    from verify import verify_case
    result = verify_case("case.wacz", trust=["log.example+1234abcd+AQ..."])
    result.ok, result.complete, result.trusted, result.first_failure, result.exit_code()

The rule: a bundle is VALID only if every file in it is bound, directly or
through a chain of digests, to a statement signed by a trusted key, and the
bundle is complete against the signed ``case-export`` record. Bindings:

* ``evidence/record-N.json``: the record itself (signature, key introduced by
  earlier records, inclusion proof against the signed case checkpoint);
  ``record-N.tlog-proof`` and ``consistency-*.proof``: verified, in the exact
  form evidence-chain writes; ``checkpoint-*.note``: signed, no foreign lines.
* exhibit manifests: by the digest in their exhibit record; artifacts (WARCs
  included): by the digest in their manifest, at a path of that exhibit.
* everything else export writes (index, page list, key files, TSA roots,
  anchor blobs, older checkpoints and proofs, and again every artifact): by
  path, SHA-256 and size in the export record, which also lists the leaf of
  every other record; anchor blobs are bound by their anchor records as well.
* ``evidence/case.json``: derived exactly from the verified content.

``datapackage.json`` must agree with the files (WACZ requires it) but binds
nothing. A file no signed statement names is refused unread (by name pattern
first, then against the statements) and never counted as proven.
``allow_incomplete`` reports what is proven when the bundle is incomplete
(no export record, a file missing, a file not bound): those become ``gaps``,
the verdict says INCOMPLETE, never VALID, and ``exit_code`` is 0 only if
every check of what is present passed.

Trust: only the log keys passed as ``trust`` (C2SP vkeys) are trusted. Without
them the bundle's own keys are used and every check can still pass, but the
result says ``trusted: False`` ("untrusted, self-declared"): anyone can build
a self-consistent bundle with a key of their own. Record keys need no
pinning: they are introduced by records (log-init, key-rotation, key-add)
that the trusted checkpoint commits to. TSA roots work the same way:
``tsa_roots`` are trusted, roots shipped in the bundle are self-declared.

Speed and hostile input: small signed files are read first (each capped);
then only the files the signed statements expect, with the declared ZIP size
checked against the stated size before a byte is inflated. Those are hashed
once on a thread pool (hashlib and zlib release the GIL); WARCs are checked
record by record from the same chunks. Small files are kept from that pass,
so the bytes that are parsed are the bytes that were hashed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import importlib
import re
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger import merkle, waczsign
from ledger.checkpoint import (
    Checkpoint,
    TlogProof,
    format_consistency,
    format_proof,
    parse_consistency,
    parse_proof,
)
from ledger.errors import CaseFileError, EvidenceError, IntegrityError
from ledger.keys import key_id_for, public_from_raw
from ledger.note import CosignatureVerifier, Verifier, verify_note, vkey_for
from ledger.record import GENESIS_PREV, Record, parse_record
from ledger.statements import key_add_facts, verify_key_add, verify_rotation
from ledger.trust import Trust, beyond_lifetime, lifetimes

from .casefile import (
    CASE_JSON,
    DATAPACKAGE,
    DATAPACKAGE_DIGEST,
    EXPORT_KIND,
    EXPORT_VERSION,
    FILE_TYPE,
    FILE_VERSION,
    WARC_NAME,
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
from .result import Check
from .warc import Lane, WarcChecker, WarcSummary

READ_CHUNK = 4 << 20
KEEP_MAX = 4 << 20  # small evidence files kept in memory from the hash pass
SIDE_HASH_MIN = 32 << 20  # entries above this are hashed on lanes (verify.warc.Lane) while they are read
MAX_NOTE = 64 << 10
MAX_PROOF = 64 << 10
MAX_RECORD = 16 << 20
MAX_KEY = 4096
MAX_DATAPACKAGE = 64 << 20
MAX_MANIFEST = 64 << 20
_N = r"(?:0|[1-9][0-9]{0,18})"
_RECORD_FILE = re.compile(rf"evidence/record-({_N})\.json")
# Every name export_case can write. Anything else is refused by name alone, unread.
_WRITTEN = re.compile(
    rf"evidence/record-{_N}\.(?:json|tlog-proof)|evidence/exhibit-{_N}(?:\.json|-[a-z0-9._-]+)"
    rf"|evidence/checkpoint-{_N}\.note|evidence/consistency-{_N}-{_N}\.proof|evidence/key-[0-9a-f]{{16}}\.vkey"
    rf"|evidence/anchor-{_N}-(?:token\.tsr|chain\.pem|cosignature\.txt|receipt\.bin)|evidence/tsa-root-{_N}\.pem"
    rf"|archive/{_N}-[a-z0-9._-]+\.warc(?:\.gz)?|archive/{WARC_NAME.pattern}|evidence/case\.json|indexes/index\.cdxj?|pages/pages\.jsonl"
    r"|datapackage\.json|datapackage-digest\.json"
)
# Signed files and proofs, read (capped) before anything else: (pattern, cap).
_SMALL = (
    (re.compile(rf"evidence/record-{_N}\.json"), MAX_RECORD),
    (re.compile(rf"evidence/record-{_N}\.tlog-proof"), MAX_PROOF),
    (re.compile(rf"evidence/checkpoint-{_N}\.note"), MAX_NOTE),
    (re.compile(rf"evidence/consistency-{_N}-{_N}\.proof"), MAX_PROOF),
    (re.compile(r"evidence/key-[0-9a-f]{16}\.vkey"), MAX_KEY),
    (re.compile(r"evidence/case\.json"), 64 << 20),
)


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
    allow_incomplete: bool = False  # gaps are reported, not failed
    export_record: int | None = None  # the verified case-export record the bundle is complete against
    checks: list[Check] = field(default_factory=list)
    gaps: list[Check] = field(default_factory=list)  # missing or unbound: what keeps the bundle from complete
    exhibits: list[dict[str, Any]] = field(default_factory=list)  # exhibits whose manifest verified, each "proven" or not
    unproven_exhibits: list[dict[str, Any]] = field(default_factory=list)  # exhibit records whose manifest did not
    attestations: list[dict[str, Any]] = field(default_factory=list)
    anchors: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # bound files only: path -> sha256, bytes, bound by

    @property
    def complete(self) -> bool:
        return self.export_record is not None and not self.gaps

    @property
    def ok(self) -> bool:
        """Every file bound, the bundle complete, every check passed (VALID, or INTACT when untrusted)."""
        return bool(self.checks) and all(c.ok for c in self.checks) and self.complete

    @property
    def first_failure(self) -> Check | None:
        return next((c for c in self.checks if not c.ok), None)

    def add(self, name: str, ok: bool, detail: str = "", where: str | None = None) -> bool:
        self.checks.append(Check(name, ok, detail, where))
        return ok

    def gap(self, name: str, detail: str, where: str | None = None) -> None:
        """Something missing or unbound: a failed check, unless incomplete bundles are allowed."""
        c = Check(name, False, detail, where)
        self.gaps.append(c)
        if not self.allow_incomplete:
            self.checks.append(c)

    def exit_code(self, require_trust: bool = False) -> int:
        """0 valid (or, with allow_incomplete, every present part checks out); 1 otherwise. 2 is raised as CaseFileError."""
        if not self.checks or self.first_failure is not None or (require_trust and not self.trusted):
            return 1
        if not self.complete and not self.allow_incomplete:
            return 1
        return 0

    def proven_exhibits(self) -> list[int]:
        return [e["index"] for e in self.exhibits if e.get("proven")]

    def verdict(self) -> str:
        first = self.first_failure
        if first is not None:
            # Something missing, and nothing present contradicts a signed statement: incomplete rather than forged.
            failed = [c for c in self.checks if not c.ok]
            word = "INCOMPLETE" if first.name == "completeness" and all(c in self.gaps for c in failed) else "INVALID"
            return f"{word}: {first.where or first.name}: {first.detail}"
        if not self.complete:
            proven = self.proven_exhibits()
            every = len(self.exhibits) + len(self.unproven_exhibits)
            s = f"INCOMPLETE: proven in part: {len(proven)} of {every} exhibit(s) proven"
            if proven:
                s += f" (record{'s' if len(proven) > 1 else ''} {', '.join(map(str, proven))})"
            if self.gaps:
                g = self.gaps[0]
                s += f"; {len(self.gaps)} part(s) not proven, first {g.where or g.name}: {g.detail}"
            return s + ("" if self.trusted else "; against the bundle's own self-declared key (untrusted)")
        if not self.trusted:
            return "INTACT but UNTRUSTED: every check passed against the bundle's own self-declared key (pin the log key with --trust)"
        return "VALID: every file is bound to a record signed by a pinned key, and the bundle is complete against its export record"

    def to_json(self) -> dict[str, Any]:
        first = self.first_failure
        return {
            "path": self.path,
            "ok": self.ok,
            "complete": self.complete,
            "trusted": self.trusted,
            "tsa_trusted": self.tsa_trusted,
            "verdict": self.verdict(),
            "case": self.case,
            "origin": self.origin,
            "export_record": self.export_record,
            "first_failure": first.to_json() if first else None,
            "gaps": [c.to_json() for c in self.gaps],
            "warnings": self.warnings,
            "checkpoint": self.checkpoint,
            "exhibits": self.exhibits,
            "unproven_exhibits": self.unproven_exhibits,
            "attestations": self.attestations,
            "anchors": self.anchors,
            "files": self.files,
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
    trust: Trust | Sequence[str | Verifier] = (),
    tsa_roots: Sequence[Any] = (),
    witnesses: Sequence[str] = (),
    min_witnesses: int = 0,
    now: float | None = None,
    workers: int = 2,
    allow_incomplete: bool = False,
    deposits: Sequence[Any] = (),
) -> VerificationResult:
    """Verify a case file. Raises ``CaseFileError`` only when it cannot be used at all (exit 2).

    ``deposits``: deposit adapters (``ledger.anchors.DepositAdapter``) whose
    offline ``verify`` re-checks the receipts of their service.
    """
    try:
        pinned = list(Trust.of(trust).verifiers)
        wit = [CosignatureVerifier.parse(w) for w in witnesses]
    except EvidenceError as e:
        raise CaseFileError(f"unusable trusted key: {e}") from None
    res = VerificationResult(str(path), allow_incomplete=allow_incomplete)
    with CaseReader(path) as z:
        if DATAPACKAGE not in z or CASE_JSON not in z:
            raise CaseFileError(f"{Path(path).name} is not an evidence-chain case file ({DATAPACKAGE} or {CASE_JSON} missing)")
        run = _Run(z, res, pinned, list(tsa_roots), wit, min_witnesses, now, workers)
        run.deposits = {d.name: d for d in deposits}
        run.run()
    return res


def _preload(module: str) -> None:
    """Import ``module`` ahead of use; a failure is left to the import where it is used (no thread traceback)."""
    try:
        importlib.import_module(module)
    except ImportError:
        pass


def _is_warc(name: str) -> bool:
    return name.startswith("archive/") and (name.endswith(".warc.gz") or name.endswith(".warc"))


def _hash_entry(z: CaseReader, name: str, keep: bool) -> _Hashed:
    """SHA-256 of one entry and, for a WARC, every record's digests: from one read of its bytes."""
    h = hashlib.sha256()
    n = 0
    parts: list[bytes] | None = [] if keep else None
    is_warc = _is_warc(name)
    try:
        if z.size(name) >= SIDE_HASH_MIN and not keep:
            # Pipeline: this thread reads (and inflates, and parses a WARC's) chunk k+1 while
            # lanes on the pool hash chunk k: the file digest, each record's block and payload digest.
            with ThreadPoolExecutor(3 if is_warc else 1, thread_name_prefix="verify-lane") as pool:
                lane = Lane(h, pool)
                checker = WarcChecker(pool) if is_warc else None
                try:
                    for chunk in z.iter_chunks(name, READ_CHUNK):
                        lane.update(chunk)
                        if checker is not None:
                            checker.feed(chunk)
                        n += len(chunk)
                finally:
                    lane.wait()
                summary = checker.close() if checker is not None else None
            return _Hashed(h.hexdigest(), n, None, summary)
        checker = WarcChecker() if is_warc else None
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


@dataclass(frozen=True)
class _Expect:
    sha256: str
    size: int | None
    source: str  # the signed statement that names the file


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
        self.listed: dict[str, tuple[str, int]] = {}  # datapackage.json: path -> (sha256, bytes)
        self.records: dict[int, Record] = {}
        self.proven: set[int] = set()  # records whose signature and inclusion proof verified
        self.notes: dict[int, tuple[bytes, Checkpoint]] = {}
        self.case: dict[str, Any] = {}
        self.key_names: dict[str, str] = {}
        self.key_roles: dict[str, str] = {}
        self.deposits: dict[str, Any] = {}  # service name -> deposit adapter given by the caller
        self._key_files: dict[str, tuple[str, Verifier] | str] | None = None  # key id -> name given by its key-add record
        self.verifiers: list[Verifier] = []
        self.export: Record | None = None  # the verified v2 export record
        self.expect: dict[str, list[_Expect]] = {}  # path -> digests signed statements give for it
        self.bound: dict[str, str] = {}  # path -> what binds it (only once verified)
        self.refused: set[str] = set()  # never inflated: unexpected, or the wrong declared size
        self.reported: set[str] = set()  # files already named by a failed check or gap
        self.manifests: dict[int, dict[str, Any]] = {}
        self.artifact_of: dict[str, int] = {}  # artifact path -> exhibit index

    # -- helpers ------------------------------------------------------------------

    def add(self, name: str, ok: bool, detail: str = "", where: str | None = None) -> bool:
        if not ok and where:
            self.reported.add(where)
        return self.res.add(name, ok, detail, where)

    def gap(self, name: str, detail: str, where: str | None = None) -> None:
        if where:
            self.reported.add(where)
        self.res.gap(name, detail, where)

    def data(self, name: str, cap: int) -> bytes:
        """Bytes of a small file, as read in the first passes (IntegrityError if unusable)."""
        h = self.hashed.get(name)
        if h is None:
            if name not in self.z:
                raise IntegrityError(f"{name} is missing from the case file")
            if name in self.refused or name in (DATAPACKAGE, DATAPACKAGE_DIGEST):
                raise IntegrityError(f"{name} is not a file a signed statement names")
            if self.z.size(name) > cap:
                raise IntegrityError(f"{name} is {self.z.size(name)} bytes, more than the {cap}-byte limit for it")
            h = self.hashed[name] = _hash_entry(self.z, name, True)
        if h.error:
            raise IntegrityError(h.error)
        if h.size > cap:
            raise IntegrityError(f"{name} is {h.size} bytes, more than the {cap}-byte limit for it")
        if h.data is None:
            return self.z.read(name, cap)
        return h.data

    def expect_file(self, path: str, sha256: Any, size: Any, source: str) -> None:
        if isinstance(sha256, str):
            self.expect.setdefault(path, []).append(_Expect(sha256.lower(), size if type(size) is int else None, source))

    # -- steps --------------------------------------------------------------------------

    def run(self) -> None:
        self.check_names()
        self.read_datapackage()
        self.read_small()
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
        self.verifiers = verifiers
        self.check_checkpoints(verifiers)
        self.check_note_lines()
        self.check_records()
        self.proven = self.proven_records()
        self.check_completeness()
        self.plan_exhibits()
        self.plan_anchors()
        self.admit()
        self.hash_files()
        self.check_files()
        # Before the exhibits: a damaged map would otherwise surface as a
        # missing file somewhere else instead of as itself.
        self.check_map()
        self.check_exhibits()
        self.check_payload_claims()
        self.check_attestations()
        self.check_crawls()
        self.check_anchors()
        self.check_bound()
        self.check_wacz_signature()  # last: it proves nothing the checks above do not, so it is never the first failure
        self.summarise()

    def check_names(self) -> None:
        """Names export never writes are refused by name alone, before any byte is inflated."""
        for name in sorted(self.z.names()):
            if not _WRITTEN.fullmatch(name):
                self.refused.add(name)
                self.gap("unbound-file", f"not a file evidence-chain writes, so no signed statement can name it "
                         f"(refused unread, {self.z.size(name)} bytes)", name)

    def read_datapackage(self) -> None:
        """datapackage.json binds nothing, but a WACZ must agree with it; a bomb here is unusable input."""
        z = self.z
        if z.size(DATAPACKAGE) > MAX_DATAPACKAGE:
            raise CaseFileError(f"{DATAPACKAGE} declares {z.size(DATAPACKAGE)} bytes (at most {MAX_DATAPACKAGE})")
        raw = b""
        try:
            raw = z.read(DATAPACKAGE, MAX_DATAPACKAGE)  # CaseFileError (inflating past its size) is exit 2
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
                if p in self.listed:
                    raise IntegrityError(f"{DATAPACKAGE}: {p} is listed twice")
                self.listed[p] = (hexd.lower(), n)
        except IntegrityError as e:
            self.add("datapackage", False, str(e), DATAPACKAGE)
        if DATAPACKAGE not in self.hashed:
            return  # already reported as unreadable
        if DATAPACKAGE_DIGEST not in z:
            self.add("datapackage-digest", False, f"{DATAPACKAGE_DIGEST} is missing", DATAPACKAGE_DIGEST)
            return
        try:
            if z.size(DATAPACKAGE_DIGEST) > 1 << 16:
                raise CaseFileError(f"{DATAPACKAGE_DIGEST} declares {z.size(DATAPACKAGE_DIGEST)} bytes (at most 65536)")
            raw_d = z.read(DATAPACKAGE_DIGEST, 1 << 16)
            d = load_json(raw_d, DATAPACKAGE_DIGEST)
            want = str(d["hash"]).split(":", 1)[1] if isinstance(d, dict) and "hash" in d else None
            got = self.hashed[DATAPACKAGE].sha256
            if got != want:
                self.add("datapackage-digest", False, f"sha256 {got}, {DATAPACKAGE_DIGEST} says {want}", DATAPACKAGE)
            elif raw_d != datapackage_digest(raw, d.get("signedData") if "signedData" in d else None):
                self.add("datapackage-digest", False, "altered: not the exact form evidence-chain writes", DATAPACKAGE_DIGEST)
            else:
                self.add("datapackage-digest", True, f"sha256 {got} (consistency only: it binds nothing)", DATAPACKAGE)
        except (IntegrityError, IndexError, KeyError) as e:
            self.add("datapackage-digest", False, f"unusable: {e}", DATAPACKAGE_DIGEST)

    def read_small(self) -> None:
        """Signed records, proofs, notes, keys and the map: read whole, each under its cap."""
        for name in sorted(self.z.names()):
            cap = next((c for p, c in _SMALL if p.fullmatch(name)), None)
            if cap is None:
                continue
            if self.z.size(name) > cap:
                self.hashed[name] = _Hashed(None, self.z.size(name),
                                            error=f"{name} declares {self.z.size(name)} bytes, more than the {cap}-byte limit for it (refused unread)")
                self.refused.add(name)
                continue
            self.hashed[name] = _hash_entry(self.z, name, True)

    def hash_files(self) -> None:
        """Every admitted file not yet read: big first, so the pool ends evenly."""
        names = [n for n in self.z.names() if n not in self.hashed and n not in self.refused
                 and n not in (DATAPACKAGE, DATAPACKAGE_DIGEST)]
        names.sort(key=self.z.size, reverse=True)
        # The anchor checks' modules (~0.1 s of imports) load while the big files hash, not after.
        threading.Thread(target=_preload, args=("ledger.anchors",), name="verify-import", daemon=True).start()

        def job(name: str) -> tuple[str, _Hashed]:
            keep = not name.startswith("archive/") and self.z.size(name) <= KEEP_MAX
            return name, _hash_entry(self.z, name, keep)

        if self.workers == 1:
            results = [job(n) for n in names]
        else:
            with ThreadPoolExecutor(self.workers) as pool:
                results = list(pool.map(job, names))
        self.hashed.update(results)

    def key_files(self) -> dict[str, tuple[str, Verifier] | str]:
        """Each key file case.json names: (its text, the parsed key), or why it is unusable. Parsed once."""
        if self._key_files is None:
            self._key_files = {}
            for k in self.case.get("keys") or []:
                path = str(k.get("path")) if isinstance(k, dict) else CASE_JSON
                try:
                    vkey = self.data(path, MAX_KEY).decode("utf-8").strip()
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
                # A retired pinned key speaks only for trees up to its rotation.
                late = beyond_lifetime(v.verified_by, body.size, lifetimes(verifiers))
                if late is not None:
                    raise IntegrityError(late)
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
        present = {int(m.group(1)) for n in self.z.names() if (m := _RECORD_FILE.fullmatch(n))}
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
                # Bytes beyond what was verified (an "extra" line, other spellings) would ride along unproven.
                if raw != format_proof(TlogProof(idx, proof.hashes, proof.note)).encode("utf-8"):
                    raise IntegrityError("proof verifies but is not in the exact form evidence-chain writes (extra data?)")
                self.add("inclusion-proof", True, f"record {idx} is in the tree of size {body.size}", where)
            except (EvidenceError, UnicodeDecodeError) as e:
                self.add("inclusion-proof", False, str(e), where)

    def check_keys(self) -> None:
        """Signatures, with keys introduced by log-init, key-rotation and key-add records in order."""
        active: dict[str, tuple[bytes, str]] = {}  # key id -> (raw key, role: log, writer, officer)
        names: dict[str, str] = {}
        log_keys: set[bytes] = set()
        # key id -> last valid tree size: retirements the verifier pinned, then the bundle's rotations.
        pinned_life = lifetimes(self.pinned)
        life = dict(pinned_life)
        for idx, rec in sorted(self.records.items()):
            where = record_path(idx)
            try:
                if rec.key_id in life and idx >= life[rec.key_id]:
                    raise IntegrityError(f"signed by retired key {rec.key_id}, whose lifetime ended with record "
                                         f"{life[rec.key_id] - 1} (its key rotation)")
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
                    if pinned_life.get(rec.key_id, idx + 1) != idx + 1:
                        raise IntegrityError(f"retires key {rec.key_id} at record {idx}, but the pinned key history "
                                             f"retires it at record {pinned_life[rec.key_id] - 1}: another history")
                    del active[rec.key_id]
                    active[key_id_for(new)] = (new, "log")
                    log_keys.add(new)
                    life[rec.key_id] = idx + 1
                elif rec.kind == "key-add":
                    if role == "officer":
                        raise IntegrityError("an officer key cannot add keys")
                    kid, new, nm, new_role = verify_key_add(rec.payload)
                    active[kid] = (new, new_role)
                    facts = key_add_facts(rec.payload)
                    names[kid] = ", ".join([nm, *(f"{k} {v}" for k, v in facts.items())])
                    self.key_names[kid] = nm
                    self.key_roles[kid] = new_role
                who = f" ({names[rec.key_id]})" if rec.key_id in names else ""
                adds = f": registers {new_role} key {kid} ({names[kid]})" if rec.kind == "key-add" else ""
                self.add("record-signature", True, f"{rec.kind} signed by {role} key {rec.key_id}{who}{adds}", where)
            except (EvidenceError, binascii.Error, ValueError) as e:
                self.add("record-signature", False, str(e).removeprefix(f"record {idx}: "), where)
        # A checkpoint by a key the bundle's own records retired earlier than
        # its size (the pinned retirements were checked with the signatures).
        retired_here = {k: n for k, n in life.items() if k not in pinned_life}
        if retired_here:
            vs = self.pinned or [kf[1] for kf in self.key_files().values() if not isinstance(kf, str)]
            for size, (raw, _body) in sorted(self.notes.items()):
                try:
                    late = beyond_lifetime(verify_note(raw, vs).verified_by, size, retired_here)
                except EvidenceError as e:
                    late = str(e)
                if late is not None:
                    if self.pinned:
                        self.res.trusted = False
                    self.add("checkpoint-signature", False, late, checkpoint_path(size))
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

    def check_note_lines(self) -> None:
        """Signed-note rules skip unknown signers; in a case file those lines would be bytes nobody vouches for."""
        known = {(x.name, x.key_id) for x in self.verifiers}
        for size, (raw, _) in sorted(self.notes.items()):
            try:
                v = verify_note(raw, self.verifiers)
            except EvidenceError:
                continue  # reported by the checkpoint checks
            foreign = [s for s in v.signatures if (s.name, s.key_id) not in known]
            if foreign:
                self.add("checkpoint-signature", False, f"carries {len(foreign)} signature line(s) of keys not trusted "
                         f"here (e.g. {foreign[0].name!r})", checkpoint_path(size))

    def proven_records(self) -> set[int]:
        """Records whose signature (by a key earlier records introduce) and inclusion proof verified, with no failed check."""
        failed = {c.where for c in self.res.checks if not c.ok}
        sig = {c.where for c in self.res.checks if c.ok and c.name == "record-signature"}
        inc = {c.where for c in self.res.checks if c.ok and c.name == "inclusion-proof"}
        return {i for i in self.records if record_path(i) in sig and proof_path(i) in inc
                and record_path(i) not in failed and proof_path(i) not in failed}

    def export_records(self) -> list[int]:
        return [i for i in sorted(self.proven) if self.records[i].kind == EXPORT_KIND and self.records[i].case == self.res.case]

    def check_completeness(self) -> None:
        """The newest verified case-export record is the signed statement of what the bundle holds."""
        exports = self.export_records()
        if not exports:
            self.gap("completeness", f"no verified {EXPORT_KIND} record of case {self.res.case!r}: nothing signed says what the "
                     "bundle must contain, so a bundle that lost exhibits cannot be told from a complete one", CASE_JSON)
            return
        e = exports[-1]
        rec = self.records[e]
        where = record_path(e)
        p = rec.payload
        files = p.get("files")
        if p.get("v") != EXPORT_VERSION or not isinstance(files, dict) or not isinstance(p.get("records"), list):
            self.gap("completeness", f"export record {e} is of an older format (v{p.get('v', 1)}) that does not name "
                     "every file: export the case again", where)
            return
        listed: dict[int, str] = {}
        for item in p["records"]:
            if isinstance(item, dict) and type(item.get("index")) is int:
                listed[item["index"]] = str(item.get("leaf"))
        missing = extra = 0
        for idx in sorted(set(listed) | set(self.records)):
            if idx == e:
                continue
            if idx not in self.records:
                missing += 1
                if missing <= 20:
                    self.gap("completeness", f"record {idx} named by export record {e} is missing from the bundle", record_path(idx))
            elif idx not in listed:
                extra += 1
                if extra <= 20:
                    self.gap("unbound-file", f"record {idx} is in the bundle but not in export record {e}", record_path(idx))
            elif listed[idx] != self.records[idx].leaf.hex():
                self.add("completeness", False, f"record {idx} differs from the one export record {e} names", record_path(idx))
        bad = []
        for path, v in sorted(files.items()):
            if not (isinstance(v, dict) and isinstance(v.get("sha256"), str) and re.fullmatch(r"[0-9a-f]{64}", v["sha256"])
                    and type(v.get("bytes")) is int):
                bad.append(path)
                continue
            self.expect_file(path, v["sha256"], v["bytes"], f"export record {e}")
            if path not in self.z:
                missing += 1
                if missing <= 40:
                    self.gap("completeness", f"named by export record {e} ({v['bytes']} bytes) but missing from the bundle", path)
        if bad:
            self.add("completeness", False, f"export record {e} has malformed file entries, e.g. {bad[0][:80]!r}", where)
            return
        self.export = rec
        self.res.export_record = e
        if not missing and not extra:
            self.add("completeness", True, f"every one of the {len(listed)} records and {len(files)} files named by "
                     f"export record {e} is present", where)

    def check_wacz_signature(self) -> None:
        """The WACZ ``signedData``: by the key the export record names, introduced by a verified ``wacz-key`` record.

        It adds nothing to what the records prove (datapackage.json binds
        nothing); it is checked so that the signature ReplayWeb.page shows
        is never one this verifier would not stand behind.
        """
        where = DATAPACKAGE_DIGEST
        kid = self.export.payload.get("wacz_key") if self.export is not None else None
        try:
            raw_d = self.z.read(DATAPACKAGE_DIGEST, 1 << 16) if DATAPACKAGE_DIGEST in self.z else b"{}"
            d = load_json(raw_d, DATAPACKAGE_DIGEST)
            signed = d.get("signedData") if isinstance(d, dict) else None
        except EvidenceError as e:
            self.add("wacz-signature", False, f"unusable: {e}", where)
            return
        if kid is None:
            if signed is not None and self.export is not None:
                self.add("wacz-signature", False, "signedData present, but the export record names no WACZ signing key",
                         where)
            elif signed is not None:  # no verified export record: INCOMPLETE, said by completeness
                self.gap("wacz-signature", "signedData present, but no verified export record names the key that "
                         "made it", where)
            return  # else exported before WACZ signing
        try:
            keys: dict[str, str] = {}
            for i in sorted(self.proven):
                rec = self.records[i]
                if rec.kind == waczsign.KEY_KIND and i < self.export.index:
                    k, spki = waczsign.verify_key_record(rec.payload, self.res.origin or "")
                    keys[k] = spki
            if not isinstance(kid, str) or kid not in keys:
                raise IntegrityError(f"export record {self.export.index} names WACZ signing key {str(kid)[:40]}, which "
                                     f"no verified {waczsign.KEY_KIND} record of the bundle introduces")
            raw = self.z.read(DATAPACKAGE, MAX_DATAPACKAGE)
            package = load_json(raw, DATAPACKAGE)
            created = package.get("created") if isinstance(package, dict) else None
            waczsign.verify_signed_data(signed, raw, created, keys[kid])
        except EvidenceError as e:
            self.add("wacz-signature", False, str(e), where)
            return
        self.add("wacz-signature", True, f"signedData by WACZ signing key {kid} (ECDSA P-384), introduced by the "
                 f"log's records and named by export record {self.export.index}", where)

    def plan_exhibits(self) -> None:
        """Each verified exhibit record names its manifest's digest; each manifest its artifacts' digests."""
        entries = {x.get("index"): x for x in self.case.get("exhibits") or [] if isinstance(x, dict)}
        case_exhibits = sorted(i for i, r in self.records.items() if r.kind == "exhibit" and r.case == self.res.case)
        for idx in sorted(set(entries) - set(case_exhibits), key=str):
            self.add("manifest", False, f"{CASE_JSON} lists exhibit {idx}, which is not an exhibit record of this case", CASE_JSON)
        for idx in case_exhibits:
            if idx not in self.proven:
                self.res.unproven_exhibits.append({"index": idx, "why": "its record did not verify"})
                continue
            rec = self.records[idx]
            m = rec.payload.get("manifest") if isinstance(rec.payload.get("manifest"), dict) else {}
            want, wsize = m.get("sha256"), m.get("size")
            mpath = manifest_path(idx)
            self.expect_file(mpath, want, wsize, f"exhibit record {idx}")
            try:
                if mpath not in self.z:
                    raise IntegrityError(f"manifest of exhibit {idx} is missing from the bundle")
                if type(wsize) is int and self.z.size(mpath) != wsize:
                    self.refused.add(mpath)
                    raise IntegrityError(f"declares {self.z.size(mpath)} bytes, record {idx} says {wsize} (refused unread)")
                raw = self.data(mpath, MAX_MANIFEST)  # a bomb (inflating past its size) is CaseFileError: exit 2
                got = self.hashed[mpath].sha256
                if got != want:
                    raise IntegrityError(f"manifest sha256 {got}, but record {idx} says {want}")
            except IntegrityError as e:
                self.add("manifest-digest", False, str(e), mpath)
                self.res.unproven_exhibits.append({"index": idx, "why": str(e)})
                continue
            self.add("manifest-digest", True, f"sha256 {got} matches record {idx}", mpath)
            try:
                manifest = load_json(raw, mpath)
                arts = manifest["artifacts"]
                if manifest.get("case") != rec.case:
                    raise IntegrityError(f"manifest is for case {manifest.get('case')!r}")
                names_m = [(a["name"], a["sha256"]) for a in arts]
                names_r = [(a.get("name"), a.get("sha256")) for a in rec.payload.get("artifacts") or []]
                if names_m != names_r:
                    raise IntegrityError(f"manifest and record {idx} list different artifacts")
            except (EvidenceError, KeyError, TypeError) as e:
                self.add("manifest", False, f"unusable manifest: {e}", mpath)
                self.res.unproven_exhibits.append({"index": idx, "why": f"unusable manifest: {e}"})
                continue
            self.manifests[idx] = manifest
            files = (entries.get(idx) or {}).get("artifacts")
            files = files if isinstance(files, dict) else {}
            for a in arts:
                zpath = files.get(a.get("name"))
                # An artifact lives under its own exhibit's prefix, so one exhibit cannot borrow another's file;
                # a WARC stored under its own (unique) WARC-Filename is claimed by the first exhibit naming it only.
                own_warc = (isinstance(zpath, str) and zpath.startswith("archive/") and zpath not in self.artifact_of
                            and WARC_NAME.fullmatch(zpath.removeprefix("archive/")) is not None)
                if isinstance(zpath, str) and (zpath.startswith(f"archive/{idx}-") or zpath.startswith(f"evidence/exhibit-{idx}-")
                                               or own_warc):
                    self.expect_file(zpath, a.get("sha256"), a.get("size"), f"manifest of exhibit {idx}")
                    self.artifact_of[zpath] = idx

    def plan_anchors(self) -> None:
        """Anchor blobs are named by digest in their (verified) anchor records."""
        entries = {a.get("index"): a for a in self.case.get("anchors") or [] if isinstance(a, dict)}
        for idx in sorted(self.proven):
            rec = self.records[idx]
            if rec.kind != "anchor":
                continue
            digests = {rec.payload.get(f) for f in ("token_sha256", "chain_sha256", "cosignature_sha256", "receipt_sha256")}
            blobs = (entries.get(idx) or {}).get("blobs")
            for sha, path in (blobs.items() if isinstance(blobs, dict) else []):
                if sha in digests and isinstance(path, str) and re.fullmatch(
                        rf"evidence/anchor-{idx}-(token\.tsr|chain\.pem|cosignature\.txt|receipt\.bin)", path):
                    self.expect_file(path, sha, None, f"anchor record {idx}")

    def admit(self) -> None:
        """Decide, before inflating anything, which remaining entries to read at all."""
        for name in sorted(self.z.names()):
            if name in self.hashed or name in self.refused or name in (DATAPACKAGE, DATAPACKAGE_DIGEST):
                continue
            exp = self.expect.get(name)
            size = self.z.size(name)
            if not exp:
                self.refused.add(name)
                self.gap("unbound-file", f"named by no signed statement (refused unread, {size} bytes)", name)
                continue
            sizes = {x.size for x in exp if x.size is not None}
            if sizes and sizes != {size}:
                self.refused.add(name)
                src = next(x for x in exp if x.size is not None and x.size != size)
                self.add("file-digest", False, f"declares {size} bytes, but {src.source} states {src.size} (refused unread)", name)

    def check_files(self) -> None:
        """Each file read against every digest the signed statements give for it; then datapackage.json consistency."""
        for name in sorted(self.hashed, key=lambda n: (not n.startswith("evidence/"), n)):
            if name == DATAPACKAGE:
                continue
            h = self.hashed[name]
            if h.error:
                self.add("file-digest", False, h.error, name)
                continue
            exp = self.expect.get(name) or []
            wrong = [x for x in exp if x.sha256 != h.sha256 or (x.size is not None and x.size != h.size)]
            if wrong:
                x = wrong[0]
                self.add("file-digest", False, f"sha256 {h.sha256} ({h.size} bytes), but {x.source} states {x.sha256}"
                         + (f" ({x.size} bytes)" if x.size is not None else ""), name)
            elif exp:
                sources = ", ".join(dict.fromkeys(x.source for x in exp))
                self.bound[name] = sources
                self.add("file-digest", True, f"sha256 {h.sha256}, {h.size} bytes, as {sources} state(s)", name)
            if h.warc is not None:
                self.add("warc-digests", h.warc.ok, h.warc.detail() if h.warc.ok else "; ".join(h.warc.errors[:3]), name)
        if DATAPACKAGE not in self.hashed:
            return
        names = set(self.z.names()) - {DATAPACKAGE, DATAPACKAGE_DIGEST}
        bad = 0
        for name in sorted(names - set(self.listed)):
            bad += self.add("datapackage", False, f"not listed in {DATAPACKAGE}", name) is False
        for p in sorted(set(self.listed) - names):
            bad += self.add("datapackage", False, f"listed in {DATAPACKAGE} but missing from the ZIP", p) is False
        for name in sorted(names & set(self.listed)):
            want, wn = self.listed[name]
            h = self.hashed.get(name)
            if h is not None and h.sha256 is not None and (h.sha256, h.size) != (want, wn):
                bad += self.add("datapackage", False, f"sha256 {h.sha256} ({h.size} bytes), but {DATAPACKAGE} says "
                                f"{want} ({wn} bytes)", name) is False
            elif h is None and self.z.size(name) != wn:
                bad += self.add("datapackage", False, f"{self.z.size(name)} bytes, but {DATAPACKAGE} says {wn}", name) is False
        if not bad:
            self.add("datapackage", True, f"lists all {len(names)} files with their digests (consistency only: it binds nothing)", DATAPACKAGE)

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
            elif idx in self.manifests and not (isinstance(x.get("artifacts"), dict) and set(x["artifacts"]) == {
                    a.get("name") for a in self.manifests[idx]["artifacts"]}):
                bad.append(f"exhibit {idx} artifacts")
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
                        or getattr(self.hashed.get(str(path)), "sha256", None) != sha:
                    bad.append(f"anchor {idx} blob {path}")
        roots = c.get("tsa_roots") or []
        if roots != [f"evidence/tsa-root-{n}.pem" for n in range(1, len(roots) + 1)]:
            bad.append("tsa_roots")
        e = c.get("export_record")
        exports = self.export_records()
        if e != (exports[-1] if exports else None):
            bad.append(f"export_record {e!r} is not the newest verified export record of the case ({exports[-1] if exports else None})")
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
        for idx, manifest in sorted(self.manifests.items()):
            rec = self.records[idx]
            mpath = manifest_path(idx)
            arts = manifest["artifacts"]
            info = manifest.get("info") or {}
            files = (entries.get(idx) or {}).get("artifacts")
            files = files if isinstance(files, dict) else {}
            summary: dict[str, Any] = {
                "index": idx, "url": info.get("url"), "final_url": info.get("final_url"), "title": info.get("title"),
                "operator": info.get("operator"), "started": info.get("started"), "ended": info.get("ended"),
                "time": rec.time, "key_id": rec.key_id, "manifest": mpath, "manifest_sha256": self.hashed[mpath].sha256,
                "artifacts": [], "screenshot": None, "anchor": None, "proven": False,
            }
            shots: dict[str, str] = {}
            proven = mpath in self.bound
            for a in arts:
                zpath = files.get(a.get("name"))
                own = isinstance(zpath, str) and self.artifact_of.get(zpath) == idx
                h = self.hashed.get(zpath) if own else None  # type: ignore[arg-type]
                if not own:
                    ok, detail = False, f"artifact {a.get('name')!r} of exhibit {idx} has no file of that exhibit in {CASE_JSON}"
                elif h is None:
                    ok, detail = False, (f"artifact {a.get('name')!r} of exhibit {idx} is missing from the bundle" if zpath not in self.z
                                         else f"artifact {a.get('name')!r} of exhibit {idx} was refused unread (wrong declared size)")
                elif h.sha256 != a.get("sha256") or h.size != a.get("size"):
                    ok, detail = False, (f"artifact {a.get('name')!r} of exhibit {idx}: file has sha256 {h.sha256} "
                                         f"({h.size} bytes), the manifest says {a.get('sha256')} ({a.get('size')} bytes)")
                else:
                    ok, detail = True, f"{a.get('name')} of exhibit {idx}: sha256 {h.sha256} matches the manifest"
                proven = proven and ok and zpath in self.bound
                self.add("artifact-digest", ok, detail, zpath if isinstance(zpath, str) else f"exhibit {idx}: {a.get('name')}")
                summary["artifacts"].append({k: a.get(k) for k in ("name", "role", "media_type", "size", "sha256")} | {"path": zpath, "ok": ok})
                if ok and str(a.get("role", "")).startswith("screenshot") and isinstance(zpath, str):
                    shots[str(a.get("role"))] = zpath
            summary["screenshot"] = shots.get("screenshot-viewport") or shots.get("screenshot-full") or next(iter(shots.values()), None)
            summary["proven"] = proven
            self.res.exhibits.append(summary)

    def check_payload_claims(self) -> None:
        """A WARC record stored by reference: its payload must be that artifact of the same exhibit, digest and size."""
        for summary in self.res.exhibits:
            idx = summary["index"]
            arts = {a["name"]: a for a in summary["artifacts"] if isinstance(a.get("name"), str)}
            for w in summary["artifacts"]:
                h = self.hashed.get(w["path"]) if isinstance(w.get("path"), str) else None
                if h is None or h.warc is None:
                    continue
                for c in h.warc.claims:
                    a = arts.get(c.name)
                    if a is None:
                        ok, why = False, f"{c.record} stores the payload of {c.uri} as artifact {c.name!r}, which exhibit {idx} does not hold"
                    elif c.alg != "sha256" or c.digest.hex() != a.get("sha256") or (c.length is not None and c.length != a.get("size")):
                        ok, why = False, (f"{c.record} names artifact {c.name!r} with {c.alg} {c.digest.hex()} ({c.length} bytes), "
                                          f"but the manifest holds sha256 {a.get('sha256')} ({a.get('size')} bytes)")
                    elif not a.get("ok"):
                        ok, why = False, f"{c.record} names artifact {c.name!r}, whose file does not match the manifest"
                    else:
                        ok, why = True, f"{c.record}: payload of {c.uri} is artifact {c.name} (sha256 {c.digest.hex()})"
                    self.add("warc-payload-artifact", ok, why, w["path"])
                    if not ok:
                        summary["proven"] = False

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
            elif self.key_roles.get(rec.key_id) != "officer":
                ok, why = False, f"signed by key {rec.key_id}, a {self.key_roles.get(rec.key_id)} key, not an officer's"
            elif "manifest_sha256" in rec.payload and rec.payload["manifest_sha256"] != (
                    m.get("sha256") if isinstance(m := ex.payload.get("manifest"), dict) else None):
                ok, why = False, f"attestation names another manifest digest than exhibit record {target}"
            else:
                why = f"exhibit {target} attested by {officer} (key {rec.key_id})"
            if ok and rec.payload.get("at_capture") is True:
                why += ", at capture"
            self.add("attestation", ok, why, record_path(idx))
            if ok:
                self.res.attestations.append({"index": idx, "exhibit_index": target, "officer": rec.payload.get("officer"),
                                              "time": rec.time, "key_id": rec.key_id, "statement": rec.payload.get("statement"),
                                              "at_capture": rec.payload.get("at_capture") is True})

    def check_crawls(self) -> None:
        """Each page a crawl record names is an earlier exhibit of this case, present and proven here."""
        proven = set(self.res.proven_exhibits())
        for idx, rec in sorted(self.records.items()):
            if rec.kind != "crawl" or rec.case != self.res.case:
                continue
            pages = rec.payload.get("pages")
            named = [p.get("exhibit_index") for p in pages if isinstance(p, dict)] if isinstance(pages, list) else None
            if named is None:
                self.add("crawl", False, "crawl record has no list of pages", record_path(idx))
                continue
            named = [i for i in named if i is not None]  # pages that failed have no exhibit
            bad = next((i for i in named if type(i) is not int or not (
                (ex := self.records.get(i)) is None or (ex.kind == "exhibit" and ex.case == rec.case and i < idx))), None)
            if bad is not None:
                self.add("crawl", False, f"crawl record names {bad!r} as a page's exhibit: not an earlier exhibit of case {rec.case}", record_path(idx))
                continue
            missing = [i for i in named if i not in proven]
            if missing:
                self.gap("crawl", f"crawl record names exhibit(s) {', '.join(map(str, missing[:10]))} not present and proven in this bundle", record_path(idx))
                continue
            self.add("crawl", True, f"crawl of {len(named)} page(s) from {rec.payload.get('start_url')}: every exhibit present and proven", record_path(idx))

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

            ex_idx = p.get("exhibit_index") if p.get("type") == "exhibit-deposit" else None
            if type(ex_idx) is int:
                ex = self.records.get(ex_idx)
                why = None
                if ex is None or ex.kind != "exhibit" or ex_idx >= idx:
                    why = f"exhibit deposit names record {ex_idx}, which is not an earlier exhibit in the bundle"
                elif ex.leaf.hex() != p.get("exhibit_leaf") or (
                        m.get("sha256") if isinstance(m := ex.payload.get("manifest"), dict) else None) != p.get("manifest_sha256"):
                    why = f"exhibit deposit names another version or manifest of exhibit record {ex_idx}"
                if why:
                    self.add("anchor-exhibit-deposit", False, why, where)
                    continue
                # The deposited document is the exhibit's manifest, bound by the exhibit record.
                blobs = {**blobs, p["manifest_sha256"]: manifest_path(ex_idx)}

            def load(digest: str, blobs: dict[str, Any] = blobs) -> bytes:
                path = blobs.get(digest)
                if not isinstance(path, str):
                    raise KeyError(f"no file for sha256:{digest[:16]}...")
                try:
                    return self.data(path, 16 << 20)
                except EvidenceError as e:
                    raise KeyError(str(e)) from None

            note_raw = self.notes[size][0]
            chk = check_anchor_record(p, load, note_raw, roots=roots, witnesses=self.witnesses, deposits=self.deposits,
                                      where=where, now=self.now)
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
                                     "files": sorted(v for v in blobs.values() if isinstance(v, str) and "/anchor-" in v),
                                     **({"exhibit_index": ex_idx, "manifest_sha256": p.get("manifest_sha256"),
                                         "reference": p.get("reference")} if type(ex_idx) is int else {})})
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

    def check_bound(self) -> None:
        """Every file bound to a signed statement; with an export record, exactly the files it names."""
        for idx in sorted(self.proven):
            self.bound[record_path(idx)] = f"its own signature and inclusion proof (record {idx})"
            self.bound[proof_path(idx)] = f"verification against the signed case checkpoint (record {idx})"
        for size in sorted(self.notes):
            path = checkpoint_path(size)
            if path not in self.reported:
                self.bound[path] = "its signature"
        for c in list(self.res.checks):
            if c.name == "consistency" and c.ok and c.where:
                try:
                    old, new, hashes = parse_consistency(self.data(c.where, MAX_PROOF).decode("utf-8"))
                    ok = c.where == consistency_path(old, new) and \
                        self.data(c.where, MAX_PROOF) == format_consistency(old, new, hashes).encode()
                except (EvidenceError, UnicodeDecodeError):
                    ok = False
                if ok:
                    self.bound[c.where] = f"verification between signed checkpoints {old} and {new}"
                else:
                    self.add("consistency", False, "verifies but is not in the exact form evidence-chain writes", c.where)
        key_ok = {c.where for c in self.res.checks if c.name == "key-file" and c.ok}
        for path, kf in self.key_files().items():
            if isinstance(kf, str) or path not in key_ok:
                continue
            exact = (vkey_for(kf[1].name, public_from_raw(kf[1].public_raw)) + "\n").encode("utf-8")
            if self.data(path, MAX_KEY) == exact:
                self.bound.setdefault(path, f"the record that introduces key {key_id_for(kf[1].public_raw)}")
            else:
                self.add("key-file", False, "a key the records introduce, but not in the exact form evidence-chain writes", path)
        if any(c.name == "case-map" and c.ok for c in self.res.checks):
            self.bound[CASE_JSON] = "being derived exactly from the verified records and files"
        for name in sorted(self.z.names()):
            if name in self.bound and (name.startswith("archive/") or re.fullmatch(r"evidence/exhibit-[0-9]+-.+", name)) \
                    and name not in self.artifact_of:
                del self.bound[name]
                self.add("artifact-path", False, "no verified exhibit manifest names this file as one of its artifacts", name)
        if self.export is not None:
            e = self.export.index
            files = self.export.payload["files"]
            allowed = set(files) | {CASE_JSON, DATAPACKAGE, DATAPACKAGE_DIGEST}
            for i in [e, *(x["index"] for x in self.export.payload["records"] if isinstance(x, dict) and type(x.get("index")) is int)]:
                allowed |= {record_path(i), proof_path(i)}
            main = (self.res.checkpoint or {}).get("size")
            if type(main) is int:
                allowed.add(checkpoint_path(main))
                older = [int(m.group(1)) for p in files if (m := re.fullmatch(r"evidence/checkpoint-([0-9]+)\.note", p))]
                if older:
                    allowed.add(consistency_path(max(older), main))
            for name in sorted(set(self.z.names()) - allowed - self.reported):
                self.gap("unbound-file", f"not named by export record {e}", name)
        for name in sorted(self.z.names()):
            if name in (DATAPACKAGE, DATAPACKAGE_DIGEST) or name in self.bound or name in self.reported:
                continue
            self.gap("unbound-file", "no signed statement binds it", name)
        self.res.files = {n: {"sha256": self.hashed[n].sha256, "bytes": self.hashed[n].size, "bound_by": self.bound[n]}
                          for n in sorted(self.bound) if n in self.hashed and n not in self.reported}

    def summarise(self) -> None:
        """Per exhibit: the earliest verified anchor whose checkpoint covers its record."""
        for ex in self.res.exhibits:
            # An exhibit deposit vouches for its own exhibit only, not for what its checkpoint covers.
            covering = [a for a in self.res.anchors if a["ok"] and a["checkpoint_size"] > ex["index"] and a.get("time")
                        and a.get("exhibit_index", ex["index"]) == ex["index"]]
            if covering:
                first = min(covering, key=lambda a: str(a["time"]))
                ex["anchor"] = {k: first[k] for k in ("index", "type", "service", "time", "checkpoint_size", "verified", "trusted")}
