"""A captured download is stored once: as its artifact, which the WARC's revisit record names.

Real Chromium downloads a few MB of incompressible bytes from a local server;
the exhibit is sealed, exported and verified. The body's bytes must appear
exactly once in the decoded case file (ZIP members inflated, WARC gzip members
too), the case file must be barely larger than the body, and the verifier must
bind the WARC record to the artifact (the forgeries are in
tests/verify/test_read_once.py).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import random
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from warcio.archiveiterator import ArchiveIterator

from capture import capture_page
from evidence.case import export_case
from verify.case import verify_case

pytestmark = pytest.mark.browser

BODY = random.Random(1818).randbytes(3 << 20)


def _download(h: Any) -> None:
    h.send_bytes(BODY, "application/octet-stream",
                 extra=[("Content-Disposition", 'attachment; filename="price-list-2026.bin"')])


@pytest.fixture(scope="module")
def dl_server(serve: Any) -> Any:
    server = serve.ShopServer(routes={"/files/price-list": _download}, https_port=None).start()
    yield server
    server.stop()


def _decoded_count(case: Path, needle: bytes) -> int:
    n = 0
    with zipfile.ZipFile(case) as zf:
        for name in zf.namelist():
            data = zf.read(name)
            n += data.count(needle)
            if name.endswith(".warc.gz"):
                n += gzip.decompress(data).count(needle)
    return n


def test_captured_download_is_stored_once_and_verifies(home, dl_server, tmp_path):
    url = dl_server.url("/files/price-list")
    ex = capture_page(url, case="C-DL", operator="Li Wei", ledger=home)
    dl = [a for a in ex.manifest["artifacts"] if a["role"] == "download"]
    assert len(dl) == 1 and dl[0]["sha256"] == hashlib.sha256(BODY).hexdigest() and dl[0]["size"] == len(BODY)

    # The WARC: the download's exchange is a revisit record naming the artifact, with no body.
    warc_sha = next(a["sha256"] for a in ex.manifest["artifacts"] if a["role"] == "warc")
    with home.artifacts.open(warc_sha) as f:
        warc = f.read()
    assert len(warc) < len(BODY) // 4
    recs = [(r.rec_type, r.rec_headers.get_header("WARC-Target-URI"), r.rec_headers) for r in ArchiveIterator(io.BytesIO(warc))]
    revisits = [h for t, u, h in recs if t == "revisit" and u == url]
    assert len(revisits) == 1, [(t, u) for t, u, _ in recs]
    assert revisits[0].get_header("Evidence-Payload-Artifact") == dl[0]["name"]
    assert not any(t in ("response", "resource") and u in (url, f"urn:evidence-chain:download:{url}") for t, u, _ in recs)

    out = tmp_path / "case.wacz"
    export_case(home, "C-DL", out)
    assert _decoded_count(out, BODY[1 << 20:(1 << 20) + 4096]) == 1
    assert _decoded_count(out, BODY[-4096:]) == 1
    size = out.stat().st_size
    others = sum(a["size"] for a in ex.manifest["artifacts"] if a["role"] != "download")
    assert size <= len(BODY) + others + (256 << 10), (size, len(BODY), others)

    res = verify_case(out, trust=home.config.trusted_vkeys)
    assert res.ok and res.trusted, res.first_failure
    bound = [c for c in res.checks if c.name == "warc-payload-artifact"]
    assert [c.ok for c in bound] == [True] and dl[0]["name"] in bound[0].detail

    wacz = Path(sys.executable).with_name("wacz")
    r = subprocess.run([str(wacz), "validate", "-f", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    warcio = Path(sys.executable).with_name("warcio")
    with zipfile.ZipFile(out) as zf:
        name = next(n for n in zf.namelist() if n.startswith("archive/"))
        (tmp_path / "x.warc.gz").write_bytes(zf.read(name))
    r = subprocess.run([str(warcio), "check", str(tmp_path / "x.warc.gz")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
