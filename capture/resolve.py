"""``--mode resolve``: a room page resolved to its stream by yt-dlp's extractors, used as a library.

    from capture.resolve import resolve
    r = resolve("https://live.example/room/7", login=None)
    r.url, r.facts, r.exchanges        # the stream, what the exhibit says, the fetches for the WARC
    r.close()                          # the fetched bodies are deleted

Every request yt-dlp makes goes through ``_RecordingRH``, the only request
handler of our ``YoutubeDL``: it sends the request with ``http.client`` by
hand (the headers archived are the ones sent, ``Accept-Encoding: identity``
so bodies stay as served) and keeps each exchange, redirects included, for
the first window's WARC. Cookie and Authorization values are stored as
``sha256:<hex>`` (``capture.warc.credential_digest``), in the WARC and in the
facts alike. A saved login's cookies (``LoginSession.storage_state``) go into
yt-dlp's cookie jar, so extractors send them where they belong.
"""

from __future__ import annotations

import hashlib
import http.client
import http.cookiejar
import io
import re
import shutil
import ssl
import tempfile
import time
import urllib.request
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import yt_dlp
import yt_dlp.version
from yt_dlp.extractor import gen_extractor_classes
from yt_dlp.networking.common import RequestHandler, Response
from yt_dlp.networking.exceptions import HTTPError, TransportError
from yt_dlp.utils import DownloadError

from ledger.errors import CaptureError, UsageError

from .fetch import REDIRECT_STATUS, Exchange
from .warc import SECRET_REQUEST_HEADERS, credential_digest

#: a page or API answer longer than this is not something an extractor needs whole
MAX_RESOLVE_BODY = 16 * 1024 * 1024
MAX_REDIRECTS = 5
#: a single file with audio and video first; separate video and audio (the video is recorded) else
FORMAT = "best/bv*+ba/bv*"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def hide(headers: dict[str, str] | list[tuple[str, str]]) -> dict[str, str]:
    """Request headers as the exhibit records them: credentials as ``sha256:<hex>``."""
    items = headers.items() if isinstance(headers, dict) else headers
    return {k: credential_digest(v) if k.lower() in SECRET_REQUEST_HEADERS else v for k, v in items}


class _RecordingRH(RequestHandler):
    """yt-dlp request handler that archives every exchange (yt-dlp requires the ``RH`` suffix)."""

    _SUPPORTED_URL_SCHEMES = ("http", "https")
    _SUPPORTED_PROXY_SCHEMES = ()
    _SUPPORTED_FEATURES = ()

    def __init__(self, *, tmpdir: Path, exchanges: list[Exchange], **kw: Any):
        super().__init__(**kw)
        self.tmpdir = tmpdir
        self.exchanges = exchanges

    def _check_extensions(self, extensions: dict[str, Any]) -> None:
        super()._check_extensions(extensions)
        for k in ("cookiejar", "timeout", "keep_header_casing", "legacy_ssl"):
            extensions.pop(k, None)

    def _send(self, request: Any) -> Response:
        url, method, data = request.url, request.method, request.data
        if data is not None and not isinstance(data, bytes):
            data = b"".join(data) if not hasattr(data, "read") else data.read()
        jar = self._get_cookiejar(request)
        base = self._get_headers(request)
        for _ in range(MAX_REDIRECTS + 1):
            headers = {k: v for k, v in base.items() if k.lower() not in ("accept-encoding", "cookie")}
            headers["Accept-Encoding"] = "identity"
            cookie = jar.get_cookie_header(url)
            if cookie:
                headers["Cookie"] = cookie
            ex, msg = self._one(url, method, headers, data, self._calculate_timeout(request))
            jar.extract_cookies(_Answer(msg), urllib.request.Request(url))
            loc = ex.header("location")
            if ex.status in REDIRECT_STATUS and loc:
                url = urljoin(url, loc)
                if ex.status in (301, 302, 303) and method != "HEAD":
                    method, data = "GET", None
                continue
            break
        assert ex.body is not None
        resp = Response(io.BytesIO(ex.body.read_bytes()), ex.url, msg, status=ex.status)
        if not 200 <= ex.status < 300:
            raise HTTPError(resp)
        return resp

    def _one(
        self, url: str, method: str, headers: dict[str, str], data: bytes | None, timeout: float
    ) -> tuple[Exchange, http.client.HTTPMessage]:
        p = urlsplit(url)
        host = p.netloc
        if p.scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                p.hostname or "", p.port or 443, timeout=timeout, context=ssl.create_default_context()
            )
        else:
            conn = http.client.HTTPConnection(p.hostname or "", p.port or 80, timeout=timeout)
        target = (p.path or "/") + (f"?{p.query}" if p.query else "")
        sent_headers = [("Host", host), *headers.items()]
        if data is not None:
            sent_headers.append(("Content-Length", str(len(data))))
        sent = time.time()
        try:
            conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            for k, v in sent_headers:
                conn.putheader(k, v)
            conn.endheaders(data)
            resp = conn.getresponse()
            ex = Exchange(url, method, f"{method} {target} HTTP/1.1", list(hide(sent_headers).items()), sent)
            if data:
                ex.notes.append(f"request body of {len(data)} bytes not archived")
            ex.remote_ip = conn.sock.getpeername()[0] if conn.sock else None
            ex.received = time.time()
            ex.status = resp.status
            ex.status_line = f"HTTP/{resp.version / 10:.1f} {resp.status} {resp.reason}".rstrip()
            ex.response_headers = list(resp.msg.items())
            ex.body = self.tmpdir / f"resolve-{len(self.exchanges) + 1:04d}"
            h = hashlib.sha256()
            with open(ex.body, "wb") as out:
                while chunk := resp.read(64 * 1024):
                    out.write(chunk)
                    h.update(chunk)
                    ex.size += len(chunk)
                    if ex.size > MAX_RESOLVE_BODY:
                        ex.truncated = "length"
                        break
            ex.complete = ex.truncated is None
            ex.sha256 = h.hexdigest()
        except (OSError, http.client.HTTPException) as e:
            raise TransportError(cause=e) from e
        finally:
            conn.close()
        self.exchanges.append(ex)
        return ex, resp.msg


