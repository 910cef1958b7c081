"""pywb imports case files (`wb-manager add --unpack-wacz`) and replays the captured bytes.

pywb 2.10 lives in its own virtualenv, made on first use in the user cache:
it pins redis 2.10 and cryptography 47, which would change packages that
the product's environment (and the celery worker) rely on.
"""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

from evidence.case import INDEX, export_case
from ledger.log import Ledger

sys.path.insert(0, str(Path(__file__).resolve().parent))
from case_fixtures import build_case  # noqa: E402

PYWB = "pywb==2.10.0"
pytestmark = pytest.mark.slow  # first run builds pywb's venv (about a minute); later runs ~10 s


@pytest.fixture(scope="module")
def pywb_bin() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "evidence-chain-tests"
    venv = cache / PYWB.replace("==", "-")
    stamp = venv / ".installed"  # written last: a half-made venv (killed run) is rebuilt, never used
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".pywb.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs at once build it once
        if not stamp.exists():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=300)
            subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                            PYWB], check=True, timeout=900)
            stamp.write_text(PYWB + "\n")
    return venv / "bin"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _import(pywb_bin: Path, work: Path, case_file: Path) -> Path:
    work.mkdir()
    subprocess.run([str(pywb_bin / "wb-manager"), "init", "C"], cwd=work, check=True, capture_output=True, timeout=120)
    subprocess.run([str(pywb_bin / "wb-manager"), "add", "C", str(case_file), "--unpack-wacz"], cwd=work, check=True,
                   capture_output=True, timeout=120)
    return work


def _replay(pywb_bin: Path, work: Path, urls: list[str]) -> dict[str, tuple[int, bytes]]:
    """Start pywb's server on a free port, fetch each URL's original bytes (id_), stop it."""
    port = _free_port()
    proc = subprocess.Popen([str(pywb_bin / "wayback"), "-p", str(port), "-b", "127.0.0.1"], cwd=work,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
                break
            except (urllib.error.URLError, ConnectionError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("pywb's server did not start")
                time.sleep(0.3)
        out = {}
        for u in urls:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/C/2026id_/{u}", timeout=30) as r:
                    out[u] = (r.status, r.read())
            except urllib.error.HTTPError as e:
                out[u] = (e.code, b"")
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _warc_html(case_file: Path, n: int) -> bytes:
    """The HTML build_case put into exhibit n's WARC (the bytes the capture recorded)."""
    return (f"<html><head><title>Listing {n}</title></head><body><h1>商品 {n}</h1><p>价格 ¥{100 + n}</p>"
            f"<!-- ex-C-1-{n} --></body></html>").encode()


def test_pywb_imports_and_replays_case_file(tmp_path, pywb_bin):
    led = Ledger.init(tmp_path / "home", unencrypted=True, origin="test.example/log")
    build_case(led, tmp_path, "C-1", exhibits=2)
    case_file = tmp_path / "case.wacz"
    export_case(led, "C-1", case_file)
    led.close()
    assert INDEX.endswith(".cdx")

    # Control: the same case file with the index under the old name imports no index, so nothing replays.
    old = tmp_path / "old-name.wacz"
    with zipfile.ZipFile(case_file) as zin, zipfile.ZipFile(old, "w") as zout:
        for zi in zin.infolist():
            data = zin.read(zi)
            if zi.filename == INDEX:
                zi.filename = "indexes/index.cdxj"
            zout.writestr(zi, data)

    urls = ["http://shop.example/item/0", "http://shop.example/item/1"]
    work = _import(pywb_bin, tmp_path / "pywb", case_file)
    assert len(list((work / "collections" / "C" / "archive").iterdir())) == 2
    got = _replay(pywb_bin, work, [*urls, "http://shop.example/never-captured"])
    for n, u in enumerate(urls):
        status, body = got[u]
        assert status == 200 and body == _warc_html(case_file, n)
    assert got["http://shop.example/never-captured"][0] == 404  # pywb answers only from the archive

    work_old = _import(pywb_bin, tmp_path / "pywb-old", old)
    coll = work_old / "collections" / "C"
    assert not list((coll / "archive").iterdir())  # "does not contain any indices": nothing imported
    assert all(f.stat().st_size == 0 for f in (coll / "indexes").iterdir())
    assert _replay(pywb_bin, work_old, urls[:1])[urls[0]][0] == 404
