"""Deposit adapters: hand a signed checkpoint to an outside service, keep its receipt.

A judicial blockchain, a notary or an archive each has its own API; an
adapter hides that behind three members::

    class DepositAdapter(Protocol):
        name: str                                              # stable, goes into records
        def submit(self, checkpoint_note: bytes) -> Receipt    # network
        def verify(self, receipt: Receipt, checkpoint_note: bytes) -> ReceiptCheck  # offline

The receipt is stored verbatim (its SHA-256 goes into the anchor record), so
whatever the service signed survives unchanged for a later, independent
check. ``verify`` must not touch the network: the case verifier calls it on
a machine with only the case file. ``HttpJsonDeposit`` covers services that
take and return JSON; ``examples/deposit_adapter.py`` shows an adapter that
also checks the service's signature.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ledger.errors import UsageError

from . import _http
from .errors import AnchorRejected, ReceiptError


@dataclass(frozen=True)
class Receipt:
    """What a deposit service returned, byte for byte."""

    data: bytes
    media_type: str
    sha256: str

    @classmethod
    def of(cls, data: bytes, media_type: str) -> Receipt:
        return cls(data, media_type, hashlib.sha256(data).hexdigest())


@dataclass(frozen=True)
class ReceiptCheck:
    """Outcome of checking a receipt against a checkpoint note."""

    ok: bool
    detail: str
    offline: bool = True  # checked without asking the service
    time: str | None = None  # the service's asserted deposit time, as it wrote it
    reference: str | None = None  # its transaction or receipt id


@runtime_checkable
class DepositAdapter(Protocol):
    name: str

    def submit(self, checkpoint_note: bytes) -> Receipt: ...

    def verify(self, receipt: Receipt, checkpoint_note: bytes) -> ReceiptCheck: ...


# Values an HTTP JSON deposit request can carry, computed from the note.
REQUEST_VALUES = ("note", "note_b64", "sha256", "sha512", "origin", "size")


@dataclass(frozen=True)
class FieldMap:
    """Where things go in the service's JSON: dotted paths (``data.hash``).

    ``request`` maps a value name from ``REQUEST_VALUES`` to the request
    field it fills; ``static`` adds fixed fields (an application id). The
    other members locate fields of the JSON receipt; ``digest`` is the field
    in which the service echoes the digest it recorded (checked offline).
    """

    request: Mapping[str, str] = field(default_factory=lambda: {"sha256": "sha256", "note": "checkpoint"})
    static: Mapping[str, Any] = field(default_factory=dict)
    digest: str | None = "sha256"
    reference: str | None = "id"
    time: str | None = "time"

    def __post_init__(self) -> None:
        unknown = set(self.request) - set(REQUEST_VALUES)
        if unknown:
            raise UsageError(
                f"deposit field map names unknown value(s) {', '.join(sorted(unknown))}; "
                f"use {', '.join(REQUEST_VALUES)}"
            )


class HttpJsonDeposit:
    """POST the checkpoint as JSON to ``url``; the JSON answer is the receipt."""

    def __init__(
        self,
        name: str,
        url: str,
        field_map: FieldMap | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        deadline: float = 30.0,
    ):
        if not name or any(c.isspace() for c in name):
            raise UsageError(f"deposit service name {name!r} must be non-empty without spaces")
        self.name = name
        self.url = _http.check_url(url, f"deposit service {name}")
        self.field_map = field_map or FieldMap()
        self.headers = dict(headers or {})
        self.timeout = timeout
        self.deadline = deadline

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> HttpJsonDeposit:
        """Build from a JSON config object; secrets come from the environment.

        ``{"name": "court-chain", "url": "https://...", "request": {"sha256": "hash"},
        "static": {"appId": "x"}, "digest": "data.hash", "reference": "data.txId",
        "time": "data.time", "headers_from_env": {"Authorization": "COURT_CHAIN_TOKEN"}}``
        """
        try:
            fm_args = {k: cfg[k] for k in ("request", "static", "digest", "reference", "time") if k in cfg}
            headers = dict(cfg.get("headers", {}))
            for header, env in dict(cfg.get("headers_from_env", {})).items():
                if env not in os.environ:
                    raise UsageError(
                        f"deposit service {cfg.get('name')}: environment variable {env} is not set"
                    )
                headers[header] = os.environ[env]
            return cls(
                cfg["name"],
                cfg["url"],
                FieldMap(**fm_args),
                headers=headers,
                timeout=float(cfg.get("timeout", 10.0)),
                deadline=float(cfg.get("deadline", 30.0)),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise UsageError(f"deposit service config is incomplete or malformed: {e}") from None

    def request_body(self, checkpoint_note: bytes) -> bytes:
        values = _note_values(checkpoint_note)
        body: dict[str, Any] = {}
        for path, value in self.field_map.static.items():
            _put(body, path, value)
        for name, path in self.field_map.request.items():
            _put(body, path, values[name])
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    def submit(self, checkpoint_note: bytes) -> Receipt:
        return self._post(self.request_body(checkpoint_note))

    def _post(self, body: bytes) -> Receipt:
        resp = _http.post(
            self.url,
            body,
            content_type="application/json",
            accept="application/json",
            what=f"deposit service {self.name}",
            headers=self.headers,
            timeout=self.timeout,
            deadline=self.deadline,
        )
        if not 200 <= resp.status < 300:
            raise AnchorRejected(
                f"deposit service {self.name} answered HTTP {resp.status}{_http._snippet(resp.body)}"
            )
        return Receipt.of(resp.body, resp.content_type or "application/json")

    def submit_document(self, document: bytes) -> Receipt:
        """Deposit another document (an exhibit manifest) by its digest: only ``sha256``/``sha512``
        request values are sent, never the document itself (``note``, ``origin``, ``size`` are left out)."""
        values = _note_values(document)
        body: dict[str, Any] = {}
        for path, value in self.field_map.static.items():
            _put(body, path, value)
        for name, path in self.field_map.request.items():
            if name in ("sha256", "sha512"):
                _put(body, path, values[name])
        return self._post(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())

    def verify(self, receipt: Receipt, checkpoint_note: bytes) -> ReceiptCheck:
        where = f"deposit receipt from {self.name}"
        if hashlib.sha256(receipt.data).hexdigest() != receipt.sha256:
            return ReceiptCheck(False, f"{where}: bytes do not match the stored digest")
        try:
            doc = json.loads(receipt.data)
        except (ValueError, UnicodeDecodeError):
            return ReceiptCheck(False, f"{where}: not JSON")
        if not isinstance(doc, dict):
            return ReceiptCheck(False, f"{where}: not a JSON object")
        fm = self.field_map
        ref = _get(doc, fm.reference) if fm.reference else None
        when = _get(doc, fm.time) if fm.time else None
        if fm.reference and ref is None:
            return ReceiptCheck(False, f"{where}: no {fm.reference!r} field")
        if fm.digest:
            echoed = _get(doc, fm.digest)
            values = _note_values(checkpoint_note)
            if not isinstance(echoed, str) or echoed.lower() not in (values["sha256"], values["sha512"]):
                return ReceiptCheck(
                    False, f"{where}: records digest {str(echoed)[:16]}..., not this checkpoint's"
                )
            detail = f"{where} echoes the digest of what was deposited"
        else:
            detail = f"{where} is stored; its service makes no checkable statement offline"
        return ReceiptCheck(
            True, detail, True, None if when is None else str(when), None if ref is None else str(ref)
        )


def submit_and_verify(adapter: DepositAdapter, checkpoint_note: bytes) -> tuple[Receipt, ReceiptCheck]:
    """Deposit, then refuse a receipt that does not check out (nothing stored)."""
    receipt = adapter.submit(checkpoint_note)
    check = adapter.verify(receipt, checkpoint_note)
    if not check.ok:
        raise ReceiptError(check.detail)
    return receipt, check


def _note_values(note: bytes) -> dict[str, Any]:
    lines = note.decode("utf-8", "replace").split("\n")
    try:
        size = int(lines[1])
    except (IndexError, ValueError):
        size = None
    return {
        "note": note.decode("utf-8", "replace"),
        "note_b64": base64.b64encode(note).decode(),
        "sha256": hashlib.sha256(note).hexdigest(),
        "sha512": hashlib.sha512(note).hexdigest(),
        "origin": lines[0],
        "size": size,
    }


def _put(obj: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for p in parents:
        obj = obj.setdefault(p, {})
        if not isinstance(obj, dict):
            raise UsageError(f"deposit field path {path!r} collides with another field")
    obj[last] = value


def _get(obj: Any, path: str) -> Any:
    for p in path.split("."):
        if not isinstance(obj, dict) or p not in obj:
            return None
        obj = obj[p]
    return obj
