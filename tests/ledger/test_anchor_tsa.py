"""RFC 3161 anchors against the local openssl TSA: success, OpenSSL agreement, every failure."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tsa_fixture import free_port

from ledger.anchors import (
    AnchorRejected,
    AnchorUnavailable,
    TimestampMismatch,
    UntrustedTimestamp,
    anchor_checkpoint,
    audit_anchors,
    check_anchor_record,
    load_roots,
    timestamp,
    verify_timestamp,
)
from ledger.errors import IntegrityError, UsageError

FAST = {"timeout": 0.3, "deadline": 1.0}


def blob(home, digest: str) -> bytes:
    with home.artifacts.open(digest) as f:
        return f.read()


def anchor_records(home) -> list:
    return [r for r in home.records() if r.kind == "anchor"]


@pytest.mark.parametrize("hash_alg", ["sha256", "sha512"])
def test_anchor_stores_a_token_openssl_verifies(home, tsa, tsa_roots, tmp_path, hash_alg):
    home.append("custody", {"note": "handed over"}, case="C-1")
    [res] = anchor_checkpoint(home, tsa_urls=[tsa.url], roots=tsa_roots, hash_alg=hash_alg)
    cp = home.store.latest_checkpoint()
    assert res.ok and res.record_index == cp.size  # the anchor record comes right after what it anchors
    p = res.payload
    assert p["type"] == "rfc3161" and p["hash_alg"] == hash_alg and p["checkpoint_size"] == cp.size
    assert p["checkpoint_sha256"] == hashlib.sha256(cp.note.encode()).hexdigest()
    assert p["tsa_name"] == "CN=Evidence Test TSA" and p["time"].endswith("Z")
    [rec] = anchor_records(home)
    assert rec.payload == p

    note, token, chain = tmp_path / "note", tmp_path / "token.tsr", tmp_path / "chain.pem"
    note.write_bytes(cp.note.encode())
    token.write_bytes(blob(home, p["token_sha256"]))
    chain.write_bytes(blob(home, p["chain_sha256"]))
    out = subprocess.run(
        [
            "openssl",
            "ts",
            "-verify",
            "-data",
            str(note),
            "-in",
            str(token),
            "-CAfile",
            str(tsa.root_pem),
            "-untrusted",
            str(chain),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and "Verification: OK" in out.stdout, out.stderr
    note.write_bytes(cp.note.encode() + b" ")
    bad = subprocess.run(
        [
            "openssl",
            "ts",
            "-verify",
            "-data",
            str(note),
            "-in",
            str(token),
            "-CAfile",
            str(tsa.root_pem),
            "-untrusted",
            str(chain),
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0


def test_several_tsas_one_down_still_anchors(home, tsa, tsa_roots):
    down = f"http://127.0.0.1:{free_port()}/tsr"
    results = anchor_checkpoint(home, tsa_urls=[down, tsa.url], roots=tsa_roots, **FAST)
    ok = [r for r in results if r.ok]
    bad = [r for r in results if not r.ok]
    assert [r.service for r in ok] == [tsa.url] and [r.service for r in bad] == [down]
    assert isinstance(bad[0].error, AnchorUnavailable)
    assert len(anchor_records(home)) == 1
    with pytest.raises(AnchorUnavailable):
        anchor_checkpoint(home, tsa_urls=[tsa.url, down], roots=tsa_roots, strict=True, **FAST)
    assert len(anchor_records(home)) == 2  # strict still keeps the verified one


@pytest.mark.parametrize(
    "mode, error, words",
    [
        ("down", AnchorUnavailable, "Connection refused"),
        ("slow", AnchorUnavailable, "timed out"),
        ("http500", AnchorUnavailable, "HTTP 500"),
        ("reject", AnchorRejected, "refused the request: rejection"),
        ("wrong-digest", TimestampMismatch, "not for this data"),
        ("wrong-nonce", TimestampMismatch, "nonce"),
        ("rogue-chain", UntrustedTimestamp, "unable to get local issuer certificate"),
        ("garbage", IntegrityError, "not a DER TimeStampResp"),
    ],
)
def test_failures_are_one_line_and_store_nothing(home, tsa, tsa_roots, mode, error, words):
    url = f"http://127.0.0.1:{free_port()}/tsr" if mode == "down" else tsa.url
    tsa.mode, tsa.delay = mode, 2.0
    size, blobs = home.size(), set(home.artifacts)
    started = time.monotonic()
    with pytest.raises(error) as exc:
        anchor_checkpoint(home, tsa_urls=[url], roots=tsa_roots, **FAST)
    assert time.monotonic() - started < FAST["deadline"] + 0.8  # retries stay inside the deadline
    msg = str(exc.value)
    assert words in msg and "\n" not in msg and url in msg
    assert home.size() == size and set(home.artifacts) == blobs


def test_retries_transient_errors_then_succeeds(tsa, tsa_roots):
    calls = {"n": 0}
    real = tsa.handle

    def flaky(query, ctype):
        calls["n"] += 1
        return (503, "text/plain", b"busy\n") if calls["n"] < 3 else real(query, ctype)

    tsa.handle = flaky
    try:
        ts = timestamp(tsa.url, b"data", tsa_roots, timeout=2, deadline=10)
    finally:
        del tsa.handle
    assert calls["n"] == 3 and ts.info.hash_alg == "sha256"


def test_verify_timestamp_offline(tsa, tsa_roots):
    ts = timestamp(tsa.url, b"checkpoint", tsa_roots)
    info = verify_timestamp(ts.response, b"checkpoint", tsa_roots, nonce=ts.info.nonce)
    assert info == ts.info
    with pytest.raises(TimestampMismatch):
        verify_timestamp(ts.response, b"checkpoinT", tsa_roots)
    with pytest.raises(TimestampMismatch):
        verify_timestamp(ts.response, b"checkpoint", tsa_roots, hash_alg="sha512")
    with pytest.raises(UntrustedTimestamp):
        verify_timestamp(ts.response, b"checkpoint", load_roots([tsa.rogue_root_pem]))
    # Flip a byte of the signature at the end of the token.
    forged = ts.response[:-5] + bytes([ts.response[-5] ^ 1]) + ts.response[-4:]
    with pytest.raises(IntegrityError):
        verify_timestamp(forged, b"checkpoint", tsa_roots)


def test_audit_rechecks_tokens_and_sees_tampering(home, tsa, tsa_roots):
    [res] = anchor_checkpoint(home, tsa_urls=[tsa.url], roots=tsa_roots)
    [check] = audit_anchors(home, roots=tsa_roots)
    assert check.ok and check.verified and check.where == f"record {res.record_index}"
    [unverified] = audit_anchors(home)
    assert unverified.ok and not unverified.verified
    [rogue] = audit_anchors(home, roots=load_roots([tsa.rogue_root_pem]))
    assert not rogue.ok and "configured TSA roots" in rogue.detail

    p = res.payload
    note = home.store.latest_checkpoint().note

    def loader(d: str) -> bytes:
        return blob(home, d)

    assert check_anchor_record(p, loader, note, roots=tsa_roots).ok
    assert "not the note" in check_anchor_record(p, loader, note + "x", roots=tsa_roots).detail
    lied = dict(p, time="2001-01-01T00:00:00Z")
    assert not check_anchor_record(lied, loader, note, roots=tsa_roots).ok
    path = home.artifacts.path_for(p["token_sha256"])
    path.chmod(0o644)
    path.write_bytes(path.read_bytes() + b"\x00")
    [tampered] = audit_anchors(home, roots=tsa_roots)
    assert not tampered.ok and "altered" in tampered.detail


def test_bad_configuration_is_a_usage_error(home, tsa, tmp_path):
    with pytest.raises(UsageError, match="root"):
        anchor_checkpoint(home, tsa_urls=[tsa.url], roots=[])
    with pytest.raises(UsageError, match="nothing to anchor"):
        anchor_checkpoint(home)
    with pytest.raises(UsageError, match="cannot read"):
        load_roots([tmp_path / "missing.pem"])
    (tmp_path / "junk.pem").write_text("-----BEGIN CERTIFICATE-----\nxx\n-----END CERTIFICATE-----\n")
    with pytest.raises(UsageError, match="no PEM or DER"):
        load_roots([tmp_path / "junk.pem"])
    with pytest.raises(UsageError, match="http"):
        timestamp("ftp://tsa.example/", b"x", load_roots([tsa.root_pem]))
    with pytest.raises(UsageError, match="sha1"):
        timestamp(tsa.url, b"x", load_roots([tsa.root_pem]), hash_alg="sha1")


def test_documented_example_tsa(home, tmp_path):
    """examples/tsa/: make-ca.sh + serve.py, exactly as the README runs them."""
    examples = Path(__file__).resolve().parents[2] / "examples" / "tsa"
    subprocess.run([str(examples / "make-ca.sh"), str(tmp_path / "ca")], check=True, capture_output=True)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(examples / "serve.py"), str(tmp_path / "ca"), "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert "listening" in proc.stdout.readline()  # type: ignore[union-attr]
        roots = load_roots([tmp_path / "ca" / "ca.pem"])
        [r] = anchor_checkpoint(home, tsa_urls=[f"http://127.0.0.1:{port}/tsr"], roots=roots)
        assert r.ok and r.payload["tsa_name"] == "CN=Evidence Demo TSA"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
