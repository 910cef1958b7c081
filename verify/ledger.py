"""Audit of a whole ledger database: every record, link, signature, root.

What is trusted: only the public keys pinned by the caller (the home's
config, or ``--trust``) and key rotations those keys signed. Everything the
database says (leaf column, nodes, keys table, checkpoints) is checked
against what the record bytes themselves imply.

Key lifetimes (``ledger.trust``): a log key rotated away by the record at
index r signs records up to index r and checkpoints up to size r + 1, whether
the retirement is known from the pinned trust (a retired key with its
lifetime) or from the rotation record in the ledger; a ledger that retires a
pinned key at another record than the pinned lifetime says is another history.

Signature checks are independent per record, so they run on a process pool
(both cores), each worker reading its own index ranges from the database and
returning per record only the leaf, the link and what the key history needs;
the chain, key history and Merkle tree are sequential and run in this
process over those results, in index order, a few ranges in flight at once
(bounded memory).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING, Any

from ledger import merkle
from ledger.canonical import loads
from ledger.checkpoint import Checkpoint
from ledger.errors import EvidenceError
from ledger.keys import key_id_for, public_from_raw
from ledger.note import Verifier, verify_note
from ledger.record import GENESIS_PREV, parse_record, record_leaf_hash
from ledger.statements import verify_key_add, verify_rotation
from ledger.trust import Trust, beyond_lifetime, lifetimes

from .result import AuditResult, Check, Problem

if TYPE_CHECKING:
    # Only a type: the audit reads a store it is handed, and importing verify
    # must not load the database layer.
    from ledger.store import Store

CHUNK = 4000
MAX_PROBLEMS = 1000
_PARALLEL_FROM = 20000  # below this, a pool costs more than it saves

# Per-record outcome computed by a worker: index, leaf, stored leaf matches,
# prev, key_id, kind, payload (only for key-add, key-rotation, attestation),
# error text or None.
Outcome = tuple[int, bytes, bool, str, str, str, Any, str | None]

_worker_keys: dict[str, Any] = {}
_worker_store: list[Any] = []  # the worker process's own connection to the ledger


def _init_worker(keys: dict[str, bytes], store_type: Any = None, url: str | None = None) -> None:
    _worker_keys.clear()
    for kid, raw in keys.items():
        try:
            _worker_keys[kid] = public_from_raw(raw)
        except EvidenceError:
            pass
    if store_type is not None:
        # Each worker reads its own ranges: record bodies never pass through
        # the parent, which only merges the results in index order.
        _worker_store[:] = [store_type(url, check=False)]


def _pool_range(lo: int, hi: int) -> list[Outcome]:
    return _check_range(_worker_store[0], lo, hi)


def _check_range(store: Store, lo: int, hi: int) -> list[Outcome]:
    """Form, signature, leaf of the stored records with lo <= index < hi."""
    out: list[Outcome] = []
    for idx, stored_leaf, body in _stored_rows(store, lo, hi):
        body = _as_bytes(body)
        leaf = record_leaf_hash(body)
        ok = leaf == _as_bytes(stored_leaf)
        try:
            # One parse: the signed bytes are cut from the stored bytes (Record.unsigned).
            rec = parse_record(body, expect_index=idx)
        except EvidenceError as e:
            out.append((idx, leaf, ok, "", "", "", None, str(e)))
            continue
        err = None
        pub = _worker_keys.get(rec.key_id)
        if pub is None:
            err = f"signed by unknown key {rec.key_id}"
        else:
            try:
                rec.verify(pub)
            except EvidenceError as e:
                err = str(e).split(": ", 1)[-1] + f" (key {rec.key_id})"
        # Payloads the sequential pass needs: key changes and attestations.
        rot = rec.payload if rec.kind in ("key-rotation", "key-add", "attestation") else None
        out.append((idx, leaf, ok, rec.prev, rec.key_id, rec.kind, rot, err))
    return out


def _stored_rows(store: Store, lo: int, hi: int) -> list[tuple[Any, Any, Any]]:
    """(idx, leaf, body) of the records with lo <= idx < hi, in index order.

    Straight from the driver: SQLAlchemy's row objects and result processors
    cost a third of what the signature check does per record.
    """
    m = "?" if store.engine.dialect.paramstyle == "qmark" else "%s"
    raw = store.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute(f"SELECT idx, leaf, body FROM records WHERE idx >= {m} AND idx < {m} ORDER BY idx", (lo, hi))
        rows = cur.fetchall()
        cur.close()
        return rows
    finally:
        raw.close()


def _as_bytes(value: Any) -> bytes:
    # A tampered SQLite row can hold TEXT where BLOB belongs (or NULL): that
    # record is reported, the audit does not crash on it (as Store's reads do).
    if type(value) is bytes:
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    return b"" if value is None else bytes(value)


def audit_store(
    store: Store,
    trusted_vkeys: Trust | Sequence[str],
    *,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> AuditResult:
    """Recompute and check everything in ``store``; never raises for bad data."""
    result = AuditResult()
    problems = result.problems

    def problem(index: int | None, what: str) -> None:
        if len(problems) < MAX_PROBLEMS:
            problems.append(Problem(index, what))
        else:
            result.truncated = True

    verifiers = Trust.of(trusted_vkeys).verifiers
    active: dict[str, bytes] = {key_id_for(v.public_raw): v.public_raw for v in verifiers}
    # key id -> last valid tree size: pinned retirements, then the ledger's own rotations.
    pinned_life = lifetimes(verifiers)
    life: dict[str, int] = dict(pinned_life)
    roles: dict[str, str] = {}  # key_id -> role, for keys added by key-add records
    names: dict[str, str] = {}  # key_id -> name, for keys added by key-add records
    attestations: list[tuple[int, Any]] = []
    candidates = dict(store.keys())
    candidates.update(active)

    size = store.size()
    result.size = size
    cps = store.checkpoints()
    cp_at = {c.size: c for c in cps}
    edge = merkle.CompactRange()
    expect = 0
    prev = GENESIS_PREV
    nodes_ok = True
    if 0 in cp_at:
        _check_root(cp_at[0], merkle.EMPTY_ROOT, verifiers, life, problem)

    def outcomes() -> Iterator[list[Outcome]]:
        ranges = [(lo, min(lo + CHUNK, size)) for lo in range(0, size, CHUNK)]
        n = workers if workers is not None else (2 if size >= _PARALLEL_FROM else 0)
        if n <= 0:
            _init_worker(candidates)
            for lo, hi in ranges:
                yield _check_range(store, lo, hi)
            return
        ctx = multiprocessing.get_context("spawn")
        init = (candidates, type(store), store.url)
        with ProcessPoolExecutor(n, mp_context=ctx, initializer=_init_worker, initargs=init) as pool:
            pending: list[Any] = []
            for lo, hi in ranges:
                pending.append(pool.submit(_pool_range, lo, hi))
                # Keep a few ranges in flight: bounded memory, every core busy.
                if len(pending) >= 2 * n + 2:
                    yield pending.pop(0).result()
            for fut in pending:
                yield fut.result()

    for results in outcomes():
        made: dict[int, dict[int, bytes]] = {}
        for idx, leaf, leaf_ok, rprev, kid, kind, rot, err in results:
            if idx != expect:
                problem(expect, f"missing: the next stored record is index {idx}")
                expect = idx
                prev = "?"
            if not leaf_ok:
                problem(idx, "stored leaf hash does not match the record bytes")
            if err is not None:
                problem(idx, err)
            elif rprev != prev and prev != "?":
                problem(idx, f"prev {rprev[:16]}... does not link to record {idx - 1}")
            if err is None:
                if kid in life and idx >= life[kid]:
                    problem(idx, f"signed by key {kid}, which is not trusted at this point: it was retired by record {life[kid] - 1}")
                elif kid not in active:
                    problem(idx, f"signed by key {kid}, which is not trusted at this point")
                elif active[kid] != candidates.get(kid):
                    problem(idx, f"key {kid} in the database differs from the trusted key")
                elif roles.get(kid) == "officer" and kind != "attestation":
                    problem(idx, f"officer key {kid} may sign only attestations, not {kind!r}")
                if kind == "attestation":
                    attestations.append((idx, rot))
                    named = rot.get("officer") if isinstance(rot, dict) else None
                    if roles.get(kid) != "officer" or names.get(kid) != named:
                        # An attestation speaks for the officer it names only under that officer's own key.
                        holder = f"registered to {names[kid]!r} ({roles.get(kid)})" if kid in names else "not an officer's key"
                        problem(idx, f"attestation names officer {named!r} but is signed by key {kid}, {holder}")
                if kind == "key-add" and kid in active:
                    try:
                        new_id, raw, _name, role = verify_key_add(rot)
                        active[new_id] = raw
                        roles[new_id] = role
                        names[new_id] = _name
                    except EvidenceError as e:
                        problem(idx, str(e))
                if kind == "key-rotation":
                    try:
                        raw = verify_rotation(rot)
                        if rot.get("old_key_id") != kid:
                            raise EvidenceError("key-rotation record is not signed by the key it retires")
                        if kid in pinned_life and pinned_life[kid] != idx + 1:
                            raise EvidenceError(
                                f"retires key {kid} at record {idx}, but the trusted key history retires it at "
                                f"record {pinned_life[kid] - 1}: another history of this log"
                            )
                        active.pop(kid, None)
                        active[key_id_for(raw)] = raw
                        life[kid] = idx + 1
                    except EvidenceError as e:
                        problem(idx, str(e))
            prev = leaf.hex()
            for level, nidx, h in edge.append(leaf):
                made.setdefault(level, {})[nidx] = h
            expect = idx + 1
            if expect in cp_at:
                _check_root(cp_at[expect], edge.root(), verifiers, life, problem)
        nodes_ok &= _check_nodes(store, made, {p.index for p in problems if p.index is not None}, problem)
        if progress:
            progress(expect, size)

    if expect != size:
        problem(expect if expect < size else None, f"tree size is {size} but {expect} records are stored")
    for c in cps:
        if c.size > expect:
            problem(None, f"checkpoint of size {c.size} covers records that are not in the ledger (truncated)")
    _check_consistency(store, cps, problem)
    _check_attestations(store, attestations, problem)

    first = result.first_problem
    result.checks = [
        Check("records", not any(p.index is not None for p in problems), f"{expect} records: leaf, form, signature, prev link, key", str(first.index) if first and first.index is not None else None),
        Check("merkle-nodes", nodes_ok, "stored interior nodes match the recomputed tree"),
        Check("checkpoints", not any(p.what.startswith("checkpoint") for p in problems), f"{len(cps)} signed checkpoint(s): signature, root, consistency"),
    ]
    return result


def _check_root(
    cp: Any, root: bytes, verifiers: list[Verifier], life: dict[str, int], problem: Callable[[int | None, str], None]
) -> None:
    where = f"checkpoint of size {cp.size}"
    try:
        verified = verify_note(cp.note, verifiers)
        body = Checkpoint.parse(verified.text)
    except EvidenceError as e:
        problem(None, f"{where}: {e}")
        return
    why = beyond_lifetime(verified.verified_by, cp.size, life)
    if why is not None:
        problem(None, why)
    if body.size != cp.size or body.root != cp.root:
        problem(None, f"{where}: stored size/root differ from the signed note")
    if body.root != root:
        problem(None, f"{where}: signed root {body.root.hex()} but the records give {root.hex()}")


def _check_nodes(
    store: Store, made: dict[int, dict[int, bytes]], bad: set[int], problem: Callable[[int | None, str], None]
) -> bool:
    ok = True
    for level, want in made.items():
        lo, hi = min(want), max(want) + 1
        have = store.nodes_in(level, lo, hi)
        for nidx, h in want.items():
            if have.get(nidx) != h:
                ok = False
                lo_leaf, hi_leaf = nidx << level, (nidx + 1) << level
                # A node over a record already reported bad differs because of
                # that record; only a node over good records is its own problem.
                if not any(lo_leaf <= i < hi_leaf for i in bad):
                    problem(lo_leaf, f"stored Merkle node (level {level}, index {nidx}) is wrong or missing")
    return ok


def _check_attestations(store: Store, items: list[tuple[int, Any]], problem: Callable[[int | None, str], None]) -> None:
    """An attestation must name an earlier exhibit record by its exact leaf."""
    for idx, p in items:
        target = p.get("exhibit_index") if isinstance(p, dict) else None
        stored = store.record(target) if isinstance(target, int) and 0 <= target < idx else None
        if stored is None or stored.kind != "exhibit":
            problem(idx, f"attestation refers to record {target!r}, which is not an earlier exhibit")
        elif stored.leaf.hex() != p.get("exhibit_leaf"):
            problem(idx, f"attestation's exhibit leaf does not match record {target}")
        elif "manifest_sha256" in p:
            try:
                manifest = (loads(stored.body).get("payload") or {}).get("manifest") or {}
            except (EvidenceError, ValueError, AttributeError):
                continue  # an unreadable exhibit record is its own problem
            if not isinstance(manifest, dict) or manifest.get("sha256") != p["manifest_sha256"]:
                problem(idx, f"attestation's manifest digest does not match exhibit record {target}")


def _check_consistency(store: Store, cps: list[Any], problem: Callable[[int | None, str], None]) -> None:
    for a, b in zip(cps, cps[1:]):
        if a.size == 0:
            continue
        try:
            proof = store.consistency_proof(a.size, b.size)
            merkle.verify_consistency(a.size, b.size, proof, a.root, b.root)
        except EvidenceError as e:
            problem(None, f"checkpoint of size {b.size} is not consistent with size {a.size}: {e}")
