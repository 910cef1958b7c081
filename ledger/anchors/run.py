"""Anchor a ledger's latest checkpoint, and re-check stored anchors offline.

    results = anchor_checkpoint(led, tsa_urls=[url], roots=load_roots([pem]),
                                witnesses=[Witness.parse("vkey@http://...")],
                                deposits=[HttpJsonDeposit("notary", url)])

One anchor = one ``kind: "anchor"`` record, appended after its bytes are in
the artifact store (token, chain, cosignature, receipt: content addressed).
Every anchor is verified before anything is stored; a failed one leaves no
blob reference and no record. Anchors cover a checkpoint, and a checkpoint
covers every record before it, so one anchor vouches for all records up to
its size, however many that is.

The anchor records themselves grow the tree. ``needs_anchor`` therefore
counts only other records as growth, or a scheduled job would anchor its
own anchors forever.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cryptography import x509

from ledger.digest import sha256_hex
from ledger.errors import EvidenceError, IntegrityError, UsageError
from ledger.record import parse_record

from ..checkpoint import Checkpoint
from ..note import CosignatureVerifier
from .deposit import DepositAdapter, Receipt, submit_and_verify
from .errors import ReceiptError, WitnessConflict
from .tsa import timestamp, verify_timestamp
from .witness import (
    Cosignature,
    WitnessClient,
    WitnessSizeConflict,
    note_body,
    signature_lines,
    verify_cosignatures,
)

if TYPE_CHECKING:
    from ..log import Ledger

ANCHOR_KIND = "anchor"
#: ``exhibit-deposit``: one exhibit's manifest digest deposited with a service (``--exhibits``);
#: its record also names the checkpoint signed in the same run, which covers the exhibit.
EXHIBIT_DEPOSIT = "exhibit-deposit"
TYPES = ("rfc3161", "witness", "deposit", EXHIBIT_DEPOSIT)


@dataclass(frozen=True)
class Witness:
    """A witness to ask (submission URL) and the key its cosignatures must verify under."""

    url: str
    verifier: CosignatureVerifier

    @property
    def name(self) -> str:
        return self.verifier.name

    @classmethod
    def parse(cls, spec: str) -> Witness:
        """``VKEY@URL``: the witness's cosignature vkey, then its submission prefix."""
        m = re.fullmatch(r"(.+)@(https?://\S+)", spec.strip())
        if not m:
            raise UsageError(f"witness {spec!r} must be VKEY@http(s)://HOST/PREFIX")
        return cls(m.group(2), CosignatureVerifier.parse(m.group(1)))


@dataclass(frozen=True)
class AnchorResult:
    type: str
    service: str  # TSA URL, witness name, deposit service name
    record_index: int | None = None
    payload: dict[str, Any] | None = None
    error: EvidenceError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "service": self.service,
            "ok": self.ok,
            "record_index": self.record_index,
            "payload": self.payload,
            "error": None if self.error is None else str(self.error),
        }


