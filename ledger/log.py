"""The ledger as callers use it: one evidence home, its signing key, its store.

    from ledger import Ledger
    led = Ledger.open()                      # EVIDENCE_HOME or ~/.evidence
    rec = led.append("custody", {"note": "handed to court"}, case="SAMR-2026-017")
    cp = led.checkpoint()                    # signed C2SP checkpoint of the tree
"""

from __future__ import annotations

import base64
import json
import os
import socket
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from evidence import __version__
from evidence.artifacts import artifact_store_for
from evidence.canonical import canonical_json, loads
from evidence.config import Home, HomeConfig, default_home, passphrase_from_env
from evidence.errors import (
    ConfigError,
    EvidenceError,
    KeyFileError,
    ProofError,
    RollbackError,
    SignatureError,
    UsageError,
)
from evidence.exhibit import Artifact, ArtifactFile, Exhibit, build_manifest, exhibit_payload
from evidence.keys import (
    SigningKey,
    key_id_for,
    load_key,
    public_from_b64,
    raw_public,
    save_key,
    verify_signature,
)
from evidence.record import Draft, Record, parse_record

from . import merkle
from .checkpoint import Checkpoint
from .note import Verifier, sign_note, verify_note, vkey_for
from .store import Store, StoredCheckpoint, safe_url

