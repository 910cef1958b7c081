"""Harder shop pages for capture tests: what platforms do that a plain page does not.

``HardShop`` runs two suspect-shop servers on 127.0.0.1: the shop itself and a
second one reached as ``localhost`` (another host and port, so another site:
the cross-origin frame comes from there). Every marker a test looks for is a
constant here, so a test cannot pass by finding text it wrote itself.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

# -- markers ------------------------------------------------------------------------

SHADOW_PRICE = "¥1,299.00 影子价格 SHADOW-7731"
NESTED_SHADOW = "嵌套影子 NESTED-5520"
DECLARATIVE_SHADOW = "声明式影子 DSD-4410"
CLOSED_SHADOW = "封闭影子 CLOSED-6061"
LIGHT_TEXT = "普通文字 LIGHT-9001"
SAME_FRAME_TEXT = "同源框架价格 SAME-FRAME-3141"
CROSS_FRAME_TEXT = "跨源框架价格 CROSS-FRAME-2718"
XHR_PRICE = "¥2,499.37"
PRODUCT_PREFIX = "滚动商品 #"
TALL_HEIGHT = 40_000
#: (top, bottom, RGB) bands of the tall page, the last ones near its bottom
TALL_BANDS = [
    (0, 200, (220, 0, 0)),
    (16_300, 16_500, (255, 200, 0)),  # straddles Chromium's 16,384 px limit
    (20_000, 20_200, (0, 160, 0)),
    (39_600, 39_800, (0, 0, 230)),
    (39_850, 40_000, (200, 0, 200)),
]
CANVAS_BOX = (40, 80, 400, 160)  # x, y, width, height of the price canvas on the page
CANVAS_RGB = (230, 20, 20)

# -- media --------------------------------------------------------------------------


def _png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    from io import BytesIO

    from PIL import Image

    out = BytesIO()
    Image.new("RGB", (width, height), rgb).save(out, "PNG")
    return out.getvalue()


IMAGES = {
    "/img/p-1x.png": _png(120, 90, (10, 120, 200)),
    "/img/p-2x.png": _png(240, 180, (200, 120, 10)),
    "/img/p-fallback.png": _png(120, 90, (90, 90, 90)),
    "/img/cross.png": _png(30, 30, (0, 200, 0)),
    "/img/same.png": _png(30, 30, (0, 0, 200)),
}


@cache
def font_file() -> Path:
    """A TrueType/OpenType font of this machine (fontconfig is a setup package)."""
    out = subprocess.run(
        ["fc-list", "--format", "%{file}\n"], capture_output=True, text=True, check=True
    ).stdout
    files = sorted(
        (Path(p) for p in out.splitlines() if p.lower().endswith((".ttf", ".otf"))),
        key=lambda p: p.stat().st_size,
    )
    if not files:
        raise RuntimeError("no .ttf/.otf font installed (fontconfig lists none)")
    return files[0]


@cache
def video_file() -> Path:
    """Two seconds of VP9 test pattern in WebM, made once by ffmpeg."""
    ffmpeg = shutil.which("ffmpeg")
    if not ffmpeg:
        raise RuntimeError("ffmpeg is not installed (scripts/setup installs it)")
    import tempfile

    tmp = tempfile.mkdtemp(prefix="hard-fixtures-")
    atexit.register(shutil.rmtree, tmp, True)
    path = Path(tmp) / "product.webm"
    subprocess.run(
        [ffmpeg, "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10", "-t", "2",
         "-c:v", "libvpx-vp9", "-b:v", "100k", "-y", str(path)],
        check=True,
        timeout=120,
    )
    return path


def sha256(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


# -- routes -------------------------------------------------------------------------


def _html(h: Any, body: str) -> None:
    h.send_bytes(body.encode("utf-8"), "text/html; charset=utf-8", extra=[("Cache-Control", "no-store")])


def _query(h: Any) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(h.path).query).items()}


def scroll_list(h: Any) -> None:
    """A product list that fetches a page of items whenever the end comes into view.

    ``?pages=N`` ends after N pages (the control); without it, it never ends.
    """
    pages = _query(h).get("pages", "-1")
    _html(
        h,
        f"""<!DOCTYPE html><html lang=zh-CN><meta charset=utf-8><title>商品列表</title>
