"""Probes: a light page load in real Chromium, read as a hostile page would try to fake it."""

from __future__ import annotations

import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image, ImageDraw

from capture.options import CaptureOptions
from capture.probe import check_selectors, dhash, distance, hex64, probe, simhash
from ledger.errors import CaptureError

OPTS = CaptureOptions(load_timeout=15.0, settle_timeout=1.0, mhtml=False)

PAGES = {
    "/item": (200, "<html><head><title>好货</title></head><body><h1 class='t'>好货 A</h1>"
                   "<span class='price'>¥99.00</span><p>库存充足</p></body></html>"),
    # Page scripts that lie about what the page shows, to anyone reading through the page's own world.
    "/liar": (200, "<html><body><h1 class='t'>真实标题</h1><script>"
                   "Object.defineProperty(HTMLElement.prototype, 'innerText', {get() { return 'FAKE'; }});"
                   "document.querySelector = () => null; document.querySelectorAll = () => [];"
                   "</script></body></html>"),
    "/gone": (404, "<html><body>页面不存在</body></html>"),
}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/item")
            self.end_headers()
            return
        status, body = PAGES.get(self.path, (404, "no"))
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a: object) -> None:
        pass


@pytest.fixture(scope="module")
def site():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def run(browser):
    """Run ``fn(browser)`` on the session's shared Chromium."""
    return lambda fn: browser.call(fn(browser.browser))


@pytest.mark.browser
def test_probe_reads_status_fields_and_fingerprints(site, run):
    r = run(lambda b: probe(b, f"{site}/item", {"title": ".t", "price": ".price", "none": ".absent"}, OPTS))
    assert r.status == 200 and r.final_url == f"{site}/item" and r.title == "好货"
    assert r.fields == {"title": "好货 A", "price": "¥99.00", "none": None}
    assert "库存充足" in r.text and len(r.text_sha256) == 64 and len(r.phash) == 16
    payload = r.to_payload()
    assert "text" not in payload and payload["fields"]["price"] == "¥99.00"  # the page text stays out of the record


@pytest.mark.browser
def test_a_page_script_cannot_fake_the_fields_it_shows(site, run):
    async def both(b):
        r = await probe(b, f"{site}/liar", {"title": ".t"}, OPTS)
        # Control: through the page's own world the lie works, so the probe is not reading that way.
        ctx = await b.browser.new_context()
        page = await ctx.new_page()
        await page.goto(f"{site}/liar")
        lied = await page.evaluate("document.body.innerText")
        await ctx.close()
        return r, lied

    r, lied = run(both)
    assert lied == "FAKE"
    assert r.fields["title"] == "真实标题" and "真实标题" in r.text


@pytest.mark.browser
def test_redirects_and_not_found_are_reported(site, run):
    async def two(b):
        return await probe(b, f"{site}/moved", {}, OPTS), await probe(b, f"{site}/gone", {}, OPTS)

    moved, gone = run(two)
    assert moved.redirects == [f"{site}/moved"] and moved.final_url == f"{site}/item" and moved.status == 200
    assert gone.status == 404 and gone.redirects == []


@pytest.mark.browser
def test_unreachable_host_is_a_capture_error(run):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(CaptureError, match="connection refused"):
        run(lambda b: probe(b, f"http://127.0.0.1:{port}/", {}, OPTS))


@pytest.mark.browser
def test_selectors_are_checked_by_chromium(run):
    bad = run(lambda b: check_selectors(b, ["div.price", "h1 > span:nth-child(2)", "div[[", "a:has(b)", "::nonsense("]))
    assert set(bad) == {"div[[", "::nonsense("}


def test_text_fingerprint_moves_little_for_a_small_edit_and_much_for_another_page():
    page = "天猫旗舰店 正品保证 " * 3 + "价格 ¥99.00 月销 1200 件 好评率 99% 发货地 浙江杭州 " * 5
    small = page.replace("¥99.00", "¥45.00", 1)
    other = "完全不同的页面内容，关于另一家店铺的另一个商品，价格与描述都不一样。" * 4
    a, b, c = simhash(page), simhash(small), simhash(other)
    assert simhash(page) == a  # deterministic
    assert distance(hex64(a), hex64(b)) <= 8 < distance(hex64(a), hex64(c))


def _png(draw) -> bytes:
    im = Image.new("RGB", (400, 300), "white")
    draw(ImageDraw.Draw(im))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def test_visual_fingerprint_moves_little_for_a_pixel_and_much_for_a_new_layout():
    base = _png(lambda d: d.rectangle([20, 20, 200, 150], fill="red"))
    pixel = _png(lambda d: (d.rectangle([20, 20, 200, 150], fill="red"), d.point((390, 290), fill="black")))
    layout = _png(lambda d: d.rectangle([180, 100, 390, 290], fill="blue"))
    h = hex64(dhash(base))
    assert distance(h, hex64(dhash(pixel))) <= 2 < 12 < distance(h, hex64(dhash(layout)))
    assert distance(h, None) is None and distance("zz", h) is None
