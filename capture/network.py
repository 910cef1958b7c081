"""Record a page's HTTP exchanges from Chromium's DevTools protocol.

Where bytes come from, and why:

* Status lines and response headers: ``Network.responseReceivedExtraInfo``
  (``headersText`` is the exact HTTP/1.x header block, order and duplicates
  kept); request headers: ``Network.requestWillBeSentExtraInfo`` (the headers
  actually sent, cookies included).
* Bodies: every response is paused at the ``Fetch`` response stage and
  switched to ``Network.streamResourceContent`` before it is released, so its
  bytes arrive in ``Network.dataReceived`` chunks from the first byte and are
  written straight to a file. For sub-resources Chromium answers while the
  response is paused; for navigation documents it answers only once the
  renderer has committed, so the request is sent, the response released, and
  the answer (the bytes buffered before streaming began) awaited afterwards.
  A small document that finishes before the renderer gets to the request
  (a page's own navigations, mostly) is read back from the renderer instead.
  Nothing waits for a whole body, so a server that stalls half-way cannot hold
  the page back: what arrived is kept and marked truncated.
  ``Network.getResponseBody`` is only a last resort: it returns text
  re-encoded as UTF-8, which is not what the server sent.
* Chromium removes Content-Encoding and chunked framing before any of these
  paths see a body: what we keep is the decoded payload. The WARC writer
  adjusts the header block to match and keeps the original values (see
  ``warc.py``); each exchange lists what was done in ``transformations``.

No body is ever held whole in memory. Every DevTools call goes through
``DevTools.send``, which is bounded: a renderer that stops answering costs a
timeout, never a hang.
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

RESPONSE_STAGE = {"urlPattern": "*", "requestStage": "Response"}


class Unanswered(TimeoutError):
    """A DevTools call that got no answer in time: a busy or hung renderer, usually."""


class DevTools:
    """A DevTools session whose every call is bounded.

    ``limit`` (seconds left before the capture's deadline) caps each timeout,
    so no single call can carry a capture past its deadline.
    """

    def __init__(self, session: Any, timeout: float, limit: Any = None):
        self.session = session
        self.timeout = timeout
        self.limit = limit

    def on(self, event: str, handler: Any) -> None:
        self.session.on(event, handler)

    def _bound(self, timeout: float | None) -> float:
        t = self.timeout if timeout is None else timeout
        if self.limit is not None:
            t = min(t, self.limit())
        return max(0.05, t)

    async def send(self, method: str, params: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        t = self._bound(timeout)
        try:
            return await asyncio.wait_for(self.session.send(method, params or {}), t)
        except TimeoutError:
            raise Unanswered(f"{method} got no answer within {t:.3g} s") from None

    def issue(self, method: str, params: dict[str, Any]) -> asyncio.Task[Any]:
        """Start a call whose answer is awaited later (``wait``).

        The message goes out on the task's first step; a caller that needs it
        sent before its next call yields once (``await asyncio.sleep(0)``).
        """
        return asyncio.ensure_future(self.session.send(method, params))

    async def wait(self, task: asyncio.Task[Any], method: str, timeout: float | None = None) -> Any:
        t = self._bound(timeout)
        try:
            return await asyncio.wait_for(task, t)
        except TimeoutError:
            raise Unanswered(f"{method} got no answer within {t:.3g} s") from None


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

    @property
    def started(self) -> bool:
        """The stream's prefix is written: what the file holds starts at byte 0."""
        return self._early is None

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

    def discard(self) -> None:
        """A stream that never started: its chunks lack the start of the body, so none count."""
        self._early = None
        if self._f is not None:
            self._f.seek(0)
            self._f.truncate()
        self._sha = hashlib.sha256()
        self.size = 0


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
    #: body bytes Chromium reported delivering (``dataReceived.dataLength``), decoded
    data_length: int = 0
    #: set when the stored body is not the whole body (see ``warc.truncation``)
    truncated: dict[str, Any] | None = None

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
            "truncated": self.truncated,
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

    def __init__(self, cdp: DevTools, body_dir: Path, *, log: Any, stream_timeout: float = 5.0):
        self.cdp = cdp
        self.body_dir = body_dir
        self.log = log
        # A paused sub-resource waits for this answer; a hung renderer must not hold it long.
        self.stream_timeout = stream_timeout
        self.hops: dict[str, list[Hop]] = {}
        self.order: list[Hop] = []
        self.bodies: dict[str, BodyFile] = {}
        self._req_extra: dict[str, list[dict[str, str]]] = {}
        self._resp_extra: dict[str, list[dict[str, Any]]] = {}
        self._renderer_fallback: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._clock: tuple[float, float] | None = None  # (monotonic, wall) pair
        self._ids = itertools.count()
        self.inflight: set[str] = set()
        self.last_activity = 0.0
        #: requests the page has started (redirect hops included): later ones mean it changed
        self.requests_seen = 0
        #: once set, new documents of this frame are refused (a page that will not stop navigating)
        self.block_navigation_of: str | None = None
        self.blocked_navigations: list[str] = []
        # After ``finish`` the hops are what the exhibit says; our own closing of the
        # page (which cancels whatever is still loading) must not rewrite them.
        self.closed = False

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
        await self.cdp.send("Fetch.enable", {"patterns": [RESPONSE_STAGE]})

    async def block_navigations(self, frame_id: str) -> None:
        """Refuse every new document in ``frame_id`` from now on (the page keeps navigating)."""
        self.block_navigation_of = frame_id
        await self.cdp.send(
            "Fetch.enable",
            {"patterns": [RESPONSE_STAGE, {"urlPattern": "*", "resourceType": "Document", "requestStage": "Request"}]},
        )

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
        if self.closed:
            return
        rid = e["requestId"]
        self._touch()
        self.requests_seen += 1
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
        if self.closed:
            return
        hop = self._current(e["requestId"])
        if hop is not None:
            hop.from_cache = True

    def _on_response(self, e: dict[str, Any]) -> None:
        if self.closed:
            return
        rid = e["requestId"]
        self._touch()
        hop = self._current(rid)
        if hop is None:
            return
        hop.response = e["response"]
        hop.response_wall_time = self._wall(e.get("timestamp"))

    def _on_data(self, e: dict[str, Any]) -> None:
        if self.closed:
            return
        self._touch()
        hop = self._current(e["requestId"])
        if hop is not None:
            hop.data_length += int(e.get("dataLength") or 0)
        data = e.get("data")
        if data:
            body = self.bodies.get(e["requestId"])
            if body is not None:
                body.feed(base64.b64decode(data))

    def _on_finished(self, e: dict[str, Any]) -> None:
        if self.closed:
            return
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
        if self.closed:
            return
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
        if status is None and e.get("responseErrorReason") is None:
            await self._request_stage(e)
            return
        try:
            if rid is None or status is None or e.get("responseErrorReason"):
                return
            headers = {h["name"].lower(): h["value"] for h in e.get("responseHeaders", [])}
            if 300 <= status < 400 and "location" in headers:
                return  # Chromium never exposes redirect bodies
            if e.get("resourceType") != "Document":
                await self._stream(rid)
                return
            # A document's stream is answered only after the renderer commits, which
            # needs the response released first: send the request, let it go out
            # (one yield), release the response, and take the answer later. Waiting
            # for a whole body here instead would hold the page back until the
            # server finished, forever if it stalls.
            task = self.cdp.issue("Network.streamResourceContent", {"requestId": rid})
            self._body(rid).source = "stream"
            await asyncio.sleep(0)
            self._spawn(self._stream_started(rid, task))
        except Exception as ex:  # the page may be gone; the capture goes on
            self.log("body", f"could not read body of {e.get('request', {}).get('url')}: {_short(ex)}")
        finally:
            try:
                await self.cdp.send("Fetch.continueResponse", {"requestId": fetch_id})
            except Exception:
                pass

    async def _request_stage(self, e: dict[str, Any]) -> None:
        fetch_id = e["requestId"]
        url = e.get("request", {}).get("url", "")
        try:
            if self.block_navigation_of is not None and e.get("frameId") == self.block_navigation_of:
                self.blocked_navigations.append(url)
                self.log("navigation", f"navigation to {url} refused: the page kept navigating")
                # Aborted, not an error reason: a failed navigation would commit an error page.
                await self.cdp.send("Fetch.failRequest", {"requestId": fetch_id, "errorReason": "Aborted"})
            else:
                await self.cdp.send("Fetch.continueRequest", {"requestId": fetch_id})
        except Exception as ex:
            self.log("navigation", f"could not hold or release the request for {url}: {_short(ex)}")

    async def _stream(self, rid: str) -> None:
        body = self._body(rid)
        body.source = "stream"
        try:
            r = await self.cdp.send(
                "Network.streamResourceContent", {"requestId": rid}, timeout=self.stream_timeout
            )
        except Exception:
            # Already finished (small and fast): read it from the renderer.
            self._spawn(self._read_back_soon(rid))
            return
        body.begin(base64.b64decode(r.get("bufferedData", "")))

    async def _stream_started(self, rid: str, task: asyncio.Task[Any]) -> None:
        try:
            r = await self.cdp.wait(task, "Network.streamResourceContent")
        except Exception as ex:
            self.log("body", f"document stream {rid} not started: {_short(ex)}")
            await self._read_back_soon(rid)
            return
        self._body(rid).begin(base64.b64decode(r.get("bufferedData", "")))

    async def _read_back(self, rid: str, timeout: float | None = None) -> bool:
        """The body as the renderer holds it (the last resort); True if read."""
        body = self._body(rid)
        hop = self._current(rid)
        body.discard()
        try:
            r = await self.cdp.send("Network.getResponseBody", {"requestId": rid}, timeout=timeout)
        except Exception as ex:
            self.log("body", f"no body for {hop.url if hop else rid}: {_short(ex)}")
            return False
        if r.get("base64Encoded"):
            body.replace(base64.b64decode(r["body"]), "renderer")
        else:
            data, note = _reencode(r["body"], hop.response if hop else None)
            body.replace(data, "renderer-text")
            if hop is not None:
                hop.transformations.append(note)
                if hop.data_length and hop.data_length != len(data):
                    hop.transformations.append(
                        f"the re-encoded body is {len(data)} bytes, the browser received {hop.data_length}: "
                        "it is not byte-exact"
                    )
        # The renderer gives what it holds; that is the whole body only if loading ended.
        body.complete = hop is not None and hop.finished
        return True

    async def _read_back_soon(self, rid: str) -> None:
        # Right away: the renderer forgets a document's resources when the page navigates on.
        # Listed first: if this is cut short, ``finish`` still knows the body is not read.
        self._renderer_fallback.add(rid)
        if await self._read_back(rid):
            self._renderer_fallback.discard(rid)

    async def settle(self, timeout: float) -> None:
        """Let scheduled body handlers run (bounded)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=max(0.05, timeout))

    async def finish(self, timeout: float) -> None:
        """Gather what is left while the page is still open; close every body file.

        From here on the hops no longer change: a response still loading now is
        kept as received and stays marked as such.
        """
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        await self.settle(timeout)
        for t in list(self._tasks):
            t.cancel()
        for rid, body in self.bodies.items():
            if not body.started and rid not in self._renderer_fallback:
                # The stream never answered: chunks without the start of the body are no body.
                self._renderer_fallback.add(rid)
        for rid in sorted(self._renderer_fallback):
            if rid in self.bodies:
                if not await self._read_back(rid, max(0.05, end - loop.time())):
                    body = self.bodies.pop(rid)
                    body.close()  # no body at all, rather than an empty one that looks whole
        self.closed = True
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
        r = await self.cdp.send("Network.getCertificate", {"origin": origin}, timeout=10)
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