<body style="margin:0;font:20px sans-serif">
<div id="list"></div><div id="sentinel" style="height:10px"></div>
<script>
const LIMIT = {int(pages)};
let page = 0, busy = false;
async function more() {{
  if (busy || (LIMIT >= 0 && page >= LIMIT)) return;
  busy = true;
  const r = await fetch('/api/products?page=' + page++);
  for (const it of await r.json()) {{
    const d = document.createElement('div');
    d.style.height = '150px'; d.className = 'item'; d.textContent = it.name + ' ' + it.price;
    list.appendChild(d);
  }}
  busy = false;
  if (document.getElementById('sentinel').getBoundingClientRect().top < innerHeight) more();
}}
new IntersectionObserver((e) => {{ if (e[0].isIntersecting) more(); }}).observe(sentinel);
</script>""",
    )


def products_api(h: Any) -> None:
    page = int(_query(h).get("page", "0"))
    items = [{"name": f"{PRODUCT_PREFIX}{page * 10 + i}", "price": f"¥{100 + page * 10 + i}.00"} for i in range(10)]
    h.send_bytes(json.dumps(items, ensure_ascii=False).encode(), "application/json; charset=utf-8",
                 extra=[("Cache-Control", "no-store")])


def frames_page(h: Any) -> None:
    """A listing whose prices live in two frames: one same-origin, one from another site."""
    cross = _query(h)["cross"]
    _html(
        h,
        f"""<!DOCTYPE html><html lang=zh-CN><meta charset=utf-8><title>框架页面</title>
<body><h1>{LIGHT_TEXT}</h1>
<iframe id="same" src="/frame-same" width=500 height=200></iframe>
<iframe id="cross" src="{cross}/frame-cross" width=500 height=200></iframe>
</body>""",
    )


def many_frames(h: Any) -> None:
    """More frames than a capture keeps the DOM of, each with its own number."""
    n = int(_query(h).get("n", "60"))
    frames = "".join(f'<iframe srcdoc="<p>frame-{i:03d}</p>" width=40 height=20></iframe>' for i in range(n))
    _html(h, f"<!DOCTYPE html><meta charset=utf-8><title>many frames</title><body>{frames}</body>")


def frame_same(h: Any) -> None:
    _html(
        h,
        """<!DOCTYPE html><meta charset=utf-8><title>same</title><body>
<p id="p"></p><img src="/img/same.png">
<script>fetch('/api/frame-same').then(r => r.text()).then(t => p.textContent = t);</script></body>""",
    )


def frame_cross(h: Any) -> None:
    _html(
        h,
        """<!DOCTYPE html><meta charset=utf-8><title>cross</title><body>
<p id="p"></p><img src="/img/cross.png">
<script>fetch('/api/frame-cross').then(r => r.text()).then(t => p.textContent = t);</script></body>""",
    )


def text_route(text: str) -> Any:
    def route(h: Any) -> None:
        h.send_bytes(text.encode("utf-8"), "text/plain; charset=utf-8", extra=[("Cache-Control", "no-store")])

    return route


def _split(marker: str) -> str:
    """A JavaScript expression for ``marker`` that does not contain it: a DOM that
    holds the marker got it from the rendered page, not from the script's source."""
    return f"'{marker[:-2]}' + '{marker[-2:]}'"


