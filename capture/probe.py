"""Probes: a light page load that says what a listing shows now, without keeping it.

    async with Browser() as b:
        r = await probe(b, "https://shop.example/item/1", {"price": ".price"}, CaptureOptions())
    r.status, r.final_url, r.fields["price"], r.text_sha256, r.phash

The same browser as a capture (``browser.py``, the same flags and a fresh
context per load), in a light mode: no network recording, no WARC, no
MHTML, no scrolling, one viewport screenshot that is hashed and dropped.
What a probe returns is small enough to go into a signed ``probe`` record;
when it shows something worth keeping, the caller makes a full capture.

Two fingerprints let the next probe say how much changed without the old
page: ``text_simhash`` (64-bit SimHash of the page text's 4-character
shingles, so it works for Chinese without word segmentation) and ``phash``
(64-bit difference hash of the screenshot). Their Hamming distances are
small for small edits and grow with the amount changed.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from ledger.errors import CaptureError, EvidenceError

from .browser import Browser
from .environment import now_utc, rfc3339
from .network import UNREACHABLE, _short
from .options import CaptureOptions
from .session import context_options

#: characters of a field's text kept in the probe record
MAX_FIELD_CHARS = 2000
#: characters of page text fingerprinted (a hostile page may be any size)
MAX_TEXT_CHARS = 500_000
SHINGLE = 4
#: seconds a probe waits, after load, for the network to go quiet (JavaScript-filled prices)
SETTLE_CAP = 2.0


@dataclass
class ProbeResult:
    url: str
    final_url: str
    status: int | None
    title: str
    #: field name -> text of the first element the selector matches, None when none matches
    fields: dict[str, str | None]
    text_sha256: str
    text_simhash: str
    phash: str
    screenshot_sha256: str
    started: str
    ended: str
    browser: str
    #: the main document's redirects, first request first
    redirects: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: the page text itself: for rule checks by the caller, never recorded
    text: str = field(default="", repr=False)

    def to_payload(self) -> dict[str, Any]:
        """What the probe record states (the page text and screenshot stay out)."""
        return {
            "url": self.url, "final_url": self.final_url, "status": self.status, "title": self.title[:500],
            "fields": self.fields, "text_sha256": self.text_sha256, "text_simhash": self.text_simhash,
            "phash": self.phash, "screenshot_sha256": self.screenshot_sha256, "started": self.started,
            "ended": self.ended, "browser": self.browser, "redirects": self.redirects,
            **({"warnings": self.warnings} if self.warnings else {}),
        }


def simhash(text: str) -> int:
    """64-bit SimHash of ``text``'s distinct 4-character shingles (white space collapsed)."""
    t = " ".join(text[:MAX_TEXT_CHARS].split())
    shingles = {t[i : i + SHINGLE] for i in range(max(1, len(t) - SHINGLE + 1))}
    if not t:
        return 0
    rows = [format(int.from_bytes(hashlib.blake2b(s.encode("utf-8"), digest_size=8).digest(), "big"), "064b") for s in shingles]
    # Column counts in C (zip, str.count) rather than 64 Python additions per shingle.
    half = len(rows) / 2
    bits = "".join("1" if "".join(col).count("1") > half else "0" for col in zip(*rows))
    return int(bits, 2)


def dhash(png: bytes) -> int:
    """64-bit difference hash: 9x8 greyscale, one bit per left/right brightness step."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        small = im.convert("L").resize((9, 8), Image.Resampling.LANCZOS)
        px = [small.getpixel((x, y)) for y in range(8) for x in range(9)]
    value = 0
    for row in range(8):
        for col in range(8):
            value = (value << 1) | (px[row * 9 + col] > px[row * 9 + col + 1])
    return value


def distance(a: str | None, b: str | None) -> int | None:
    """Hamming distance of two 16-digit hex fingerprints; None when either is missing."""
    if not a or not b:
        return None
    try:
        return (int(a, 16) ^ int(b, 16)).bit_count()
    except ValueError:
        return None


def hex64(v: int) -> str:
    return f"{v:016x}"


async def check_selectors(browser: Browser, selectors: list[str]) -> dict[str, str]:
    """Selectors Chromium's CSS parser rejects, with its message (empty: all parse)."""
    ctx = await browser.browser.new_context()
    try:
        page = await ctx.new_page()
        bad = await page.evaluate(
            """(sels) => {
                const out = {};
                for (const s of sels) {
                    try { document.createDocumentFragment().querySelector(s); }
                    catch (e) { out[s] = String(e && e.message || e); }
                }
                return out;
            }""",
            selectors,
        )
    finally:
        await ctx.close()
    return {str(k): str(v) for k, v in (bad or {}).items()}


