"""Recorded HTTP fetches for stream capture, and their WARC records.

``http.client`` is driven by hand (``putrequest``/``putheader``) so the
request headers we archive are exactly the ones sent, and ``Accept-Encoding:
identity`` keeps the body as the server sent it. Bodies go straight to a file,
hashed while written; nothing holds a whole segment or stream in memory.
``http.client`` removes chunked framing, so a record of a chunked response
says so (the header is renamed ``X-Archive-Orig-Transfer-Encoding`` and a
true ``Content-Length`` added), the convention ``warc.py`` uses for pages.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import select
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urljoin, urlsplit

from warcio.statusandheaders import StatusAndHeaders, StatusAndHeadersParser

from .environment import rfc3339, tool_version
from .warc import WarcFile

CHUNK = 64 * 1024
MAX_REDIRECTS = 5
REDIRECT_STATUS = {301, 302, 303, 307, 308}


class FetchFailed(Exception):
    """No HTTP response at all (refused, reset, timed out): internal, logged by the caller."""


@dataclass
class Exchange:
    """One HTTP request and its response, with the body on disk."""

    url: str
    method: str
    request_line: str
    request_headers: list[tuple[str, str]]
    sent: float  # wall clock
    status: int = 0
    status_line: str = ""
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    received: float = 0.0
    body: Path | None = None
    size: int = 0
    sha256: str = ""
    complete: bool = False
    #: why the body is short: "length" (our byte bound), "disconnect", "time"
    truncated: str | None = None
    remote_ip: str | None = None
    #: the body was handed over with its Content-Encoding already removed (by a browser)
    decoded: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300 and self.complete

    def header(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.response_headers:
            if k.lower() == name:
                return v
        return None

    def summary(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "status": self.status,
            "size": self.size,
            "sha256": self.sha256,
            **({"truncated": self.truncated} if self.truncated else {}),
        }


class Fetcher:
    """One keep-alive connection per origin; a dropped connection is reopened once."""

    def __init__(self, tmpdir: Path, *, timeout: float = 10.0, user_agent: str | None = None):
        self.tmpdir = tmpdir
        self.timeout = timeout
        self.user_agent = user_agent or f"{tool_version()} (livestream recorder)"
        self._conns: dict[tuple[str, str, int], http.client.HTTPConnection] = {}
        self._n = 0
        #: a streamed body (``on_chunk``) of a live source: when nothing is waiting on the socket,
        #: wait this long before reading again, so the bytes of many packets are taken in one
        #: wakeup (an HTTP-FLV server sends a packet per FLV tag, ~60 a second at 320x180;
        #: reading each as it came cost ~1/8 of a capture's CPU). Never waits while data is
        #: waiting, so it cannot fall behind; TCP holds what arrives meanwhile. 0: no waiting.
        self.pace = 0.0

    def close(self) -> None:
        for c in self._conns.values():
            c.close()
        self._conns.clear()

    def get(
        self,
        url: str,
        *,
        max_body: int | None = None,
        on_chunk: Callable[[bytes], bool] | None = None,
    ) -> list[Exchange]:
        """GET ``url`` following redirects; every hop is returned, the final one last.

        ``max_body`` cuts the final body (``truncated="length"``); ``on_chunk``
        sees each chunk of the body and may stop the download by returning False
        (``truncated="time"``).
        """
        hops: list[Exchange] = []
        for _ in range(MAX_REDIRECTS + 1):
            ex = self._one(url, max_body, on_chunk)
            hops.append(ex)
            loc = ex.header("location")
            if ex.status in REDIRECT_STATUS and loc:
                url = urljoin(url, loc)
                continue
            return hops
        hops[-1].notes.append(f"more than {MAX_REDIRECTS} redirects; stopped following")
        return hops

    def _conn(self, url: str) -> tuple[http.client.HTTPConnection, str, str]:
        p = urlsplit(url)
        port = p.port or (443 if p.scheme == "https" else 80)
        key = (p.scheme, p.hostname or "", port)
        conn = self._conns.get(key)
        if conn is None:
            if p.scheme == "https":
                conn = http.client.HTTPSConnection(
                    key[1], port, timeout=self.timeout, context=ssl.create_default_context()
                )
            else:
                conn = http.client.HTTPConnection(key[1], port, timeout=self.timeout)
            self._conns[key] = conn
        target = (p.path or "/") + (f"?{p.query}" if p.query else "")
        return conn, target, p.netloc

    def _drop(self, url: str) -> None:
        p = urlsplit(url)
        key = (p.scheme, p.hostname or "", p.port or (443 if p.scheme == "https" else 80))
        conn = self._conns.pop(key, None)
        if conn is not None:
            conn.close()

    def _one(self, url: str, max_body: int | None, on_chunk: Callable[[bytes], bool] | None) -> Exchange:
        headers = [
            ("User-Agent", self.user_agent),
            ("Accept", "*/*"),
            ("Accept-Encoding", "identity"),
            ("Connection", "keep-alive"),
        ]
        for attempt in (0, 1):
            conn, target, host = self._conn(url)
            sent = time.time()
            try:
                conn.putrequest("GET", target, skip_host=True, skip_accept_encoding=True)
                conn.putheader("Host", host)
                for k, v in headers:
                    conn.putheader(k, v)
                conn.endheaders()
                resp = conn.getresponse()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                # A keep-alive connection the server already closed: one fresh try.
                self._drop(url)
                if attempt:
                    raise FetchFailed(f"{url}: {_why(e)}") from e
            except (OSError, http.client.HTTPException) as e:
                self._drop(url)
                raise FetchFailed(f"{url}: {_why(e)}") from e
        ex = Exchange(url, "GET", f"GET {target} HTTP/1.1", [("Host", host), *headers], sent)
        try:
            ex.remote_ip = conn.sock.getpeername()[0] if conn.sock else None
        except OSError:
            ex.remote_ip = None
        ex.received = time.time()
        ex.status = resp.status
        ex.status_line = f"HTTP/{resp.version / 10:.1f} {resp.status} {resp.reason}".rstrip()
        ex.response_headers = list(resp.msg.items())
        self._n += 1
        ex.body = self.tmpdir / f"body-{self._n:08d}"
        # Only the body the caller asked for is streamed to it, not a redirect's.
        redirect = resp.status in REDIRECT_STATUS
        self._read_body(resp, ex, max_body, None if redirect else on_chunk, conn.sock)
        if not ex.complete or resp.will_close:
            self._drop(url)
        return ex

    def _read_body(
        self,
        resp: http.client.HTTPResponse,
        ex: Exchange,
        max_body: int | None,
        on_chunk: Callable[[bytes], bool] | None,
        sock: socket.socket | None = None,
    ) -> None:
        h = hashlib.sha256()
        pace = self.pace if on_chunk is not None and sock is not None else 0.0
        assert ex.body is not None
        with open(ex.body, "wb") as out:
            try:
                while True:
                    if resp.length == 0:
                        # read1() past the declared end returns b"" without releasing the
                        # connection, and the next request on it would fail: stop here.
                        ex.complete = True
                        break
                    want = CHUNK if max_body is None else min(CHUNK, max_body - ex.size)
                    if want <= 0:
                        ex.truncated = "length"
                        break
                    data = resp.read1(want)
                    if not data:
                        if resp.length:
                            ex.truncated = "disconnect"
                            ex.notes.append(f"connection closed after {ex.size} bytes, {resp.length} short of Content-Length")
                        else:
                            ex.complete = True
                        break
                    out.write(data)
                    h.update(data)
                    ex.size += len(data)
                    if on_chunk is not None and not on_chunk(data):
                        ex.truncated = "time"
                        break
                    if pace and _idle(sock):
                        time.sleep(pace)
            except (OSError, http.client.HTTPException) as e:
                ex.truncated = "disconnect"
                ex.notes.append(f"connection failed after {ex.size} bytes: {_why(e)}")
        # Releases a keep-alive connection for the next request (the socket stays open).
        resp.close()
        ex.sha256 = h.hexdigest()


def _idle(sock: Any) -> bool:
    """Nothing waiting to be read: not in the kernel's buffer, nor decrypted inside TLS."""
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return False
    return not select.select([sock], [], [], 0)[0]


