"""C2SP tlog-witness anchors: the client, the minimal witness, cosignature policy."""

from __future__ import annotations

import shutil
import threading
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.anchors import (
    AnchorRejected,
    CosignatureError,
    Witness,
    WitnessClient,
    WitnessConflict,
    WitnessPolicy,
    WitnessPolicyError,
    WitnessServer,
    anchor_checkpoint,
    audit_anchors,
    verify_cosignatures,
)
from ledger.anchors._http import post
from ledger.anchors.witness import SIZE_TYPE, WitnessSizeConflict, request_body
from ledger.errors import UsageError
from ledger.log import Ledger
from ledger.note import CosignatureVerifier


def grow(led: Ledger, n: int, tag: str = "x") -> None:
    for i in range(n):
        led.append("custody", {"step": f"{tag}{i}"}, case="C-1")


def anchors(led: Ledger) -> list:
    return [r for r in led.records() if r.kind == "anchor"]


def test_witness_cosigns_then_follows_the_log_with_consistency_proofs(home, witness_server):
    seen: list[tuple[int, int]] = []
    real = witness_server.add_checkpoint

    def spy(body: bytes):
        status, ctype, out = real(body)
        seen.append((int(body.split(b"\n", 1)[0][4:]), status))
        return status, ctype, out

    witness_server.add_checkpoint = spy
    w = Witness(witness_server.url, witness_server.verifier)
    grow(home, 3)
    [r1] = anchor_checkpoint(home, witnesses=[w])
    assert r1.ok and r1.payload["type"] == "witness" and r1.payload["witness"] == "witness.test/w1"
    assert witness_server.latest(home.origin)[0] == r1.payload["checkpoint_size"]

    grow(home, 5)
    [r2] = anchor_checkpoint(home, witnesses=[w])
    size1, size2 = r1.payload["checkpoint_size"], r2.payload["checkpoint_size"]
    assert size2 > size1 and witness_server.latest(home.origin)[0] == size2
    # Second round: old 0 is refused with the witness's size, then a real consistency proof.
    assert seen == [(0, 200), (0, 409), (size1, 200)]

    checks = audit_anchors(home, witnesses=[witness_server.verifier])
    assert [c.ok and c.verified for c in checks] == [True, True]
    assert not audit_anchors(home)[0].verified  # no witness key given: intact, not checked

    # Re-anchoring the same checkpoint is idempotent at the witness (old == size, same root).
    [r3] = anchor_checkpoint(home, witnesses=[w])
    assert r3.ok and r3.payload["checkpoint_size"] > size2


def test_rolled_back_log_gets_409_and_nothing_is_stored(home, witness_server, tmp_path):
    w = Witness(witness_server.url, witness_server.verifier)
    grow(home, 2)
    home.checkpoint()
    home.close()
    backup = tmp_path / "backup"
    shutil.copytree(home.home.root, backup)
    live = Ledger.open(home.home.root)
    grow(live, 4)
    anchor_checkpoint(live, witnesses=[w])
    live.close()

    restored = Ledger.open(backup)
    size = restored.size()
    with pytest.raises(WitnessConflict, match="truncated or rolled back") as exc:
        anchor_checkpoint(restored, witnesses=[w])
    assert "\n" not in str(exc.value)
    assert restored.size() == size and not anchors(restored)
    restored.close()


def test_forked_log_is_refused_by_the_witness(home, witness_server, tmp_path):
    w = Witness(witness_server.url, witness_server.verifier)
    grow(home, 2)
    home.close()
    fork_dir = tmp_path / "fork"
    shutil.copytree(home.home.root, fork_dir)
    live = Ledger.open(home.home.root)
    grow(live, 2, "live")
    anchor_checkpoint(live, witnesses=[w])
    live.close()

    fork = Ledger.open(fork_dir)
    grow(fork, 6, "fork")  # same start, another history, and longer
    with pytest.raises(WitnessConflict, match="different history"):
        anchor_checkpoint(fork, witnesses=[w])
    assert not anchors(fork)
    fork.close()


