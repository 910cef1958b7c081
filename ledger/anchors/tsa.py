"""RFC 3161 trusted timestamps over a signed checkpoint note.

    roots = load_roots(["tsa-root.pem"])
    ts = timestamp("https://tsa.example/tsr", note_bytes, roots)   # request + verify
    info = verify_timestamp(ts.response, note_bytes, roots)        # offline re-check

What is stored is the DER ``TimeStampResp`` exactly as the TSA sent it
(status + token), so ``openssl ts -verify -in token.tsr -data note`` works on
the stored bytes. Verification (rfc3161-client) runs at the token's own
``genTime``: a token stays valid after the TSA certificate expires, which is
what a court years later needs. No IO in the verification path.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from rfc3161_client import (
    HashAlgorithm,
    PKIStatus,
    TimestampRequestBuilder,
    TimeStampResponse,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)

from ledger.errors import IntegrityError, UsageError

from . import _http
from .errors import AnchorRejected, TimestampMismatch, UntrustedTimestamp

# RFC 3161 section 3.4: the media types of a request and a reply over HTTP.
QUERY_TYPE = "application/timestamp-query"
REPLY_TYPE = "application/timestamp-reply"
ROOTS_ENV = "EVIDENCE_TSA_ROOTS"

_HASHES = {"sha256": HashAlgorithm.SHA256, "sha512": HashAlgorithm.SHA512}
_OIDS = {
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
}


@dataclass(frozen=True)
class TimestampInfo:
    """What a verified token asserts."""

    time: datetime  # genTime, the TSA's clock (UTC)
    tsa_name: str  # TSTInfo.tsa, else the signing certificate's subject
    serial: int
    hash_alg: str
    nonce: int | None
    policy: str
    chain_pem: bytes  # certificates carried in the token, signer first

    @property
    def time_rfc3339(self) -> str:
        # Keep the TSA's sub-second precision when it gives one (accuracy in millis).
        frac = f".{self.time.microsecond:06d}".rstrip("0") if self.time.microsecond else ""
        return self.time.strftime("%Y-%m-%dT%H:%M:%S") + frac + "Z"


@dataclass(frozen=True)
class TimestampReply:
    """A TSA's answer and what we asked, before verification."""

    url: str
    response: bytes
    nonce: int
    hash_alg: str


@dataclass(frozen=True)
class Timestamp:
    """A reply that verified against the configured roots."""

    url: str
    response: bytes
    info: TimestampInfo


def load_roots(paths: Iterable[str | os.PathLike[str]]) -> list[x509.Certificate]:
    """Trusted TSA root certificates from PEM (one or more per file) or DER files."""
    roots: list[x509.Certificate] = []
    for p in paths:
        path = Path(p)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise UsageError(f"cannot read TSA root certificate {path}: {e.strerror}") from None
        try:
            certs = (
                x509.load_pem_x509_certificates(data)
                if b"-----BEGIN" in data
                else [x509.load_der_x509_certificate(data)]
            )
        except ValueError:
            raise UsageError(f"{path} holds no PEM or DER X.509 certificate") from None
        roots.extend(certs)
    return roots


def roots_from_env() -> list[x509.Certificate]:
    """Roots named by EVIDENCE_TSA_ROOTS (paths separated by os.pathsep)."""
    value = os.environ.get(ROOTS_ENV, "")
    return load_roots(p for p in value.split(os.pathsep) if p.strip())


# RFC 3161 section 2.4.1 (TimeStampReq) and 3.4 (HTTP transport)
def request_timestamp(
    url: str,
    data: bytes,
    *,
    hash_alg: str = "sha256",
    timeout: float = 10.0,
    deadline: float = 30.0,
) -> TimestampReply:
    """RFC 3161 section 2.4.1: send a TimeStampReq (nonce, certReq) and return the raw reply."""
    if hash_alg not in _HASHES:
        raise UsageError(f"timestamp hash {hash_alg!r} is not one of {', '.join(_HASHES)}")
    if not data:
        raise UsageError("nothing to timestamp: the data is empty")
    req = (
        TimestampRequestBuilder()
        .data(data)
        .hash_algorithm(_HASHES[hash_alg])
        .nonce(nonce=True)
        .cert_request(cert_request=True)
        .build()
    )
    nonce = req.nonce
    assert nonce is not None  # nonce=True above
    resp = _http.post(
        url,
        req.as_bytes(),
        content_type=QUERY_TYPE,
        accept=REPLY_TYPE,
        what="TSA",
        timeout=timeout,
        deadline=deadline,
    )
    if resp.status != 200:
        raise AnchorRejected(f"TSA {url} answered HTTP {resp.status}{_http._snippet(resp.body)}")
    return TimestampReply(url, resp.body, nonce, hash_alg)