def _why(e: BaseException) -> str:
    if isinstance(e, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, http.client.RemoteDisconnected):
        return "server closed the connection without a response"
    return str(e) or type(e).__name__


def _fix_headers(ex: Exchange) -> list[tuple[str, str]]:
    """Headers that describe the body as stored (no chunked framing, true length)."""
    out: list[tuple[str, str]] = []
    changed = False
    for k, v in ex.response_headers:
        lk = k.lower()
        if lk == "content-encoding" and ex.decoded and v.strip().lower() != "identity":
            out.append(("X-Archive-Orig-Content-Encoding", v))
            ex.notes.append(f"body stored decoded (the browser removed Content-Encoding: {v}); header renamed")
            changed = True
        elif lk == "transfer-encoding":
            out.append(("X-Archive-Orig-Transfer-Encoding", v))
            ex.notes.append(f"body stored without chunked framing (Transfer-Encoding: {v}); header renamed")
            changed = True
        elif lk == "content-length" and v.strip() != str(ex.size):
            out.append(("X-Archive-Orig-Content-Length", v))
            ex.notes.append(f"Content-Length {v.strip()} but {ex.size} bytes stored; header renamed")
            changed = True
        else:
            out.append((k, v))
    if changed or (ex.size and not any(k.lower() == "content-length" for k, _ in out)):
        out.append(("Content-Length", str(ex.size)))
    return out


