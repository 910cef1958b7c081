"""Write a capture as one WARC/1.1 file (ISO 28500), gzip per record, with warcio.

Record order: ``warcinfo``; a ``request`` and ``response`` for every HTTP
exchange; ``resource`` records for the screenshots, rendered DOM and MHTML;
``metadata`` records for the capture log, the network summary and the
environment. Block and payload digests are SHA-256 (base32, as warcio and
wget write them). Bodies are streamed from the files the recorder wrote.
Each record is its own gzip member: level 9 for text, a stored member for
payloads that are compressed already (video, audio, images; ``gzip_level``).

Decoded bodies: Chromium hands over bodies with Content-Encoding and chunked
framing already removed. A record whose headers still said ``gzip`` or
``chunked`` would not parse, so the header block is made to match the body:
``Content-Encoding``, ``Transfer-Encoding`` and a mismatching
``Content-Length`` are renamed to ``X-Archive-Orig-*`` (values kept, the
convention pywb uses) and a true ``Content-Length`` is added. Each change is
listed in the exchange's ``transformations`` and in the capture log.
"""

from __future__ import annotations

import base64
import http
import io
import os
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from warcio.statusandheaders import StatusAndHeaders, StatusAndHeadersParser
from warcio.utils import Digester
from warcio.warcwriter import WARCWriter

from ledger.digest import sha256_hex

from .environment import rfc3339
from .network import Hop

#: Content codings Chromium's network stack decodes before we see the body.
DECODED_CODINGS = {"gzip", "x-gzip", "deflate", "br", "zstd"}
NO_BODY_STATUS = {204, 304}


#: zlib level of a record whose payload is text or markup (playlists, pages, logs): warcio's own
GZIP_LEVEL = 9
#: zlib level of a record whose payload is already-compressed media (H.264/AAC in TS, fMP4, FLV,
#: images): a stored gzip member. Deflate gains ~2 % on a 3 Mb/s TS segment and nothing on FLV
#: for ~15x the CPU (measured: level 9 ~35-45 MB/s, level 0 ~600 MB/s on one core); at very low
#: bitrates TS padding makes it ~15 %. Any gzip reader reads a stored member.
MEDIA_GZIP_LEVEL = 0
#: payload types that are compressed already (image/svg+xml is text: not listed)
MEDIA_TYPES = ("video/", "audio/", "image/png", "image/jpeg", "image/webp", "image/gif", "image/avif")
#: types a media segment is often served as; its first bytes then tell (see ``_sniff_media``)
OPAQUE_TYPES = ("application/octet-stream", "binary/octet-stream", "")


class _GzipMember:
    """One gzip member per record, as warcio's ``GzippingWrapper``, at a chosen level."""

    def __init__(self, out: BinaryIO, level: int):
        self.compressor = zlib.compressobj(level, zlib.DEFLATED, zlib.MAX_WBITS + 16)
        self.out = out

    def write(self, buff: bytes) -> None:
        self.out.write(self.compressor.compress(buff))

    def flush(self) -> None:
        self.out.write(self.compressor.flush())
        self.out.flush()


def _sniff_media(stream: Any) -> bool:
    """MPEG-TS (sync byte every 188), FLV or ISO BMFF (fMP4/CMAF, MP4) by its first bytes; the stream is put back."""
    try:
        pos = stream.tell()
        head = stream.read(377)
        stream.seek(pos)
    except (AttributeError, OSError, ValueError):
        return False
    if len(head) >= 377 and head[0] == head[188] == head[376] == 0x47:
        return True
    if head[:3] == b"FLV":
        return True
    return head[4:8] in (b"ftyp", b"styp", b"moof", b"sidx", b"moov", b"emsg", b"prft")


def gzip_level(record: Any) -> int:
    """The level of ``record``'s gzip member: stored for already-compressed media, else warcio's 9."""
    if record.rec_type not in ("response", "resource"):
        return GZIP_LEVEL
    if record.http_headers is not None:
        ctype = record.http_headers.get_header("Content-Type") or ""
    else:
        ctype = record.content_type or ""
    ctype = ctype.split(";")[0].strip().lower()
    if ctype.startswith(MEDIA_TYPES):
        return MEDIA_GZIP_LEVEL
    if ctype in OPAQUE_TYPES and _sniff_media(record.raw_stream):
        return MEDIA_GZIP_LEVEL
    return GZIP_LEVEL