def anchor_checkpoint(
    ledger: Ledger,
    *,
    tsa_urls: Sequence[str] = (),
    roots: Sequence[x509.Certificate] = (),
    hash_alg: str = "sha256",
    witnesses: Sequence[Witness] = (),
    deposits: Sequence[DepositAdapter] = (),
    timeout: float = 10.0,
    deadline: float = 30.0,
    strict: bool = False,
    exhibits: bool = False,
) -> list[AnchorResult]:
    """Sign (or reuse) a checkpoint of the current tree, anchor it everywhere asked, record each.

    Services are independent: one that fails is reported in its result and
    the others still count (redundancy). Raises the first error when none
    succeeded, or when any failed and ``strict``.

    With ``exhibits``, every deposit service also receives the manifest
    digest of each exhibit it does not hold yet (``exhibit-deposit`` anchors),
    so the service's own record names the exhibit's digest directly.
    """
    if not (tsa_urls or witnesses or deposits):
        raise UsageError("nothing to anchor with: give at least one TSA, witness or deposit service")
    if exhibits and not deposits:
        raise UsageError("--exhibits deposits exhibits with the deposit services: give --deposit-config")
    if tsa_urls and not roots:
        raise UsageError(
            "no TSA root certificates configured (pass --tsa-root CA.pem or set EVIDENCE_TSA_ROOTS)"
        )
    cp = ledger.checkpoint()
    note = cp.note.encode("utf-8")
    base = {
        "checkpoint_origin": ledger.origin,
        "checkpoint_size": cp.size,
        "checkpoint_sha256": hashlib.sha256(note).hexdigest(),
    }
    put = ledger.artifacts.put_bytes
    staged: list[tuple[AnchorResult, dict[str, Any]]] = []
    failed: list[AnchorResult] = []

    def attempt(kind: str, service: str, make: Callable[[], dict[str, Any]]) -> None:
        try:
            staged.append((AnchorResult(kind, service), {"type": kind, **base, **make()}))
        except EvidenceError as e:
            failed.append(AnchorResult(kind, service, error=e))

    for url in tsa_urls:

        def tsa_payload(url: str = url) -> dict[str, Any]:
            ts = timestamp(url, note, roots, hash_alg=hash_alg, timeout=timeout, deadline=deadline)
            info = ts.info
            return {
                "tsa": url,
                "tsa_name": info.tsa_name,
                "time": info.time_rfc3339,
                "hash_alg": info.hash_alg,
                "serial": str(info.serial),  # TSA serials and nonces exceed JSON's safe integers
                "nonce": None if info.nonce is None else str(info.nonce),
                "policy": info.policy,
                "token_format": "rfc3161-timestamp-resp-der",
                "token_sha256": put(ts.response).sha256,
                "chain_sha256": put(info.chain_pem).sha256,
            }

        attempt("rfc3161", url, tsa_payload)

    for w in witnesses:

        def witness_payload(w: Witness = w) -> dict[str, Any]:
            lines = _witness_cosign(ledger, w, cp.note, cp.size, timeout, deadline)
            blob = ("\n".join(c.line for c in lines) + "\n").encode("utf-8")
            return {
                "witness": w.name,
                "witness_url": w.url,
                "time": _rfc3339(lines[0].time),
                "cosignature_sha256": put(blob).sha256,
            }

        attempt("witness", w.name, witness_payload)

    for d in deposits:

        def deposit_payload(d: DepositAdapter = d) -> dict[str, Any]:
            receipt, check = submit_and_verify(d, note)
            return {
                "service": d.name,
                "time": check.time,
                "reference": check.reference,
                "receipt_media_type": receipt.media_type,
                "receipt_sha256": put(receipt.data).sha256,
            }

        attempt("deposit", d.name, deposit_payload)

    if exhibits:
        for d in deposits:
            held = deposited_exhibits(ledger, d.name)
            for rec in ledger.records_of_kind("exhibit"):
                if rec.index >= cp.size or rec.index in held:
                    continue

                def exhibit_payload(d: DepositAdapter = d, rec: Any = rec) -> dict[str, Any]:
                    m = rec.payload.get("manifest") or {}
                    with ledger.artifacts.open(m["sha256"]) as f:
                        manifest = f.read(int(m["size"]) + 1)
                    if sha256_hex(manifest) != m["sha256"]:
                        raise IntegrityError(f"the manifest of exhibit {rec.index} in the store was altered")
                    receipt, check = submit_document(d, manifest)
                    return {
                        "service": d.name,
                        "exhibit_index": rec.index,
                        "exhibit_leaf": rec.leaf.hex(),
                        "manifest_sha256": m["sha256"],
                        "time": check.time,
                        "reference": check.reference,
                        "receipt_media_type": receipt.media_type,
                        "receipt_sha256": put(receipt.data).sha256,
                    }

                attempt(EXHIBIT_DEPOSIT, f"{d.name} exhibit {rec.index}", exhibit_payload)

    results = list(failed)
    if staged:
        recs = ledger.append_anchors([p for _, p in staged])
        results = [
            AnchorResult(r.type, r.service, rec.index, p) for (r, p), rec in zip(staged, recs, strict=True)
        ] + results
    if failed and (strict or not staged):
        raise failed[0].error  # type: ignore[misc]
    return results


def deposited_exhibits(ledger: Ledger, service: str) -> set[int]:
    """Indexes of the exhibits whose manifest digest ``service`` already holds (by our records)."""
    out: set[int] = set()
    for row in ledger.store.anchor_rows():
        if row["type"] != EXHIBIT_DEPOSIT or row["service"] != service:
            continue
        stored = ledger.store.record(row["record_idx"])
        if stored is None:
            continue
        idx = parse_record(stored.body, expect_index=row["record_idx"]).payload.get("exhibit_index")
        if type(idx) is int:
            out.add(idx)
    return out