ROTATION_DOMAIN = b"evidence-chain/key-rotation/v1\n"
KEY_ADD_DOMAIN = b"evidence-chain/key-add/v1\n"
ROLES = ("officer", "writer")
#: Written by `evidence join` in the new home: what the log's home must register.
KEY_REQUEST = "key-request.json"


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
    ) -> Ledger:
        """Create an evidence home: signing key, database, artifact store."""
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
        h.root.mkdir(parents=True, exist_ok=True)
        save_key(key, h.keys_dir / f"{key.key_id}.key", passphrase)
        vkey = vkey_for(origin, key.public)
        (h.keys_dir / f"{key.key_id}.vkey").write_text(vkey + "\n", "utf-8")
        url = h.db_url(db_url)
        store = Store(url, create=True)
        if store.size() != 0:
            raise ConfigError(f"database {url} already holds a ledger")
        cfg = HomeConfig(
            origin=origin, key_id=key.key_id, trusted_vkeys=[vkey], db_url=db_url,
            extra={"artifacts": artifacts} if artifacts else {},
        )
        led = cls(h, cfg, store, passphrase)
        led._key = key
        led.store.append_many(
            [Draft("log-init", {"public_key": _b64(key.public_raw), "vkey": vkey, "tool": f"evidence-chain {__version__}"})],
            key=key,
            origin=origin,
            on_locked=lambda conn, _recs: store.add_key(key.key_id, key.public_raw, origin, 0, conn),
        )
        # config.json last: a home without it is not an evidence home, so a
        # crash above leaves nothing that looks usable.
        h.save_config(cfg)
        return led

    @classmethod
    def open(
        cls, home: Path | str | None = None, *, db_url: str | None = None, passphrase: bytes | None = None
    ) -> Ledger:
        h = Home(Path(home) if home else default_home())
        cfg = h.load_config()
        store = Store(h.db_url(db_url))
        return cls(h, cfg, store, passphrase if passphrase is not None else passphrase_from_env())

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

    def trusted_keys(self) -> dict[str, bytes]:
        """key_id -> raw public key of every key pinned in this home's config."""
        return {key_id_for(v.public_raw): v.public_raw for v in self.verifiers()}

    # -- appending ---------------------------------------------------------

    def append(self, kind: str, payload: dict[str, Any], case: str | None = None) -> Record:
        return self.append_many([Draft(kind, payload, case)])[0]

    def append_many(
        self, drafts: Sequence[Draft], *, on_locked: Callable[[Any, list[Record]], None] | None = None
    ) -> list[Record]:
        """Append as one transaction; ``on_locked(conn, records)`` runs inside it."""
        key = self.key
        self.check_registered(key)
        return self.store.append_many(drafts, key=key, origin=self.origin, on_locked=on_locked)

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
    ) -> Exhibit:
        """Store the files, then the manifest, then append the record (last)."""
        return self.seal_exhibits([(case, artifacts, info)], on_locked=on_locked)[0]

    def seal_exhibits(
        self,
        items: Iterable[tuple[str, Iterable[ArtifactFile], dict[str, Any]]],
        *,
        on_locked: Callable[[Any, list[Record]], None] | None = None,
    ) -> list[Exhibit]:
        staged = [self._store_exhibit(c, files, info) for c, files, info in items]
        recs = self.append_many([s[0] for s in staged], on_locked=on_locked)
        return [
            Exhibit(r.index, r, manifest, msha, arts)
            for r, (_, manifest, msha, arts) in zip(recs, staged)
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

        return self.store.add_checkpoint(make)

    # -- keys --------------------------------------------------------------

    def rotate_key(self, passphrase: bytes | None = None) -> Record:
        """New signing key; the rotation record is signed by the old key and
        carries the new key's signature over the same statement."""
        old = self.key
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
        save_key(new, self.home.keys_dir / f"{new.key_id}.key", pp)
        vkey = vkey_for(self.origin, new.public)
        (self.home.keys_dir / f"{new.key_id}.vkey").write_text(vkey + "\n", "utf-8")

        def register(conn: Any, _recs: list[Record]) -> None:
            self.store.add_key(new.key_id, new.public_raw, self.origin, None, conn)

        rec = self.store.append_many([Draft("key-rotation", payload)], key=old, origin=self.origin, on_locked=register)[0]
        self.config.key_id = new.key_id
        self.config.trusted_vkeys.append(vkey)
        self.home.save_config(self.config)
        self._key = new
        return rec

    def add_key(self, name: str, role: str = "officer", passphrase: bytes | None = None) -> Record:
        """Register another signer (a second officer, a capture worker).

        The ``key-add`` record is signed by the log's current key and carries
        the new key's own signature over the statement (proof of possession).
        Officers may sign only attestations; writers may append anything.
        """
        if role not in ROLES:
            raise UsageError(f"role must be one of {', '.join(ROLES)}")
        _check_name(name)
        signers = self._signers()
        if name in signers:
            raise ConfigError(f"a key named {name!r} is already registered")
        new = SigningKey.generate()
        payload = _key_statement(new, self.origin, name, role)
        pp = passphrase if passphrase is not None else self._passphrase
        save_key(new, self.home.keys_dir / f"{new.key_id}.key", pp)
        return self._register(payload, new.public_raw, local=True)

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
        payload = {k: request[k] for k in ("origin", "key_id", "public_key", "name", "role", "key_sig")}
        return self._register(payload, raw, local=False)

    def _signers(self) -> dict[str, Any]:
        signers = self.config.extra.setdefault("signers", {})
        if not isinstance(signers, dict):
            raise ConfigError(f"{self.home.config_path}: 'signers' must be an object")
        return signers

    def _register(self, payload: dict[str, Any], raw: bytes, *, local: bool) -> Record:
        key_id, name, role = payload["key_id"], payload["name"], payload["role"]

        def register(conn: Any, recs: list[Record]) -> None:
            self.store.add_key(key_id, raw, name, recs[0].index, conn)

        rec = self.store.append_many([Draft("key-add", payload)], key=self.key, origin=self.origin, on_locked=register)[0]
        entry = {"key_id": key_id, "role": role}
        if not local:
            entry["elsewhere"] = True  # the private key is on the machine that asked
        self._signers()[name] = entry
        self.home.save_config(self.config)
        return rec

    def signer_key(self, name: str, passphrase: bytes | None = None) -> SigningKey:
        signers = self.config.extra.get("signers") or {}
        entry = signers.get(name) if isinstance(signers, dict) else None
        if not entry:
            raise UsageError(f"no key registered for {name!r} (run `evidence key add --officer {name}`)")
        pp = passphrase if passphrase is not None else self._passphrase
        return load_key(self.home.keys_dir / f"{entry['key_id']}.key", pp)

    def exhibit_record(self, index: int) -> Record:
        """Record ``index``, which must be an exhibit (else a one-line UsageError)."""
        stored = self.store.record(index)
        if stored is None:
            raise UsageError(f"no record {index} in the ledger")
        rec = parse_record(stored.body, expect_index=index)
        if rec.kind != "exhibit":
            raise UsageError(f"record {index} is a {rec.kind!r} record, not an exhibit")
        return rec

    def attest(self, index: int, officer: str, statement: str | None = None, passphrase: bytes | None = None) -> Record:
        """A second officer's signed attestation of an exhibit record."""
        key = self.signer_key(officer, passphrase)
        target = self.exhibit_record(index)
        payload = {
            "exhibit_index": index,
            "exhibit_leaf": target.leaf.hex(),
            "manifest_sha256": target.payload.get("manifest", {}).get("sha256"),
            "officer": officer,
            "statement": statement or "I attest that I witnessed this capture and that the exhibit is complete.",
        }
        return self.store.append_many([Draft("attestation", payload, target.case)], key=key, origin=self.origin)[0]

    # -- reading -----------------------------------------------------------

    def records(self, case: str | None = None, start: int = 0) -> Iterator[Record]:
        for s in self.store.iter_records(case=case, start=start):
            yield parse_record(s.body, expect_index=s.index)

    def size(self) -> int:
        return self.store.size()


def verify_rotation(payload: dict[str, Any]) -> bytes:
    """Check a key-rotation payload's new-key signature; return the new raw key."""
    try:
        statement = {k: payload[k] for k in ("origin", "old_key_id", "new_key_id", "new_public_key")}
        sig = base64.b64decode(payload["new_key_sig"], validate=True)
    except (KeyError, TypeError, ValueError):
        raise SignatureError("key-rotation record is malformed") from None
    pub = public_from_b64(statement["new_public_key"])
    raw = raw_public(pub)
    if key_id_for(raw) != statement["new_key_id"]:
        raise SignatureError("key-rotation record names a key id that does not match its key")
    try:
        verify_signature(pub, sig, ROTATION_DOMAIN + canonical_json(statement))
    except SignatureError:
        raise SignatureError("key-rotation record: the new key's signature does not verify") from None
    return raw


def verify_key_add(payload: dict[str, Any]) -> tuple[str, bytes, str, str]:
    """Check a key-add payload's proof of possession; return (key_id, raw, name, role)."""
    try:
        statement = {k: payload[k] for k in ("origin", "key_id", "public_key", "name", "role")}
        sig = base64.b64decode(payload["key_sig"], validate=True)
    except (KeyError, TypeError, ValueError):
        raise SignatureError("key-add record is malformed") from None
    pub = public_from_b64(statement["public_key"])
    raw = raw_public(pub)
    if key_id_for(raw) != statement["key_id"]:
        raise SignatureError("key-add record names a key id that does not match its key")
    if statement["role"] not in ROLES:
        raise SignatureError(f"key-add record has unknown role {statement['role']!r}")
    try:
        verify_signature(pub, sig, KEY_ADD_DOMAIN + canonical_json(statement))
    except SignatureError:
        raise SignatureError("key-add record: the new key's signature does not verify") from None
    return statement["key_id"], raw, statement["name"], statement["role"]


def _key_statement(key: SigningKey, origin: str, name: str, role: str) -> dict[str, Any]:
    """A key-add payload: the statement and the key's own signature over it."""
    statement = {"origin": origin, "key_id": key.key_id, "public_key": _b64(key.public_raw), "name": name, "role": role}
    return dict(statement, key_sig=_b64(key.sign(KEY_ADD_DOMAIN + canonical_json(statement))))


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name.strip() or any(c in name for c in "\n\r"):
        raise UsageError("a key needs a one-line name")


def _note_text(note: str) -> str:
    return note.split("\n\n", 1)[0] + "\n"


def _check_origin(origin: str) -> None:
    if not origin or any(c.isspace() for c in origin) or "+" in origin:
        raise UsageError(f"log origin {origin!r} must be non-empty, without spaces or '+'")


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")