class _SHA256WARCWriter(WARCWriter):
    """warcio's writer with SHA-256 digests and a gzip member per record at ``gzip_level(record)``."""

    def __init__(self, filebuf: BinaryIO, **kw: Any):
        # gzip=False: the member is opened here, at the record's level, not by warcio (always 9)
        super().__init__(filebuf, gzip=False, **kw)

    @staticmethod
    def _create_digester() -> Digester:
        return Digester("sha256")

    def _write_warc_record(self, out: BinaryIO, record: Any) -> None:
        super()._write_warc_record(_GzipMember(out, gzip_level(record)), record)


#: Extension fields (WARC 1.1 allows them) of a revisit record whose payload is
#: an artifact of the same exhibit: the bytes are stored once, as that artifact.
PAYLOAD_ARTIFACT = "Evidence-Payload-Artifact"
PAYLOAD_LENGTH = "Evidence-Payload-Length"
REVISIT_PROFILE = "http://netpreserve.org/warc/1.1/revisit/identical-payload-digest"


@dataclass(frozen=True)
class PayloadRef:
    """The body of a response is the artifact ``name`` (sha256 hex, size): written by reference."""

    name: str
    sha256: str
    size: int

    def warc_digest(self) -> str:
        return "sha256:" + base64.b32encode(bytes.fromhex(self.sha256)).decode("ascii")


@dataclass(frozen=True)
class Resource:
    """A file written as a ``resource`` (or ``metadata``) record."""

    uri: str
    path: Path
    media_type: str
    record_type: str = "resource"
    refers_to_main: bool = False


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


def _split_header_map(headers: dict[str, str]) -> list[tuple[str, str]]:
    # DevTools joins repeated headers with "\n"; split them back.
    out: list[tuple[str, str]] = []
    for k, v in headers.items():
        if k.startswith(":"):
            continue
        for part in str(v).split("\n"):
            out.append((k, part))
    return out


def _parse_headers_text(text: str) -> tuple[str, list[tuple[str, str]]]:
    lines = text.replace("\r\n", "\n").split("\n")
    status_line = lines[0].strip()
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line.strip():
            continue
        if line[0] in " \t" and headers:  # obsolete line folding
            k, v = headers[-1]
            headers[-1] = (k, v + " " + line.strip())
            continue
        k, _, v = line.partition(":")
        headers.append((k.strip(), v.strip()))
    return status_line, headers


def response_headers(hop: Hop) -> tuple[str, list[tuple[str, str]], list[str]]:
    """Status line and header list for the record, plus what was changed and why."""
    notes: list[str] = []
    assert hop.response is not None
    status = int(hop.response.get("status", 0))
    if hop.headers_text and hop.headers_text.startswith("HTTP/"):
        status_line, headers = _parse_headers_text(hop.headers_text)
    else:
        raw = hop.raw_response_headers or hop.response.get("headers", {})
        reason = hop.response.get("statusText") or _reason(status)
        status_line = f"HTTP/1.1 {status} {reason}".rstrip()
        headers = _split_header_map(raw)
        proto = hop.protocol or "unknown protocol"
        notes.append(
            f"status line and headers rebuilt from DevTools' header map ({proto}); original order not available"
        )
    headers, hidden = _hide_credentials(headers, SECRET_RESPONSE_HEADERS)
    return status_line, headers, notes + hidden


