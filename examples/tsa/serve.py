"""A local RFC 3161 TSA for demos: `openssl ts -reply` behind an HTTP server.

    examples/tsa/make-ca.sh /tmp/tsa
    python examples/tsa/serve.py /tmp/tsa --port 3180
    evidence anchor --tsa http://127.0.0.1:3180/tsr --tsa-root /tmp/tsa/ca.pem

Listens on 127.0.0.1 only. Every POSTed TimeStampReq is answered by
`openssl ts -reply` with examples/tsa/tsa.cnf; requests are serialised
because openssl rewrites the serial file on each reply.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CNF = Path(__file__).resolve().with_name("tsa.cnf")
MAX_QUERY = 64 * 1024  # a TimeStampReq is about 100 bytes


def make_handler(tsa_dir: Path) -> type[BaseHTTPRequestHandler]:
    lock = threading.Lock()
    env = dict(os.environ, TSA_DIR=str(tsa_dir))

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            length = int(self.headers.get("Content-Length") or 0)
            ctype = self.headers.get("Content-Type", "").split(";")[0].strip()
            if ctype != "application/timestamp-query" or not 0 < length <= MAX_QUERY:
                return self._send(400, "text/plain", b"POST an application/timestamp-query\n")
            with tempfile.TemporaryDirectory() as tmp:
                q, r = Path(tmp, "q.tsq"), Path(tmp, "r.tsr")
                q.write_bytes(self.rfile.read(length))
                with lock:
                    done = subprocess.run(
                        [
                            "openssl",
                            "ts",
                            "-reply",
                            "-config",
                            str(CNF),
                            "-queryfile",
                            str(q),
                            "-out",
                            str(r),
                        ],
                        env=env,
                        capture_output=True,
                        timeout=30,
                    )
                if done.returncode != 0 or not r.exists():
                    return self._send(500, "text/plain", b"openssl ts -reply failed\n")
                self._send(200, "application/timestamp-reply", r.read_bytes())

        def _send(self, status: int, ctype: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", type=Path, help="directory made by make-ca.sh")
    ap.add_argument("--port", type=int, default=3180)
    args = ap.parse_args()
    for f in ("tsa.pem", "tsa.key", "serial"):
        if not (args.dir / f).exists():
            raise SystemExit(f"{args.dir / f} is missing: run examples/tsa/make-ca.sh {args.dir} first")
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args.dir.resolve()))
    print(
        f"TSA listening on http://127.0.0.1:{server.server_address[1]}/tsr (root: {args.dir / 'ca.pem'})",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
