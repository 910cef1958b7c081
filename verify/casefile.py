"""The case file's format and its hostile-ZIP reader, as a verifier needs them.

    with CaseReader("case.wacz") as z:
        case = load_json(z.read(CASE_JSON), CASE_JSON)

Export (``evidence.case``, the top floor) writes what this module names: the
paths of every member, the exact bytes of ``case.json`` and
``datapackage-digest.json``. Reading lives here, beside the verifier, so that
verification needs nothing above it.

The reader (``CaseReader``) assumes the ZIP is hostile: it rejects unsafe
names, duplicates, symlinks, encryption, overlapping entries and bombs before
reading anything, and streams each entry with a byte cap. It never extracts.
"""

from __future__ import annotations

import hashlib
import json
import re
import stat
import struct
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ledger import waczsign
from ledger.canonical import CanonicalizationError, loads
from ledger.digest import CHUNK
from ledger.errors import CaseFileError, IntegrityError
from ledger.warcscan import zlibx

FILE_TYPE = "evidence-chain/case-file"


FILE_VERSION = 1


EXPORT_KIND = "case-export"


EXPORT_VERSION = 2  # v2 names every file of the bundle; v1 (records and two derived files) no longer verifies


CASE_JSON = "evidence/case.json"


DATAPACKAGE = "datapackage.json"


DATAPACKAGE_DIGEST = "datapackage-digest.json"


def record_path(index: int) -> str:
    return f"evidence/record-{index}.json"


def proof_path(index: int) -> str:
    return f"evidence/record-{index}.tlog-proof"


def manifest_path(index: int) -> str:
    return f"evidence/exhibit-{index}.json"


def checkpoint_path(size: int) -> str:
    return f"evidence/checkpoint-{size}.note"


def consistency_path(old: int, new: int) -> str:
    return f"evidence/consistency-{old}-{new}.proof"


# What capture.warc names a WARC (warcinfo WARC-Filename): unique, and distinct from "<index>-<name>".
WARC_NAME = re.compile(r"warc-[0-9]{14}-[0-9a-f]{12}\.warc(?:\.gz)?")


def case_map_bytes(case_map: dict[str, Any]) -> bytes:
    """The exact bytes of ``evidence/case.json`` (the verifier accepts only this form)."""

    return json.dumps(case_map, ensure_ascii=False, indent=1, sort_keys=True).encode("utf-8")


def key_path(key_id: str) -> str:
    return f"evidence/key-{key_id}.vkey"


def datapackage_digest(datapackage: bytes, signed: dict[str, Any] | None = None) -> bytes:
    """The exact bytes of ``datapackage-digest.json`` for ``datapackage`` (with its ``signedData``, if signed).

    The verifier accepts only this exact form: a changed byte in it cannot
    hide behind an equivalent JSON spelling.
    """

    digest: dict[str, Any] = {"path": DATAPACKAGE, "hash": "sha256:" + hashlib.sha256(datapackage).hexdigest()}
    if signed is not None:
        digest["signedData"] = {k: signed.get(k) for k in waczsign.SIGNED_FIELDS} if isinstance(signed, dict) else signed
    return json.dumps(digest, indent=1).encode()


MAX_ENTRIES = 200_000


MAX_JSON_BYTES = 64 << 20


MAX_ENTRY_SIZE = 1 << 40  # 1 TiB: an honest huge case still opens; bombs are caught by ratio


MAX_TOTAL_SIZE = 1 << 42


MAX_RATIO = 200  # deflated entries above 1 MiB may not expand more than this


RATIO_FLOOR = 1 << 20


_LOCAL = struct.Struct("<4s2B4HL2L2H")  # zipfile's local file header layout


@dataclass(frozen=True)
class Entry:
    name: str
    size: int  # uncompressed
    compressed: int
    method: int
    crc: int
    data_offset: int  # where the entry's (compressed) bytes begin in the file