def fix_for_body(
    headers: list[tuple[str, str]], body_size: int, *, status: int, method: str, body_known: bool
) -> tuple[list[tuple[str, str]], list[str]]:
    """Make the header block describe the body we actually store."""
    if method == "HEAD" or status in NO_BODY_STATUS or 100 <= status < 200:
        return headers, []
    notes: list[str] = []
    out: list[tuple[str, str]] = []
    changed = False
    for k, v in headers:
        lk = k.lower()
        if lk == "content-encoding" and v.strip().lower() in DECODED_CODINGS and body_known:
            out.append(("X-Archive-Orig-Content-Encoding", v))
            notes.append(f"body stored decoded (Chromium removed Content-Encoding: {v}); header renamed")
            changed = True
        elif lk == "transfer-encoding":
            out.append(("X-Archive-Orig-Transfer-Encoding", v))
            notes.append(f"body stored without chunked framing (Transfer-Encoding: {v}); header renamed")
            changed = True
        elif lk == "content-length" and v.strip() != str(body_size):
            out.append(("X-Archive-Orig-Content-Length", v))
            notes.append(
                f"Content-Length {v.strip()} does not match the stored body ({body_size} bytes); renamed"
            )
            changed = True
        else:
            out.append((k, v))
    if changed or not any(k.lower() == "content-length" for k, _ in out):
        if changed or body_size:
            out = [(k, v) for k, v in out if k.lower() != "content-length"]
            out.append(("Content-Length", str(body_size)))
    return out, notes


def truncation(hop: Hop) -> dict[str, Any] | None:
    """Why the stored body of ``hop`` is not the whole body, or None when it is.

    ``reason`` is the WARC-Truncated value: ``time`` when the capture stopped
    waiting for a body still arriving, ``disconnect`` when the connection
    ended before it was complete, ``unspecified`` when no body could be read.
    Lengths are of the body as stored (decoded); ``declared_length`` is the
    server's Content-Length when it describes those same bytes.
    """
    if hop.response is None or hop.from_cache or hop.redirected:
        return None
    status = int(hop.response.get("status", 0))
    if hop.method == "HEAD" or status in NO_BODY_STATUS or 100 <= status < 200:
        return None
    _, headers, _ = response_headers(hop)
    lower = {k.lower(): v.strip() for k, v in headers}
    declared = None
    if lower.get("content-length", "").isdigit() and lower.get("content-encoding", "identity") == "identity":
        declared = int(lower["content-length"])
    body = hop.body
    out: dict[str, Any] = {"declared_length": declared}
    if body is None:
        return {**out, "reason": "unspecified", "received_length": 0, "note": "no body could be read"}
    if body.complete or hop.finished:
        return None
    out["received_length"] = body.size
    if hop.failed:
        out.update(reason="disconnect", note=f"the response ended with {hop.failed} before it was complete")
    else:
        out.update(reason="time", note="the response was still arriving when the capture stopped waiting")
    return out


