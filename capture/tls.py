"""Certificates as the browser received them, and whether they validate.

The browser is told to accept any certificate (a self-signed or expired one
must not stop the capture of a suspect page), so it does not tell us whether
the chain is valid. We check it ourselves, offline, against the system trust
store plus any roots the caller adds, for the host name and capture time, and
record the outcome as a fact beside the PEM chain.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import ssl
import warnings
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

SYSTEM_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
)


def system_bundle() -> Path | None:
    cafile = ssl.get_default_verify_paths().cafile
    for cand in ([cafile] if cafile else []) + list(SYSTEM_BUNDLES):
        if cand and Path(cand).is_file():
            return Path(cand)
    return None


@functools.lru_cache(maxsize=8)
def _store(paths: tuple[str, ...]) -> tuple[Store | None, int]:
    certs: list[x509.Certificate] = []
    for p in paths:
        try:
            # Some distribution roots have non-positive serials; cryptography
            # warns about them but they are still the roots the system trusts.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                certs.extend(x509.load_pem_x509_certificates(Path(p).read_bytes()))
        except (OSError, ValueError):
            continue
    return (Store(certs) if certs else None), len(certs)


def to_pem(chain: list[bytes]) -> str:
    out = []
    for der in chain:
        out.append(
            x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM).decode("ascii")
        )
    return "".join(out)


def describe(der: bytes) -> dict[str, Any]:
    c = x509.load_der_x509_certificate(der)
    try:
        san = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(n.value) for n in san]
    except x509.ExtensionNotFound:
        names = []
    return {
        "subject": c.subject.rfc4514_string(),
        "issuer": c.issuer.rfc4514_string(),
        "serial": format(c.serial_number, "x"),
        "not_before": c.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "not_after": c.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "san": names,
        "sha256_fingerprint": c.fingerprint(hashes.SHA256()).hex(),
    }


def validate(
    chain: list[bytes], host: str, at: dt.datetime, extra_roots: tuple[Path, ...] = ()
) -> dict[str, Any]:
    """Check ``chain`` (leaf first) for ``host`` at time ``at``; never raises."""
    bundle = system_bundle()
    paths = tuple(str(p) for p in ([bundle] if bundle else []) + list(extra_roots))
    result: dict[str, Any] = {
        "checked_at": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "trust_store": list(paths),
        "host": host,
    }
    if not chain:
        return result | {"valid": False, "error": "the browser reported no certificate"}
    certs = [x509.load_der_x509_certificate(d) for d in chain]
    leaf = certs[0]
    result["self_signed"] = _self_signed(leaf)
    store, n = _store(paths)
    result["trusted_roots"] = n
    if store is None:
        return result | {"valid": None, "error": "no trust store available; validity not checked"}
    try:
        subject: x509.GeneralName
        try:
            subject = x509.IPAddress(ipaddress.ip_address(host.strip("[]")))
        except ValueError:
            subject = x509.DNSName(host)
        verifier = PolicyBuilder().store(store).time(at).build_server_verifier(subject)
        path = verifier.verify(leaf, certs[1:])
    except VerificationError as e:
        return result | {"valid": False, "error": str(e)}
    except (ValueError, TypeError) as e:
        return result | {"valid": False, "error": f"cannot check certificate: {e}"}
    return result | {"valid": True, "path": [c.subject.rfc4514_string() for c in path]}


def _self_signed(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except Exception:  # InvalidSignature, unsupported key types: not provably self-signed
        return False
    return True