def shadow_page(h: Any) -> None:
    """Prices inside open shadow roots (scripted, nested, declarative) and a closed one.

    The page also replaces ``getHTML``/``outerHTML`` in its own JavaScript world
    with forgeries: the capture must not be fooled by them.
    """
    _html(
        h,
        f"""<!DOCTYPE html><html lang=zh-CN><meta charset=utf-8><title>影子DOM</title>
<body><p>{LIGHT_TEXT}</p>
<product-card id="card"></product-card>
<div id="dsd"><template shadowrootmode="open"><b>{DECLARATIVE_SHADOW}</b></template></div>
<div id="closed"></div>
<script>
const root = card.attachShadow({{mode: 'open'}});
root.innerHTML = '<span class="price">' + {_split(SHADOW_PRICE)} + '</span><inner-box></inner-box>';
root.querySelector('inner-box').attachShadow({{mode: 'open'}}).innerHTML = '<i>' + {_split(NESTED_SHADOW)} + '</i>';
document.getElementById('closed').attachShadow({{mode: 'closed'}}).innerHTML = '<i>' + {_split(CLOSED_SHADOW)} + '</i>';
Element.prototype.getHTML = function () {{ return '<p>FORGED</p>'; }};
Object.defineProperty(Element.prototype, 'outerHTML', {{get() {{ return '<html>FORGED</html>'; }}}});
</script></body></html>""",
    )


def canvas_page(h: Any) -> None:
    """A price drawn on a canvas (no text in the DOM), and a canvas tainted by a cross-site image."""
    x, y, w, hh = CANVAS_BOX
    cross = _query(h)["cross"]
    r, g, b = CANVAS_RGB
    _html(
        h,
        f"""<!DOCTYPE html><html lang=zh-CN><meta charset=utf-8><title>画布价格</title>
<body style="margin:0;background:#fff">
<canvas id="price" width="{w}" height="{hh}" style="position:absolute;left:{x}px;top:{y}px"></canvas>
<canvas id="tainted" width="30" height="30" style="position:absolute;left:600px;top:80px"></canvas>
<script>
const c = document.getElementById('price').getContext('2d');
c.fillStyle = 'rgb({r},{g},{b})'; c.fillRect(0, 0, {w}, {hh});
c.fillStyle = '#fff'; c.font = '64px sans-serif'; c.fillText('¥ 888', 20, 100);
const img = new Image();
img.onload = () => document.getElementById('tainted').getContext('2d').drawImage(img, 0, 0);
img.src = '{cross}/img/cross.png';
HTMLCanvasElement.prototype.toDataURL = function () {{ return 'data:image/png;base64,AAAA'; }};
</script></body></html>""",
    )


def xhr_price(h: Any) -> None:
    """The price arrives by XMLHttpRequest a moment after the load event (``?after=MS``, default 300)."""
    after = int(_query(h).get("after", "300"))
    _html(
        h,
        """<!DOCTYPE html><html lang=zh-CN><meta charset=utf-8><title>价格接口</title>
<body><h1>商品</h1><p>价格：<span id="price">加载中</span></p>
<script>
addEventListener('load', () => setTimeout(() => {
  const x = new XMLHttpRequest();
  x.open('GET', '/api/price?sku=88');
  x.onload = () => { price.textContent = JSON.parse(x.responseText).price; };
  x.send();
}, AFTER));
</script></body></html>""".replace("AFTER", str(after)),
    )


def price_api(h: Any) -> None:
    h.send_bytes(json.dumps({"sku": "88", "price": XHR_PRICE}, ensure_ascii=False).encode(),
                 "application/json; charset=utf-8", extra=[("Cache-Control", "no-store")])


def lazy_srcset(h: Any) -> None:
    _html(
        h,
        """<!DOCTYPE html><html lang=zh-CN><meta charset=utf-8><title>懒加载图片</title>
<body style="margin:0"><div style="height:3000px">商品详情</div>
<img loading="lazy" width="120" height="90" alt="detail"
     src="/img/p-fallback.png" srcset="/img/p-1x.png 1x, /img/p-2x.png 2x">
<div style="height:200px"></div></body></html>""",
    )