def submit_document(adapter: DepositAdapter, document: bytes) -> tuple[Receipt, Any]:
    """Deposit a document other than a checkpoint (an exhibit manifest); refuse a receipt that does not check.

    An adapter may offer ``submit_document`` to send only the document's
    digest; else its ``submit`` gets the document's bytes.
    """
    send = getattr(adapter, "submit_document", None)
    receipt = send(document) if callable(send) else adapter.submit(document)
    check = adapter.verify(receipt, document)
    if not check.ok:
        raise ReceiptError(check.detail)
    return receipt, check


def _witness_cosign(
    ledger: Ledger, w: Witness, signed_note: str, size: int, timeout: float, deadline: float
) -> list[Cosignature]:
    """add-checkpoint, learning the witness's old size from a 409 when we do not know it."""
    client = WitnessClient(w.url, timeout=timeout, deadline=deadline)
    old, proof = 0, list[bytes]()
    for _ in range(2):
        try:
            lines = client.add_checkpoint(signed_note, old, proof)
            break
        except WitnessSizeConflict as e:
            if e.witness_size > size:
                raise WitnessConflict(
                    f"witness {w.name} has cosigned size {e.witness_size} of this log, more than its "
                    f"{size} records: the log was truncated or rolled back"
                ) from None
            old = e.witness_size
            proof = ledger.store.consistency_proof(old, size) if 0 < old < size else []
    else:
        raise WitnessConflict(f"witness {w.name} keeps changing its size for this log; try again")
    # Verify before storing: only cosignatures from the configured key count.
    return verify_cosignatures(signed_note, [w.verifier], 1, extra_lines=lines)


# -- offline re-check --------------------------------------------------------------


@dataclass(frozen=True)
class AnchorCheck:
    """Result of re-checking one anchor record; shaped like verify.result.Check."""

    name: str
    ok: bool
    detail: str = ""
    where: str | None = None
    verified: bool = True  # False: nothing to check against (no root, key or adapter given)
    time: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "detail": self.detail,
            "where": self.where,
            "verified": self.verified,
            "time": self.time,
        }


BlobLoader = Callable[[str], bytes]


def check_anchor_record(
    payload: Mapping[str, Any],
    blob_loader: BlobLoader,
    checkpoint_note: str | bytes,
    *,
    roots: Sequence[x509.Certificate] = (),
    witnesses: Sequence[CosignatureVerifier] = (),
    deposits: Mapping[str, DepositAdapter] | Iterable[DepositAdapter] = (),
    where: str | None = None,
    now: float | None = None,
) -> AnchorCheck:
    """Re-verify a stored anchor against its checkpoint note; never raises for bad data.

    ``checkpoint_note`` is the signed note of size ``payload["checkpoint_size"]``
    (checking the log's own signature on it is the caller's job).
    """
    kind = str(payload.get("type"))
    name = f"anchor-{kind}"
    note = checkpoint_note.encode("utf-8") if isinstance(checkpoint_note, str) else checkpoint_note
    adapters = dict(deposits) if isinstance(deposits, Mapping) else {d.name: d for d in deposits}
    try:
        if kind not in TYPES:
            raise IntegrityError(f"unknown anchor type {kind!r}")
        if hashlib.sha256(note).hexdigest() != payload.get("checkpoint_sha256"):
            raise IntegrityError(
                f"checkpoint of size {payload.get('checkpoint_size')} is not the note this anchor covers"
            )
        if Checkpoint.parse(note_body(note.decode("utf-8"))).size != payload.get("checkpoint_size"):
            raise IntegrityError("anchor names another checkpoint size than its note")
        if kind == "rfc3161":
            return _check_tsa(name, payload, blob_loader, note, roots, where)
        if kind == "witness":
            return _check_witness(name, payload, blob_loader, note, witnesses, where, now)
        if kind == EXHIBIT_DEPOSIT:
            manifest = _blob(blob_loader, payload["manifest_sha256"], f"manifest of exhibit {payload.get('exhibit_index')}")
            return _check_deposit(name, payload, blob_loader, manifest, adapters, where)
        return _check_deposit(name, payload, blob_loader, note, adapters, where)
    except EvidenceError as e:
        return AnchorCheck(name, False, str(e), where, True, payload.get("time"))  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError) as e:
        return AnchorCheck(name, False, f"anchor record is malformed: {e}", where, True)


