"""Deposit adapters: the generic HTTP JSON adapter, the documented example, refusals."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from tsa_fixture import free_port

from ledger.anchors import (
    AnchorRejected,
    AnchorUnavailable,
    DepositAdapter,
    FieldMap,
    HttpJsonDeposit,
    Receipt,
    ReceiptError,
    anchor_checkpoint,
    audit_anchors,
)
from ledger.errors import UsageError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "deposit_adapter.py"


def load_example():
    spec = importlib.util.spec_from_file_location("deposit_adapter_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


@pytest.fixture(scope="module")
def example():
    return load_example()


@pytest.fixture
def notary(example):
    n = example.ToyNotary().start()
    yield n
    n.stop()


class Canned:
    """A JSON service that answers whatever the test sets."""

    def __init__(self) -> None:
        self.status, self.body, self.requests = 200, b"{}", []
        svc = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                svc.requests.append(
                    (dict(self.headers), self.rfile.read(int(self.headers["Content-Length"])))
                )
                self.send_response(svc.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(svc.body)))
                self.end_headers()
                self.wfile.write(svc.body)

            def log_message(self, *a: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/deposit"


@pytest.fixture
def canned():
    c = Canned()
    yield c
    c.server.shutdown()
    c.server.server_close()


def test_example_adapter_and_generic_adapter(home, example, notary):
    custom = example.NotaryDeposit("toy-notary", notary.url, notary.public_key)
    generic = example.generic_adapter(notary.url)
    assert isinstance(custom, DepositAdapter) and isinstance(generic, DepositAdapter)
    home.append("custody", {"note": "n"}, case="C-1")
    results = anchor_checkpoint(home, deposits=[custom, generic])
    cp = home.store.latest_checkpoint()
    digest = hashlib.sha256(cp.note.encode()).hexdigest()
    assert notary.deposits == [digest, digest]
    for r in results:
        p = r.payload
        assert r.ok and p["type"] == "deposit" and p["checkpoint_sha256"] == digest and p["reference"]
        with home.artifacts.open(p["receipt_sha256"]) as f:
            stored = f.read()
        assert json.loads(stored)["receipt"]["hash"] == digest  # verbatim service bytes
    checks = audit_anchors(home, deposits=[custom, generic])
    assert [(c.ok, c.verified) for c in checks] == [(True, True), (True, True)]
    assert "signed by notary" in checks[0].detail


def test_example_rejects_a_forged_receipt(home, example, notary):
    custom = example.NotaryDeposit("toy-notary", notary.url, notary.public_key)
    note = home.checkpoint().note.encode()
    receipt = custom.submit(note)
    assert custom.verify(receipt, note).ok
    doc = json.loads(receipt.data)
    doc["receipt"]["time"] = "1999-01-01T00:00:00Z"
    forged = Receipt.of(json.dumps(doc).encode(), "application/json")
    assert not custom.verify(forged, note).ok
    assert not custom.verify(receipt, note + b"x").ok


def test_example_script_runs(example, capsys):
    example.main()
    out = capsys.readouterr().out
    assert out.count("deposited with") == 2 and out.count(": ok: ") == 2


def test_field_map_shapes_the_request(home, canned):
    note = home.checkpoint().note.encode()
    sha = hashlib.sha256(note).hexdigest()
    canned.body = json.dumps(
        {"data": {"hash": sha.upper(), "txId": "0xabc", "blockTime": "2026-11-22T10:00:00Z"}}
    ).encode()
    fm = FieldMap(
        request={"sha256": "payload.hash", "origin": "payload.source", "size": "payload.treeSize"},
        static={"appId": "court-7", "payload.alg": "SHA-256"},
        digest="data.hash",
        reference="data.txId",
        time="data.blockTime",
    )
    d = HttpJsonDeposit("court-chain", canned.url, fm, headers={"Authorization": "Bearer t0ken"})
    [r] = anchor_checkpoint(home, deposits=[d])
    headers, body = canned.requests[0]
    assert json.loads(body) == {
        "appId": "court-7",
        "payload": {
            "alg": "SHA-256",
            "hash": sha,
            "source": home.origin,
            "treeSize": r.payload["checkpoint_size"],
        },
    }
    assert headers["Authorization"] == "Bearer t0ken"
    assert r.payload["reference"] == "0xabc" and r.payload["time"] == "2026-11-22T10:00:00Z"


@pytest.mark.parametrize(
    "status, body, error, words",
    [
        (200, b'{"sha256": "00", "id": "1"}', ReceiptError, "not this checkpoint"),
        (200, b"not json", ReceiptError, "not JSON"),
        (200, b'{"sha256": "SHA"}', ReceiptError, "no 'id' field"),
        (403, b'{"error": "bad token"}', AnchorRejected, "HTTP 403"),
        (503, b"down for maintenance", AnchorUnavailable, "HTTP 503"),
    ],
)
def test_bad_receipts_and_refusals_store_nothing(home, canned, status, body, error, words):
    note = home.checkpoint().note.encode()
    canned.status = status
    canned.body = body.replace(b"SHA", hashlib.sha256(note).hexdigest().encode())
    blobs, size = set(home.artifacts), home.size()
    d = HttpJsonDeposit("svc", canned.url, timeout=0.5, deadline=1.0)
    with pytest.raises(error, match=words):
        anchor_checkpoint(home, deposits=[d])
    assert set(home.artifacts) == blobs and home.size() == size


def test_unreachable_service(home):
    d = HttpJsonDeposit("svc", f"http://127.0.0.1:{free_port()}/", timeout=0.3, deadline=0.8)
    with pytest.raises(AnchorUnavailable, match="deposit service svc"):
        anchor_checkpoint(home, deposits=[d])


def test_config_errors_are_usage_errors(monkeypatch):
    with pytest.raises(UsageError, match="unknown value"):
        FieldMap(request={"whole_ledger": "x"})
    with pytest.raises(UsageError, match="COURT_TOKEN"):
        HttpJsonDeposit.from_config(
            {"name": "c", "url": "https://c.example/", "headers_from_env": {"Authorization": "COURT_TOKEN"}}
        )
    with pytest.raises(UsageError, match="incomplete"):
        HttpJsonDeposit.from_config({"url": "https://c.example/"})
    with pytest.raises(UsageError, match="http"):
        HttpJsonDeposit("c", "file:///etc/passwd")
    monkeypatch.setenv("COURT_TOKEN", "Bearer s3cret")
    d = HttpJsonDeposit.from_config(
        {
            "name": "c",
            "url": "https://c.example/",
            "request": {"sha512": "h"},
            "digest": "h",
            "headers_from_env": {"Authorization": "COURT_TOKEN"},
        }
    )
    assert d.headers == {"Authorization": "Bearer s3cret"} and d.field_map.request == {"sha512": "h"}