def webfont_page(h: Any) -> None:
    _html(
        h,
        """<!DOCTYPE html><html lang=zh-CN><meta charset=utf-8><title>网络字体</title>
<style>
@font-face { font-family: ShopFont; src: url(/fonts/shop.ttf) format("truetype"); }
@font-face { font-family: UnusedFont; src: url(/fonts/unused.ttf) format("truetype"); }
h1 { font-family: ShopFont, serif; font-size: 48px; }
</style><body><h1>Price 2499</h1></body></html>""",
    )


def font_route(h: Any) -> None:
    h.send_bytes(font_file().read_bytes(), "font/ttf")


def video_page(h: Any) -> None:
    _html(
        h,
        """<!DOCTYPE html><html lang=zh-CN><meta charset=utf-8><title>商品视频</title>
<body><h1>商品视频</h1>
<video id="v" src="/media/product.webm" preload="auto" muted width="160" height="120"></video>
</body></html>""",
    )


def video_route(h: Any) -> None:
    """The video as a media server sends it: byte ranges honoured (206)."""
    data = video_file().read_bytes()
    rng = h.headers.get("Range", "")
    if rng.startswith("bytes="):
        first, _, last = rng[6:].partition("-")
        start = int(first or 0)
        end = min(int(last) if last else len(data) - 1, len(data) - 1)
        h.send_bytes(data[start : end + 1], "video/webm", status=206,
                     extra=[("Accept-Ranges", "bytes"), ("Content-Range", f"bytes {start}-{end}/{len(data)}")])
    else:
        h.send_bytes(data, "video/webm", extra=[("Accept-Ranges", "bytes")])


def tall_page(h: Any) -> None:
    height = int(_query(h).get("h", str(TALL_HEIGHT)))
    bands = "".join(
        f'<div style="position:absolute;left:0;right:0;top:{t}px;height:{b - t}px;background:rgb{rgb}"></div>'
        for t, b, rgb in TALL_BANDS
        if b <= height
    )
    _html(
        h,
        f"""<!DOCTYPE html><html><meta charset=utf-8><title>长页面</title>
<body style="margin:0;background:#fff"><div style="position:relative;height:{height}px">{bands}</div></body></html>""",
    )


def image_route(h: Any) -> None:
    h.send_bytes(IMAGES[urlsplit(h.path).path], "image/png")


ROUTES: dict[str, Any] = {
    "/scroll-list": scroll_list,
    "/api/products": products_api,
    "/frames": frames_page,
    "/many-frames": many_frames,
    "/frame-same": frame_same,
    "/frame-cross": frame_cross,
    "/api/frame-same": text_route(SAME_FRAME_TEXT),
    "/api/frame-cross": text_route(CROSS_FRAME_TEXT),
    "/shadow": shadow_page,
    "/canvas": canvas_page,
    "/xhr-price": xhr_price,
    "/api/price": price_api,
    "/lazy-srcset": lazy_srcset,
    "/webfont": webfont_page,
    "/fonts/shop.ttf": font_route,
    "/fonts/unused.ttf": font_route,
    "/video": video_page,
    "/media/product.webm": video_route,
    "/tall": tall_page,
    **{p: image_route for p in IMAGES},
}


class HardShop:
    """The shop on 127.0.0.1 and a second site on localhost, both serving ``ROUTES``."""

    def __init__(self, serve: Any):
        self.main = serve.ShopServer(routes=ROUTES, https_port=None).start()
        self.other = serve.ShopServer(routes=ROUTES, https_port=None).start()

    def url(self, path: str) -> str:
        return self.main.url(path)

    @property
    def cross_origin(self) -> str:
        # Another host name, not only another port: another site, so Chromium
        # may put its frames in a process of their own.
        return f"http://localhost:{self.other.http.server_address[1]}"

    def stop(self) -> None:
        self.main.stop()
        self.other.stop()
