"""The case file's CDXJ index, built from the bytes export copies (one pass, no second read).

``ledger.warcscan.WarcScan`` is fed each WARC as export streams it into the
ZIP (record offsets and heads); ``cdxj_lines`` turns those heads into the lines
cdxj-indexer 1.5 writes (same fields, order, SURT keys and JSON), so the
index is byte for byte what ``cdxj-indexer --sort`` would give; a WARC the
scan cannot read that way (plain ``.warc``, a record without a payload
digest, headers beyond the kept prefix) is indexed by cdxj-indexer itself.

Imported only by export (surt pulls in tldextract and requests: 0.3 s that
verification must not pay).
"""

from __future__ import annotations

import io
import json
import re
from collections import OrderedDict
from pathlib import Path

import surt
from warcio.recordloader import ArcWarcRecordLoader
from warcio.timeutils import iso_date_to_timestamp

from ledger.warcscan import HEAD, WarcScan

# cdxj-indexer's defaults: these record types, minus warcinfo-like application/warc-fields resources.
RECORD_TYPES = ("response", "revisit", "resource", "metadata")
_RE_SPACE = re.compile(r"[;\s]")


def cdxj_lines(scan: WarcScan, filename: str) -> list[str] | None:
    """The index lines of one scanned WARC, as cdxj-indexer writes them; None when it must index it itself."""
    if not scan.ok:
        return None
    loader = ArcWarcRecordLoader(verify_http=False)
    lines = []
    for offset, length, head in scan.records:
        stream = io.BytesIO(head)
        try:
            rec = loader.parse_record_stream(stream, known_format="warc")
        except Exception:  # warcio's parse errors have no common base
            return None
        rtype = rec.rec_type
        if rtype not in RECORD_TYPES:
            continue
        if len(head) >= HEAD:  # a cut head: the headers must end inside it
            first = head.find(b"\r\n\r\n")
            if first < 0 or (rtype in ("response", "revisit") and head.find(b"\r\n\r\n", first + 4) < 0):
                return None
        if rtype in ("resource", "metadata") and rec.rec_headers.get_header("Content-Type") == "application/warc-fields":
            continue
        digest = rec.rec_headers.get_header("WARC-Payload-Digest")
        if not digest:
            return None  # cdxj-indexer would compute it from the payload
        index: OrderedDict[str, str] = OrderedDict()
        url = rec.rec_headers.get_header("WARC-Target-URI")
        if url is not None:
            index["url"] = url
        mime = _mime(rec)
        if mime is not None:
            index["mime"] = mime
        if rtype in ("response", "revisit") and rec.http_headers:
            index["status"] = rec.http_headers.get_statuscode()
        index["digest"] = digest
        index["length"] = str(length)
        index["offset"] = str(offset)
        index["filename"] = filename
        try:
            key = surt.surt(url)
        except Exception:  # as cdxj-indexer: an unparsable URL is its own key
            key = url
        ts = iso_date_to_timestamp(rec.rec_headers.get("WARC-Date"))
        lines.append(f"{key} {ts} {json.dumps(index)}\n")
    return lines


def _mime(rec: object) -> str | None:
    rtype = rec.rec_type  # type: ignore[attr-defined]
    if rtype == "revisit":
        return "warc/revisit"
    if rtype in ("response", "request"):
        h = rec.http_headers  # type: ignore[attr-defined]
        value = h.get_header("content-type") if h else None
    else:
        value = rec.rec_headers.get_header("content-type")  # type: ignore[attr-defined]
    if value:
        value = _RE_SPACE.split(value, 1)[0].strip()
    return value


def write_index(scans: list[tuple[str, WarcScan, Path]], out: Path) -> None:
    """One sorted CDXJ for all WARCs: (archive name, its scan, a path to the WARC for the slow way)."""
    lines: list[str] = []
    slow: list[tuple[str, Path]] = []
    for name, scan, path in scans:
        got = cdxj_lines(scan, name)
        if got is None:
            slow.append((name, path))
        else:
            lines += got
    if slow:
        lines += _indexer_lines(slow, out.parent)
    lines.sort()
    with open(out, "w", encoding="utf-8") as fh:
        last = None
        for line in lines:  # cdxj-indexer's sorting writer drops repeated lines
            if line != last:
                fh.write(line)
            last = line


def _indexer_lines(warcs: list[tuple[str, Path]], workdir: Path) -> list[str]:
    """cdxj-indexer over WARCs the scan could not read (each linked under its archive name)."""
    from cdxj_indexer.main import CDXJIndexer  # only for such WARCs: its import alone costs 0.5 s

    inputs = []
    for name, path in warcs:
        link = workdir / name
        link.symlink_to(path)
        inputs.append(str(link))
    buf = io.StringIO()
    CDXJIndexer(output=_Keep(buf), inputs=inputs, sort=False).process_all()
    return buf.getvalue().splitlines(keepends=True)


class _Keep(io.StringIO):
    """An output cdxj-indexer may close (it does, through open_or_default) without losing the text."""

    def __init__(self, target: io.StringIO):
        super().__init__()
        self.target = target

    def write(self, s: str) -> int:
        return self.target.write(s)

    def close(self) -> None:
        pass
