"""The ledger as callers use it: one evidence home, its signing key, its store.

    from ledger import Ledger
    led = Ledger.open()                      # EVIDENCE_HOME or ~/.evidence
    rec = led.append("custody", {"note": "handed to court"}, case="SAMR-2026-017")
    cp = led.checkpoint()                    # signed C2SP checkpoint of the tree
"""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from evidence import __version__
from evidence.artifacts import ArtifactStore
from evidence.canonical import canonical_json, loads
from evidence.config import Home, HomeConfig, default_home, passphrase_from_env
from evidence.errors import (
    ConfigError,
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
from .store import Store, StoredCheckpoint

ROTATION_DOMAIN = b"evidence-chain/key-rotation/v1\n"
KEY_ADD_DOMAIN = b"evidence-chain/key-add/v1\n"
ROLES = ("officer", "writer")


class Ledger:
    def __init__(self, home: Home, config: HomeConfig, store: Store, passphrase: bytes | None):
        self.home = home
        self.config = config
        self.store = store
        self.artifacts = ArtifactStore(home.store_dir)
        self._passphrase = passphrase
        self._key: SigningKey | None = None

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
        cfg = HomeConfig(origin=origin, key_id=key.key_id, trusted_vkeys=[vkey], db_url=db_url)
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

    def append_many(self, drafts: Sequence[Draft]) -> list[Record]:
        return self.store.append_many(drafts, key=self.key, origin=self.origin)

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

    def seal_exhibit(self, case: str, artifacts: Iterable[ArtifactFile], info: dict[str, Any]) -> Exhibit:
        """Store the files, then the manifest, then append the record (last)."""
        return self.seal_exhibits([(case, artifacts, info)])[0]

    def seal_exhibits(
        self, items: Iterable[tuple[str, Iterable[ArtifactFile], dict[str, Any]]]
    ) -> list[Exhibit]:
        staged = [self._store_exhibit(c, files, info) for c, files, info in items]
        recs = self.append_many([s[0] for s in staged])
        return [
            Exhibit(r.index, r, manifest, msha, arts)
            for r, (_, manifest, msha, arts) in zip(recs, staged)
        ]

    # -- checkpoints -------------------------------------------------------

    def checkpoint(self) -> StoredCheckpoint:
        """Sign a checkpoint of the current tree, after proving it extends the last."""
        key = self.key
        verifiers = self.verifiers()

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
        if not name.strip() or any(c in name for c in "\n\r"):
            raise UsageError("a key needs a one-line name")
        signers = self.config.extra.setdefault("signers", {})
        assert isinstance(signers, dict)
        if name in signers:
            raise ConfigError(f"a key named {name!r} is already registered")
        new = SigningKey.generate()
        statement = {"origin": self.origin, "key_id": new.key_id, "public_key": _b64(new.public_raw), "name": name, "role": role}
        payload = dict(statement, key_sig=_b64(new.sign(KEY_ADD_DOMAIN + canonical_json(statement))))
        pp = passphrase if passphrase is not None else self._passphrase
        save_key(new, self.home.keys_dir / f"{new.key_id}.key", pp)

        def register(conn: Any, recs: list[Record]) -> None:
            self.store.add_key(new.key_id, new.public_raw, name, recs[0].index, conn)

        rec = self.store.append_many([Draft("key-add", payload)], key=self.key, origin=self.origin, on_locked=register)[0]
        signers[name] = {"key_id": new.key_id, "role": role}
        self.home.save_config(self.config)
        return rec

    def signer_key(self, name: str, passphrase: bytes | None = None) -> SigningKey:
        signers = self.config.extra.get("signers") or {}
        entry = signers.get(name) if isinstance(signers, dict) else None
        if not entry:
            raise UsageError(f"no key registered for {name!r} (run `evidence key add --officer {name}`)")
        pp = passphrase if passphrase is not None else self._passphrase
        return load_key(self.home.keys_dir / f"{entry['key_id']}.key", pp)

    def attest(self, index: int, officer: str, statement: str | None = None, passphrase: bytes | None = None) -> Record:
        """A second officer's signed attestation of an exhibit record."""
        key = self.signer_key(officer, passphrase)
        stored = self.store.record(index)
        if stored is None:
            raise UsageError(f"no record {index} in the ledger")
        target = parse_record(stored.body, expect_index=index)
        if target.kind != "exhibit":
            raise UsageError(f"record {index} is a {target.kind!r} record, not an exhibit")
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


def _note_text(note: str) -> str:
    return note.split("\n\n", 1)[0] + "\n"


def _check_origin(origin: str) -> None:
    if not origin or any(c.isspace() for c in origin) or "+" in origin:
        raise UsageError(f"log origin {origin!r} must be non-empty, without spaces or '+'")


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")

