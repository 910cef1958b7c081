"""C2SP tlog-witness: obtain cosignatures over our checkpoints, and a small witness.

    client = WitnessClient("http://127.0.0.1:8090")
    lines = client.add_checkpoint(signed_note, old_size, proof)       # network
    cosigs = verify_cosignatures(signed_note, trusted, 1, extra_lines=lines)  # offline

A witness keeps, per log origin, the latest checkpoint it cosigned and only
cosigns a new one that is provably consistent with it. A keeper who rewrites
history after a witness cosigned therefore cannot get the rewrite cosigned
by that witness again, which is the point: a third party that will not sign
two histories. ``WitnessServer`` is a minimal, complete witness (one origin
table, atomic check-and-store, optional state file) used by the tests and
for running a witness inside an organisation.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.errors import EvidenceError, IntegrityError, ProofError, UsageError

from .. import merkle
from ..checkpoint import Checkpoint
from ..note import CosignatureVerifier, Verifier, cosign, parse_note, verify_note
from . import _http
from .errors import AnchorRejected, CosignatureError, WitnessConflict, WitnessPolicyError

ADD_CHECKPOINT = "/add-checkpoint"
SIZE_TYPE = "text/x.tlog.size"
NOTE_TYPE = "text/plain; charset=utf-8"
MAX_PROOF_LINES = 63
MAX_REQUEST = 64 * 1024
SIG_DASH = "\u2014"


@dataclass(frozen=True)
class Cosignature:
    """One verified witness cosignature."""

    witness: str  # the witness key name
    time: int  # POSIX seconds, the witness's clock
    line: str  # the note signature line, as the witness wrote it


class WitnessSizeConflict(WitnessConflict):
    """409 with the witness's latest size: the client sent the wrong old size."""

    def __init__(self, message: str, witness_size: int):
        super().__init__(message)
        self.witness_size = witness_size


# -- wire format -------------------------------------------------------------


# tlog-witness: add-checkpoint request body
def request_body(signed_note: str, old_size: int, proof: Sequence[bytes]) -> bytes:
    """tlog-witness add-checkpoint: old size line, proof lines, empty line, checkpoint."""
    if old_size < 0:
        raise UsageError("old size must not be negative")
    if len(proof) > MAX_PROOF_LINES:
        raise UsageError(f"consistency proof has {len(proof)} hashes; the protocol allows {MAX_PROOF_LINES}")
    head = f"old {old_size}\n" + "".join(base64.b64encode(h).decode() + "\n" for h in proof)
    return (head + "\n" + signed_note).encode("utf-8")


# tlog-witness: add-checkpoint request body
def parse_request(body: bytes) -> tuple[int, list[bytes], str]:
    """Inverse of ``request_body``; raises UsageError for anything malformed."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError("request is not UTF-8") from None
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise UsageError("request has no empty line before the checkpoint")
    lines = head.split("\n")
    first = lines[0]
    digits = first[4:]
    if (
        not first.startswith("old ")
        or not digits.isdigit()
        or not digits.isascii()
        or (digits != "0" and digits.startswith("0"))
    ):
        raise UsageError("first line must be 'old <size>' in decimal without leading zeros")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise UsageError(f"more than {MAX_PROOF_LINES} consistency proof lines")
    proof = []
    for ln in lines[1:]:
        try:
            h = base64.b64decode(ln, validate=True)
        except (binascii.Error, ValueError):
            raise UsageError("a consistency proof line is not base64") from None
        if len(h) != 32:
            raise UsageError("a consistency proof line is not a 32-byte hash")
        proof.append(h)
    return int(digits), proof, note


def note_body(signed_note: str) -> str:
    """The checkpoint text a signature covers: everything before the blank line."""
    return parse_note(signed_note)[0]


def signature_lines(text: str) -> list[str]:
    return [ln for ln in text.split("\n") if ln.startswith(SIG_DASH + " ")]


def with_cosignatures(signed_note: str, lines: Sequence[str]) -> str:
    """The note with extra signature lines appended (the usual way to publish cosignatures)."""
    present = set(signature_lines(signed_note))
    extra = "".join(ln.rstrip("\n") + "\n" for ln in lines if ln.rstrip("\n") not in present)
    return signed_note + extra


# -- client ------------------------------------------------------------------


class WitnessClient:
    """tlog-witness client for one witness, addressed by its submission prefix."""

    def __init__(self, url: str, *, timeout: float = 10.0, deadline: float = 30.0):
        self.url = _http.check_url(url.rstrip("/"), "witness")
        self.timeout = timeout
        self.deadline = deadline

    # tlog-witness: add-checkpoint (client)
    def add_checkpoint(
        self, signed_note: str, old_size: int, consistency_proof: Sequence[bytes]
    ) -> list[str]:
        """tlog-witness add-checkpoint: submit, return the witness's signature lines."""
        url = self.url + ADD_CHECKPOINT
        resp = _http.post(
            url,
            request_body(signed_note, old_size, consistency_proof),
            content_type=NOTE_TYPE,
            accept=NOTE_TYPE,
            what="witness",
            timeout=self.timeout,
            deadline=self.deadline,
        )
        text = resp.body.decode("utf-8", "replace")
        if resp.status == 200:
            lines = signature_lines(text)
            if not lines:
                raise CosignatureError(f"witness {self.url} answered 200 without a signature line")
            return lines
        if resp.status == 409:
            if resp.content_type == SIZE_TYPE and text.strip().isdigit():
                size = int(text.strip())
                raise WitnessSizeConflict(
                    f"witness {self.url} last cosigned size {size} of this log, not {old_size}", size
                )
            raise WitnessConflict(
                f"witness {self.url} holds a different checkpoint of the same size: the log was forked or rewritten"
            )
        if resp.status == 422:
            raise WitnessConflict(
                f"witness {self.url} rejected the consistency proof from size {old_size}: "
                "it saw a different history of this log"
            )
        reason = {
            400: "rejected the request as malformed",
            403: "does not trust this log's signing key",
            404: "does not know this log's origin",
        }.get(resp.status, f"answered HTTP {resp.status}")
        raise AnchorRejected(f"witness {self.url} {reason}{_http._snippet(resp.body)}")


