"""Record a page's HTTP exchanges from Chromium's DevTools protocol.

Where bytes come from, and why:

* Status lines and response headers: ``Network.responseReceivedExtraInfo``
  (``headersText`` is the exact HTTP/1.x header block, order and duplicates
  kept); request headers: ``Network.requestWillBeSentExtraInfo`` (the headers
  actually sent, cookies included).
* Bodies: every response is paused at the ``Fetch`` response stage. Sub-
  resources are switched to ``Network.streamResourceContent`` while paused,
  so their bytes arrive in ``Network.dataReceived`` chunks from the first
  byte and are written straight to a file. Navigation documents cannot be
  streamed while paused (Chromium does not answer until the renderer commits),
  so small ones are read whole with ``Fetch.getResponseBody`` and large or
  open-ended ones are streamed right after ``responseReceived``.
  ``Network.getResponseBody`` is only a last resort: it returns text
  re-encoded as UTF-8, which is not what the server sent.
* Chromium removes Content-Encoding and chunked framing before any of these
  paths see a body: what we keep is the decoded payload. The WARC writer
  adjusts the header block to match and keeps the original values (see
  ``warc.py``); each exchange lists what was done in ``transformations``.

No body is ever held whole in memory except a small document read at the
Fetch stage (bounded by ``inline_document_limit``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

# Failures that mean "we never talked to the server": the capture cannot
# say anything about the page, so it is an error rather than an exhibit.
UNREACHABLE = {
    "net::ERR_NAME_NOT_RESOLVED": "DNS lookup failed",
    "net::ERR_NAME_RESOLUTION_FAILED": "DNS lookup failed",
    "net::ERR_CONNECTION_REFUSED": "connection refused",
    "net::ERR_CONNECTION_TIMED_OUT": "connection timed out",
    "net::ERR_CONNECTION_RESET": "connection reset before any response",
    "net::ERR_CONNECTION_CLOSED": "connection closed before any response",
    "net::ERR_EMPTY_RESPONSE": "the server closed the connection without a response",
    "net::ERR_ADDRESS_UNREACHABLE": "address unreachable",
    "net::ERR_ADDRESS_INVALID": "invalid address",
    "net::ERR_INTERNET_DISCONNECTED": "no network connection",
    "net::ERR_PROXY_CONNECTION_FAILED": "cannot connect to the proxy",
    "net::ERR_TUNNEL_CONNECTION_FAILED": "the proxy could not open a tunnel",
    "net::ERR_UNSAFE_PORT": "Chromium refuses to connect to this port",
    "net::ERR_SSL_PROTOCOL_ERROR": "TLS handshake failed",
    "net::ERR_SSL_VERSION_OR_CIPHER_MISMATCH": "TLS handshake failed (no common protocol or cipher)",
}


class BodyFile:
    """A response body on disk, hashed while it is written."""

    def __init__(self, path: Path):
        self.path = path
        self.size = 0
        self._sha = hashlib.sha256()
        self._f: BinaryIO | None = open(path, "wb")
        self.sha256 = ""
        self.complete = False
        self.source = ""
        # Chunks that arrive before the stream's buffered prefix is written.
        self._early: list[bytes] | None = []

    def write(self, data: bytes) -> None:
        if self._f is None or not data:
            return
        self._f.write(data)
        self._sha.update(data)
        self.size += len(data)

    def feed(self, data: bytes) -> None:
        """A streamed chunk; held back until ``begin`` has written the prefix."""
        if self._early is not None:
            self._early.append(data)
        else:
            self.write(data)

    def begin(self, prefix: bytes) -> None:
        self.write(prefix)
        early, self._early = self._early or [], None
        for chunk in early:
            self.write(chunk)

    def replace(self, data: bytes, source: str) -> None:
        """Whole body from one call (Fetch or renderer): drop anything partial."""
        if self._f is None:
            return
        self._f.seek(0)
        self._f.truncate()
        self._sha = hashlib.sha256()
        self.size = 0
        self._early = None
        self.write(data)
        self.source = source

    @classmethod
    def from_file(cls, path: Path, source: str) -> BodyFile:
        """A body that already sits in a file (a saved download)."""
        body = cls.__new__(cls)
        body.path, body._f, body._early, body.source, body.complete = path, None, None, source, True
        h = hashlib.sha256()
        size = 0
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
                size += len(chunk)
        body.size, body.sha256, body._sha = size, h.hexdigest(), h
        return body

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
            self.sha256 = self._sha.hexdigest()


@dataclass
class Hop:
    """One HTTP request and the response to it (a redirect ends a hop)."""

    request_id: str
    hop: int
    url: str
    method: str
    resource_type: str
    frame_id: str | None
    loader_id: str | None
    wall_time: float
    request_headers: dict[str, str]
    post_data: bytes | None = None
    raw_request_headers: dict[str, str] | None = None
    response: dict[str, Any] | None = None
    response_wall_time: float | None = None
    headers_text: str | None = None
    raw_response_headers: dict[str, str] | None = None
    redirected: bool = False
    body: BodyFile | None = None
    finished: bool = False
    failed: str | None = None
    canceled: bool = False
    from_cache: bool = False
    encoded_length: int | None = None
    transformations: list[str] = field(default_factory=list)

    @property
    def status(self) -> int | None:
        return self.response.get("status") if self.response else None

    @property
    def remote_ip(self) -> str | None:
        return (self.response or {}).get("remoteIPAddress") or None

    @property
    def remote_port(self) -> int | None:
        return (self.response or {}).get("remotePort") or None

    @property
    def protocol(self) -> str | None:
        return (self.response or {}).get("protocol") or None

    @property
    def location(self) -> str | None:
        if not self.response:
            return None
        for k, v in self.response.get("headers", {}).items():
            if k.lower() == "location":
                return v
        return None

    def summary(self) -> dict[str, Any]:
        r = self.response or {}
        d: dict[str, Any] = {
            "request_id": self.request_id,
            "hop": self.hop,
            "url": self.url,
            "method": self.method,
            "resource_type": self.resource_type,
            "status": self.status,
            "status_text": r.get("statusText"),
            "protocol": self.protocol,
            "remote_ip": self.remote_ip,
            "remote_port": self.remote_port,
            "mime_type": r.get("mimeType"),
            "redirect_to": self.location if self.redirected else None,
            "encoded_length": self.encoded_length,
            "finished": self.finished,
            "failed": self.failed,
            "from_cache": self.from_cache,
            "security_state": r.get("securityState"),
            "transformations": self.transformations,
        }
        if self.body is not None:
            d["body"] = {
                "size": self.body.size,
                "sha256": self.body.sha256,
                "complete": self.body.complete,
                "source": self.body.source,
            }
        return {k: v for k, v in d.items() if v is not None}


class NetworkRecorder:
    """Collects hops from one page's DevTools session; bodies go to ``body_dir``."""

    def __init__(self, cdp: Any, body_dir: Path, *, inline_document_limit: int, log: Any):
        self.cdp = cdp
        self.body_dir = body_dir
        self.inline_document_limit = inline_document_limit
        self.log = log
        self.hops: dict[str, list[Hop]] = {}
        self.order: list[Hop] = []
        self.bodies: dict[str, BodyFile] = {}
        self._req_extra: dict[str, list[dict[str, str]]] = {}
        self._resp_extra: dict[str, list[dict[str, Any]]] = {}
        self._late: set[str] = set()
        self._renderer_fallback: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._clock: tuple[float, float] | None = None  # (monotonic, wall) pair
        self._ids = itertools.count()
        self.inflight: set[str] = set()
        self.last_activity = 0.0

    async def start(self) -> None:
        on = self.cdp.on
        on("Network.requestWillBeSent", self._on_request)
        on("Network.requestWillBeSentExtraInfo", self._on_request_extra)
        on("Network.responseReceived", self._on_response)
        on("Network.responseReceivedExtraInfo", self._on_response_extra)
        on("Network.requestServedFromCache", self._on_cache)
        on("Network.dataReceived", self._on_data)
        on("Network.loadingFinished", self._on_finished)
        on("Network.loadingFailed", self._on_failed)
        on("Fetch.requestPaused", self._on_paused)
        # Chromium's own response buffer is not used for bodies (we stream),
        # so keep it small: it would otherwise hold large bodies a second time.
        await self.cdp.send(
            "Network.enable", {"maxTotalBufferSize": 16 << 20, "maxResourceBufferSize": 8 << 20}
        )
        await self.cdp.send("Fetch.enable", {"patterns": [{"urlPattern": "*", "requestStage": "Response"}]})

    # -- helpers -------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        t = asyncio.ensure_future(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    def _wall(self, monotonic: float | None) -> float | None:
        if monotonic is None or self._clock is None:
            return None
        return self._clock[1] + (monotonic - self._clock[0])

    def _touch(self) -> None:
        self.last_activity = asyncio.get_running_loop().time()

    def _body(self, rid: str) -> BodyFile:
        b = self.bodies.get(rid)
        if b is None:
            b = BodyFile(self.body_dir / f"body-{next(self._ids):05d}")
            self.bodies[rid] = b
        return b

    def _current(self, rid: str) -> Hop | None:
        hops = self.hops.get(rid)
        return hops[-1] if hops else None

    # -- events --------------------------------------------------------------

    def _on_request(self, e: dict[str, Any]) -> None:
        rid = e["requestId"]
        self._touch()
        if self._clock is None and e.get("wallTime"):
            self._clock = (e["timestamp"], e["wallTime"])
        prev = self._current(rid)
        if e.get("redirectResponse") and prev is not None:
            prev.response = e["redirectResponse"]
            prev.response_wall_time = self._wall(e.get("timestamp"))
            prev.redirected = True
            prev.finished = True
        req = e["request"]
        post = None
        if req.get("postData") is not None:
            post = req["postData"].encode("utf-8")
        elif req.get("postDataEntries"):
            post = b"".join(base64.b64decode(x.get("bytes", "")) for x in req["postDataEntries"])
        hop = Hop(
            request_id=rid,
            hop=len(self.hops.get(rid, [])),
            url=req["url"],
            method=req.get("method", "GET"),
            resource_type=e.get("type", "Other"),
            frame_id=e.get("frameId"),
            loader_id=e.get("loaderId"),
            wall_time=e.get("wallTime") or self._wall(e.get("timestamp")) or 0.0,
            request_headers=dict(req.get("headers", {})),
            post_data=post,
        )
        self.hops.setdefault(rid, []).append(hop)
        self.order.append(hop)
        self.inflight.add(rid)

    def _on_request_extra(self, e: dict[str, Any]) -> None:
        self._req_extra.setdefault(e["requestId"], []).append(e.get("headers", {}))

    def _on_response_extra(self, e: dict[str, Any]) -> None:
        self._resp_extra.setdefault(e["requestId"], []).append(e)

    def _on_cache(self, e: dict[str, Any]) -> None:
        hop = self._current(e["requestId"])
        if hop is not None:
            hop.from_cache = True

    def _on_response(self, e: dict[str, Any]) -> None:
        rid = e["requestId"]
        self._touch()
        hop = self._current(rid)
        if hop is None:
            return
        hop.response = e["response"]
        hop.response_wall_time = self._wall(e.get("timestamp"))
        if rid in self._late:
            self._late.discard(rid)
            self._spawn(self._stream(rid, hop))

    def _on_data(self, e: dict[str, Any]) -> None:
        self._touch()
        data = e.get("data")
        if data:
            body = self.bodies.get(e["requestId"])
            if body is not None:
                body.feed(base64.b64decode(data))

    def _on_finished(self, e: dict[str, Any]) -> None:
        rid = e["requestId"]
        self._touch()
        self.inflight.discard(rid)
        hop = self._current(rid)
        if hop is not None:
            hop.finished = True
            hop.encoded_length = int(e.get("encodedDataLength", 0))
        body = self.bodies.get(rid)
        if body is not None:
            body.complete = True

    def _on_failed(self, e: dict[str, Any]) -> None:
        rid = e["requestId"]
        self._touch()
        self.inflight.discard(rid)
        hop = self._current(rid)
        if hop is not None:
            hop.failed = e.get("errorText") or "failed"
            hop.canceled = bool(e.get("canceled"))

    def _on_paused(self, e: dict[str, Any]) -> None:
        self._spawn(self._paused(e))

    # -- bodies --------------------------------------------------------------

    async def _paused(self, e: dict[str, Any]) -> None:
        fetch_id = e["requestId"]
        rid = e.get("networkId")
        status = e.get("responseStatusCode")
        try:
            if rid is None or status is None or e.get("responseErrorReason"):
                return
            headers = {h["name"].lower(): h["value"] for h in e.get("responseHeaders", [])}
            if 300 <= status < 400 and "location" in headers:
                return  # Chromium never exposes redirect bodies
            if e.get("resourceType") != "Document":
                await self._stream(rid, None)
                return
            length = headers.get("content-length", "")
            if length.isdigit() and int(length) <= self.inline_document_limit:
                await self._fetch_whole(fetch_id, rid)
            else:
                # Too big or open-ended to hold whole: stream once the renderer has it.
                self._late.add(rid)
        except Exception as ex:  # the page may be gone; the capture goes on
            self.log("body", f"could not read body of {e.get('request', {}).get('url')}: {_short(ex)}")
        finally:
            try:
                await self.cdp.send("Fetch.continueResponse", {"requestId": fetch_id})
            except Exception:
                pass

    async def _fetch_whole(self, fetch_id: str, rid: str) -> None:
        r = await self.cdp.send("Fetch.getResponseBody", {"requestId": fetch_id})
        data = base64.b64decode(r["body"]) if r.get("base64Encoded") else r["body"].encode("utf-8")
        body = self._body(rid)
        body.replace(data, "fetch")

    async def _stream(self, rid: str, hop: Hop | None) -> None:
        body = self._body(rid)
        body.source = "stream"
        try:
            r = await self.cdp.send("Network.streamResourceContent", {"requestId": rid})
        except Exception:
            # Already finished (small and fast): read it from the renderer later.
            self._renderer_fallback.add(rid)
            return
        body.begin(base64.b64decode(r.get("bufferedData", "")))

    async def settle(self, timeout: float) -> None:
        """Let scheduled body handlers run (bounded)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    async def finish(self, timeout: float) -> None:
        """Gather what is left while the page is still open; close every body file."""
        await self.settle(timeout)
        for rid in sorted(self._renderer_fallback):
            body = self.bodies[rid]
            hop = self._current(rid)
            try:
                r = await asyncio.wait_for(
                    self.cdp.send("Network.getResponseBody", {"requestId": rid}), timeout
                )
            except Exception as ex:
                self.log("body", f"no body for {hop.url if hop else rid}: {_short(ex)}")
                continue
            if r.get("base64Encoded"):
                body.replace(base64.b64decode(r["body"]), "renderer")
            else:
                data, note = _reencode(r["body"], hop.response if hop else None)
                body.replace(data, "renderer-text")
                if hop is not None:
                    hop.transformations.append(note)
            body.complete = True
        for hop in self.order:
            hop.raw_request_headers = self._match_request_extra(hop)
            extra = self._match_response_extra(hop)
            if extra is not None:
                hop.headers_text = extra.get("headersText")
                hop.raw_response_headers = extra.get("headers")
            if not hop.redirected and hop.response is not None:
                hop.body = self.bodies.get(hop.request_id)
        for body in self.bodies.values():
            body.close()

    def _match_request_extra(self, hop: Hop) -> dict[str, str] | None:
        extras = self._req_extra.get(hop.request_id, [])
        return extras[hop.hop] if hop.hop < len(extras) else None

    def _match_response_extra(self, hop: Hop) -> dict[str, Any] | None:
        # Extra-info events come in order but some hops have none (internal
        # redirects, cache hits): take the next unused one with the same status.
        if hop.status is None or hop.from_cache:
            return None
        extras = self._resp_extra.get(hop.request_id, [])
        for i, ex in enumerate(extras):
            if ex is not None and ex.get("statusCode") == hop.status:
                extras[i] = None  # type: ignore[call-overload]
                return ex
        return None

    async def certificate(self, origin: str) -> list[bytes]:
        """DER certificates the browser received for ``origin`` (leaf first)."""
        r = await self.cdp.send("Network.getCertificate", {"origin": origin})
        return [base64.b64decode(c) for c in r.get("tableNames", [])]


_META_CHARSET = re.compile(r"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.I)


def _reencode(text: str, response: dict[str, Any] | None) -> tuple[bytes, str]:
    # Chromium decoded the bytes with the page's charset (header, else <meta>);
    # encoding back with the same charset restores them for valid input.
    charset = "utf-8"
    header = ""
    for k, v in ((response or {}).get("headers") or {}).items():
        if k.lower() == "content-type":
            header = v.lower()
    if "charset=" in header:
        charset = header.split("charset=", 1)[1].split(";")[0].strip().strip('"') or "utf-8"
    elif (m := _META_CHARSET.search(text[:4096])) is not None:
        charset = m.group(1).lower()
    try:
        return text.encode(charset), f"body read back from the renderer as text and re-encoded as {charset}"
    except (LookupError, UnicodeEncodeError):
        return text.encode("utf-8"), "body read back from the renderer as text and re-encoded as utf-8"


def _short(ex: BaseException) -> str:
    s = str(ex).strip().splitlines()
    return s[0][:200] if s else type(ex).__name__
