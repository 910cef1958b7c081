"""All anchors together, audit re-checks, and scheduling (anchor only when the tree grew)."""

from __future__ import annotations

import threading

import pytest
from tsa_fixture import free_port

from ledger.anchors import (
    AnchorUnavailable,
    Witness,
    anchor_checkpoint,
    audit_anchors,
    check_anchor_record,
    needs_anchor,
    parse_interval,
    run_every,
)
from ledger.errors import UsageError


def test_one_checkpoint_three_kinds_of_anchor(home, tsa, tsa_roots, witness_server):
    from test_anchor_deposit import load_example

    ex = load_example()
    notary = ex.ToyNotary().start()
    try:
        for i in range(20):
            home.append("exhibit", {"n": i}, case="C-9")
        deposit = ex.NotaryDeposit("toy-notary", notary.url, notary.public_key)
        witness = Witness(witness_server.url, witness_server.verifier)
        results = anchor_checkpoint(
            home, tsa_urls=[tsa.url], roots=tsa_roots, witnesses=[witness], deposits=[deposit]
        )
        assert [r.payload["type"] for r in results] == ["rfc3161", "witness", "deposit"]
        cp = home.store.latest_checkpoint()
        # One checkpoint, so every anchor covers all 21 records before it.
        assert {r.payload["checkpoint_size"] for r in results} == {cp.size} and cp.size == 21
        assert [r.record_index for r in results] == [21, 22, 23]
        checks = audit_anchors(home, roots=tsa_roots, witnesses=[witness_server.verifier], deposits=[deposit])
        assert all(c.ok and c.verified for c in checks), checks
        assert [c.where for c in checks] == ["record 21", "record 22", "record 23"]
    finally:
        notary.stop()


def test_malformed_anchor_payloads_fail_cleanly(home, tsa, tsa_roots):
    [r] = anchor_checkpoint(home, tsa_urls=[tsa.url], roots=tsa_roots)
    note = home.store.latest_checkpoint().note

    def load(d: str) -> bytes:
        with home.artifacts.open(d) as f:
            return f.read()

    for bad in (
        {},
        {"type": "carrier-pigeon"},
        dict(r.payload, token_sha256=None),
        dict(r.payload, token_sha256="ab" * 32),
    ):
        c = check_anchor_record(bad, load, note, roots=tsa_roots)
        assert not c.ok and "\n" not in c.detail
    # An anchor record appended for a checkpoint the ledger never signed.
    home.append("anchor", dict(r.payload, checkpoint_size=999))
    assert "does not hold" in audit_anchors(home, roots=tsa_roots)[-1].detail


def test_needs_anchor_ignores_anchor_records(home, tsa, tsa_roots):
    assert needs_anchor(home)  # log-init, never anchored
    anchor_checkpoint(home, tsa_urls=[tsa.url], roots=tsa_roots)
    assert not needs_anchor(home)  # only our own anchor record was added
    home.append("custody", {"note": "new evidence"})
    assert needs_anchor(home)
    anchor_checkpoint(home, tsa_urls=[tsa.url], roots=tsa_roots)
    assert not needs_anchor(home)
    home.checkpoint()  # a checkpoint that covers only anchor records
    assert needs_anchor(home)  # not anchored yet: anchored once more, then quiet
    anchor_checkpoint(home, tsa_urls=[tsa.url], roots=tsa_roots)
    assert not needs_anchor(home)


def test_run_every_anchors_only_growth_and_survives_outages(home, tsa, tsa_roots):
    rounds: list[str] = []
    errors: list[str] = []
    stop = threading.Event()
    url = tsa.url

    def job() -> None:
        if len(rounds) == 2:
            tsa.mode = "http500"
        elif len(rounds) == 3:
            tsa.mode = "ok"
            home.append("custody", {"note": "more"})
        if needs_anchor(home):
            rounds.append("anchored")
            anchor_checkpoint(home, tsa_urls=[url], roots=tsa_roots, timeout=0.2, deadline=0.4)
        else:
            rounds.append("idle")
        if len(rounds) >= 5:
            stop.set()

    n = run_every(0.01, job, stop=stop, on_error=lambda e: errors.append(str(e)))
    assert n == 5
    assert rounds == ["anchored", "idle", "idle", "anchored", "idle"]
    assert errors == []
    anchored = [r for r in home.records() if r.kind == "anchor"]
    assert len(anchored) == 2

    home.append("custody", {"note": "during an outage"})
    tsa.mode = "http500"
    outage: list[str] = []
    run_every(
        0.01,
        lambda: anchor_checkpoint(home, tsa_urls=[url], roots=tsa_roots, timeout=0.2, deadline=0.4),
        max_runs=2,
        on_error=lambda e: outage.append(type(e).__name__),
    )
    assert outage == ["AnchorUnavailable", "AnchorUnavailable"]
    with pytest.raises(AnchorUnavailable):
        run_every(
            0.01,
            lambda: anchor_checkpoint(home, tsa_urls=[url], roots=tsa_roots, timeout=0.2, deadline=0.4),
            max_runs=1,
        )


@pytest.mark.parametrize(
    "text, seconds", [("10m", 600), ("90s", 90), ("1h", 3600), ("1d", 86400), ("45", 45), ("0.5m", 30)]
)
def test_parse_interval(text, seconds):
    assert parse_interval(text) == seconds


@pytest.mark.parametrize("text", ["", "0m", "ten minutes", "-5m", "10w"])
def test_parse_interval_rejects(text):
    with pytest.raises(UsageError):
        parse_interval(text)


def test_every_failure_of_a_down_tsa_is_bounded(home, tsa_roots):
    import time

    url = f"http://127.0.0.1:{free_port()}/"
    t = time.monotonic()
    with pytest.raises(AnchorUnavailable):
        anchor_checkpoint(home, tsa_urls=[url, url], roots=tsa_roots, timeout=0.2, deadline=0.5)
    assert time.monotonic() - t < 2.0