def _blob(loader: BlobLoader, digest: Any, what: str) -> bytes:
    if not isinstance(digest, str):
        raise IntegrityError(f"anchor has no {what} digest")
    try:
        data = loader(digest)
    except (OSError, KeyError) as e:
        raise IntegrityError(f"{what} sha256:{digest[:16]}... is missing ({e})") from None
    if hashlib.sha256(data).hexdigest() != digest:
        raise IntegrityError(f"{what} sha256:{digest[:16]}... was altered")
    return data


def _check_tsa(
    name: str,
    p: Mapping[str, Any],
    load: BlobLoader,
    note: bytes,
    roots: Sequence[x509.Certificate],
    where: str | None,
) -> AnchorCheck:
    token = _blob(load, p["token_sha256"], "timestamp token")
    _blob(load, p["chain_sha256"], "TSA certificate chain")
    if not roots:
        return AnchorCheck(
            name,
            True,
            f"token from {p['tsa']} stored intact; no TSA roots given to verify it",
            where,
            False,
            p["time"],
        )
    nonce = None if p.get("nonce") is None else int(p["nonce"])
    info = verify_timestamp(token, note, roots, nonce=nonce, hash_alg=p["hash_alg"])
    if info.time_rfc3339 != p["time"] or str(info.serial) != p["serial"]:
        raise IntegrityError(
            f"token says {info.time_rfc3339} serial {info.serial}, the record says {p['time']} serial {p['serial']}"
        )
    return AnchorCheck(
        name, True, f"timestamp by {info.tsa_name} at {info.time_rfc3339}", where, True, info.time_rfc3339
    )


def _check_witness(
    name: str,
    p: Mapping[str, Any],
    load: BlobLoader,
    note: bytes,
    witnesses: Sequence[CosignatureVerifier],
    where: str | None,
    now: float | None,
) -> AnchorCheck:
    lines = signature_lines(_blob(load, p["cosignature_sha256"], "cosignature").decode("utf-8"))
    trusted = [w for w in witnesses if w.name == p["witness"]]
    if not trusted:
        return AnchorCheck(
            name,
            True,
            f"cosignature from {p['witness']} stored intact; witness key not given",
            where,
            False,
            p["time"],
        )
    cosig = verify_cosignatures(note.decode("utf-8"), trusted, 1, extra_lines=lines, now=now)[0]
    if _rfc3339(cosig.time) != p["time"]:
        raise IntegrityError(f"cosignature is dated {_rfc3339(cosig.time)}, the record says {p['time']}")
    return AnchorCheck(
        name, True, f"cosigned by witness {cosig.witness} at {p['time']}", where, True, p["time"]
    )


def _check_deposit(
    name: str,
    p: Mapping[str, Any],
    load: BlobLoader,
    note: bytes,
    adapters: Mapping[str, DepositAdapter],
    where: str | None,
) -> AnchorCheck:
    data = _blob(load, p["receipt_sha256"], "deposit receipt")
    adapter = adapters.get(p["service"])
    if adapter is None:
        return AnchorCheck(
            name,
            True,
            f"receipt from {p['service']} stored intact; no adapter given to check it",
            where,
            False,
            p.get("time"),
        )
    check = adapter.verify(Receipt(data, p["receipt_media_type"], p["receipt_sha256"]), note)
    if not check.ok:
        raise IntegrityError(check.detail)
    return AnchorCheck(name, True, check.detail, where, check.offline, p.get("time"))