# Run in an isolated world: the page's own scripts share the DOM but not these
# prototypes and globals, so overriding innerText or querySelector fools nothing here.
READ_JS = """(() => {
    const sels = %s, fields = {};
    for (const [name, css] of Object.entries(sels)) {
        const el = document.querySelector(css);
        fields[name] = el ? el.innerText : null;
    }
    const text = document.body ? document.body.innerText : "";
    return {title: document.title, text: text.slice(0, %d), fields};
})()"""


async def _read(ctx: Any, page: Any, fields: dict[str, str]) -> dict[str, Any]:
    cdp = await ctx.new_cdp_session(page)
    try:
        tree = await cdp.send("Page.getFrameTree")
        world = await cdp.send("Page.createIsolatedWorld", {
            "frameId": tree["frameTree"]["frame"]["id"], "worldName": f"evidence-probe-{secrets.token_hex(4)}"})
        res = await cdp.send("Runtime.evaluate", {
            "expression": READ_JS % (json.dumps(fields), MAX_TEXT_CHARS), "contextId": world["executionContextId"],
            "returnByValue": True})
    finally:
        await cdp.detach()
    if res.get("exceptionDetails"):
        raise CaptureError(f"cannot read the page: {res['exceptionDetails'].get('text', 'script error')}")
    value = res.get("result", {}).get("value")
    return value if isinstance(value, dict) else {}


async def probe(browser: Browser, url: str, fields: dict[str, str], options: CaptureOptions) -> ProbeResult:
    """Load ``url`` once and read what it shows. Raises CaptureError when nothing answered."""
    try:
        return await asyncio.wait_for(_probe(browser, url, fields, options), options.deadline)
    except EvidenceError:
        raise
    except TimeoutError as e:
        raise CaptureError(f"probe of {url} did not finish within {options.deadline:g} s") from e
    except Exception as e:
        if type(e).__module__.startswith("playwright") or isinstance(e, (OSError, RuntimeError, ValueError)):
            raise CaptureError(f"probe of {url} failed: {_short(e)}") from e
        raise


async def _probe(browser: Browser, url: str, fields: dict[str, str], opt: CaptureOptions) -> ProbeResult:
    from playwright.async_api import Error as PlaywrightError
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    started = rfc3339(now_utc())
    warnings: list[str] = []
    ctx = await browser.browser.new_context(
        **context_options(opt),  # the capture's device emulation and saved login
        locale=opt.locale,
        timezone_id=opt.timezone_id,
        # As in a capture: a bad certificate must not hide a suspect page.
        ignore_https_errors=True,
        service_workers="block",
    )
    try:
        page = await ctx.new_page()
        # A dialog would block the page; a probe only looks.
        page.on("dialog", lambda d: asyncio.ensure_future(d.dismiss()))
        resp = None
        try:
            resp = await page.goto(url, wait_until="load", timeout=opt.load_timeout * 1000)
        except PlaywrightTimeout:
            warnings.append(f"load did not finish within {opt.load_timeout:g} s")
        except PlaywrightError as e:
            m = re.search(r"net::ERR_[A-Z_]+", str(e))
            code = m.group(0) if m else _short(e)
            raise CaptureError(f"cannot probe {url}: {UNREACHABLE.get(code, 'no response from the server')} ({code})") from None
        try:
            await page.wait_for_load_state("networkidle", timeout=min(opt.settle_timeout, SETTLE_CAP) * 1000)
        except PlaywrightTimeout:
            pass  # a page that keeps polling is read as it is now
        redirects: list[str] = []
        if resp is not None:
            req = resp.request.redirected_from
            while req is not None and len(redirects) < 50:
                redirects.insert(0, req.url)
                req = req.redirected_from
        step = 10 + 2 * opt.settle_timeout
        read = await asyncio.wait_for(_read(ctx, page, fields), step)
        title, text = str(read.get("title") or ""), str(read.get("text") or "")
        got: dict[str, str | None] = {}
        for name in fields:
            v = (read.get("fields") or {}).get(name)
            got[name] = " ".join(str(v).split())[:MAX_FIELD_CHARS] if v is not None else None
        png = await page.screenshot(type="png", timeout=step * 1000)
        final = page.url
    finally:
        await ctx.close()
    facts = browser.facts
    return ProbeResult(
        url=url, final_url=final, status=resp.status if resp is not None else None, title=title, fields=got,
        text_sha256=hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest(),
        text_simhash=hex64(simhash(text)), phash=hex64(dhash(png)),
        screenshot_sha256=hashlib.sha256(png).hexdigest(), started=started, ended=rfc3339(now_utc()),
        browser=f"{facts.name} {facts.version}" if facts else "", redirects=redirects, warnings=warnings, text=text,
    )
