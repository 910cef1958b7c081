"""Plugging a deposit service (judicial blockchain, notary) into evidence-chain.

    .venv/bin/python examples/deposit_adapter.py

A deposit adapter is any object with these three members (the
``ledger.anchors.DepositAdapter`` protocol)::

    name: str                                     # stable: it is written into anchor records
    submit(checkpoint_note: bytes) -> Receipt     # send the signed checkpoint, return the answer verbatim
    verify(receipt, checkpoint_note) -> ReceiptCheck   # offline: no network, no database

Rules an adapter must keep:

- ``submit`` returns ``Receipt.of(bytes_as_received, media_type)``. Do not
  re-encode the service's answer: its signature is over those bytes.
- ``submit`` raises ``ledger.anchors.AnchorUnavailable`` (service down,
  timed out) or ``AnchorRejected`` (it refused), with a one-line message.
- ``verify`` checks everything it can without the service: its signature
  with a pinned key, that the receipt names this checkpoint's digest. It
  returns ``ReceiptCheck(ok=False, detail=...)`` rather than raising.
  ``anchor_checkpoint`` calls it before storing anything; ``evidence
  audit`` and the case verifier call it again years later.

Many services take and return JSON; ``HttpJsonDeposit`` needs only a field
map for them. This file runs a toy notary on 127.0.0.1 that signs its
receipts, and deposits one checkpoint through both a custom adapter that
checks the notary's signature and the generic adapter.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ledger.anchors import (  # noqa: E402
    FieldMap,
    HttpJsonDeposit,
    Receipt,
    ReceiptCheck,
    anchor_checkpoint,
    audit_anchors,
)
from ledger.anchors._http import post  # noqa: E402
from ledger.anchors.errors import AnchorRejected  # noqa: E402
from ledger.canonical import canonical_json  # noqa: E402

NOTARY_DOMAIN = b"toy-notary/receipt/v1\n"


class ToyNotary:
    """A notary service: POST {"hash": hex} -> {"receipt": {...}, "sig": base64}."""

    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.deposits: list[str] = []
        self._server: ThreadingHTTPServer | None = None

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.key.public_key()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/deposit"

    def answer(self, body: bytes) -> tuple[int, bytes]:
        try:
            digest = json.loads(body)["hash"]
            bytes.fromhex(digest)
        except (ValueError, KeyError, TypeError):
            return 400, b'{"error": "expected {\\"hash\\": hex}"}'
        receipt = {
            "hash": digest,
            "tx": uuid.uuid4().hex,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        sig = self.key.sign(NOTARY_DOMAIN + canonical_json(receipt))
        self.deposits.append(digest)
        return 200, json.dumps({"receipt": receipt, "sig": base64.b64encode(sig).decode()}).encode()

    def start(self) -> ToyNotary:
        notary = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                status, out = notary.answer(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


class NotaryDeposit:
    """An adapter that checks the notary's signature offline, with a pinned key."""

    def __init__(self, name: str, url: str, public_key: Ed25519PublicKey):
        self.name = name
        self.url = url
        self.public_key = public_key

    def submit(self, checkpoint_note: bytes) -> Receipt:
        body = json.dumps({"hash": hashlib.sha256(checkpoint_note).hexdigest()}).encode()
        resp = post(
            self.url,
            body,
            content_type="application/json",
            accept="application/json",
            what=f"notary {self.name}",
            timeout=5,
            deadline=15,
        )
        if resp.status != 200:
            raise AnchorRejected(f"notary {self.name} answered HTTP {resp.status}")
        return Receipt.of(resp.body, "application/json")

    def verify(self, receipt: Receipt, checkpoint_note: bytes) -> ReceiptCheck:
        try:
            doc = json.loads(receipt.data)
            fields, sig = doc["receipt"], base64.b64decode(doc["sig"], validate=True)
            self.public_key.verify(sig, NOTARY_DOMAIN + canonical_json(fields))
        except (ValueError, KeyError, TypeError, InvalidSignature):
            return ReceiptCheck(False, f"notary {self.name}: receipt signature does not verify")
        if fields.get("hash") != hashlib.sha256(checkpoint_note).hexdigest():
            return ReceiptCheck(False, f"notary {self.name}: receipt is for another checkpoint")
        return ReceiptCheck(
            True, f"signed by notary {self.name}, tx {fields['tx']}", True, fields["time"], fields["tx"]
        )


def generic_adapter(url: str) -> HttpJsonDeposit:
    """The same service through the generic adapter: a field map, no code.

    It checks that the receipt echoes this checkpoint's digest, not the
    notary's signature (it has no key for that).
    """
    return HttpJsonDeposit(
        "toy-notary-generic",
        url,
        FieldMap(
            request={"sha256": "hash"}, digest="receipt.hash", reference="receipt.tx", time="receipt.time"
        ),
    )


def main() -> None:
    from ledger.log import Ledger

    notary = ToyNotary().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            led = Ledger.init(Path(tmp) / "home", unencrypted=True, origin="demo.example/log")
            led.append("custody", {"note": "exhibit handed to the court clerk"}, case="DEMO-1")
            adapters = [
                NotaryDeposit("toy-notary", notary.url, notary.public_key),
                generic_adapter(notary.url),
            ]
            for r in anchor_checkpoint(led, deposits=adapters):
                print(
                    f"deposited with {r.service}: record {r.record_index}, receipt {r.payload['receipt_sha256'][:16]}..."
                )
            for c in audit_anchors(led, deposits=adapters):
                print(f"re-checked offline: {c.where}: {'ok' if c.ok else 'FAILED'}: {c.detail}")
            led.close()
    finally:
        notary.stop()


if __name__ == "__main__":
    main()
