"""C2SP tlog-checkpoint v1.0.0 bodies and C2SP tlog-proof texts.

Checkpoint body (https://c2sp.org/tlog-checkpoint)::

    <origin>\\n<decimal tree size>\\n<base64 root hash>\\n[<extension line>\\n ...]

tlog-proof (https://c2sp.org/tlog-proof)::

    c2sp.org/tlog-proof@v1\\n[extra <base64>\\n]index <n>\\n<base64 hash>\\n ... \\n<signed checkpoint note>

No IO and no signature checks here: see ``ledger.note`` for those.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from ledger.errors import ProofError, SignatureError

_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")
PROOF_HEADER = "c2sp.org/tlog-proof@v1"


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    # tlog-checkpoint: note text
    def to_text(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode(), *self.extensions]
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        if not text.endswith("\n"):
            raise SignatureError("checkpoint must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise SignatureError("checkpoint needs origin, size and root lines")
        origin, size, root, *ext = lines
        if not origin:
            raise SignatureError("checkpoint origin is empty")
        if not _DECIMAL.fullmatch(size) or int(size) >= 1 << 63:
            raise SignatureError(f"checkpoint size {size!r} is not a decimal tree size")
        try:
            raw = base64.b64decode(root, validate=True)
        except (ValueError, binascii.Error):
            raise SignatureError("checkpoint root is not base64") from None
        if len(raw) != 32:
            raise SignatureError(f"checkpoint root is {len(raw)} bytes, expected 32")
        if any(not e for e in ext):
            raise SignatureError("checkpoint has an empty extension line")
        return cls(origin, int(size), raw, tuple(ext))


@dataclass(frozen=True)
class TlogProof:
    index: int
    hashes: list[bytes]
    note: str  # the signed checkpoint, with any cosignatures
    extra: bytes | None = None


# tlog-proof: format
def format_proof(proof: TlogProof) -> str:
    lines = [PROOF_HEADER]
    if proof.extra is not None:
        lines.append("extra " + base64.b64encode(proof.extra).decode())
    lines.append(f"index {proof.index}")
    lines.extend(base64.b64encode(h).decode() for h in proof.hashes)
    return "\n".join(lines) + "\n\n" + proof.note


# tlog-proof: parse
def parse_proof(text: str) -> TlogProof:
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise ProofError("tlog-proof has no checkpoint")
    lines = head.split("\n")
    if lines[0] != PROOF_HEADER:
        raise ProofError(f"tlog-proof must start with {PROOF_HEADER!r}")
    pos = 1
    extra = None
    if pos < len(lines) and lines[pos].startswith("extra "):
        try:
            extra = base64.b64decode(lines[pos][6:], validate=True)
        except (ValueError, binascii.Error):
            raise ProofError("tlog-proof extra data is not base64") from None
        pos += 1
    if pos >= len(lines) or not lines[pos].startswith("index "):
        raise ProofError("tlog-proof has no index line")
    digits = lines[pos][6:]
    if not _DECIMAL.fullmatch(digits):
        raise ProofError(f"tlog-proof index {digits!r} is not decimal")
    hashes = []
    for line in lines[pos + 1 :]:
        hashes.append(_hash_line(line, "tlog-proof"))
    if len(hashes) > 63:
        raise ProofError("tlog-proof has more hashes than any tree can need")
    return TlogProof(int(digits), hashes, note, extra)


def _hash_line(line: str, what: str) -> bytes:
    """One base64 SHA-256 hash per line, as both proof formats carry them."""
    try:
        h = base64.b64decode(line, validate=True)
    except (ValueError, binascii.Error):
        raise ProofError(f"{what} hash is not base64") from None
    if len(h) != 32:
        raise ProofError(f"{what} hash is {len(h)} bytes, expected 32")
    return h


# -- consistency proof text (case files) ------------------------------------------
# Not a C2SP format (C2SP has none for consistency): the tlog-proof layout with
# an old and a new size instead of an index, so the same tools read it.

CONSISTENCY_HEADER = "evidence-chain/consistency-proof@v1"


def format_consistency(old: int, new: int, hashes: list[bytes]) -> str:
    """``header / old N / new M / base64 hash per line``."""
    lines = [CONSISTENCY_HEADER, f"old {old}", f"new {new}", *(base64.b64encode(h).decode() for h in hashes)]
    return "\n".join(lines) + "\n"


def parse_consistency(text: str) -> tuple[int, int, list[bytes]]:
    if not text.endswith("\n"):
        raise ProofError("consistency proof must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3 or lines[0] != CONSISTENCY_HEADER:
        raise ProofError(f"consistency proof must start with {CONSISTENCY_HEADER!r}, old and new lines")
    sizes = []
    for line, word in ((lines[1], "old "), (lines[2], "new ")):
        digits = line[len(word):]
        if not line.startswith(word) or not re.fullmatch(r"0|[1-9][0-9]{0,18}", digits):
            raise ProofError(f"consistency proof line {line[:30]!r} is not '{word}<size>'")
        sizes.append(int(digits))
    if len(lines) - 3 > 126:
        raise ProofError("consistency proof has more hashes than any tree can need")
    return sizes[0], sizes[1], [_hash_line(line, "consistency proof") for line in lines[3:]]