# -- verification (offline) --------------------------------------------------


# tlog-cosignature: Ed25519 cosignature/v1 verification, N-of-M policy
def verify_cosignatures(
    signed_note: str,
    witnesses: Sequence[CosignatureVerifier],
    min_count: int,
    *,
    extra_lines: Sequence[str] = (),
    now: float | None = None,
    max_future: float = 300.0,
) -> list[Cosignature]:
    """tlog-cosignature: at least ``min_count`` distinct trusted witnesses cosigned this checkpoint.

    Lines from unknown keys are ignored, as the spec requires; a line that
    claims a trusted witness's name and key ID but does not verify is an
    error (someone forged or damaged it). ``now`` is injectable for tests.
    """
    if min_count < 1:
        raise UsageError("a witness policy must require at least one cosignature")
    if min_count > len(witnesses):
        raise UsageError(f"policy needs {min_count} witnesses but only {len(witnesses)} are trusted")
    body = note_body(signed_note)
    lines = [sig.line.rstrip("\n") for sig in parse_note(signed_note)[1]]
    lines += [ln.rstrip("\n") for ln in extra_lines]
    clock = time.time() if now is None else now
    found: dict[str, Cosignature] = {}
    for w in witnesses:
        for ln in lines:
            if not w.matches(ln):
                continue
            try:
                ts = w.verify(body, ln)
            except EvidenceError as e:
                raise CosignatureError(f"cosignature from witness {w.name} does not verify: {e}") from None
            if ts > clock + max_future:
                raise CosignatureError(f"cosignature from witness {w.name} is dated in the future ({ts})")
            found.setdefault(w.name, Cosignature(w.name, ts, ln))
    if len(found) < min_count:
        have = ", ".join(sorted(found)) or "none"
        raise WitnessPolicyError(
            f"checkpoint has {len(found)} valid witness cosignature(s) ({have}); the policy needs {min_count}"
        )
    return list(found.values())


@dataclass(frozen=True)
class WitnessPolicy:
    """ "At least ``min_count`` of these witnesses": the case verifier's witness rule."""

    witnesses: tuple[CosignatureVerifier, ...]
    min_count: int

    @classmethod
    def parse(cls, vkeys: Sequence[str], min_count: int) -> WitnessPolicy:
        return cls(tuple(CosignatureVerifier.parse(v) for v in vkeys), min_count)

    def check(
        self, signed_note: str, extra_lines: Sequence[str] = (), now: float | None = None
    ) -> list[Cosignature]:
        return verify_cosignatures(
            signed_note, self.witnesses, self.min_count, extra_lines=extra_lines, now=now
        )


# -- a minimal witness -----------------------------------------------------------


@dataclass(frozen=True)
class _Seen:
    size: int
    root: bytes


