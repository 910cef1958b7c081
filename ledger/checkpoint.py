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

from evidence.errors import ProofError, SignatureError

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
        try:
            h = base64.b64decode(line, validate=True)
        except (ValueError, binascii.Error):
            raise ProofError("tlog-proof hash is not base64") from None
        if len(h) != 32:
            raise ProofError(f"tlog-proof hash is {len(h)} bytes, expected 32")
        hashes.append(h)
    if len(hashes) > 63:
        raise ProofError("tlog-proof has more hashes than any tree can need")
    return TlogProof(int(digits), hashes, note, extra)