class StreamWarc(WarcFile):
    """A window's WARC: ``capture.warc.WarcFile`` plus records of our own fetches."""

    def __init__(self, path: Path, info: dict[str, str]):
        super().__init__(path)
        self.warcinfo(
            {
                "software": tool_version(),
                "format": "WARC File Format 1.1",
                "conformsTo": "https://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/",
                **info,
            }
        )

    def fetched(self, ex: Exchange) -> None:
        resp_id = StatusAndHeadersParser.make_warc_id() if ex.status else None
        req_headers: dict[str, str] = {"WARC-Date": rfc3339(ex.sent)}
        if resp_id:
            req_headers["WARC-Concurrent-To"] = resp_id
        self._write(
            self.writer.create_warc_record(
                ex.url,
                "request",
                payload=io.BytesIO(b""),
                length=0,
                warc_headers_dict=req_headers,
                http_headers=StatusAndHeaders(ex.request_line, ex.request_headers, is_http_request=True),
            )
        )
        if resp_id is None:
            return
        headers = _fix_headers(ex)
        protocol, _, rest = ex.status_line.partition(" ")
        wh = {"WARC-Record-ID": resp_id, "WARC-Date": rfc3339(ex.received)}
        if ex.remote_ip:
            wh["WARC-IP-Address"] = ex.remote_ip
        if ex.truncated:
            wh["WARC-Truncated"] = ex.truncated
        stream: BinaryIO = open(ex.body, "rb") if ex.body is not None and ex.size else io.BytesIO(b"")
        with stream:
            self._write(
                self.writer.create_warc_record(
                    ex.url,
                    "response",
                    payload=stream,
                    length=ex.size,
                    warc_headers_dict=wh,
                    http_headers=StatusAndHeaders(rest, headers, protocol=protocol),
                )
            )

    def metadata(self, uri: str, path: Path, media_type: str, date: str) -> None:
        with open(path, "rb") as f:
            self._write(
                self.writer.create_warc_record(
                    uri,
                    "metadata",
                    payload=f,
                    length=path.stat().st_size,
                    warc_content_type=media_type,
                    warc_headers_dict={"WARC-Date": date},
                )
            )
