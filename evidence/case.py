"""Case files: one WACZ 1.1.1 ZIP that carries a case's exhibits and their proofs.

Layout (WACZ parts first, then ours; every file sits one folder deep, which
is what WACZ validators expect)::

    archive/<index>-<name>.warc.gz     web archives of the exhibits
    indexes/index.cdxj                 CDXJ index of those WARCs
    pages/pages.jsonl                  one page per exhibit
    datapackage.json                   every other file: path, bytes, sha256
    datapackage-digest.json            sha256 of datapackage.json
    evidence/case.json                 case id, log origin, exhibits, checkpoint
    records/<index>.json               exact record bytes
    proofs/<index>.tlog-proof          C2SP tlog-proof against the case checkpoint
    checkpoints/<size>.note            signed checkpoints (with cosignatures)
    consistency/<a>-<b>.proof          consistency proofs between them
    exhibits/<index>-exhibit.json      exhibit manifests; exhibits/<index>-<name> other artifacts
    anchors/<sha256>                   TSA tokens, chains, cosignatures, receipts
    keys/log-<n>.vkey                  the log's verifier keys (self-declared)

Writing streams every file through the hash into the ZIP; reading checks
every entry name, size and compression ratio before a byte is used.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import stat
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, BinaryIO

from . import __version__
from .canonical import loads
from .digest import CHUNK
from .errors import CaseFileError, UsageError
from .record import parse_record

WACZ_VERSION = "1.1.1"
STORED_TYPES = ("application/warc", "image/png", "image/jpeg", "video/", "audio/", "application/gzip", "application/zip")
KEY_KINDS = ("log-init", "key-rotation", "key-add")

# Reader limits: generous for real cases, fatal for bombs.
MAX_ENTRIES = 200_000
MAX_ENTRY_BYTES = 64 << 30
MAX_TOTAL_BYTES = 256 << 30
MAX_RATIO = 200  # uncompressed / compressed, for entries over 1 MiB
MAX_JSON_BYTES = 64 << 20
_SAFE_NAME = re.compile(r"[A-Za-z0-9._@+\-]+(/[A-Za-z0-9._@+\-]+)*")


@dataclass
class ExportSummary:
    path: Path
    case: str
    exhibits: int
    records: int
    files: int
    bytes: int
    checkpoint_size: int


@dataclass
class _Entry:
    path: str
    size: int
    sha256: str


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _safe_part(name: str) -> str:
    """A file name safe inside the ZIP (manifest names come from captures)."""
    cleaned = re.sub(r"[^A-Za-z0-9._@+\-]", "_", name).lstrip(".") or "file"
    return cleaned[:120]


class _Writer:
    def __init__(self, zf: zipfile.ZipFile):
        self.zf = zf
        self.entries: list[_Entry] = []

    def stream(self, path: str, src: BinaryIO, media_type: str = "") -> _Entry:
        compress = zipfile.ZIP_STORED if media_type.startswith(STORED_TYPES) or path.endswith(".gz") else zipfile.ZIP_DEFLATED
        info = zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0))
        info.compress_type = compress
        info.external_attr = 0o644 << 16
        h = hashlib.sha256()
        n = 0
        with self.zf.open(info, "w", force_zip64=True) as out:
            while chunk := src.read(CHUNK):
                h.update(chunk)
                out.write(chunk)
                n += len(chunk)
        e = _Entry(path, n, h.hexdigest())
        self.entries.append(e)
        return e

    def bytes(self, path: str, data: bytes, media_type: str = "") -> _Entry:
        return self.stream(path, io.BytesIO(data), media_type)


def export_case(
    ledger: Any, case: str, out: Path | str, *, progress: Callable[[str], None] | None = None
) -> ExportSummary:
    """Write case ``case`` of ``ledger`` to ``out`` (a .wacz), atomically."""
    from ledger import merkle
    from ledger.checkpoint import TlogProof, format_proof

    out = Path(out)
    case_records = list(ledger.store.iter_records(case=case))
    if not case_records:
        raise UsageError(f"no records for case {case!r}")
    say = progress or (lambda _m: None)
    cp = ledger.checkpoint()  # covers every record of the case
    # Key provenance and anchors travel with the case: the verifier needs the
    # records that introduced each key, and the anchors of the checkpoints.
    key_records = []
    for kind in KEY_KINDS:
        key_records.extend(ledger.store.iter_records(kind=kind, end=cp.size))
    anchor_recs = list(ledger.store.iter_records(kind="anchor", end=cp.size))
    checkpoints = {c.size: c for c in ledger.store.checkpoints() if c.size <= cp.size}
    first = min(r.index for r in case_records)
    anchored_sizes = set()
    wanted_anchors = []
    for r in anchor_recs:
        p = parse_record(r.body, expect_index=r.index).payload
        size = p.get("checkpoint_size")
        if isinstance(size, int) and size > first and size in checkpoints:
            anchored_sizes.add(size)
            wanted_anchors.append((r, p))
    sizes = sorted(anchored_sizes | {cp.size})
    records = {r.index: r for r in [*case_records, *key_records, *(r for r, _ in wanted_anchors)]}

    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".part")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with zipfile.ZipFile(tmp, "w", allowZip64=True) as zf:
            w = _Writer(zf)
            exhibits = []
            warcs: list[tuple[str, str]] = []  # (zip path, store digest)
            pages = []
            for idx in sorted(records):
                r = records[idx]
                rec = parse_record(r.body, expect_index=idx)
                w.bytes(f"records/{idx}.json", r.body, "application/json")
                proof = ledger.store.inclusion_proof(idx, cp.size)
                w.bytes(f"proofs/{idx}.tlog-proof", format_proof(TlogProof(idx, proof, cp.note)).encode(), "text/plain")
                if rec.kind != "exhibit":
                    continue
                say(f"exhibit {idx}")
                msha = rec.payload["manifest"]["sha256"]
                with ledger.artifacts.open(msha) as f:
                    w.stream(f"exhibits/{idx}-exhibit.json", f, "application/json")
                with ledger.artifacts.open(msha) as f:
                    manifest = loads(f.read())
                entry: dict[str, Any] = {"index": idx, "manifest": f"exhibits/{idx}-exhibit.json", "artifacts": {}}
                for art in manifest.get("artifacts", []):
                    if art.get("media_type") == "application/warc" or art.get("role") == "warc":
                        zpath = f"archive/{idx}-{_safe_part(art['name'])}"
                        warcs.append((zpath, art["sha256"]))
                    else:
                        zpath = f"exhibits/{idx}-{_safe_part(art['name'])}"
                    with ledger.artifacts.open(art["sha256"]) as f:
                        w.stream(zpath, f, art.get("media_type", ""))
                    entry["artifacts"][art["name"]] = zpath
                exhibits.append(entry)
                info = manifest.get("info", {})
                if info.get("url"):
                    pages.append(
                        {
                            "id": f"exhibit-{idx}",
                            "url": info.get("final_url") or info["url"],
                            "ts": info.get("started") or rec.time,
                            "title": info.get("title") or info["url"],
                        }
                    )
            for size in sizes:
                w.bytes(f"checkpoints/{size}.note", checkpoints[size].note.encode(), "text/plain")
            for a, b in zip(sizes, sizes[1:]):
                proof = ledger.store.consistency_proof(a, b)
                w.bytes(f"consistency/{a}-{b}.proof", "".join(base64.b64encode(h).decode() + "\n" for h in proof).encode(), "text/plain")
            for _, p in wanted_anchors:
                for k in ("token_sha256", "chain_sha256", "cosignature_sha256", "receipt_sha256"):
                    d = p.get(k)
                    if isinstance(d, str) and f"anchors/{d}" not in {e.path for e in w.entries}:
                        with ledger.artifacts.open(d) as f:
                            w.stream(f"anchors/{d}", f, "application/octet-stream")
            for n, vkey in enumerate(ledger.config.trusted_vkeys):
                w.bytes(f"keys/log-{n}.vkey", (vkey + "\n").encode(), "text/plain")
            say("index")
            w.bytes("indexes/index.cdxj", _cdxj(ledger, warcs), "application/x-ndjson")
            header = {"format": "json-pages-1.0", "id": "pages", "title": f"Case {case}"}
            w.bytes("pages/pages.jsonl", "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in [header, *pages]).encode(), "application/x-ndjson")
            case_json = {
                "type": "evidence-chain/case",
                "v": 1,
                "case": case,
                "origin": ledger.origin,
                "exported": _now(),
                "software": f"evidence-chain {__version__}",
                "checkpoint": {"size": cp.size, "path": f"checkpoints/{cp.size}.note"},
                "checkpoints": sizes,
                "records": sorted(records),
                "case_records": sorted(r.index for r in case_records),
                "exhibits": exhibits,
            }
            w.bytes("evidence/case.json", json.dumps(case_json, ensure_ascii=False, indent=1).encode(), "application/json")
            package = {
                "profile": "data-package",
                "wacz_version": WACZ_VERSION,
                "title": f"Case {case}",
                "description": "Evidence case file exported by evidence-chain",
                "created": _now(),
                "software": f"evidence-chain {__version__}",
                "resources": [
                    {"name": Path(e.path).name, "path": e.path, "hash": f"sha256:{e.sha256}", "bytes": e.size}
                    for e in w.entries
                ],
            }
            if pages:
                package["mainPageUrl"] = pages[0]["url"]
                package["mainPageDate"] = pages[0]["ts"]
            dp = json.dumps(package, ensure_ascii=False, indent=1).encode()
            zf.writestr(zipfile.ZipInfo("datapackage.json", (2020, 1, 1, 0, 0, 0)), dp)
            digest = {"path": "datapackage.json", "hash": "sha256:" + hashlib.sha256(dp).hexdigest()}
            zf.writestr(zipfile.ZipInfo("datapackage-digest.json", (2020, 1, 1, 0, 0, 0)), json.dumps(digest))
            total = sum(e.size for e in w.entries)
            nfiles = len(w.entries) + 2
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return ExportSummary(out, case, len(exhibits), len(records), nfiles, total, cp.size)


def _cdxj(ledger: Any, warcs: list[tuple[str, str]]) -> bytes:
    """CDXJ lines for the exported WARCs, with the names they have in the ZIP."""
    from cdxj_indexer import CDXJIndexer

    lines: list[str] = []
    for zpath, digest in warcs:
        buf = io.StringIO()
        with ledger.artifacts.open(digest) as f:
            CDXJIndexer(output=buf, inputs=[], filename=Path(zpath).name).process_one(f, buf, Path(zpath).name)
        lines.extend(ln for ln in buf.getvalue().splitlines() if ln.strip())
    lines.sort()
    return ("\n".join(lines) + "\n").encode() if lines else b""


class CaseReader:
    """Read a case file without trusting it: names, sizes and ratios checked first.

    Nothing is extracted to disk; entries are streamed from the ZIP with the
    declared size as a hard cap (zipfile stops there and checks the CRC).
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        try:
            self._zf = zipfile.ZipFile(self.path)
        except FileNotFoundError:
            raise CaseFileError(f"{self.path}: no such file") from None
        except (zipfile.BadZipFile, OSError, ValueError) as e:
            raise CaseFileError(f"{self.path}: not a readable ZIP/WACZ file ({e})") from None
        try:
            infos = self._zf.infolist()
        except (zipfile.BadZipFile, OSError, ValueError) as e:
            raise CaseFileError(f"{self.path}: damaged ZIP directory ({e})") from None
        if len(infos) > MAX_ENTRIES:
            raise CaseFileError(f"{self.path}: {len(infos)} entries (at most {MAX_ENTRIES})")
        self.infos: dict[str, zipfile.ZipInfo] = {}
        total = 0
        for info in infos:
            name = info.filename
            if info.is_dir():
                continue
            if name.startswith("/") or "\\" in name or "\x00" in name or ".." in name.split("/") or not _SAFE_NAME.fullmatch(name):
                raise CaseFileError(f"{self.path}: unsafe entry name {name!r}")
            if stat.S_ISLNK(info.external_attr >> 16):
                raise CaseFileError(f"{self.path}: entry {name!r} is a symbolic link")
            if name in self.infos:
                raise CaseFileError(f"{self.path}: duplicate entry {name!r}")
            if info.file_size > MAX_ENTRY_BYTES:
                raise CaseFileError(f"{self.path}: entry {name!r} is too large ({info.file_size} bytes)")
            if info.file_size > 1 << 20 and info.file_size > MAX_RATIO * max(info.compress_size, 1):
                raise CaseFileError(f"{self.path}: entry {name!r} expands {info.file_size // max(info.compress_size, 1)}x (zip bomb?)")
            if info.flag_bits & 0x1:
                raise CaseFileError(f"{self.path}: entry {name!r} is encrypted")
            total += info.file_size
            self.infos[name] = info
        if total > MAX_TOTAL_BYTES:
            raise CaseFileError(f"{self.path}: {total} bytes uncompressed (at most {MAX_TOTAL_BYTES})")

    def close(self) -> None:
        self._zf.close()

    def __enter__(self) -> CaseReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def names(self) -> list[str]:
        return list(self.infos)

    def __contains__(self, name: str) -> bool:
        return name in self.infos

    def size(self, name: str) -> int:
        return self.infos[name].file_size

    def open(self, name: str) -> IO[bytes]:
        if name not in self.infos:
            raise CaseFileError(f"{self.path}: missing entry {name!r}")
        try:
            return self._zf.open(self.infos[name])
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as e:
            raise CaseFileError(f"{self.path}: cannot read {name!r} ({e})") from None

    def read(self, name: str, cap: int = MAX_JSON_BYTES) -> bytes:
        if name in self.infos and self.infos[name].file_size > cap:
            raise CaseFileError(f"{self.path}: {name!r} is {self.infos[name].file_size} bytes (at most {cap} here)")
        with self.open(name) as f:
            try:
                data = f.read(cap + 1)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
                raise CaseFileError(f"{self.path}: {name!r} is damaged ({e})") from None
        if len(data) > cap:
            raise CaseFileError(f"{self.path}: {name!r} is larger than {cap} bytes")
        return data

    def json(self, name: str) -> Any:
        try:
            return loads(self.read(name))
        except CaseFileError:
            raise
        except Exception as e:  # CanonicalizationError and friends
            raise CaseFileError(f"{self.path}: {name!r} is not valid JSON ({e})") from None

    def sha256(self, name: str) -> tuple[str, int]:
        """Hash an entry while streaming it (the only full read of big files)."""
        h = hashlib.sha256()
        n = 0
        with self.open(name) as f:
            try:
                while chunk := f.read(CHUNK):
                    h.update(chunk)
                    n += len(chunk)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
                raise CaseFileError(f"{self.path}: {name!r} is damaged ({e})") from None
        return h.hexdigest(), n

    def iter_names(self, prefix: str) -> Iterator[str]:
        return (n for n in self.infos if n.startswith(prefix))