def request_headers(hop: Hop) -> tuple[str, list[tuple[str, str]], list[str]]:
    notes: list[str] = []
    parts = urlsplit(hop.url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    raw = hop.raw_request_headers
    if raw is None:
        raw = hop.request_headers
        notes.append("request headers are the browser's provisional set (no extra-info event)")
    headers = _split_header_map(raw)
    headers, hidden = _hide_credentials(headers)
    notes += hidden
    if not any(k.lower() == "host" for k, _ in headers):
        authority = raw.get(":authority") or parts.netloc
        headers.insert(0, ("Host", authority))
    return f"{hop.method} {target} HTTP/1.1", headers, notes


#: Headers whose value would let whoever holds the case file act as the
#: investigator (their proxy account, their login on the site); kept by name,
#: the value replaced by ``sha256:<hex>`` of it, so a value can still be
#: matched against one the investigator holds, but not used.
SECRET_REQUEST_HEADERS = ("proxy-authorization", "cookie", "authorization")
SECRET_RESPONSE_HEADERS = ("set-cookie",)
CREDENTIAL_NOTE = "value replaced by its SHA-256 (a credential)"


def credential_digest(value: str) -> str:
    return "sha256:" + sha256_hex(value.encode("utf-8", "surrogateescape"))


def _hide_credentials(
    headers: list[tuple[str, str]], names: tuple[str, ...] = SECRET_REQUEST_HEADERS
) -> tuple[list[tuple[str, str]], list[str]]:
    out, notes = [], []
    for k, v in headers:
        if k.lower() in names:
            v = credential_digest(v)
            note = f"{k} {CREDENTIAL_NOTE}"
            if note not in notes:
                notes.append(note)
        out.append((k, v))
    return out, notes


def _tls_protocol(hop: Hop) -> str | None:
    sec = (hop.response or {}).get("securityDetails") or {}
    proto = sec.get("protocol")
    if not proto:
        return None
    return proto.lower().replace(" ", "/")  # "TLS 1.3" -> "tls/1.3"


class WarcFile:
    """Streaming writer for one capture's WARC; every record is written once."""

    def __init__(self, path: Path):
        self.path = path
        self._f: BinaryIO = open(path, "wb")
        self.writer = _SHA256WARCWriter(self._f, warc_version="1.1")
        self.warcinfo_id: str | None = None
        self.main_response_id: str | None = None
        self.records = 0

    def _write(self, rec: Any) -> str:
        if self.warcinfo_id and rec.rec_type != "warcinfo":
            rec.rec_headers.add_header("WARC-Warcinfo-ID", self.warcinfo_id)
        self.writer.write_record(rec)
        self.records += 1
        return rec.rec_headers.get_header("WARC-Record-ID")

    def warcinfo(self, fields: dict[str, str]) -> None:
        # A name no other capture shares, so that export can store the WARC under it and its
        # WARC-Filename is the name it has in the case file (the exhibit index is not known yet).
        stamp = "".join(c for c in rfc3339(time.time())[:19] if c.isdigit())
        self.filename = f"warc-{stamp}-{os.urandom(6).hex()}.warc.gz"
        rec = self.writer.create_warcinfo_record(self.filename, fields)
        self.warcinfo_id = self._write(rec)

    def exchange(self, hop: Hop, *, main: bool, stored_as: PayloadRef | None = None) -> list[str]:
        """Write the request (and response, if any) of ``hop``; return the notes.

        With ``stored_as`` the response body is that artifact: the response is a
        revisit record naming it (headers, digest, length), not a second copy.
        """
        notes: list[str] = []
        resp_id = None
        if hop.response is not None and not hop.from_cache:
            resp_id = StatusAndHeadersParser.make_warc_id()
            if main:
                self.main_response_id = resp_id
        req_line, req_headers, req_notes = request_headers(hop)
        notes += req_notes
        payload = hop.post_data or b""
        warc_headers = {"WARC-Date": rfc3339(hop.wall_time)}
        if resp_id:
            warc_headers["WARC-Concurrent-To"] = resp_id
        rec = self.writer.create_warc_record(
            hop.url,
            "request",
            payload=io.BytesIO(payload),
            length=len(payload),
            warc_headers_dict=warc_headers,
            http_headers=StatusAndHeaders(req_line, req_headers, is_http_request=True),
        )
        self._write(rec)
        if resp_id and stored_as is not None:
            notes += self._revisit(hop, resp_id, stored_as)
        elif resp_id:
            notes += self._response(hop, resp_id)
        return notes

    def _revisit(self, hop: Hop, record_id: str, ref: PayloadRef) -> list[str]:
        assert hop.response is not None
        status_line, headers, notes = response_headers(hop)
        status = int(hop.response.get("status", 0))
        headers, fix_notes = fix_for_body(headers, ref.size, status=status, method=hop.method, body_known=True)
        protocol, _, status_rest = status_line.partition(" ")
        warc_headers = {
            "WARC-Record-ID": record_id,
            "WARC-Date": rfc3339(hop.response_wall_time or hop.wall_time),
            PAYLOAD_ARTIFACT: ref.name,
            PAYLOAD_LENGTH: str(ref.size),
        }
        if hop.remote_ip:
            warc_headers["WARC-IP-Address"] = hop.remote_ip.strip("[]")
        rec = self.writer.create_warc_record(
            hop.url, "revisit", warc_headers_dict=warc_headers,
            http_headers=StatusAndHeaders(status_rest, headers, protocol=protocol),
        )
        rec.rec_headers.add_header("WARC-Profile", REVISIT_PROFILE)
        rec.rec_headers.add_header("WARC-Payload-Digest", ref.warc_digest())
        for proto in filter(None, [hop.protocol, _tls_protocol(hop)]):
            rec.rec_headers.add_header("WARC-Protocol", proto)
        self._write(rec)
        return [*notes, *fix_notes, f"body stored once, as the exhibit's artifact {ref.name} (revisit record names it)"]

    def payload_reference(self, uri: str, ref: PayloadRef, date: str) -> str:
        """A revisit record with an empty block naming artifact ``ref`` (a download no exchange carried)."""
        headers = {"WARC-Date": date, PAYLOAD_ARTIFACT: ref.name, PAYLOAD_LENGTH: str(ref.size)}
        if self.main_response_id:
            headers["WARC-Refers-To"] = self.main_response_id
        rec = self.writer.create_warc_record(uri, "revisit", payload=io.BytesIO(b""), length=0,
                                             warc_headers_dict=headers)
        rec.rec_headers.add_header("WARC-Profile", REVISIT_PROFILE)
        rec.rec_headers.add_header("WARC-Payload-Digest", ref.warc_digest())
        return self._write(rec)

    def _response(self, hop: Hop, record_id: str) -> list[str]:
        assert hop.response is not None
        status_line, headers, notes = response_headers(hop)
        status = int(hop.response.get("status", 0))
        body = hop.body
        size = body.size if body is not None and body.path.exists() else 0
        truncated = None
        cut = truncation(hop)
        if hop.redirected:
            body_known = False
            if any(k.lower() == "content-length" and v.strip() not in ("", "0") for k, v in headers):
                notes.append("redirect body is not exposed by Chromium; stored empty")
                truncated = "unspecified"
        else:
            body_known = body is not None
            if cut is not None:
                truncated = cut["reason"]
                declared = cut.get("declared_length")
                of = f" of {declared}" if declared is not None else ""
                notes.append(f"{cut['note']}; {size}{of} bytes stored (WARC-Truncated: {truncated})")
        headers, fix_notes = fix_for_body(
            headers, size, status=status, method=hop.method, body_known=body_known
        )
        protocol, _, status_rest = status_line.partition(" ")
        notes += fix_notes
        warc_headers = {
            "WARC-Record-ID": record_id,
            "WARC-Date": rfc3339(hop.response_wall_time or hop.wall_time),
        }
        if hop.remote_ip:
            warc_headers["WARC-IP-Address"] = hop.remote_ip.strip("[]")
        if truncated:
            warc_headers["WARC-Truncated"] = truncated
            if cut is not None:
                # Extension fields (WARC 1.1 allows them): what the server
                # announced against what arrived, so the cut needs no recomputing.
                if cut.get("declared_length") is not None:
                    warc_headers["Evidence-Declared-Length"] = str(cut["declared_length"])
                warc_headers["Evidence-Received-Length"] = str(size)
        stream: BinaryIO = open(body.path, "rb") if size and body is not None else io.BytesIO(b"")
        try:
            rec = self.writer.create_warc_record(
                hop.url,
                "response",
                payload=stream,
                length=size,
                warc_headers_dict=warc_headers,
                http_headers=StatusAndHeaders(status_rest, headers, protocol=protocol),
            )
            for proto in filter(None, [hop.protocol, _tls_protocol(hop)]):
                rec.rec_headers.add_header("WARC-Protocol", proto)
            self._write(rec)
        finally:
            stream.close()
        return notes

    def resource(self, res: Resource, date: str) -> str:
        headers = {"WARC-Date": date}
        if res.refers_to_main and self.main_response_id:
            headers["WARC-Refers-To"] = self.main_response_id
        size = res.path.stat().st_size
        with open(res.path, "rb") as f:
            rec = self.writer.create_warc_record(
                res.uri,
                res.record_type,
                payload=f,
                length=size,
                warc_content_type=res.media_type,
                warc_headers_dict=headers,
            )
            return self._write(rec)

    def close(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
