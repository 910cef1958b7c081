"""Case size of a captured download against the download's size (issue 18: store each body once).

    .venv/bin/python benchmarks/download_size.py [--mb 300]

Serves ``--mb`` MB of incompressible bytes from 127.0.0.1 as an attachment,
captures the URL with real Chromium (``capture_page``), exports the case and
verifies it, then prints the case file's size over the download's size (the
target is <= 1.05), and export and verify time against hashlib SHA-256 of the
case file in the same run. Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from _common import line  # noqa: E402


def serve(path: Path) -> ThreadingHTTPServer:
    size = path.stat().st_size

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Disposition", 'attachment; filename="export-2026.bin"')
            self.send_header("Content-Length", str(size))
            self.end_headers()
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    self.wfile.write(chunk)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def sha256_seconds(path: Path) -> float:
    t = time.perf_counter()
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=300)
    ap.add_argument("--dir", type=Path, default=None, help="work directory (default: a temporary one)")
    args = ap.parse_args()

    from capture import capture_page
    from evidence.case import export_case
    from ledger.log import Ledger
    from verify.case import verify_case

    with tempfile.TemporaryDirectory(dir=args.dir) as td:
        work = Path(td)
        body = work / "download.bin"
        with open(body, "wb") as f:
            for _ in range(args.mb):
                f.write(os.urandom(1_000_000))
        size = body.stat().st_size
        server = serve(body)
        led = Ledger.init(work / "home", unencrypted=True, origin="bench.example/log")
        url = f"http://127.0.0.1:{server.server_address[1]}/files/export-2026.bin"
        t = time.perf_counter()
        capture_page(url, case="DL", operator="bench", ledger=led)
        t_capture = time.perf_counter() - t
        server.shutdown()
        out = work / "case.wacz"
        t = time.perf_counter()
        export_case(led, "DL", out)
        t_export = time.perf_counter() - t
        t = time.perf_counter()
        res = verify_case(out, trust=led.config.trusted_vkeys)
        t_verify = time.perf_counter() - t
        led.close()
        case_size = out.stat().st_size
        base = sha256_seconds(out)
        line("download", size / 1e6, "MB")
        line("capture_page (Chromium, one download)", t_capture, "s")
        line("case file", case_size / 1e6, "MB", f"verdict: {res.verdict()[:40]}")
        line("case size / download size", case_size / size, "x", f"{case_size / size:.4f} (target <= 1.05)")
        line("baseline: hashlib SHA-256 of the case file", base, "s", f"{case_size / base / 1e6:,.0f} MB/s")
        line("export_case", t_export, "s", f"{t_export / base:.2f}x the baseline (target <= 3)")
        line("verify_case", t_verify, "s", f"speed {base / t_verify:.2f} of the baseline (target >= 0.6)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
