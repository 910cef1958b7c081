"""Replay of an exhibit's WARC inside the web app: archived bytes, scripts off, nothing live.

A response is served at ``/replay/<exhibit>/<scheme>/<host[:port]>/<path>?<query>``
with the headers it was archived with (content type only) and a policy that
lets the page reach nothing but this server (``default-src 'self'``) and run
no script. HTML and CSS get their absolute and root-relative URLs rewritten
into that form, so images, styles and frames come from the archive too; a
resource the capture did not archive is a 404, never a fetch from the live
web. This shows what the archive holds, not a re-execution of the page: the
screenshots and the DOM snapshot show what the browser rendered.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import urljoin, urlsplit

from warcio.archiveiterator import ArchiveIterator

POLICY = ("default-src 'self' data:; script-src 'none'; object-src 'none'; base-uri 'none'; "
          "form-action 'none'; frame-ancestors 'self'")
MAX_REWRITE = 16 * 1024 * 1024


@dataclass(frozen=True)
class Archived:
    offset: int
    status: int
    content_type: str


def prefix(index: int) -> str:
    return f"/replay/{index}/"


def replay_path(index: int, url: str) -> str:
    """Where the archived ``url`` of exhibit ``index`` is served."""
    p = urlsplit(url)
    path = p.path or "/"
    return f"{prefix(index)}{p.scheme}/{p.netloc}{path}" + (f"?{p.query}" if p.query else "")


def target_url(rest: str, query: str) -> str | None:
    """The archived URL for ``<scheme>/<host>/<path>`` and its query, or None when malformed."""
    scheme, _, tail = rest.partition("/")
    if scheme not in ("http", "https"):
        return None
    netloc, _, path = tail.partition("/")
    if not netloc:
        return None
    return f"{scheme}://{netloc}/{path}" + (f"?{query}" if query else "")


def index_warc(f: BinaryIO) -> dict[str, Archived]:
    """URL -> the first response archived for it (a later one for the same URL is a repeat)."""
    found: dict[str, Archived] = {}
    it = ArchiveIterator(f)
    for rec in it:
        if rec.rec_type != "response":
            continue
        url = rec.rec_headers.get_header("WARC-Target-URI") or ""
        if url in found or rec.http_headers is None:
            continue
        status = int(rec.http_headers.get_statuscode() or 0)
        found[url] = Archived(it.get_record_offset(), status, rec.http_headers.get_header("Content-Type") or "")
    return found


def read_payload(f: BinaryIO, offset: int) -> Iterator[bytes]:
    """The (decoded) payload of the response record at ``offset``, in chunks."""
    f.seek(offset)
    rec = next(iter(ArchiveIterator(f)))
    stream = rec.content_stream()
    while chunk := stream.read(64 * 1024):
        yield chunk


_ATTR = re.compile(rb"""(?i)(\s(?:src|href|poster|action|data)\s*=\s*)(["'])(.*?)\2""", re.S)
_SRCSET = re.compile(rb"""(?i)(\ssrcset\s*=\s*)(["'])(.*?)\2""", re.S)
_CSS_URL = re.compile(rb"""(?i)url\(\s*(["']?)([^)"']+)\1\s*\)""")


def _mapped(index: int, base: str, ref: bytes) -> bytes:
    text = ref.decode("utf-8", "replace").strip()
    if not text or text.startswith(("#", "data:", "javascript:", "mailto:", "tel:", "about:")):
        return ref
    absolute = urljoin(base, text)
    if not absolute.startswith(("http://", "https://")):
        return ref
    return replay_path(index, absolute).encode()


def rewrite(body: bytes, index: int, base: str) -> bytes:
    """HTML or CSS with its URLs pointing into the replay of exhibit ``index``."""

    def attr(m: re.Match[bytes]) -> bytes:
        return m.group(1) + m.group(2) + _mapped(index, base, m.group(3)) + m.group(2)

    def srcset(m: re.Match[bytes]) -> bytes:
        parts = []
        for cand in m.group(3).split(b","):
            bits = cand.strip().split(None, 1)
            if bits:
                bits[0] = _mapped(index, base, bits[0])
            parts.append(b" ".join(bits))
        return m.group(1) + m.group(2) + b", ".join(parts) + m.group(2)

    def css(m: re.Match[bytes]) -> bytes:
        return b"url(" + m.group(1) + _mapped(index, base, m.group(2)) + m.group(1) + b")"

    body = _SRCSET.sub(srcset, body)
    body = _ATTR.sub(attr, body)
    return _CSS_URL.sub(css, body)


class WarcIndexes:
    """Indexes of recently viewed WARCs, by the WARC's SHA-256 (its bytes never change)."""

    def __init__(self, keep: int = 16):
        self.keep = keep
        self._cache: OrderedDict[str, dict[str, Archived]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, sha256: str, opener: object) -> dict[str, Archived]:
        with self._lock:
            if sha256 in self._cache:
                self._cache.move_to_end(sha256)
                return self._cache[sha256]
        with opener() as f:  # type: ignore[operator]
            idx = index_warc(f)
        with self._lock:
            self._cache[sha256] = idx
            while len(self._cache) > self.keep:
                self._cache.popitem(last=False)
        return idx
