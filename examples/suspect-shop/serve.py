#!/usr/bin/env python3
"""Suspect shop: a local stand-in for a Chinese marketplace listing.

Serves the static site in ``site/`` over HTTP and HTTPS on 127.0.0.1, with a
few dynamic routes real listings have: a short link that redirects
(``/s/Xy7Kq`` -> ``/item/123``), a "sold" counter API answered with chunked
transfer encoding, and gzip for text so captures meet compressed bodies.
HTTPS uses a throw-away test CA made at start-up (``ca.pem`` in the TLS
directory); no certificate is trusted by anything but what you point at it.

    python examples/suspect-shop/serve.py [--http-port N] [--https-port N]

Tests import it and add their own routes::

    with ShopServer(routes={"/slow": handler}) as shop:
        shop.url("/item/123"), shop.url("/item/123", tls=True), shop.ca_path
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import http.server
import ipaddress
import json
import mimetypes
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SITE = Path(__file__).resolve().parent / "site"
SHORT_LINKS = {"/s/Xy7Kq": "/item/123"}
#: Routes map a path (without query) to a function that writes the whole response.
Route = Callable[[http.server.BaseHTTPRequestHandler], None]


# -- certificates --------------------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def _server_cert(subject: x509.Name, issuer: x509.Name, pub, sign_key, now: dt.datetime) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(pub)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        # Web PKI validators (cryptography's among them) require the AKI.
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(sign_key.public_key()), critical=False
        )
        .sign(sign_key, hashes.SHA256())
    )


def make_test_ca(directory: Path) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for localhost/127.0.0.1: (ca.pem, server.pem, server.key)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("Suspect Shop Test CA")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _server_cert(_name("localhost"), ca_name, key.public_key(), ca_key, now)
    ca_path, cert_path, key_path = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    # The chain the server sends: leaf then CA, so the capture records both.
    cert_path.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    )
    _write_key(key, key_path)
    return ca_path, cert_path, key_path


def make_self_signed(directory: Path) -> tuple[Path, Path]:
    """A self-signed server certificate for localhost/127.0.0.1: (server.pem, server.key)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("localhost")
    cert = _server_cert(name, name, key.public_key(), key, now)
    cert_path, key_path = directory / "self-signed.pem", directory / "self-signed.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, key_path)
    return cert_path, key_path


# -- HTTP ----------------------------------------------------------------------


class ShopHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "SuspectShop/1.0"
    routes: dict[str, Route] = {}

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        if getattr(self.server, "verbose", False):
            super().log_message(format, *args)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        path = urlsplit(self.path).path
        route = self.routes.get(path)
        try:
            if route is not None:
                route(self)
            elif path in SHORT_LINKS:
                self.send_bytes(b"", "text/html", status=302, extra=[("Location", SHORT_LINKS[path])])
            elif path == "/api/sold":
                self.send_chunked(
                    json.dumps({"item": "123", "sold": 12873 + int(time.time()) % 97}).encode(),
                    "application/json",
                )
            else:
                self.send_static(path)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True

    do_HEAD = do_GET

    def send_bytes(
        self, body: bytes, content_type: str, status: int = 200, extra: list[tuple[str, str]] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for k, v in extra or []:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_chunked(self, body: bytes, content_type: str, parts: int = 3) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        step = max(1, -(-len(body) // parts))
        for i in range(0, len(body), step):
            piece = body[i : i + step]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        self.wfile.write(b"0\r\n\r\n")

    def send_static(self, path: str) -> None:
        rel = path.lstrip("/") or "index.html"
        candidates = [SITE / rel, SITE / (rel + ".html"), SITE / rel / "index.html"]
        target = next((p for p in candidates if p.is_file() and SITE in p.resolve().parents), None)
        if target is None:
            self.send_bytes(
                "<!DOCTYPE html><title>404 页面不存在</title><h1>404 页面不存在</h1>".encode(),
                "text/html; charset=utf-8",
                status=404,
            )
            return
        ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype in ("application/javascript", "image/svg+xml"):
            ctype += "; charset=utf-8"
        body = target.read_bytes()
        extra = [("Cache-Control", "no-cache")]
        # Compress text as real shops do, so captures meet Content-Encoding.
        if "gzip" in self.headers.get("Accept-Encoding", "") and not ctype.startswith("image/png"):
            body = gzip.compress(body, mtime=0)
            extra.append(("Content-Encoding", "gzip"))
            extra.append(("Vary", "Accept-Encoding"))
        self.send_bytes(body, ctype, extra=extra)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64
    verbose = False
    tls: ssl.SSLContext | None = None

    def finish_request(self, request: socket.socket, client_address: tuple) -> None:
        # The TLS handshake runs in the request's thread, so one stalled client
        # cannot block accept() for everyone else.
        if self.tls is not None:
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
        super().finish_request(request, client_address)

    def handle_error(self, request: object, client_address: tuple) -> None:
        pass  # clients hanging up mid-response is normal here (browsers, tests)


class ShopServer:
    """The shop on 127.0.0.1 over HTTP and HTTPS; ports 0 mean ephemeral."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        http_port: int = 0,
        https_port: int | None = 0,
        tls_dir: Path | None = None,
        routes: dict[str, Route] | None = None,
        self_signed: bool = False,
        verbose: bool = False,
    ):
        handler = type("Handler", (ShopHandler,), {"routes": dict(routes or {})})
        self._tmp = None if tls_dir else tempfile.TemporaryDirectory(prefix="suspect-shop-tls-")
        self.tls_dir = Path(tls_dir or self._tmp.name)  # type: ignore[union-attr]
        self.ca_path: Path | None = None
        self.http = _Server((host, http_port), handler)
        self.http.verbose = verbose
        self.https: _Server | None = None
        if https_port is not None:
            if self_signed:
                cert, key = make_self_signed(self.tls_dir)
            else:
                self.ca_path, cert, key = make_test_ca(self.tls_dir)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
            self.https = _Server((host, https_port), handler)
            self.https.tls = ctx
            self.https.verbose = verbose
        self._threads: list[threading.Thread] = []

    @property
    def http_url(self) -> str:
        host, port = self.http.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def https_url(self) -> str:
        if self.https is None:
            raise RuntimeError("this ShopServer has no HTTPS listener")
        # "localhost" so the certificate's DNS name is the one checked.
        return f"https://localhost:{self.https.server_address[1]}"

    def url(self, path: str = "/", tls: bool = False) -> str:
        return (self.https_url if tls else self.http_url) + path

    def start(self) -> ShopServer:
        for srv in (self.http, self.https):
            if srv is not None:
                t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
                t.start()
                self._threads.append(t)
        return self

    def stop(self) -> None:
        for srv in (self.http, self.https):
            if srv is not None:
                srv.shutdown()
                srv.server_close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> ShopServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description="Serve the suspect-shop fixture site on 127.0.0.1.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--http-port", type=int, default=0)
    ap.add_argument("--https-port", type=int, default=0)
    ap.add_argument("--tls-dir", type=Path, help="where to write the test CA and server certificate")
    ap.add_argument("-v", "--verbose", action="store_true", help="log every request")
    ap.add_argument("--url-file", type=Path, help="write the short link, listing and HTTPS URLs here, one a line")
    args = ap.parse_args()
    shop = ShopServer(
        host=args.host,
        http_port=args.http_port,
        https_port=args.https_port,
        tls_dir=args.tls_dir,
        verbose=args.verbose,
    )
    shop.start()
    print(f"listing      {shop.url('/item/123')}")
    print(f"short link   {shop.url('/s/Xy7Kq')}")
    print(f"https        {shop.url('/item/123', tls=True)}")
    print(f"test CA      {shop.ca_path}")
    if args.url_file:
        # Written last and renamed into place: a reader never sees half a file.
        tmp = args.url_file.with_suffix(".tmp")
        tmp.write_text(
            "\n".join([shop.url("/s/Xy7Kq"), shop.url("/item/123"), shop.url("/item/123", tls=True), str(shop.ca_path)]) + "\n",
            "utf-8",
        )
        tmp.replace(args.url_file)
    print("Ctrl-C to stop", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        shop.stop()


if __name__ == "__main__":
    main()