class CaseReader:
    """A case file opened for reading: checked structure, streaming access, no extraction.

    Everything about the ZIP is checked before a byte of content is used;
    a problem with the container raises ``CaseFileError`` (exit 2).
    """

    def __init__(self, path: Path | str):
        p = Path(path)
        self.path = p
        self.entries: dict[str, Entry] = {}
        try:
            if not p.is_file():
                raise CaseFileError(f"{p}: no such file" if not p.exists() else f"{p} is not a file")
            self.file_size = p.stat().st_size
            zf = zipfile.ZipFile(p)
        except CaseFileError:
            raise
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, struct.error) as e:
            raise CaseFileError(f"{p} is not a readable ZIP file (damaged or truncated?): {e}") from None
        with zf, open(p, "rb") as raw:
            infos = zf.infolist()
            if len(infos) > MAX_ENTRIES:
                raise CaseFileError(f"{p.name} has {len(infos)} entries (at most {MAX_ENTRIES})")
            total = 0
            spans: list[tuple[int, int, str]] = []
            for zi in infos:
                name = zi.filename
                if name.endswith("/") and zi.file_size == 0:
                    _check_name(name.rstrip("/") or "/")
                    continue  # a directory entry: harmless, nothing to read
                _check_name(name)
                if name in self.entries:
                    raise CaseFileError(f"{name}: appears twice in the ZIP")
                mode = zi.external_attr >> 16
                # Many writers store permission bits only (no file type): that is a plain file.
                if zi.create_system == 3 and stat.S_IFMT(mode) and not stat.S_ISREG(mode):
                    kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
                    raise CaseFileError(f"{name}: is {kind}")
                if zi.flag_bits & 0x1:
                    raise CaseFileError(f"{name}: is encrypted")
                if zi.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    raise CaseFileError(f"{name}: unsupported compression method {zi.compress_type}")
                if zi.file_size > MAX_ENTRY_SIZE:
                    raise CaseFileError(f"{name}: declares {zi.file_size} bytes (cap {MAX_ENTRY_SIZE})")
                if zi.compress_type == zipfile.ZIP_STORED and zi.compress_size != zi.file_size:
                    raise CaseFileError(f"{name}: stored entry with differing sizes")
                if zi.file_size > RATIO_FLOOR and zi.file_size > MAX_RATIO * max(zi.compress_size, 1):
                    raise CaseFileError(
                        f"{name}: expands {zi.file_size // max(zi.compress_size, 1)}:1 (zip bomb?)"
                    )
                total += zi.file_size
                if total > MAX_TOTAL_SIZE:
                    raise CaseFileError(f"{p.name}: entries add up to more than {MAX_TOTAL_SIZE} bytes")
                start = _data_offset(raw, zi, self.file_size)
                end = start + zi.compress_size
                if end > self.file_size:
                    raise CaseFileError(f"{name}: runs past the end of the file (truncated?)")
                spans.append((zi.header_offset, end, name))
                self.entries[name] = Entry(name, zi.file_size, zi.compress_size, zi.compress_type, zi.CRC, start)
            # Entries sharing bytes are the "overlapping files" zip bomb (and never honest).
            spans.sort()
            for (_, end, a), (start, _, b) in zip(spans, spans[1:]):
                if start < end:
                    raise CaseFileError(f"{a} and {b} overlap in the ZIP (zip bomb?)")

    def close(self) -> None:
        pass  # every read opens its own handle, so threads can stream entries at once

    def names(self) -> list[str]:
        return list(self.entries)

    def size(self, name: str) -> int:
        return self.entries[name].size

    def __enter__(self) -> CaseReader:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def iter_chunks(self, name: str, chunk: int = CHUNK) -> Iterator[bytes]:
        """The entry's bytes in chunks; never more than its declared size (bomb-safe)."""
        e = self.entries.get(name)
        if e is None:
            raise CaseFileError(f"{name}: not in the case file")
        with open(self.path, "rb") as f:
            f.seek(e.data_offset)
            left = e.compressed
            if e.method == zipfile.ZIP_STORED:
                # The SHA-256 every entry is checked against supersedes the ZIP CRC; skipping
                # the CRC keeps verification at one pass over the bytes.
                while left:
                    data = f.read(min(chunk, left))
                    if not data:
                        raise CaseFileError(f"{name}: ends early (truncated ZIP)")
                    left -= len(data)
                    yield data
                return
            d = zlibx.decompressobj(-15)
            out_total = 0
            crc = 0
            while left or d.unconsumed_tail:
                if d.unconsumed_tail:
                    src = d.unconsumed_tail
                else:
                    src = f.read(min(chunk, left))
                    if not src:
                        raise CaseFileError(f"{name}: ends early (truncated ZIP)")
                    left -= len(src)
                try:
                    data = d.decompress(src, chunk)
                except zlibx.error as ex:
                    raise IntegrityError(f"{name}: damaged deflate data ({ex})") from None
                out_total += len(data)
                if out_total > e.size:
                    raise CaseFileError(f"{name}: inflates beyond its declared {e.size} bytes (zip bomb?)")
                if data:
                    crc = zlibx.crc32(data, crc)
                    yield data
                if d.eof:
                    break
            if not d.eof or out_total != e.size:
                raise IntegrityError(f"{name}: deflate data ends after {out_total} of {e.size} bytes")
            if crc != e.crc:
                raise IntegrityError(f"{name}: CRC-32 does not match (damaged entry)")

    def read(self, name: str, cap: int = MAX_JSON_BYTES) -> bytes:
        e = self.entries.get(name)
        if e is None:
            raise CaseFileError(f"{name}: not in the case file")
        if e.size > cap:
            raise IntegrityError(f"{name}: {e.size} bytes, more than the {cap}-byte limit for this file")
        return b"".join(self.iter_chunks(name))