class _Answer:
    """What ``http.cookiejar`` reads Set-Cookie from."""

    def __init__(self, msg: http.client.HTTPMessage):
        self.msg = msg

    def info(self) -> http.client.HTTPMessage:
        return self.msg


class _Logger:
    """yt-dlp's messages kept, not printed: the command prints one line of its own."""

    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.errors: list[str] = []

    def debug(self, msg: str) -> None:
        pass

    def info(self, msg: str) -> None:
        pass

    def warning(self, msg: str) -> None:
        self.warnings.append(_clean(msg))

    def error(self, msg: str) -> None:
        self.errors.append(_clean(msg))


def _clean(msg: str) -> str:
    msg = _ANSI.sub("", str(msg)).strip().splitlines()[0] if str(msg).strip() else ""
    return re.sub(r"^(ERROR|WARNING):\s*", "", msg)


class _Ydl(yt_dlp.YoutubeDL):
    """yt-dlp whose only network access is the recording handler."""

    def __init__(self, params: dict[str, Any], tmpdir: Path, exchanges: list[Exchange]):
        self._rec_tmp, self._rec_exchanges = tmpdir, exchanges
        super().__init__(params)

    def build_request_director(self, handlers: Any, preferences: Any = None) -> Any:
        tmpdir, exchanges = self._rec_tmp, self._rec_exchanges

        def make(**kw: Any) -> _RecordingRH:
            return _RecordingRH(tmpdir=tmpdir, exchanges=exchanges, **kw)

        make.RH_KEY = _RecordingRH.RH_KEY  # type: ignore[attr-defined]
        return super().build_request_director([make], preferences)


def _jar_cookie(c: dict[str, Any]) -> http.cookiejar.Cookie:
    """A Playwright storage-state cookie as ``http.cookiejar`` keeps it."""
    domain = c["domain"]
    exp = c.get("expires", -1)
    session = exp is None or exp < 0
    return http.cookiejar.Cookie(
        0, c["name"], c["value"], None, False, domain, domain.startswith("."), domain.startswith("."),
        c.get("path") or "/", True, bool(c.get("secure")), None if session else int(exp), session,
        None, None, {"HttpOnly": ""} if c.get("httpOnly") else {},
    )  # fmt: skip


@dataclass
class Resolution:
    """A room page resolved: the stream URL, the exhibit's facts, the fetches for the WARC."""

    url: str
    facts: dict[str, Any]
    exchanges: list[Exchange] = field(default_factory=list)
    tmpdir: Path | None = None

    def __post_init__(self) -> None:
        # The bodies are deleted when the capture has archived them, or when the resolution is dropped.
        self._gone = weakref.finalize(self, shutil.rmtree, str(self.tmpdir), True) if self.tmpdir else None

    def close(self) -> None:
        if self._gone is not None:
            self._gone()


