"""RFC 6962 / RFC 9162 section 2.1 Merkle tree hashing and proofs.

Leaves are ``SHA-256(0x00 || entry)``, interior nodes ``SHA-256(0x01 || l || r)``,
and a tree of n leaves splits at k, the largest power of two below n.

Proof generation reads hashes through a ``NodeSource``: ``node(level, index)``
is the hash of the perfect subtree covering leaves
``[index * 2**level, (index + 1) * 2**level)`` (level 0: the leaf hash). A store
that keeps those nodes answers a proof with O(log n) reads.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

from ledger.errors import ProofError

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
_sha256 = hashlib.sha256

NodeSource = Callable[[int, int], bytes]


# RFC 6962 2.1: MTH({d(0)}) = SHA-256(0x00 || d(0))
def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + data).digest()


# RFC 6962 2.1: MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))
def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly below n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class CompactRange:
    """Streaming tree builder: keeps only the right edge (one hash per set bit).

    ``append`` returns the perfect subtrees it completed at level >= 1, in the
    order they complete, so a store can persist interior nodes as it goes.
    """

    def __init__(self, size: int = 0, edge: Sequence[bytes] = ()):
        # edge[i] is the hash of the i-th perfect subtree from the left, largest first.
        if len(edge) != bin(size).count("1"):
            raise ValueError("edge must hold one hash per set bit of size")
        self.size = size
        self._edge = list(edge)

    @classmethod
    def from_nodes(cls, size: int, node: NodeSource) -> CompactRange:
        edge = []
        start = 0
        for level in range(size.bit_length() - 1, -1, -1):
            if size >> level & 1:
                edge.append(node(level, start >> level))
                start += 1 << level
        return cls(size, edge)

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        made: list[tuple[int, int, bytes]] = []
        h = leaf
        index = self.size
        self.size = index + 1
        edge = self._edge
        level = 0
        # Each trailing 1 bit of the old size is a left sibling to merge with.
        # node_hash inlined: this runs once per record of every append and audit.
        while index & 1:
            h = _sha256(b"\x01%b%b" % (edge.pop(), h)).digest()
            level += 1
            index >>= 1
            made.append((level, index, h))
        edge.append(h)
        return made

    def root(self) -> bytes:
        if not self._edge:
            return EMPTY_ROOT
        h = self._edge[-1]
        for left in reversed(self._edge[:-1]):
            h = node_hash(left, h)
        return h


def root(leaf_hashes: Iterable[bytes]) -> bytes:
    """Merkle tree hash of the given leaf hashes, streaming."""
    cr = CompactRange()
    for h in leaf_hashes:
        cr.append(h)
    return cr.root()


def memory_source(leaf_hashes: Sequence[bytes]) -> NodeSource:
    """NodeSource over an in-memory list of leaf hashes (tests, small logs)."""

    def node(level: int, index: int) -> bytes:
        lo = index << level
        hi = lo + (1 << level)
        if level == 0:
            return leaf_hashes[index]
        if hi > len(leaf_hashes):
            raise ProofError(f"node ({level}, {index}) is outside a tree of {len(leaf_hashes)}")
        return root(leaf_hashes[lo:hi])

    return node


def _memo(node: NodeSource) -> NodeSource:
    cache: dict[tuple[int, int], bytes] = {}

    def get(level: int, index: int) -> bytes:
        key = (level, index)
        if key not in cache:
            cache[key] = node(level, index)
        return cache[key]

    return get


def nodes_read(walk: Callable[[NodeSource], object]) -> list[tuple[int, int]]:
    """The ``(level, index)`` coordinates ``walk(node)`` reads, in first-read order.

    Which nodes a proof or root needs depends only on the sizes, never on the
    hashes, so the walk is run once over placeholders: a store can then fetch
    them all in one query instead of one query per node.
    """
    seen: dict[tuple[int, int], None] = {}

    def record(level: int, index: int) -> bytes:
        seen[(level, index)] = None
        return bytes(HASH_SIZE)

    walk(record)
    return list(seen)


def subtree_hash(start: int, end: int, node: NodeSource) -> bytes:
    """MTH(D[start:end]) for an RFC 6962 subtree (start aligned to its left part)."""
    n = end - start
    if n <= 0:
        raise ProofError(f"empty subtree [{start}, {end})")
    if n & (n - 1) == 0 and start % n == 0:
        level = n.bit_length() - 1
        return node(level, start >> level)
    k = _split(n)
    return node_hash(subtree_hash(start, start + k, node), subtree_hash(start + k, end, node))


# RFC 6962 2.1.1: PATH(m, D[n])
def inclusion_proof(index: int, size: int, node: NodeSource) -> list[bytes]:
    if not 0 <= index < size:
        raise ProofError(f"index {index} is outside a tree of size {size}")
    get = _memo(node)
    proof: list[bytes] = []
    lo, hi, m = 0, size, index
    # Walk down from the root, collecting the sibling subtree at each split;
    # RFC order is leaf-to-root, so the list is reversed at the end.
    while hi - lo > 1:
        k = _split(hi - lo)
        if m < k:
            proof.append(subtree_hash(lo + k, hi, get))
            hi = lo + k
        else:
            proof.append(subtree_hash(lo, lo + k, get))
            lo, m = lo + k, m - k
    proof.reverse()
    return proof


# RFC 6962 2.1.2: PROOF(m, D[n]) = SUBPROOF(m, D[n], true)
def consistency_proof(size1: int, size2: int, node: NodeSource) -> list[bytes]:
    if not 0 <= size1 <= size2:
        raise ProofError(f"cannot prove consistency from size {size1} to {size2}")
    if size1 == 0 or size1 == size2:
        return []
    get = _memo(node)
    proof: list[bytes] = []
    lo, hi, m, complete = 0, size2, size1, True
    while True:
        n = hi - lo
        if m == n:
            if not complete:
                proof.append(subtree_hash(lo, hi, get))
            break
        k = _split(n)
        if m <= k:
            proof.append(subtree_hash(lo + k, hi, get))
            hi = lo + k
        else:
            proof.append(subtree_hash(lo, lo + k, get))
            lo, m, complete = lo + k, m - k, False
    proof.reverse()
    return proof


def _check_hashes(what: str, hashes: Sequence[bytes]) -> None:
    for h in hashes:
        if not isinstance(h, (bytes, bytearray)) or len(h) != HASH_SIZE:
            raise ProofError(f"{what} must be {HASH_SIZE}-byte hashes")


# RFC 9162 2.1.3.2: verifying an inclusion proof
def root_from_inclusion_proof(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    if not 0 <= index < size:
        raise ProofError(f"index {index} is outside a tree of size {size}")
    _check_hashes("leaf hash", [leaf])
    _check_hashes("proof", proof)
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            raise ProofError(f"inclusion proof is too long ({len(proof)} hashes)")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"inclusion proof is too short ({len(proof)} hashes)")
    return r


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    _check_hashes("root", [root])
    calc = root_from_inclusion_proof(leaf_hash, index, size, proof)
    if calc != root:
        raise ProofError(f"inclusion proof gives root {calc.hex()}, expected {root.hex()}")


# RFC 9162 2.1.4.2: verifying a consistency proof
def roots_from_consistency_proof(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes
) -> tuple[bytes, bytes]:
    if not 0 < size1 <= size2:
        raise ProofError(f"cannot check consistency from size {size1} to {size2}")
    _check_hashes("proof", proof)
    if size1 == size2:
        if proof:
            raise ProofError("consistency proof between equal sizes must be empty")
        return root1, root1
    if not proof:
        raise ProofError("consistency proof is empty")
    path = list(proof)
    # If size1 is a power of two, the old root itself is the first node.
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError(f"consistency proof is too long ({len(proof)} hashes)")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"consistency proof is too short ({len(proof)} hashes)")
    return fr, sr


def verify_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes) -> None:
    if size2 < size1:
        raise ProofError(f"size2 ({size2}) is smaller than size1 ({size1})")
    if size1 == 0:
        # Every tree extends the empty tree; a "proof" of that proves nothing.
        raise ProofError("consistency from the empty tree cannot be proven")
    if size1 == size2:
        if proof:
            raise ProofError("consistency proof between equal sizes must be empty")
        if root1 != root2:
            raise ProofError(f"equal sizes but different roots: {root1.hex()} and {root2.hex()}")
        return
    _check_hashes("roots", [root1, root2])
    calc1, calc2 = roots_from_consistency_proof(size1, size2, proof, root1)
    if calc1 != root1:
        raise ProofError(f"consistency proof gives old root {calc1.hex()}, expected {root1.hex()}")
    if calc2 != root2:
        raise ProofError(f"consistency proof gives new root {calc2.hex()}, expected {root2.hex()}")