def _check_name(name: str) -> None:
    """Reject names that could escape a directory or mean two things on two systems."""
    bad = None
    if not name or len(name) > 400:
        bad = "empty or too long"
    elif name.startswith("/") or re.match(r"[A-Za-z]:", name):
        bad = "absolute path"
    elif "\\" in name or "\x00" in name or any(ord(c) < 0x20 for c in name):
        bad = "backslash or control character"
    elif any(part in ("", ".", "..") for part in name.split("/")):
        bad = "'..', '.' or empty path component"
    if bad:
        raise CaseFileError(f"unsafe name in ZIP {name[:80]!r}: {bad}")


def _data_offset(raw: BinaryIO, zi: zipfile.ZipInfo, size: int) -> int:
    """Where the entry's data starts, from its local header (checked against the central one)."""
    if zi.header_offset < 0 or zi.header_offset + _LOCAL.size > size:
        raise CaseFileError(f"{zi.filename}: local header lies outside the file")
    raw.seek(zi.header_offset)
    head = raw.read(_LOCAL.size)
    if len(head) != _LOCAL.size:
        raise CaseFileError(f"{zi.filename}: truncated local header")
    fields = _LOCAL.unpack(head)
    if fields[0] != b"PK\x03\x04":
        raise CaseFileError(f"{zi.filename}: bad local header signature")
    name_len, extra_len = fields[10], fields[11]
    local_name = raw.read(name_len)
    flags = fields[3]
    enc = "utf-8" if flags & 0x800 else "cp437"
    if local_name.decode(enc, "replace") != zi.filename:
        raise CaseFileError(f"{zi.filename}: local header names another file")
    return zi.header_offset + _LOCAL.size + name_len + extra_len


def load_json(data: bytes, what: str) -> Any:
    """Strict JSON (no duplicate keys, no NaN) from bundle bytes, as an IntegrityError."""
    try:
        return loads(data)
    except CanonicalizationError as e:
        raise IntegrityError(f"{what}: {e}") from None
