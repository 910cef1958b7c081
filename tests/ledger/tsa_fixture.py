"""A local RFC 3161 TSA for tests: `openssl ts -reply` behind a threaded HTTP server.

The TSA uses ``examples/tsa/tsa.cnf`` unchanged (so the documented example is
what the tests exercise), with a throwaway test CA made by ``cryptography``
at setup. ``mode`` injects the faults a real TSA can show:

    ok            a proper reply
    slow          sleep ``delay`` seconds, then reply
    http500       HTTP 500, no body worth reading
    reject        a real openssl rejection (the TSA accepts no SHA-256/512)
    wrong-digest  a valid token over other data
    wrong-nonce   a valid token carrying another nonce
    rogue-chain   a valid token from a TSA certificate under another CA
    garbage       200 with bytes that are not DER

Usable from a shell for demos too: ``python tests/ledger/tsa_fixture.py``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from rfc3161_client._rust import parse_timestamp_request

EXAMPLE_CNF = Path(__file__).resolve().parents[2] / "examples" / "tsa" / "tsa.cnf"
MODES = ("ok", "slow", "http500", "reject", "wrong-digest", "wrong-nonce", "rogue-chain", "garbage")


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def make_ca(directory: Path, cn: str) -> None:
    """Write ca.pem, tsa.pem, tsa.key and serial into ``directory``.

    The TSA certificate's only extended key usage is critical timeStamping,
    as RFC 3161 section 2.3 requires and rfc3161-client checks.
    """
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{cn} Root CA"))
        .issuer_name(_name(f"{cn} Root CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    tsa_key = ec.generate_private_key(ec.SECP256R1())
    tsa = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{cn} TSA"))
        .issuer_name(ca.subject)
        .public_key(tsa_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "tsa.pem").write_bytes(tsa.public_bytes(serialization.Encoding.PEM))
    _write_key(tsa_key, directory / "tsa.key")
    (directory / "serial").write_text("01\n")


def _section(base: str, name: str, **overrides: str) -> str:
    """Copy the [tsa_config1] section of the example under a new name, overriding keys."""
    body = base.split("[ tsa_config1 ]", 1)[1]
    lines = []
    for line in body.splitlines():
        key = line.split("=", 1)[0].strip()
        lines.append(f"{key} = {overrides[key]}" if key in overrides else line)
    return f"\n[ {name} ]" + "\n".join(lines) + "\n"


class LocalTSA:
    """Test CA + TSA under ``workdir``, served on 127.0.0.1 until ``stop()``."""

    def __init__(self, workdir: Path):
        self.dir = Path(workdir)
        make_ca(self.dir, "Evidence Test")
        make_ca(self.dir / "rogue", "Rogue")
        base = EXAMPLE_CNF.read_text("utf-8")
        self.cnf = self.dir / "tsa.cnf"
        self.cnf.write_text(
            base
            + _section(base, "tsa_rogue", dir="$ENV::TSA_DIR/rogue")
            # An openssl TSA that supports none of our hashes answers "rejection/badAlg".
            + _section(base, "tsa_reject", digests="sha384"),
            "utf-8",
        )
        self.root_pem = self.dir / "ca.pem"
        self.tsa_pem = self.dir / "tsa.pem"
        self.rogue_root_pem = self.dir / "rogue" / "ca.pem"
        self.mode = "ok"
        self.delay = 0.0
        self.requests = 0
        self._lock = threading.Lock()  # openssl rewrites the serial file
        self._server: ThreadingHTTPServer | None = None

    # -- serving -------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/tsr"

    def start(self) -> LocalTSA:
        tsa = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, ctype, out = tsa.handle(body, self.headers.get("Content-Type", ""))
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting ("slow" mode): that is the point

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def handle(self, query: bytes, content_type: str) -> tuple[int, str, bytes]:
        self.requests += 1
        mode = self.mode
        if content_type.split(";")[0].strip() != "application/timestamp-query":
            return 415, "text/plain", b"expected application/timestamp-query\n"
        if mode == "slow":
            time.sleep(self.delay)
        if mode == "http500":
            return 500, "text/plain", b"internal error\n"
        if mode == "garbage":
            return 200, "application/timestamp-reply", b"\x30\x03not DER at all"
        section = {"reject": "tsa_reject", "rogue-chain": "tsa_rogue"}.get(mode, "tsa_config1")
        if mode == "wrong-digest":
            query = _replace_imprint(query)
        elif mode == "wrong-nonce":
            query = _replace_nonce(query)
        return 200, "application/timestamp-reply", self.reply(query, section)

    def reply(self, query: bytes, section: str = "tsa_config1") -> bytes:
        """Run ``openssl ts -reply`` on one DER TimeStampReq."""
        tag = uuid.uuid4().hex
        q, r = self.dir / f"q-{tag}.tsq", self.dir / f"r-{tag}.tsr"
        q.write_bytes(query)
        env = dict(os.environ, TSA_DIR=str(self.dir))
        try:
            with self._lock:
                subprocess.run(
                    [
                        "openssl",
                        "ts",
                        "-reply",
                        "-config",
                        str(self.cnf),
                        "-section",
                        section,
                        "-queryfile",
                        str(q),
                        "-out",
                        str(r),
                    ],
                    env=env,
                    check=True,
                    capture_output=True,
                    timeout=30,
                )
            return r.read_bytes()
        finally:
            q.unlink(missing_ok=True)
            r.unlink(missing_ok=True)


def _replace_imprint(query: bytes) -> bytes:
    req = parse_timestamp_request(query)
    old = req.message_imprint.message
    new = hashlib.new("sha256" if len(old) == 32 else "sha512", b"some other data").digest()
    assert query.count(old) == 1
    return query.replace(old, new)


def _replace_nonce(query: bytes) -> bytes:
    req = parse_timestamp_request(query)
    n = req.nonce
    assert n is not None
    # DER INTEGER content: minimal two's complement, big-endian.
    old = n.to_bytes((n.bit_length() + 8) // 8, "big", signed=True).lstrip(b"\x00") or b"\x00"
    if old[0] & 0x80:
        old = b"\x00" + old
    enc = bytes([0x02, len(old)]) + old
    new = bytes([0x02, len(old)]) + bytes([old[0] ^ 0x01]) + old[1:]
    assert query.count(enc) == 1
    return query.replace(enc, new)


def free_port() -> int:
    """A port on 127.0.0.1 with nothing listening (for "TSA down" tests)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    import sys
    import tempfile

    tsa = LocalTSA(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="tsa-"))).start()
    print(f"TSA {tsa.url}\nroot {tsa.root_pem}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        tsa.stop()