def test_witness_refusals_map_to_clear_errors(home):
    grow(home, 1)
    cp = home.checkpoint()
    key = Ed25519PrivateKey.generate()
    stranger = Ledger.init(home.home.root.parent / "stranger", unencrypted=True, origin=home.origin)
    cases = [
        ({"other.example/log": home.verifiers()}, 0, "does not know this log's origin"),
        ({home.origin: stranger.verifiers()}, 0, "does not trust this log's signing key"),
        ({home.origin: home.verifiers()}, cp.size + 1, "malformed"),
    ]
    for logs, old, words in cases:
        with WitnessServer("w.test/x", key, logs) as srv:
            with pytest.raises(AnchorRejected, match=words):
                WitnessClient(srv.url).add_checkpoint(cp.note, old, [])
    with WitnessServer("w.test/x", key, {home.origin: home.verifiers()}) as srv:
        for body in (b"garbage", b"old 01\n\n" + cp.note.encode(), request_body(cp.note, 0, [b"\x00" * 32])):
            r = post(
                srv.url + "/add-checkpoint",
                body,
                content_type="text/plain",
                accept="text/plain",
                what="witness",
            )
            assert r.status == 400
        WitnessClient(srv.url).add_checkpoint(cp.note, 0, [])
        with pytest.raises(WitnessSizeConflict) as exc:
            WitnessClient(srv.url).add_checkpoint(cp.note, 0, [])
        assert exc.value.witness_size == cp.size
        r = post(
            srv.url + "/add-checkpoint",
            request_body(cp.note, 0, []),
            content_type="text/plain",
            accept="text/plain",
            what="witness",
        )
        assert r.status == 409 and r.content_type == SIZE_TYPE and r.body == f"{cp.size}\n".encode()
    stranger.close()


def test_check_and_store_is_atomic(home, witness_server):
    grow(home, 2)
    small = home.checkpoint().note
    grow(home, 3)
    big = home.checkpoint().note
    client = WitnessClient(witness_server.url)
    start = threading.Barrier(16)
    outcomes: list[str] = []

    def submit(note: str) -> None:
        start.wait()
        try:
            client.add_checkpoint(note, 0, [])
            outcomes.append("cosigned")
        except WitnessSizeConflict:
            outcomes.append("409")

    threads = [threading.Thread(target=submit, args=(small if i % 2 else big,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # From an empty state exactly one "old 0" can win; every other one must see its size.
    assert outcomes.count("cosigned") == 1 and outcomes.count("409") == 15


def test_witness_state_survives_restart(home, tmp_path):
    grow(home, 2)
    cp = home.checkpoint()
    key = Ed25519PrivateKey.generate()
    state = tmp_path / "witness.json"
    with WitnessServer("w.test/p", key, {home.origin: home.verifiers()}, state_path=state) as srv:
        WitnessClient(srv.url).add_checkpoint(cp.note, 0, [])
    with WitnessServer("w.test/p", key, {home.origin: home.verifiers()}, state_path=state) as srv:
        assert srv.latest(home.origin) == (cp.size, cp.root)
        with pytest.raises(WitnessSizeConflict):
            WitnessClient(srv.url).add_checkpoint(cp.note, 0, [])


def test_n_of_m_policy(home):
    grow(home, 1)
    note = home.checkpoint().note
    servers = [
        WitnessServer(f"w.test/{i}", Ed25519PrivateKey.generate(), {home.origin: home.verifiers()}).start()
        for i in range(3)
    ]
    try:
        trusted = [s.verifier for s in servers]
        lines = WitnessClient(servers[0].url).add_checkpoint(note, 0, [])
        lines += WitnessClient(servers[1].url).add_checkpoint(note, 0, [])
        got = verify_cosignatures(note, trusted, 2, extra_lines=lines)
        assert sorted(c.witness for c in got) == ["w.test/0", "w.test/1"]
        with pytest.raises(WitnessPolicyError, match="needs 3"):
            WitnessPolicy(tuple(trusted), 3).check(note, lines)
        # A line from a witness nobody trusts is ignored, not counted.
        rogue = WitnessServer("w.test/rogue", Ed25519PrivateKey.generate(), {home.origin: home.verifiers()})
        rogue_line = rogue.add_checkpoint(request_body(note, 0, []))[2].decode()
        with pytest.raises(WitnessPolicyError):
            verify_cosignatures(note, trusted, 2, extra_lines=[lines[0], rogue_line])
        # A line that claims a trusted witness but does not verify is forgery, not noise.
        name, sig = lines[0].rsplit(" ", 1)
        bad = name + " " + sig[:-6] + ("A" if sig[-6] != "A" else "B") + sig[-5:]
        with pytest.raises(CosignatureError):
            verify_cosignatures(note, trusted, 1, extra_lines=[bad])
        with pytest.raises(UsageError):
            verify_cosignatures(note, trusted, 0, extra_lines=lines)
        with pytest.raises(UsageError):
            verify_cosignatures(note, trusted, 4, extra_lines=lines)
    finally:
        for s in servers:
            s.stop()


def test_cosignature_from_the_future_is_not_stored(home, witness_server):
    witness_server.clock = lambda: time.time() + 3600
    grow(home, 1)
    with pytest.raises(CosignatureError, match="future"):
        anchor_checkpoint(home, witnesses=[Witness(witness_server.url, witness_server.verifier)])
    assert not anchors(home)


def test_witness_spec_parsing(witness_server):
    v: CosignatureVerifier = witness_server.verifier
    w = Witness.parse(f"{v.vkey}@{witness_server.url}")
    assert w.url == witness_server.url and w.name == v.name
    with pytest.raises(UsageError):
        Witness.parse("no-url-here")