def timestamp(
    url: str,
    data: bytes,
    roots: Sequence[x509.Certificate],
    *,
    hash_alg: str = "sha256",
    timeout: float = 10.0,
    deadline: float = 30.0,
) -> Timestamp:
    """Request a token over ``data`` and verify it before anyone can store it."""
    if not roots:
        raise UsageError(f"no TSA root certificates configured (pass --tsa-root CA.pem or set {ROOTS_ENV})")
    reply = request_timestamp(url, data, hash_alg=hash_alg, timeout=timeout, deadline=deadline)
    resp = _decode(reply.response, f"TSA {url}")
    if resp.status not in (PKIStatus.GRANTED, PKIStatus.GRANTED_WITH_MODS):
        text = "; ".join(resp.status_string) or "no reason given"
        raise AnchorRejected(f"TSA {url} refused the request: {_status_name(resp.status)}: {text}")
    try:
        info = verify_timestamp(reply.response, data, roots, nonce=reply.nonce, hash_alg=hash_alg)
    except IntegrityError as e:
        raise type(e)(f"TSA {url}: {e}") from None
    return Timestamp(url, reply.response, info)


# RFC 3161 section 2.4.2 (TimeStampResp, TSTInfo checks)
def verify_timestamp(
    response: bytes,
    data: bytes,
    roots: Sequence[x509.Certificate],
    *,
    nonce: int | None = None,
    hash_alg: str | None = None,
) -> TimestampInfo:
    """RFC 3161 section 2.4.2: check a reply is granted, for ``data``, signed by a TSA under ``roots``."""
    if not roots:
        raise UsageError("no TSA root certificates to verify against")
    resp = _decode(response, "timestamp")
    if resp.status not in (PKIStatus.GRANTED, PKIStatus.GRANTED_WITH_MODS):
        raise IntegrityError(f"timestamp reply has status {_status_name(resp.status)}, not granted")
    tst = resp.tst_info
    oid = tst.message_imprint.hash_algorithm.dotted_string
    alg = _OIDS.get(oid)
    if alg is None:
        raise TimestampMismatch(f"token uses hash algorithm {oid}, not SHA-2")
    if hash_alg is not None and alg != hash_alg:
        raise TimestampMismatch(f"token is over {alg}, but {hash_alg} was requested")
    want = hashlib.new(alg, data).digest()
    got = tst.message_imprint.message
    if got != want:
        raise TimestampMismatch(
            f"token is for digest {got.hex()[:16]}..., not for this data ({alg} {want.hex()[:16]}...)"
        )
    if nonce is not None and tst.nonce != nonce:
        raise TimestampMismatch(f"token carries nonce {tst.nonce}, but the request sent {nonce}")
    try:
        VerifierBuilder(roots=list(roots)).build().verify(resp, want)
    except (VerificationError, ValueError) as e:
        raise UntrustedTimestamp(
            f"token does not verify against the configured TSA roots: {_openssl_reason(e)}"
        ) from None
    certs = _token_certs(resp)
    name = _general_name(tst.name) if tst.name is not None else ""
    if not name and certs:
        name = certs[0].subject.rfc4514_string()
    return TimestampInfo(
        time=tst.gen_time,
        tsa_name=name,
        serial=tst.serial_number,
        hash_alg=alg,
        nonce=tst.nonce,
        policy=tst.policy.dotted_string,
        chain_pem=b"".join(c.public_bytes(Encoding.PEM) for c in certs),
    )


def _decode(der: bytes, where: str) -> TimeStampResponse:
    try:
        return decode_timestamp_response(der)
    except (ValueError, TypeError) as e:
        raise IntegrityError(f"{where}: reply is not a DER TimeStampResp ({_first(e)})") from None
    except Exception as e:  # the Rust decoder raises its own ASN.1 error types
        raise IntegrityError(f"{where}: reply is not a DER TimeStampResp ({_first(e)})") from None


def _token_certs(resp: TimeStampResponse) -> list[x509.Certificate]:
    """Certificates in the token, the one named by the SignerInfo first."""
    certs = sorted(
        (x509.load_der_x509_certificate(d) for d in resp.signed_data.certificates),
        key=lambda c: c.public_bytes(Encoding.DER),
    )
    signers = list(resp.signed_data.signer_infos)
    if len(signers) == 1:
        si = signers[0]
        certs.sort(key=lambda c: not (c.issuer == si.issuer and c.serial_number == si.serial_number))
    return certs


def _general_name(name: x509.GeneralName) -> str:
    if isinstance(name, x509.DirectoryName):
        return name.value.rfc4514_string()
    return str(name.value)


def _status_name(status: int) -> str:
    try:
        return PKIStatus(status).name.lower()
    except ValueError:
        return f"status {status}"


def _openssl_reason(e: BaseException) -> str:
    # rfc3161-client passes on OpenSSL's whole error stack; keep the reason and detail.
    text = str(e)
    detail = re.search(r'data: "(?:Verify error: ?)?([^"]+)"', text)
    reason = re.search(r'reason: "([^"]+)"', text)
    if reason:
        return reason.group(1) + (f": {detail.group(1)}" if detail else "")
    return _first(e)


def _first(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
