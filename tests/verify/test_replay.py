"""ReplayWeb.page replays a case file as it was captured, and what its signature display is worth.

A static fixture page (no script, no timer) is captured with real Chromium
through the CLI, exported, and opened in ReplayWeb.page 2.5.3 (npm
``replaywebpage``, AGPL-3.0-or-later, fetched for tests only with ``npm pack``
into the user cache) served from 127.0.0.1 with HTTP Range support. The
replayed viewport is compared pixel by pixel with the captured viewport
screenshot; the control compares it with another page's capture.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import http.server
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from PIL import Image

from capture.browser import find_chromium
from ledger import waczsign
from verify.case import verify_case
from verify.casefile import DATAPACKAGE, DATAPACKAGE_DIGEST, datapackage_digest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

RWP = "replaywebpage@2.5.3"
RWP_SHA256 = "b7d35c39c4da9b7121c5a393911d8675d4cc6f19513c380191e16b086bea812c"  # the registry's 2.5.3 tarball
VIEWPORT = {"width": 1366, "height": 768}  # capture's default viewport (capture.options), scale factor 1

ITEM = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>静态商品页</title><style>
body{margin:0;font-family:sans-serif;background:#fff8e7}h1{background:#c0392b;color:#fff;padding:24px;margin:0}
.price{font-size:48px;color:#c0392b;padding:20px}.box{width:300px;height:200px;background:linear-gradient(90deg,#2980b9,#27ae60);margin:20px}
</style><link rel="stylesheet" href="/shop.css"></head><body><h1>某某旗舰店 · 商品 123</h1><p class="price">¥ 1,299.00</p>
<div class="box"></div><img src="/logo.svg" width="120" height="60" alt="logo"><p class="sold">已售 5,321 件</p></body></html>"""
OTHER = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>另一家店</title><style>
body{margin:0;font-family:serif;background:#eef6ff}h1{background:#1f3a93;color:#fff;padding:60px;margin:0;text-align:right}
.price{font-size:80px;color:#1f3a93;padding:40px;text-align:center}
</style></head><body><h1>另一家店 · 商品 456</h1><p class="price">¥ 88.00</p></body></html>"""
SHOP_CSS = b".sold{font-size:22px;color:#555;padding:0 20px;border-left:6px solid #c0392b}"
LOGO = b"""<svg xmlns="http://www.w3.org/2000/svg" width="120" height="60"><rect width="120" height="60" fill="#8e44ad"/>
<circle cx="30" cy="30" r="20" fill="#f1c40f"/></svg>"""


# -- servers ----------------------------------------------------------------------------------


class _Limited:
    def __init__(self, f: Any, n: int):
        self.f, self.n = f, n

    def read(self, k: int = -1) -> bytes:
        if self.n <= 0:
            return b""
        data = self.f.read(self.n if k < 0 else min(k, self.n))
        self.n -= len(data)
        return data

    def close(self) -> None:
        self.f.close()


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with single byte ranges: ReplayWeb.page reads a WACZ by range, never whole."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".js": "application/javascript",
                      ".wacz": "application/wacz"}

    def log_message(self, *args: Any) -> None:
        pass

    def send_head(self) -> Any:
        path = self.translate_path(self.path.split("?")[0])
        rng = self.headers.get("Range")
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", (rng or "").strip())
        if not m or not os.path.isfile(path) or not (m.group(1) or m.group(2)):
            return super().send_head()
        size = os.path.getsize(path)
        if m.group(1):
            start, end = int(m.group(1)), min(int(m.group(2)) if m.group(2) else size - 1, size - 1)
        else:
            start, end = max(0, size - int(m.group(2))), size - 1
        f = open(path, "rb")
        f.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        return _Limited(f, end - start + 1)


class _ShopHandler(http.server.BaseHTTPRequestHandler):
    ROUTES = {"/item": ("text/html; charset=utf-8", ITEM.encode()), "/other": ("text/html; charset=utf-8", OTHER.encode()),
              "/shop.css": ("text/css", SHOP_CSS), "/logo.svg": ("image/svg+xml", LOGO)}

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        ctype, body = self.ROUTES.get(self.path, ("text/plain", b"not found"))
        self.send_response(200 if self.path in self.ROUTES else 404)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _serve(handler: Any) -> tuple[http.server.ThreadingHTTPServer, int]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, int(srv.server_address[1])


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rwp() -> Path:
    """ui.js, sw.js and index.html of the pinned ReplayWeb.page, checked against the tarball's digest."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "evidence-chain-tests"
    out = cache / RWP.replace("@", "-")
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".replaywebpage.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / ".installed").exists():
            npm = shutil.which("npm")
            assert npm, "npm is needed to fetch ReplayWeb.page for this test (Debian: nodejs / npm)"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            subprocess.run([npm, "pack", RWP, "--silent"], cwd=out, check=True, capture_output=True, timeout=600)
            [tgz] = list(out.glob("*.tgz"))
            assert hashlib.sha256(tgz.read_bytes()).hexdigest() == RWP_SHA256, "replaywebpage tarball differs from the pinned one"
            with tarfile.open(tgz) as t:
                for name in ("ui.js", "sw.js", "index.html"):
                    (out / name).write_bytes(t.extractfile(f"package/{name}").read())  # type: ignore[union-attr]
            (out / ".installed").write_text(RWP + "\n")
    return out


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, EVIDENCE_HOME=str(home), COLUMNS="200")
    p = subprocess.run([sys.executable, "-m", "evidence.cli", *args], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0 and "Traceback" not in p.stderr, (args, p.stdout, p.stderr)
    return p


@pytest.fixture(scope="module")
def captured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Both fixture pages captured by `evidence capture` and exported by `evidence export`."""
    work = tmp_path_factory.mktemp("replay")
    srv, port = _serve(_ShopHandler)
    try:
        home = work / "home"
        _cli(home, "init", "--no-passphrase")
        _cli(home, "case", "set", "R-1", "--cause", "虚假宣传", "--party", "某某旗舰店")
        urls = {name: f"http://127.0.0.1:{port}/{name}" for name in ("item", "other")}
        index = {}
        for name, url in urls.items():
            res = json.loads(_cli(home, "capture", url, "--case", "R-1", "--operator", "Li Wei", "--json").stdout)
            index[name] = res["exhibits"][0]["index"]
        case_file = work / "case.wacz"
        _cli(home, "export", "R-1", "-o", str(case_file))
    finally:
        srv.shutdown()  # replay must come from the case file alone
    shots = {}
    with zipfile.ZipFile(case_file) as z:
        for name, i in index.items():
            p = work / f"{name}-captured.png"
            p.write_bytes(z.read(f"evidence/exhibit-{i}-screenshot-viewport.png"))
            shots[name] = p
    yield {"case": case_file, "urls": urls, "shots": shots, "work": work}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(find_chromium()), args=["--no-sandbox"])
        yield b
        b.close()


def _replay(browser: Any, rwp: Path, site: Path, case_file: Path, url: str, coll: str) -> tuple[Image.Image, dict[str, Any]]:
    """Open ``url`` of ``case_file`` in ReplayWeb.page; return the replayed viewport and its verification entries."""
    site.mkdir(exist_ok=True)
    for name in ("ui.js", "sw.js", "index.html"):
        shutil.copy(rwp / name, site / name)
    shutil.copy(case_file, site / "case.wacz")
    # The page fills the window so that the replay frame is exactly the capture's viewport.
    (site / "embed.html").write_text(
        '<!DOCTYPE html><html><head><meta charset="utf-8"><script src="./ui.js"></script><style>html,body{margin:0;'
        'overflow:hidden}replay-web-page{display:block;width:100vw;height:100vh}</style></head><body>'
        f'<replay-web-page source="case.wacz" url="{url}" embed="replayonly" replayBase="./" coll="{coll}">'
        "</replay-web-page></body></html>", "utf-8")
    srv, port = _serve(partial(_RangeHandler, directory=str(site)))
    ctx = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    try:
        page = ctx.new_page()
        page.goto(f"http://127.0.0.1:{port}/embed.html")
        # Playwright lists no frames under the custom element's shadow roots here, so find the
        # innermost replayed document from the page itself (same origin).
        find = """(want) => { let hit = null; const walk = (root) => { for (const el of root.querySelectorAll('*')) {
            if (el.shadowRoot) walk(el.shadowRoot);
            if (el.tagName === 'IFRAME' && el.contentDocument) { const d = el.contentDocument;
              if (d.location.href.endsWith('mp_/' + want) && d.readyState === 'complete' && d.querySelector('h1')
                  && [...d.images].every(i => i.complete)) hit = d; walk(d); } } };
            walk(document); return hit !== null && hit.fonts.status === 'loaded'; }"""
        page.wait_for_function(find, arg=url, timeout=90_000)
        time.sleep(0.5)  # one more frame after load for the compositor
        shot = site / f"{coll}-replayed.png"
        page.screenshot(path=str(shot))
        verification = page.evaluate(f"""() => new Promise((resolve, reject) => {{
            const r = indexedDB.open('db:{coll}');
            r.onsuccess = () => {{ const q = r.result.transaction('verification').objectStore('verification').getAll();
              q.onsuccess = () => resolve(q.result); q.onerror = reject; }};
            r.onerror = reject; }})""")
        api = page.evaluate(f"async () => (await (await fetch('./w/api/c/{coll}?all=1')).json()).verify")
    finally:
        ctx.close()
        srv.shutdown()
    entries = {v["id"]: v for v in verification}
    return Image.open(shot).convert("RGB"), {"entries": entries, "api": api}


def _equal_fraction(a: Image.Image, b: Image.Image) -> float:
    assert a.size == b.size, (a.size, b.size)
    pa, pb = a.tobytes(), b.tobytes()
    same = sum(1 for i in range(0, len(pa), 3) if pa[i:i + 3] == pb[i:i + 3])
    return same / (a.size[0] * a.size[1])


# -- tests --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def genuine(browser, rwp, captured) -> tuple[Image.Image, dict[str, Any]]:
    return _replay(browser, rwp, captured["work"] / "site", captured["case"], captured["urls"]["item"], "case")


def test_captured_warcs_stored_under_their_warc_filename(captured):
    import io

    from warcio.archiveiterator import ArchiveIterator

    with zipfile.ZipFile(captured["case"]) as z:
        warcs = [n for n in z.namelist() if n.startswith("archive/")]
        assert len(warcs) == 2
        for name in warcs:
            first = next(iter(ArchiveIterator(io.BytesIO(z.read(name)))))
            assert first.rec_type == "warcinfo" and "archive/" + first.rec_headers.get_header("WARC-Filename") == name
        index = z.read("indexes/index.cdx").decode()
    assert all(f'"filename": "{n.removeprefix("archive/")}"' in index for n in warcs)
    assert stat.S_IMODE(captured["case"].stat().st_mode) == 0o644
    assert json.loads(zipfile.ZipFile(captured["case"]).read(DATAPACKAGE))["metadata"]["title"] == "Case R-1 — 虚假宣传 — 某某旗舰店"


def test_replay_matches_capture(genuine, captured):
    replayed, info = genuine
    item = Image.open(captured["shots"]["item"]).convert("RGB")
    other = Image.open(captured["shots"]["other"]).convert("RGB")
    assert item.size == (VIEWPORT["width"], VIEWPORT["height"])
    same = _equal_fraction(replayed, item)
    print(f"replayed viewport vs captured viewport: {same:.4%} of pixels equal")
    assert same >= 0.99
    # Control: another page's capture is far from this replay, so the comparison can fail.
    assert _equal_fraction(replayed, other) < 0.99
    # ReplayWeb.page reads the title and shows our signing key; WebCrypto verified the signature.
    signed = json.loads(zipfile.ZipFile(captured["case"]).read(DATAPACKAGE_DIGEST))["signedData"]
    assert info["api"]["publicKey"] == signed["publicKey"] and info["api"]["created"] == signed["created"]
    assert info["entries"]["signature"]["matched"] is True


def test_replaywebpage_signature_display_proves_no_authorship(browser, rwp, captured, genuine):
    """A package re-signed by a forger's own key shows as signed too (by their key); only our verifier refuses it."""
    case_file = captured["case"]
    work = captured["work"]
    with zipfile.ZipFile(case_file) as z:
        dp = json.loads(z.read(DATAPACKAGE))
    dp["title"] = dp["metadata"]["title"] = "Case R-1 — 无违法事实"
    dp_raw = json.dumps(dp, ensure_ascii=False, indent=1).encode()
    own = waczsign.WaczKey(ec.generate_private_key(ec.SECP384R1()))
    forged_digest = datapackage_digest(dp_raw, waczsign.sign_datapackage(own, dp_raw, dp["created"], "evidence-chain 0.1.0"))
    # Also: a genuine package whose signature bytes were damaged.
    real = json.loads(zipfile.ZipFile(case_file).read(DATAPACKAGE_DIGEST))
    sig = bytearray(base64.b64decode(real["signedData"]["signature"]))
    sig[5] ^= 1
    damaged_digest = datapackage_digest(zipfile.ZipFile(case_file).read(DATAPACKAGE),
                                        dict(real["signedData"], signature=base64.b64encode(bytes(sig)).decode()))

    def rewrite(dst: Path, changes: dict[str, bytes]) -> Path:
        with zipfile.ZipFile(case_file) as zin, zipfile.ZipFile(dst, "w") as zout:
            for zi in zin.infolist():
                zout.writestr(zi, changes.get(zi.filename, zin.read(zi)))
        return dst

    forged = rewrite(work / "forged.wacz", {DATAPACKAGE: dp_raw, DATAPACKAGE_DIGEST: forged_digest})
    damaged = rewrite(work / "damaged.wacz", {DATAPACKAGE_DIGEST: damaged_digest})
    url = captured["urls"]["item"]

    _, f_info = _replay(browser, rwp, work / "site-forged", forged, url, "forged")
    assert f_info["entries"]["signature"]["matched"] is True  # "signed": by whoever made the package
    assert f_info["api"]["publicKey"] == own.spki_b64
    assert verify_case(forged).exit_code() == 1  # our verifier: not a key the ledger introduced

    _, d_info = _replay(browser, rwp, work / "site-damaged", damaged, url, "damaged")
    assert d_info["entries"]["signature"]["matched"] is False
    # ...yet its summary counts the failed signature among the valid ones.
    g_info = genuine[1]
    assert d_info["api"]["numValid"] == g_info["api"]["numValid"] and d_info["api"]["numInvalid"] == g_info["api"]["numInvalid"]
    assert verify_case(damaged).exit_code() == 1 and verify_case(case_file).exit_code() == 0