def audit_anchors(
    ledger: Ledger,
    *,
    roots: Sequence[x509.Certificate] = (),
    witnesses: Sequence[CosignatureVerifier] = (),
    deposits: Iterable[DepositAdapter] = (),
) -> list[AnchorCheck]:
    """Re-check every anchor record of a ledger against its stored checkpoint."""
    notes = {c.size: c.note for c in ledger.store.checkpoints()}
    adapters = {d.name: d for d in deposits}

    def load(digest: str) -> bytes:
        with ledger.artifacts.open(digest) as f:
            return f.read()

    out: list[AnchorCheck] = []
    for stored in ledger.store.iter_records(kind=ANCHOR_KIND):
        rec = parse_record(stored.body, expect_index=stored.index)
        p = rec.payload
        where = f"record {rec.index}"
        size = p.get("checkpoint_size")
        note = notes.get(size) if isinstance(size, int) else None
        if note is None or not isinstance(size, int):
            out.append(
                AnchorCheck(
                    f"anchor-{p.get('type')}",
                    False,
                    f"anchors checkpoint of size {size}, which the ledger does not hold",
                    where,
                )
            )
        elif rec.index < size:
            out.append(
                AnchorCheck(
                    f"anchor-{p.get('type')}",
                    False,
                    f"anchor record lies inside the checkpoint of size {size} it claims to anchor",
                    where,
                )
            )
        else:
            chk = check_anchor_record(p, load, note, roots=roots, witnesses=witnesses, deposits=adapters, where=where)
            if chk.ok and p.get("type") == EXHIBIT_DEPOSIT:
                why = exhibit_deposit_mismatch(p, ledger.store.record(p["exhibit_index"]) if type(p.get("exhibit_index")) is int else None)
                if why:
                    chk = AnchorCheck(chk.name, False, why, where)
            out.append(chk)
    return out


def exhibit_deposit_mismatch(payload: Mapping[str, Any], stored: Any) -> str | None:
    """Why an exhibit-deposit anchor does not match the exhibit record it names (``stored``), or None."""
    idx = payload.get("exhibit_index")
    rec = parse_record(stored.body, expect_index=idx) if stored is not None else None
    if rec is None or rec.kind != "exhibit":
        return f"exhibit deposit names record {idx!r}, which is not an exhibit here"
    if rec.leaf.hex() != payload.get("exhibit_leaf"):
        return f"exhibit deposit names another version of exhibit record {idx} (leaf mismatch)"
    if (rec.payload.get("manifest") or {}).get("sha256") != payload.get("manifest_sha256"):
        return f"exhibit deposit names another manifest digest than exhibit record {idx}"
    return None


# -- scheduling --------------------------------------------------------------------


def needs_anchor(ledger: Ledger) -> bool:
    """True when records other than anchors were added since the last anchored checkpoint.

    Anchor records for a checkpoint of size s are appended at indexes >= s,
    so only the records from the latest checkpoint on need reading.
    """
    last = ledger.store.latest_checkpoint()
    if last is None:
        return ledger.size() > 0
    anchored = False
    grew = False
    for rec in ledger.records(start=last.size):
        if rec.kind == ANCHOR_KIND:
            anchored |= rec.payload.get("checkpoint_size") == last.size
        else:
            grew = True
    if not anchored:
        return last.size > 0 or grew
    return grew


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_interval(text: str) -> float:
    """``90s``, ``10m``, ``1h``, ``1d`` (a bare number is seconds) -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text or "")
    if not m or float(m.group(1)) <= 0:
        raise UsageError(f"interval {text!r} must look like 90s, 10m, 1h or 1d")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def run_every(
    interval: float,
    job: Callable[[], Any],
    *,
    stop: threading.Event | None = None,
    on_error: Callable[[EvidenceError], None] | None = None,
    max_runs: int | None = None,
) -> int:
    """Run ``job`` now and then every ``interval`` seconds until ``stop`` is set.

    An anchoring failure (TSA down) is reported and the next round tries
    again; anything else propagates. Returns the number of rounds run.
    """
    stop = stop or threading.Event()
    runs = 0
    while not stop.is_set():
        started = time.monotonic()
        try:
            job()
        except EvidenceError as e:
            if on_error is None:
                raise
            on_error(e)
        runs += 1
        if max_runs is not None and runs >= max_runs:
            break
        stop.wait(max(0.0, interval - (time.monotonic() - started)))
    return runs


def _rfc3339(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


__all__ = [
    "ANCHOR_KIND",
    "EXHIBIT_DEPOSIT",
    "AnchorCheck",
    "AnchorResult",
    "Witness",
    "anchor_checkpoint",
    "audit_anchors",
    "check_anchor_record",
    "deposited_exhibits",
    "needs_anchor",
    "parse_interval",
    "run_every",
]