class ResolvedUrl(str):
    """The stream URL, carrying the ``Resolution`` it came from to the capture job.

    A ``str`` so that the URL goes through argument checking and ``capture_rooms``
    unchanged; the job picks the resolution up to archive its fetches.
    """

    resolution: Resolution

    def __new__(cls, resolution: Resolution) -> ResolvedUrl:
        s = super().__new__(cls, resolution.url)
        s.resolution = resolution
        return s


def _stream(info: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The format to record and every format yt-dlp chose (video and audio when separate)."""
    if info.get("_type") == "playlist":
        entries = [e for e in info.get("entries") or [] if e and (e.get("url") or e.get("requested_formats"))]
        if not entries:
            return {}, []
        info = entries[0]
    chosen = info.get("requested_formats") or ([info] if info.get("url") else [])
    video = next((f for f in chosen if f.get("vcodec") not in (None, "none")), chosen[0] if chosen else {})
    return video, list(chosen)


def resolve(url: str, login: Any = None) -> Resolution:
    """Resolve ``url`` with yt-dlp; UsageError (exit 2) when it finds no stream, CaptureError when unreachable."""
    tmpdir = Path(tempfile.mkdtemp(prefix="evidence-resolve-"))
    exchanges: list[Exchange] = []
    logger = _Logger()
    params = {
        "logger": logger,
        "quiet": True,
        "no_warnings": False,
        "noprogress": True,
        "skip_download": True,
        "noplaylist": True,
        "format": FORMAT,
        "proxy": "",  # like the direct stream fetcher: no proxy
        "socket_timeout": 15,
        "cachedir": False,
        "color": {"stderr": "no_color", "stdout": "no_color"},
    }
    try:
        with _Ydl(params, tmpdir, exchanges) as ydl:
            if login is not None:
                for c in login.storage_state.get("cookies", []):
                    ydl.cookiejar.set_cookie(_jar_cookie(c))
            try:
                info = ydl.extract_info(url, download=False)
            except DownloadError as e:
                why = logger.errors[-1] if logger.errors else _clean(str(e))
                if not any(ex.status for ex in exchanges):
                    raise CaptureError(
                        f"--mode resolve: cannot reach {url}: {why}; nothing was recorded"
                    ) from None
                raise UsageError(f"--mode resolve: yt-dlp found no stream in {url}: {why}") from None
            info = ydl.sanitize_info(info)
    except BaseException:
        shutil.rmtree(tmpdir, True)
        raise
    fmt, chosen = _stream(info or {})
    if not fmt.get("url"):
        shutil.rmtree(tmpdir, True)
        raise UsageError(f"--mode resolve: yt-dlp found no stream in {url}")
    top = info if info.get("_type") != "playlist" else (info.get("entries") or [{}])[0]
    facts = {
        "resolver": "yt-dlp",
        "version": yt_dlp.version.__version__,
        "room_url": url,
        "extractor": top.get("extractor_key") or info.get("extractor_key"),
        # the extractor the URL itself matched (``Generic`` for a page no site extractor claims),
        # which may hand over to another (the generic one to ``HTML5MediaEmbed`` for <video>)
        "matched_by": next((ie.ie_key() for ie in gen_extractor_classes() if ie.suitable(url)), None),
        "extractor_name": top.get("extractor") or info.get("extractor"),
        "is_live": top.get("is_live"),
        "title": top.get("title"),
        "urls": [f["url"] for f in chosen if f.get("url")],
        "format": {
            k: fmt.get(k)
            for k in ("format_id", "format", "protocol", "ext", "vcodec", "acodec", "width", "height", "tbr")
            if fmt.get(k) is not None
        },
        "recorded_url": fmt["url"],
        "request_headers": hide(dict(fmt.get("http_headers") or {})),
        "fetches": [
            {**ex.summary(), "method": ex.method, "request_headers": dict(ex.request_headers)}
            for ex in exchanges
        ],
        "warnings": logger.warnings[:20],
        **({"session_cookies": len(login.storage_state.get("cookies", []))} if login is not None else {}),
    }
    return Resolution(fmt["url"], facts, exchanges, tmpdir)
