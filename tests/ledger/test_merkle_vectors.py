"""RFC 6962 conformance: every transparency-dev/merkle vector (tests/data/merkle,
copied from shared/vectors with its LICENSE and SOURCE), plus property tests
of our proof generation against a naive reference."""

import base64
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import merkle
from ledger.errors import ProofError

DATA = Path(__file__).resolve().parents[1] / "data" / "merkle"
VECTORS = sorted(p for p in DATA.rglob("*.json"))


def _b(v):
    return base64.b64decode(v) if v is not None else None


def test_all_vectors_present():
    kinds = {p.relative_to(DATA).parts[0] for p in VECTORS}
    assert kinds == {"inclusion", "consistency"} and len(VECTORS) >= 190


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: str(p.relative_to(DATA)))
def test_vector(path):
    v = json.loads(path.read_text())
    proof = [_b(p) for p in (v["proof"] or [])]
    if path.relative_to(DATA).parts[0] == "inclusion":
        call = lambda: merkle.verify_inclusion(_b(v["leafHash"]), v["leafIdx"], v["treeSize"], proof, _b(v["root"]))  # noqa: E731
    else:
        call = lambda: merkle.verify_consistency(v["size1"], v["size2"], proof, _b(v["root1"]), _b(v["root2"]))  # noqa: E731
    if v["wantErr"]:
        with pytest.raises(ProofError):
            call()
    else:
        call()


def naive_root(leaves):
    if not leaves:
        return merkle.EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return merkle.node_hash(naive_root(leaves[:k]), naive_root(leaves[k:]))


def leaves(n):
    return [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


def test_known_roots():
    assert merkle.root([]) == bytes.fromhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    # RFC 6962 test tree of 8 entries (transparency-dev's "happy path" root)
    assert base64.b64encode(merkle.root([merkle.leaf_hash(d) for d in [b"", b"\x00", b"\x10", b"\x20\x21", b"\x30\x31", b"\x40\x41\x42\x43", b"\x50\x51\x52\x53\x54\x55\x56\x57", b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f"]])).decode() == "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg="


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 300), data=st.data())
def test_proofs_round_trip_and_fail_on_change(n, data):
    ls = leaves(n)
    src = merkle.memory_source(ls)
    r = merkle.root(ls)
    assert r == naive_root(ls)
    i = data.draw(st.integers(0, n - 1))
    proof = merkle.inclusion_proof(i, n, src)
    merkle.verify_inclusion(ls[i], i, n, proof, r)
    if n > 1:
        with pytest.raises(ProofError):
            merkle.verify_inclusion(ls[i], (i + 1) % n, n, proof, r)
    if proof:
        j = data.draw(st.integers(0, len(proof) - 1))
        bad = list(proof)
        bad[j] = bytes([bad[j][0] ^ 1]) + bad[j][1:]
        with pytest.raises(ProofError):
            merkle.verify_inclusion(ls[i], i, n, bad, r)
        with pytest.raises(ProofError):
            merkle.verify_inclusion(ls[i], i, n, proof[:-1], r)
    m = data.draw(st.integers(1, n))
    cproof = merkle.consistency_proof(m, n, src)
    merkle.verify_consistency(m, n, cproof, naive_root(ls[:m]), r)
    if cproof:
        with pytest.raises(ProofError):
            merkle.verify_consistency(m, n, cproof, naive_root(ls[:m]), merkle.leaf_hash(b"x"))
        with pytest.raises(ProofError):
            merkle.verify_consistency(m, n, cproof + [r], naive_root(ls[:m]), r)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 200))
def test_compact_range_nodes_and_resume(n):
    ls = leaves(n)
    cr = merkle.CompactRange()
    made = {}
    for leaf in ls:
        for level, idx, h in cr.append(leaf):
            made[(level, idx)] = h
    assert cr.root() == naive_root(ls) and cr.size == n
    for (level, idx), h in made.items():
        assert h == naive_root(ls[idx << level : (idx + 1) << level])
    assert len(made) == n - bin(n).count("1")  # one node per merge
    src = merkle.memory_source(ls)
    assert merkle.CompactRange.from_nodes(n, src).root() == cr.root()
    resumed = merkle.CompactRange.from_nodes(n // 2, src)
    for leaf in ls[n // 2 :]:
        resumed.append(leaf)
    assert resumed.root() == cr.root()


def test_proof_reads_are_logarithmic():
    n = 1_000_000
    calls = []

    def fake(level, idx):
        calls.append((level, idx))
        return merkle.leaf_hash(f"{level}/{idx}".encode())

    for index in (0, 1, 524_287, 524_288, 999_999, 777_777):
        calls.clear()
        merkle.inclusion_proof(index, n, fake)
        assert len(calls) <= 2 * n.bit_length(), (index, len(calls))
    for size1 in (1, 3, 524_288, 999_998):
        calls.clear()
        merkle.consistency_proof(size1, n, fake)
        assert len(calls) <= 3 * n.bit_length(), (size1, len(calls))


def test_preconditions():
    src = merkle.memory_source(leaves(4))
    with pytest.raises(ProofError):
        merkle.inclusion_proof(4, 4, src)
    with pytest.raises(ProofError):
        merkle.consistency_proof(5, 4, src)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(b"short", 0, 4, [], b"\x00" * 32)
