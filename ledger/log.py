"""The ledger as callers use it: one evidence home, its signing key, its store.

    from ledger import Ledger
    led = Ledger.open()                      # EVIDENCE_HOME or ~/.evidence
    rec = led.append("custody", {"note": "handed to court"}, case="SAMR-2026-017")
    cp = led.checkpoint()                    # signed C2SP checkpoint of the tree
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.artifacts import artifact_store_for
from ledger.canonical import canonical_json, loads
from ledger.config import Home, HomeConfig, default_home, fsync_dir, passphrase_from_env, write_atomic
from ledger.errors import (
    ConfigError,
    EnvironmentProblem,
    EvidenceError,
    IntegrityError,
    KeyFileError,
    ProofError,
    RollbackError,
    SignatureError,
    UsageError,
)
from ledger.exhibit import Artifact, ArtifactFile, Exhibit, build_manifest, exhibit_payload
from ledger.keys import SigningKey, key_id_for, load_key, save_key
from ledger.record import Draft, Record, parse_record
from ledger.version import __version__

from . import merkle
from .checkpoint import Checkpoint
from .note import Verifier, parse_note, sign_note, verify_note, vkey_for

# Re-exported: these names were ledger.log's before verify needed them without the store.
from .statements import (  # noqa: F401
    KEY_ADD_DOMAIN,
    KEY_ADD_FACTS,
    KEY_ADD_FIELDS,
    ROLES,
    ROTATION_DOMAIN,
    _b64,
    _check_fact,
    _key_statement,
    key_add_facts,
    verify_key_add,
    verify_rotation,
)
from .store import SignedDraft, Store, StoredCheckpoint, safe_url, writer_lock_path
from .trust import Trust, load_retired, write_retirement

#: Written by `evidence join` in the new home: what the log's home must register.
KEY_REQUEST = "key-request.json"
DEFAULT_STATEMENT = "I attest that I witnessed this capture and that the exhibit is complete."
AT_CAPTURE_STATEMENT = "I performed this extraction and attest that the exhibit is complete."


@dataclass(frozen=True)
class Cosigner:
    """A registered officer whose key, unlocked with their own passphrase, co-signs at capture."""

    name: str
    key: SigningKey


@dataclass(frozen=True)
class AtCapture:
    """Who performs an extraction and what they declare, for the exhibits sealed with it.

    Each officer's attestation is appended in the same transaction as the
    exhibit, right after it, signed by that officer's key. ``info`` holds
    the declared facts (proves, witness, no_witness_reason, holder_note),
    which go into the exhibit's info; witness and holder_note also go into
    each attestation.
    """

    officers: tuple[Cosigner, ...] = ()
    info: dict[str, Any] | None = None
    statement: str = AT_CAPTURE_STATEMENT


class Ledger:
    def __init__(self, home: Home, config: HomeConfig, store: Store, passphrase: bytes | None):
        self.home = home
        self.config = config
        self.store = store
        self.artifacts = artifact_store_for(home.root, config.extra.get("artifacts"))
        self._passphrase = passphrase
        self._key: SigningKey | None = None
        self._registered: set[str] = set()  # key ids seen in the ledger's keys table

    # -- opening -----------------------------------------------------------

    @classmethod
    def init(
        cls,
        home: Path | str | None = None,
        *,
        passphrase: bytes | None = None,
        unencrypted: bool = False,
        origin: str | None = None,
        db_url: str | None = None,
        artifacts: str | None = None,
        continues: str | None = None,
    ) -> Ledger:
        """Create an evidence home: signing key, database, artifact store.

        ``continues`` is the signed checkpoint note of an older log that this
        one carries on (after that log's database was lost or rolled back):
        it goes verbatim into the log-init record, so the new log states, under
        its first signature, which history it follows.
        """
        h = Home(Path(home) if home else default_home())
        if h.config_path.exists():
            raise ConfigError(f"{h.root} is already an evidence home")
        passphrase = passphrase if passphrase is not None else passphrase_from_env()
        if not passphrase and not unencrypted:
            raise KeyFileError(
                "set EVIDENCE_KEY_PASSPHRASE to encrypt the signing key "
                "(or pass --no-passphrase to store it unencrypted)"
            )
        key = SigningKey.generate()
        origin = origin or f"{socket.gethostname()}/evidence-chain/{key.key_id[:8]}"
        _check_origin(origin)
        init_payload: dict[str, Any] = {"public_key": _b64(key.public_raw), "vkey": vkey_for(origin, key.public),
                                        "tool": f"evidence-chain {__version__}"}
        if continues is not None:
            init_payload["continues"] = _continuation(continues, origin)
        url = h.db_url(db_url)
        created: list[Path] = []  # removed again if anything below fails: no half-made home
        try:
            _mkdirs(h.keys_dir, created)
            save_key(key, h.keys_dir / f"{key.key_id}.key", passphrase)
            created.append(h.keys_dir / f"{key.key_id}.key")
            vkey = init_payload["vkey"]
            created.append(h.keys_dir / f"{key.key_id}.vkey")
            write_atomic(created[-1], (vkey + "\n").encode("utf-8"))
            db_file = Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None
            if db_file is not None and not db_file.exists():
                created += [db_file, Path(f"{db_file}-wal"), Path(f"{db_file}-shm"), Path(f"{db_file}-journal"),
                            Path(writer_lock_path(str(db_file)))]
            store = Store(url, create=True)
            try:
                if store.size() != 0:
                    raise ConfigError(f"database {safe_url(url)} already holds a ledger")
                cfg = HomeConfig(
                    origin=origin, key_id=key.key_id, trusted_vkeys=[vkey], db_url=db_url,
                    extra={"artifacts": artifacts} if artifacts else {},
                )
                led = cls(h, cfg, store, passphrase)
                led._key = key
                led.store.append_many(
                    [Draft("log-init", init_payload)],
                    key=key,
                    origin=origin,
                    on_locked=lambda conn, _recs: store.add_key(key.key_id, key.public_raw, origin, 0, conn),
                )
                # config.json last: a home without it is not an evidence home, so a
                # crash above leaves nothing that looks usable.
                h.save_config(cfg)
            except BaseException:
                store.dispose()
                raise
        except OSError as e:
            _remove_created(created)
            where = f" ({e.filename})" if getattr(e, "filename", None) else ""
            raise EnvironmentProblem(f"cannot create the evidence home {h.root}: {e.strerror or e}{where}") from None
        except BaseException:
            _remove_created(created)
            raise
        return led

    @classmethod
    def open(
        cls, home: Path | str | None = None, *, db_url: str | None = None, passphrase: bytes | None = None
    ) -> Ledger:
        h = Home(Path(home) if home else default_home())
        cfg = h.load_config()
        store = Store(h.db_url(db_url))
        led = cls(h, cfg, store, passphrase if passphrase is not None else passphrase_from_env())
        try:
            led.check_latest_checkpoint()
        except BaseException:
            store.dispose()
            raise
        return led

    def latest_signed(self) -> Checkpoint | None:
        """The checkpoint in the home's latest-checkpoint.note, verified; None if there is none."""
        path = self.home.checkpoint_path
        try:
            note = path.read_text("utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
        try:
            body = Checkpoint.parse(verify_note(note, self.trust().verifiers).text)
        except EvidenceError as e:
            raise IntegrityError(f"{path} is not a checkpoint signed by this home's log key: {e}") from None
        if body.origin != self.origin:
            raise IntegrityError(f"{path} is a checkpoint of log {body.origin!r}, this home is {self.origin!r}")
        return body

    def check_latest_checkpoint(self) -> None:
        """Refuse a database whose tree does not extend the last checkpoint this home signed.

        The database's own checkpoints table cannot show that it was restored
        from an older copy (the copy's table is just as old); the file kept in
        the home, outside the database, can. A home and database copied and
        rolled back together defeat it: only a witness cosignature covers that.
        """
        last = self.latest_signed()
        if last is None:
            return
        size = self.store.size()
        path = self.home.checkpoint_path
        fix = (f"restore a copy of the database whose first {last.size} records are the ones signed, or start "
               f"a new log that links to this one: `evidence --home NEW_HOME init --continues {path}`")
        if size < last.size:
            raise RollbackError(
                f"the ledger database {safe_url(self.store.url)} has {size} records, but this home signed a "
                f"checkpoint of size {last.size} ({path}): the database was rolled back or restored from an "
                f"older copy; {fix}"
            )
        _, root = self.store.root(last.size)
        if root != last.root:
            raise RollbackError(
                f"the ledger database {safe_url(self.store.url)} (size {size}) has root {root.hex()[:16]}... at "
                f"size {last.size}, but this home signed root {last.root.hex()[:16]}... for size {last.size} "
                f"({path}): the database holds another history; {fix}"
            )

    @classmethod
    def join(
        cls,
        home: Path | str | None = None,
        *,
        trust: str,
        name: str,
        db_url: str | None = None,
        passphrase: bytes | None = None,
        unencrypted: bool = False,
        artifacts: str | None = None,
    ) -> tuple[Ledger, dict[str, Any]]:
        """Create a home on another machine that writes to an existing shared ledger.

        ``trust`` is the log's verifier key (``evidence key show`` on the log's
        home): the ledger's first record must be signed by it, so a wrong
        database is refused. The new home gets its own writer key and returns
        a key request (public key + proof of possession) that the log's home
        registers with ``evidence key register``; until then it cannot
        append.
        """
        h = Home(Path(home) if home else default_home())
        if h.config_path.exists():
            raise ConfigError(f"{h.root} is already an evidence home")
        _check_name(name)
        try:
            verifier = Verifier.parse(trust)
        except EvidenceError as e:
            raise UsageError(f"--trust is not a verifier key: {e}") from None
        passphrase = passphrase if passphrase is not None else passphrase_from_env()
        if not passphrase and not unencrypted:
            raise KeyFileError(
                "set EVIDENCE_KEY_PASSPHRASE to encrypt the signing key "
                "(or pass --no-passphrase to store it unencrypted)"
            )
        url = db_url or os.environ.get("EVIDENCE_DB_URL")
        if not url:
            raise UsageError("joining needs the shared ledger's database (--db-url or EVIDENCE_DB_URL)")
        store = Store(url)
        try:
            first = store.record(0)
            init = parse_record(first.body, expect_index=0) if first else None
            if init is None or init.kind != "log-init":
                raise ConfigError(f"{safe_url(url)} has no log-init record: not a ledger to join")
            if init.origin != verifier.name or init.key_id != key_id_for(verifier.public_raw):
                raise SignatureError(
                    f"the ledger's log {init.origin} (key {init.key_id}) is not the one --trust names "
                    f"({verifier.name}, key {key_id_for(verifier.public_raw)})"
                )
            init.verify(verifier.public)
        except BaseException:
            store.dispose()
            raise
        key = SigningKey.generate()
        request = _key_statement(key, init.origin, name, "writer")
        h.root.mkdir(parents=True, exist_ok=True)
        save_key(key, h.keys_dir / f"{key.key_id}.key", passphrase)
        (h.root / KEY_REQUEST).write_text(json.dumps(request, indent=2) + "\n", "utf-8")
        extra: dict[str, object] = {"joined_as": name}
        if artifacts:
            extra["artifacts"] = artifacts
        cfg = HomeConfig(origin=init.origin, key_id=key.key_id, trusted_vkeys=[verifier.vkey], db_url=db_url, extra=extra)
        h.save_config(cfg)
        led = cls(h, cfg, store, passphrase)
        led._key = key
        return led, request

    def close(self) -> None:
        self.store.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def origin(self) -> str:
        return self.config.origin

    @property
    def key(self) -> SigningKey:
        if self._key is None:
            self._key = load_key(self.home.keys_dir / f"{self.config.key_id}.key", self._passphrase)
        return self._key

    def verifiers(self) -> list[Verifier]:
        return [Verifier.parse(v) for v in self.config.trusted_vkeys]

    def trust(self) -> Trust:
        """The log keys this home pins, each retired one with its lifetime (keys/retired/)."""
        try:
            return Trust.of([*self.verifiers(), *load_retired(self.home.keys_dir)])
        except EvidenceError as e:
            raise ConfigError(f"the keys of {self.home.root} are unusable: {e}") from None

    def trusted_keys(self) -> dict[str, bytes]:
        """key_id -> raw public key of every key pinned in this home's config."""
        return {key_id_for(v.public_raw): v.public_raw for v in self.verifiers()}

    # -- appending ---------------------------------------------------------

    def append(self, kind: str, payload: dict[str, Any], case: str | None = None) -> Record:
        return self.append_many([Draft(kind, payload, case)])[0]

    def append_many(
        self, drafts: Sequence[Draft], *, on_locked: Callable[[Any, list[Record]], None] | None = None,
        seal_key: str | None = None,
    ) -> list[Record]:
        """Append as one transaction; ``on_locked(conn, records)`` runs inside it.
        ``seal_key``: idempotency key, see ``Store.append_many`` (AlreadySealed)."""
        key = self.key
        self.check_registered(key)
        return self.store.append_many(drafts, key=key, origin=self.origin, on_locked=on_locked, seal_key=seal_key)

    def check_registered(self, key: SigningKey) -> None:
        # A record signed by a key the ledger does not list would fail every
        # audit; refuse it here, with what to do, instead.
        if key.key_id in self._registered:
            return
        if key.key_id not in self.store.keys():
            raise ConfigError(
                f"signing key {key.key_id} of {self.home.root} is not registered in the ledger: "
                f"on the log's home run `evidence key register {self.home.root / KEY_REQUEST}`"
            )
        self._registered.add(key.key_id)

    def use_signer(self, name: str) -> SigningKey:
        """Sign this process's appends with a registered writer key (a capture worker's)."""
        signers = self.config.extra.get("signers") or {}
        entry = signers.get(name) if isinstance(signers, dict) else None
        if isinstance(entry, dict) and entry.get("role") != "writer":
            raise UsageError(f"{name!r} holds an {entry.get('role')} key, which may only attest")
        self._key = self.signer_key(name)
        return self._key

    def append_anchors(self, payloads: Sequence[dict[str, Any]]) -> list[Record]:
        """Append anchor records and their anchors-table rows in one transaction."""

        def rows(conn: Any, recs: list[Record]) -> None:
            self.store.add_anchor_rows(
                conn,
                [
                    {
                        "record_idx": r.index,
                        "checkpoint_size": p["checkpoint_size"],
                        "type": p["type"],
                        "service": str(p.get("tsa") or p.get("witness") or p.get("service") or ""),
                        "time": p.get("time"),
                        "blob_sha256": p.get("token_sha256") or p.get("cosignature_sha256") or p.get("receipt_sha256"),
                        "chain_sha256": p.get("chain_sha256"),
                    }
                    for r, p in zip(recs, payloads)
                ],
            )

        drafts = [Draft("anchor", p) for p in payloads]
        return self.store.append_many(drafts, key=self.key, origin=self.origin, on_locked=rows)

    def _store_exhibit(self, case: str, files: Iterable[ArtifactFile], info: dict[str, Any]) -> tuple[Draft, dict[str, Any], str, list[Artifact]]:
        if not isinstance(case, str) or not case.strip():
            raise UsageError("an exhibit needs a case id")
        arts = []
        for f in files:
            blob = self.artifacts.put_file(f.path)
            arts.append(Artifact(f.name, f.media_type, f.role, blob.size, blob.sha256))
        # Where the originals are kept (an object store, its retention lock), signed with
        # the exhibit; a file store records nothing, so such exhibits are as before.
        storage = self.artifacts.facts([a.sha256 for a in arts])
        if storage is not None:
            info = {**info, "storage": storage}
        manifest = build_manifest(case, arts, info)
        mblob = self.artifacts.put_bytes(manifest)
        draft = Draft("exhibit", exhibit_payload(mblob.sha256, mblob.size, arts, info), case)
        return draft, loads(manifest), mblob.sha256, arts

    def seal_exhibit(
        self,
        case: str,
        artifacts: Iterable[ArtifactFile],
        info: dict[str, Any],
        *,
        on_locked: Callable[[Any, list[Record]], None] | None = None,
        at_capture: AtCapture | None = None,
        seal_key: str | None = None,
    ) -> Exhibit:
        """Store the files, then the manifest, then append the record (last).
        ``seal_key``: a task's idempotency key; raises AlreadySealed if it was sealed before."""
        return self.seal_exhibits([(case, artifacts, info)], on_locked=on_locked, at_capture=at_capture,
                                  seal_key=seal_key)[0]

    def seal_exhibits(
        self,
        items: Iterable[tuple[str, Iterable[ArtifactFile], dict[str, Any]]],
        *,
        on_locked: Callable[[Any, list[Record]], None] | None = None,
        at_capture: AtCapture | None = None,
        seal_key: str | None = None,
    ) -> list[Exhibit]:
        """Seal captured exhibits in one batch; ``at_capture`` names the officers who co-sign
        each one in the same transaction, and the facts they declare."""
        # A key that cannot sign (wrong passphrase, not registered) must fail
        # before any artifact is stored, not leave unreferenced blobs behind.
        self.check_registered(self.key)
        at = at_capture
        if at is not None:
            for o in at.officers:
                self.check_registered(o.key)
            declared = dict(at.info or {})
            if at.officers:
                declared["officers"] = [{"name": o.name, "key_id": o.key.key_id} for o in at.officers]
            items = [(c, files, {**info, **declared}) for c, files, info in items]
        staged = [self._store_exhibit(c, files, info) for c, files, info in items]
        drafts: list[Draft] = []
        positions: list[int] = []  # where each exhibit's draft is in the batch
        for s in staged:
            positions.append(len(drafts))
            drafts.append(s[0])
            for o in at.officers if at is not None else ():
                drafts.append(_at_capture_draft(at, o, positions[-1], s[0].case))
        recs = self.append_many(drafts, on_locked=on_locked, seal_key=seal_key)
        return [
            Exhibit(recs[i].index, recs[i], manifest, msha, arts)
            for i, (_, manifest, msha, arts) in zip(positions, staged)
        ]

    # -- checkpoints -------------------------------------------------------

    def checkpoint(self) -> StoredCheckpoint:
        """Sign a checkpoint of the current tree, after proving it extends the last."""
        key = self.key
        verifiers = self.verifiers()
        if vkey_for(self.origin, key.public) not in self.config.trusted_vkeys:
            raise ConfigError(
                f"this home signs with writer key {key.key_id[:8]}; checkpoints are signed with the "
                "log's key: run `evidence checkpoint` on the log's home"
            )

        def make(size: int, root: bytes, last: StoredCheckpoint | None, node: merkle.NodeSource) -> str:
            if last is not None:
                verify_note(last.note, verifiers)
                if Checkpoint.parse(_note_text(last.note)).root != last.root:
                    raise RollbackError(f"stored checkpoint of size {last.size} disagrees with its note")
                if size < last.size:
                    raise RollbackError(f"tree size {size} is below the last checkpoint ({last.size})")
                try:
                    proof = merkle.consistency_proof(last.size, size, node) if last.size else []
                    if last.size:
                        merkle.verify_consistency(last.size, size, proof, last.root, root)
                except ProofError as e:
                    raise RollbackError(
                        f"tree of size {size} is not consistent with the checkpoint of size {last.size}: {e}"
                    ) from None
            return sign_note(Checkpoint(self.origin, size, root).to_text(), self.origin, key.private)

        cp = self.store.add_checkpoint(make)
        self._keep_latest(cp)
        return cp

    def _keep_latest(self, cp: StoredCheckpoint) -> None:
        # After the commit: a crash before this leaves the file behind the
        # database, which still extends it; the reverse would refuse a good one.
        path = self.home.checkpoint_path
        try:
            # Two processes of one home may checkpoint at once; the file must
            # only ever grow, so compare and replace under a lock.
            with open(self.home.root / ".latest-checkpoint.lock", "a") as lock:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
                have = self.latest_signed()
                if have is not None and have.size >= cp.size:
                    return
                write_atomic(path, cp.note.encode("utf-8"))
        except OSError as e:
            raise EnvironmentProblem(
                f"checkpoint of size {cp.size} was signed and stored, but {path} could not be written "
                f"({e.strerror or e}): without it a rollback of the database goes unnoticed"
            ) from None

    # -- keys --------------------------------------------------------------

    def rotate_key(self, passphrase: bytes | None = None, *, delete_old: bool = False) -> Record:
        """New signing key; the rotation record is signed by the old key and
        carries the new key's signature over the same statement.

        The old key's lifetime ends with that record (see ``ledger.trust``):
        its vkey moves to ``keys/retired/`` with a lifetime file, so
        ``--trust HOME/keys`` knows it, and its private key leaves ``keys/``
        for ``keys-retired/`` (still encrypted as it was), or is deleted with
        ``delete_old``.
        """
        old = self.key
        old_vkey = vkey_for(self.origin, old.public)
        if old_vkey not in self.config.trusted_vkeys:
            raise ConfigError(
                f"this home signs with writer key {old.key_id[:8]}; only the log's home rotates the log key"
            )
        new = SigningKey.generate()
        statement = {
            "origin": self.origin,
            "old_key_id": old.key_id,
            "new_key_id": new.key_id,
            "new_public_key": _b64(new.public_raw),
        }
        new_sig = new.sign(ROTATION_DOMAIN + canonical_json(statement))
        payload = dict(statement, new_key_sig=_b64(new_sig))
        pp = passphrase if passphrase is not None else self._passphrase
        keys_dir = self.home.keys_dir
        new_path = keys_dir / f"{new.key_id}.key"
        save_key(new, new_path, pp)

        def register(conn: Any, _recs: list[Record]) -> None:
            self.store.add_key(new.key_id, new.public_raw, self.origin, None, conn)

        try:
            rec = self.store.append_many([Draft("key-rotation", payload)], key=old, origin=self.origin, on_locked=register)[0]
        except BaseException:
            # The new private key may go only if the rotation certainly did not
            # land (its key row commits with the record); else it is the log's key.
            try:
                landed = new.key_id in self.store.keys()
            except EvidenceError:
                landed = True
            if not landed:
                new_path.unlink(missing_ok=True)
            raise
        vkey = vkey_for(self.origin, new.public)
        write_atomic(keys_dir / f"{new.key_id}.vkey", (vkey + "\n").encode("utf-8"))
        write_retirement(keys_dir, Verifier.parse(old_vkey), rec.index, new.key_id, rec.time)
        self.config.key_id = new.key_id
        self.config.trusted_vkeys.append(vkey)
        self.home.save_config(self.config)
        self._key = new
        old_path = keys_dir / f"{old.key_id}.key"
        if delete_old:
            old_path.unlink(missing_ok=True)
        else:
            archive = self.home.retired_keys_dir
            archive.mkdir(mode=0o700, exist_ok=True)
            os.replace(old_path, archive / old_path.name)
            fsync_dir(archive)
        fsync_dir(keys_dir)
        return rec

    def add_key(
        self,
        name: str,
        role: str = "officer",
        passphrase: bytes | None = None,
        *,
        badge: str | None = None,
        unit: str | None = None,
    ) -> Record:
        """Register another signer (a second officer, a capture worker).

        The ``key-add`` record is signed by the log's current key and carries
        the new key's own signature over the statement (proof of possession).
        An officer's badge number (执法证号) and unit are part of that
        statement, so neither signature survives a changed badge.
        Officers may sign only attestations; writers may append anything.
        """
        if role not in ROLES:
            raise UsageError(f"role must be one of {', '.join(ROLES)}")
        _check_name(name)
        facts = {k: v for k, v in (("badge", badge), ("unit", unit)) if v is not None}
        for k, v in facts.items():
            _check_fact(k, v, UsageError)
        signers = self._signers()
        if name in signers:
            raise ConfigError(f"a key named {name!r} is already registered")
        own = role == "officer" and passphrase is not None
        if own and self._passphrase and passphrase == self._passphrase:
            raise UsageError(f"the passphrase of officer {name!r} must be their own, not the evidence home's")
        new = SigningKey.generate()
        payload = _key_statement(new, self.origin, name, role, facts)
        pp = passphrase if passphrase is not None else self._passphrase
        save_key(new, self.home.keys_dir / f"{new.key_id}.key", pp)
        return self._register(payload, new.public_raw, local=True, own_passphrase=own)

    def register_request(self, request: dict[str, Any]) -> Record:
        """Register a key made on another machine (``Ledger.join``'s key request).

        The request carries the new key's signature over its statement, so
        only the holder of that private key could have made it; the key-add
        record appended here is signed by this home's key, which the audit
        trusts.
        """
        if not isinstance(request, dict):
            raise UsageError("a key request is a JSON object")
        key_id, raw, name, role = verify_key_add(request)
        if request.get("origin") != self.origin:
            raise UsageError(f"the key request is for log {request.get('origin')!r}, this home is {self.origin!r}")
        if name in self._signers():
            raise ConfigError(f"a key named {name!r} is already registered")
        if key_id in self.store.keys():
            raise ConfigError(f"key {key_id} is already registered in the ledger")
        payload = {k: request[k] for k in (*KEY_ADD_FIELDS, *KEY_ADD_FACTS, "key_sig") if k in request}
        return self._register(payload, raw, local=False)

    def _signers(self) -> dict[str, Any]:
        signers = self.config.extra.setdefault("signers", {})
        if not isinstance(signers, dict):
            raise ConfigError(f"{self.home.config_path}: 'signers' must be an object")
        return signers

    def _register(self, payload: dict[str, Any], raw: bytes, *, local: bool, own_passphrase: bool = False) -> Record:
        key_id, name, role = payload["key_id"], payload["name"], payload["role"]

        def register(conn: Any, recs: list[Record]) -> None:
            self.store.add_key(key_id, raw, name, recs[0].index, conn)

        rec = self.store.append_many([Draft("key-add", payload)], key=self.key, origin=self.origin, on_locked=register)[0]
        entry = {"key_id": key_id, "role": role}
        if not local:
            entry["elsewhere"] = True  # the private key is on the machine that asked
        if own_passphrase:
            entry["own_passphrase"] = True  # encrypted with the officer's passphrase, not the home's
        self._signers()[name] = entry
        self.home.save_config(self.config)
        return rec

    def signer_entry(self, name: str) -> dict[str, Any]:
        """The home's entry for signer ``name`` (key id, role), or a one-line UsageError."""
        signers = self.config.extra.get("signers") or {}
        entry = signers.get(name) if isinstance(signers, dict) else None
        if not isinstance(entry, dict) or not entry.get("key_id"):
            raise UsageError(f"no key registered for {name!r} (run `evidence key add --officer {name}`)")
        return entry

    def signer_key(self, name: str, passphrase: bytes | None = None) -> SigningKey:
        entry = self.signer_entry(name)
        if entry.get("own_passphrase") and passphrase is None:
            raise KeyFileError(f"the key of officer {name!r} is encrypted with their own passphrase: give it")
        pp = passphrase if passphrase is not None else self._passphrase
        path = self.home.keys_dir / f"{entry['key_id']}.key"
        if entry.get("elsewhere") and not path.exists():
            raise UsageError(f"the key of {name!r} was registered from another machine; its private key is not in this home")
        try:
            key = load_key(path, pp)
        except KeyFileError as e:
            if entry.get("own_passphrase") and "wrong passphrase" in str(e):
                raise KeyFileError(f"wrong passphrase for officer {name!r} (key {entry['key_id'][:8]})") from None
            raise
        if key.key_id != entry["key_id"]:
            raise KeyFileError(f"key file {path} does not hold key {entry['key_id']} of {name!r}")
        return key

    def officer_key(self, name: str, passphrase: bytes | None = None) -> Cosigner:
        """A registered officer's key, unlocked and checked against the ledger's registration."""
        entry = self.signer_entry(name)
        if entry.get("role") != "officer":
            raise UsageError(f"{name!r} holds a {entry.get('role')} key, not an officer's")
        key = self.signer_key(name, passphrase)
        self.check_registered(key)
        return Cosigner(name, key)

    def exhibit_record(self, index: int) -> Record:
        """Record ``index``, which must be an exhibit (else a one-line UsageError)."""
        stored = self.store.record(index)
        if stored is None:
            raise UsageError(f"no record {index} in the ledger")
        rec = parse_record(stored.body, expect_index=index)
        if rec.kind != "exhibit":
            raise UsageError(f"record {index} is a {rec.kind!r} record, not an exhibit")
        return rec

    def attest(
        self,
        index: int,
        officer: str,
        statement: str | None = None,
        passphrase: bytes | None = None,
        *,
        witness: dict[str, str] | None = None,
        holder_note: str | None = None,
        key: SigningKey | None = None,
    ) -> Record:
        """A second officer's signed attestation of an exhibit record.

        ``witness`` (``witness_fact``) and ``holder_note`` are signed into it:
        a 见证人 or a holder's refusal that came to light after the capture.
        ``key``: the officer's key, already unlocked (``officer_key``).
        """
        if statement is not None:
            statement = check_text("--statement", statement)
        if key is None:
            key = self.signer_key(officer, passphrase)
        elif key.key_id != self.signer_entry(officer)["key_id"]:
            raise UsageError(f"the key given is not the one registered to {officer!r}")
        target = self.exhibit_record(index)
        payload: dict[str, Any] = {
            "exhibit_index": index,
            "exhibit_leaf": target.leaf.hex(),
            "manifest_sha256": target.payload.get("manifest", {}).get("sha256"),
            "officer": officer,
            "statement": statement or DEFAULT_STATEMENT,
        }
        if witness is not None:
            payload["witness"] = dict(witness)
        if holder_note is not None:
            payload["holder_note"] = check_text("--holder-note", holder_note)
        return self.store.append_many([Draft("attestation", payload, target.case)], key=key, origin=self.origin)[0]

    # -- reading -----------------------------------------------------------

    def records(self, case: str | None = None, start: int = 0) -> Iterator[Record]:
        for s in self.store.iter_records(case=case, start=start):
            yield parse_record(s.body, expect_index=s.index)

    def records_of_kind(self, kind: str) -> Iterator[Record]:
        for s in self.store.iter_records(kind=kind):
            yield parse_record(s.body, expect_index=s.index)

    def size(self) -> int:
        return self.store.size()


def _at_capture_draft(at: AtCapture, officer: Cosigner, position: int, case: str | None) -> Draft:
    """The attestation of ``officer`` over the exhibit at ``position`` of the same batch."""
    facts = {k: v for k, v in (at.info or {}).items() if k in ("witness", "holder_note")}

    def link(recs: list[Record]) -> dict[str, Any]:
        ex = recs[position]
        return {
            "exhibit_index": ex.index,
            "exhibit_leaf": ex.leaf.hex(),
            "manifest_sha256": ex.payload.get("manifest", {}).get("sha256"),
            "officer": officer.name,
            "statement": at.statement,
            "at_capture": True,
            **facts,
        }

    return SignedDraft("attestation", {}, case, key=officer.key, link=link)


def check_text(label: str, value: Any, *, limit: int = 2000) -> str:
    """A declared fact: non-empty, no control characters (a tab, a newline neither), bounded."""
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{label} must not be empty")
    if any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 or c in "\u2028\u2029" for c in value):
        raise UsageError(f"{label} must not contain control characters")
    if len(value) > limit:
        raise UsageError(f"{label} is longer than {limit} characters")
    return value.strip()


def witness_fact(name: str, id_spec: str | None, contact: str | None = None) -> dict[str, str]:
    """The 见证人 as the record shows it: name, ID type and number (``TYPE:NUMBER``), contact."""
    name = check_text("--witness", name, limit=200)
    if id_spec is None:
        raise UsageError("--witness needs --witness-id TYPE:NUMBER (e.g. 居民身份证:110101199001011234)")
    spec = check_text("--witness-id", id_spec, limit=200)
    id_type, sep, number = spec.partition(":")
    if not sep or not id_type.strip() or not number.strip():
        raise UsageError(f"--witness-id must be TYPE:NUMBER (e.g. 居民身份证:110101199001011234), not {spec!r}")
    out = {"name": name, "id_type": id_type.strip(), "id_number": number.strip()}
    if contact is not None:
        out["contact"] = check_text("--witness-contact", contact, limit=200)
    return out


def declared_facts(
    *,
    proves: str | None = None,
    witness: str | None = None,
    witness_id: str | None = None,
    witness_contact: str | None = None,
    no_witness_reason: str | None = None,
    holder_note: str | None = None,
) -> dict[str, Any]:
    """Check the facts an extraction declares (--proves, --witness..., --holder-note) into info fields."""
    if witness is not None and no_witness_reason is not None:
        raise UsageError("--witness and --no-witness-reason exclude each other")
    if witness is None and (witness_id is not None or witness_contact is not None):
        raise UsageError("--witness-id and --witness-contact need --witness NAME")
    out: dict[str, Any] = {}
    if proves is not None:
        out["proves"] = check_text("--proves", proves)
    if witness is not None:
        out["witness"] = witness_fact(witness, witness_id, witness_contact)
    if no_witness_reason is not None:
        out["no_witness_reason"] = check_text("--no-witness-reason", no_witness_reason)
    if holder_note is not None:
        out["holder_note"] = check_text("--holder-note", holder_note)
    return out


def _continuation(note: str, origin: str) -> dict[str, Any]:
    """The ``continues`` field of a log-init: an older log's signed checkpoint, verbatim."""
    try:
        text, _ = parse_note(note)
        old = Checkpoint.parse(text)
    except EvidenceError as e:
        raise UsageError(f"--continues needs a signed checkpoint note: {e}") from None
    if old.origin == origin:
        # Two histories under one name are what witnesses exist to refuse.
        raise UsageError(f"the new log needs another origin than the one it continues ({origin})")
    return {"origin": old.origin, "size": old.size, "root": old.root.hex(), "checkpoint": note}


def _mkdirs(directory: Path, created: list[Path]) -> None:
    missing = []
    d = directory
    while not d.exists():
        missing.append(d)
        d = d.parent
    for d in reversed(missing):
        d.mkdir()
        created.append(d)


def _remove_created(created: list[Path]) -> None:
    for p in reversed(created):
        try:
            p.rmdir() if p.is_dir() else p.unlink(missing_ok=True)
        except OSError:
            pass  # best effort: the error that brought us here is the one to report


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name.strip() or any(c in name for c in "\n\r"):
        raise UsageError("a key needs a one-line name")


def _note_text(note: str) -> str:
    return note.split("\n\n", 1)[0] + "\n"


def _check_origin(origin: str) -> None:
    if not origin or any(c.isspace() for c in origin) or "+" in origin:
        raise UsageError(f"log origin {origin!r} must be non-empty, without spaces or '+'")