class WitnessServer:
    """A tlog-witness on 127.0.0.1 (or ``host``) for the logs in ``logs``.

    ``logs`` maps a checkpoint origin to the log verifier keys trusted for
    it. State (latest cosigned size and root per origin) is checked and
    updated under one lock, and written to ``state_path`` (temp file, fsync,
    rename) before the cosignature leaves, so a crash cannot make the
    witness forget a size it already cosigned.
    """

    def __init__(
        self,
        name: str,
        key: Ed25519PrivateKey,
        logs: Mapping[str, Sequence[Verifier]],
        *,
        state_path: Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        self.name = name
        self._key = key
        self.logs = {origin: list(vs) for origin, vs in logs.items()}
        self.state_path = state_path
        self._lock = threading.Lock()
        self._seen: dict[str, _Seen] = self._load()
        self._addr = (host, port)
        self._server: ThreadingHTTPServer | None = None
        self.clock = time.time  # replaceable in tests

    @property
    def verifier(self) -> CosignatureVerifier:
        return CosignatureVerifier.from_key(self.name, self._key.public_key())

    @property
    def url(self) -> str:
        if self._server is None:
            raise UsageError("witness server is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def latest(self, origin: str) -> tuple[int, bytes | None]:
        with self._lock:
            s = self._seen.get(origin)
        return (s.size, s.root) if s else (0, None)

    # -- add-checkpoint ---------------------------------------------------------

    # tlog-witness: add-checkpoint (witness side, atomic check-and-store)
    def add_checkpoint(self, body: bytes) -> tuple[int, str, bytes]:
        """tlog-witness add-checkpoint, server side: (status, content type, body)."""
        try:
            old, proof, note = parse_request(body)
            cp = Checkpoint.parse(note_body(note))
        except (UsageError, IntegrityError) as e:
            return 400, NOTE_TYPE, f"{e}\n".encode()
        trusted = self.logs.get(cp.origin)
        if trusted is None:
            return 404, NOTE_TYPE, b"unknown log origin\n"
        try:
            verify_note(note, trusted)
        except EvidenceError:
            return 403, NOTE_TYPE, b"no signature from a trusted log key\n"
        if old > cp.size:
            return 400, NOTE_TYPE, b"old size is larger than the checkpoint size\n"
        if old == 0 and proof:
            return 400, NOTE_TYPE, b"a consistency proof from size 0 must be empty\n"
        with self._lock:
            seen = self._seen.get(cp.origin, _Seen(0, merkle.EMPTY_ROOT))
            if old != seen.size:
                return 409, SIZE_TYPE, f"{seen.size}\n".encode()
            if old == cp.size:
                if cp.root != seen.root and old != 0:
                    return 409, NOTE_TYPE, b"same size, different root\n"
            elif old > 0:
                try:
                    merkle.verify_consistency(old, cp.size, proof, seen.root, cp.root)
                except ProofError:
                    return 422, NOTE_TYPE, b"consistency proof does not verify\n"
            self._seen[cp.origin] = _Seen(cp.size, cp.root)
            try:
                self._save()
            except OSError:
                self._seen[cp.origin] = seen
                return 503, NOTE_TYPE, b"cannot persist witness state\n"
            line = cosign(note_body(note), self.name, self._key, int(self.clock()))
        return 200, NOTE_TYPE, (line.rstrip("\n") + "\n").encode()

    # -- state ------------------------------------------------------------------

    def _load(self) -> dict[str, _Seen]:
        if self.state_path is None or not self.state_path.exists():
            return {}
        try:
            raw = json.loads(self.state_path.read_text("utf-8"))
            return {o: _Seen(int(v["size"]), bytes.fromhex(v["root"])) for o, v in raw.items()}
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise UsageError(f"witness state {self.state_path} is unreadable: {e}") from None

    def _save(self) -> None:
        if self.state_path is None:
            return
        data = json.dumps({o: {"size": s.size, "root": s.root.hex()} for o, s in self._seen.items()})
        fd, tmp = tempfile.mkstemp(dir=self.state_path.parent, prefix=".witness-")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.state_path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    # -- serving ------------------------------------------------------------------

    def start(self) -> WitnessServer:
        witness = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                if self.path.rstrip("/") != ADD_CHECKPOINT:
                    status, ctype, out = 404, NOTE_TYPE, b"not found\n"
                elif length > MAX_REQUEST:
                    status, ctype, out = 400, NOTE_TYPE, b"request too large\n"
                else:
                    status, ctype, out = witness.add_checkpoint(self.rfile.read(length))
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up; the state change, if any, stands

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(self._addr, Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True, name=f"witness {self.name}"
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> WitnessServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
