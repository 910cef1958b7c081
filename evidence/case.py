"""Case files: one WACZ 1.1.1 ZIP that carries a case and everything to verify it.

    summary = export_case(ledger, "SAMR-2026-017", Path("case.wacz"))
    with CaseReader("case.wacz") as z:
        case = load_json(z.read(CASE_JSON), CASE_JSON)

Layout (every path lowercase ``[a-z0-9._-]``, at most one folder deep: py-wacz
``validate`` matches only the last two path components of a file against
``datapackage.json``, and frictionless requires resource names of that form)::

    archive/<WARC-Filename>               WARC artifacts of exhibits (stored, not deflated), under the name
                                          their warcinfo gives (warc-<time>-<random>.warc.gz, by capture);
    archive/<index>-<name>.warc.gz        others (older captures, a name already used) by exhibit index
    indexes/index.cdx                     CDXJ index of the WARCs (cdxj-indexer; named .cdx for pywb)
    pages/pages.jsonl                     one page per exhibit with a WARC
    evidence/case.json                    map of the bundle (trusted for nothing)
    evidence/record-<index>.json          exact record bytes
    evidence/record-<index>.tlog-proof    C2SP tlog-proof against the bundle's checkpoint
    evidence/exhibit-<index>.json         exact exhibit manifest bytes
    evidence/exhibit-<index>-<name>       non-WARC artifacts (screenshots, DOM, MHTML...)
    evidence/checkpoint-<size>.note       signed checkpoints, exactly as signed
    evidence/consistency-<a>-<b>.proof    RFC 6962 consistency proofs between them
    evidence/key-<key id>.vkey            the log's verifier keys (self-declared)
    evidence/anchor-<index>-<what>        TSA tokens and chains, cosignatures, receipts
    evidence/tsa-root-<n>.pem             TSA roots known to the exporter (self-declared)
    datapackage.json                      every other file with its SHA-256
    datapackage-digest.json               SHA-256 of datapackage.json

Export appends a ``case-export`` custody record (payload ``v`` 2) naming
the leaf hash of every other record in the bundle and the path, SHA-256 and
size of every file written before it (manifests, artifacts, WARCs, index,
page list, key files, anchor blobs, TSA roots, older checkpoints and the
consistency proofs between them), then signs a checkpoint over it. What
comes after it is bound by other means: record files by their leaves,
proofs and the case checkpoint by verification (in their exact written
form), ``case.json`` by being derived exactly from verified content. A
verifier can then refuse any file no signed statement names, and any
bundle that lost one.

The format's names and the hostile-ZIP reader (``CaseReader``) are in
``verify.casefile``, beside the verifier that needs them.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import io
import json
import os
import re
import stat
import tempfile
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from warcio.archiveiterator import ArchiveIterator
from warcio.exceptions import ArchiveLoadFailed

from ledger import checkpoint, waczsign
from ledger.artifacts import BlobPath
from ledger.canonical import loads
from ledger.casefacts import latest as latest_case_info
from ledger.digest import CHUNK
from ledger.errors import EnvironmentProblem, IntegrityError, UsageError
from ledger.keys import key_id_for
from ledger.note import vkey_for
from ledger.record import Record, parse_record, utc_now
from ledger.version import __version__
from ledger.warcscan import WarcScan, zlibx
from verify.casefile import (
    CASE_JSON,
    DATAPACKAGE,
    DATAPACKAGE_DIGEST,
    EXPORT_KIND,
    EXPORT_VERSION,
    FILE_TYPE,
    FILE_VERSION,
    WARC_NAME,
    case_map_bytes,
    checkpoint_path,
    consistency_path,
    datapackage_digest,
    key_path,
    manifest_path,
    proof_path,
    record_path,
)

WACZ_VERSION = "1.1.1"

PAGES = "pages/pages.jsonl"
# CDXJ content under a .cdx name: pywb's `wb-manager add --unpack-wacz` imports only *.cdx / *.cdx.gz,
# and py-wacz and ReplayWeb.page read either. Older case files carry indexes/index.cdxj.
INDEX = "indexes/index.cdx"

# Already-compressed formats gain nothing from deflate, and WACZ requires
# WARCs stored so that replay tools can read records by byte range.
_STORED_EXT = (".gz", ".png", ".jpg", ".jpeg", ".webp", ".gif", ".mp4", ".webm", ".mkv", ".ts",
               ".zip", ".pdf", ".zst", ".br", ".avif", ".mp3", ".m4a", ".ogg")
_SAFE = re.compile(r"[^a-z0-9._-]+")
PROBE_MIN = 1 << 20  # members this large without a known extension are stored if a sample does not deflate
PROBE_BYTES = 256 << 10
PIPELINE_MIN = 8 << 20  # members this large are hashed on a second core while they are written
BIG_CHUNK = 4 << 20
SYNC_EVERY = 32 << 20  # written bytes between background fdatasyncs of a big member

ProgressFn = Callable[[str], None]


def safe_name(name: str) -> str:
    """A lowercase ``[a-z0-9._-]`` form of an artifact name (never empty, no leading dot)."""
    s = _SAFE.sub("-", name.lower()).strip("-.")
    return (s or "file")[:120]


# -- export -------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportSummary:
    path: Path
    case: str
    exhibits: int
    records: int
    files: int
    bytes: int  # sum of the files' sizes (uncompressed)
    checkpoint_size: int
    export_record: int | None
    anchors: int

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "case": self.case,
            "exhibits": self.exhibits,
            "records": self.records,
            "files": self.files,
            "bytes": self.bytes,
            "checkpoint_size": self.checkpoint_size,
            "export_record": self.export_record,
            "anchors": self.anchors,
        }


@dataclass
class _Resource:
    path: str
    sha256: str
    size: int


class _ZipWriter:
    """Streams files into the ZIP, hashing as it copies; remembers every resource."""

    def __init__(self, f: BinaryIO, progress: ProgressFn | None):
        self.zf = zipfile.ZipFile(f, "w", allowZip64=True)
        self.resources: list[_Resource] = []
        self.progress = progress
        self._names: set[str] = set()
        self._pool: ThreadPoolExecutor | None = None
        # Background fdatasync while big members stream in: the disk writes as we copy, so the
        # fsync before the export record has little left to flush (it was ~0.6 s per GiB).
        self._fd = f.fileno() if hasattr(f, "fileno") else None
        self._syncer: ThreadPoolExecutor | None = None
        self._sync: Any = None
        self._unsynced = 0

    def _info(self, path: str, size: int, first: bytes) -> zipfile.ZipInfo:
        if path in self._names:  # never two entries of one name: the reader rejects them
            raise IntegrityError(f"case file would hold {path} twice")
        self._names.add(path)
        zi = zipfile.ZipInfo(path, date_time=_zip_time())
        stored = path.endswith(_STORED_EXT) or (size >= PROBE_MIN and _incompressible(first))
        zi.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
        zi.external_attr = (stat.S_IFREG | 0o644) << 16
        zi.file_size = size
        return zi

    def add_stream(self, path: str, src: BinaryIO, size: int, *, listed: bool = True,
                   scan: WarcScan | None = None) -> str:
        """Copy ``src`` in, hashing it (and feeding ``scan``) from the same chunks: each byte is read once."""
        if self.progress and size >= 1 << 20:
            self.progress(f"{path} ({size / 1e6:,.1f} MB)")
        h = hashlib.sha256()
        n = 0
        big = size >= PIPELINE_MIN
        chunk = src.read(BIG_CHUNK if big else CHUNK)
        zi = self._info(path, size, chunk)
        # force_zip64 when large: zipfile must reserve the ZIP64 extra before it knows the size.
        with self.zf.open(zi, "w", force_zip64=size >= (1 << 31)) as out:
            if not big:
                while chunk:
                    h.update(chunk)
                    if scan is not None:
                        scan.feed(chunk)
                    out.write(chunk)
                    n += len(chunk)
                    chunk = src.read(CHUNK)
            else:
                # hashlib and zlib release the GIL: SHA-256 of chunk k on one pool thread, its
                # CRC-32 and index scan on the other, while this thread writes it and reads chunk k+1.
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(2, thread_name_prefix="export")
                # A stored member's bytes go to the file as they are, so its CRC can be taken
                # off this thread: zipfile's write would compute it here, in line with the copy.
                direct = zi.compress_type == zipfile.ZIP_STORED and all(
                    hasattr(out, a) for a in ("_fileobj", "_crc", "_file_size", "_compress_size"))
                crc = [0]

                def side(data: bytes) -> None:
                    if direct:
                        crc[0] = zlibx.crc32(data, crc[0])  # zlib-ng's SIMD CRC-32: a tenth of zlib's time
                    if scan is not None:
                        scan.feed(data)

                while chunk:
                    jobs = [self._pool.submit(h.update, chunk)]
                    if direct or scan is not None:
                        jobs.append(self._pool.submit(side, chunk))
                    if direct:
                        out._fileobj.write(chunk)  # type: ignore[attr-defined]
                        out._file_size += len(chunk)  # type: ignore[attr-defined]
                        out._compress_size += len(chunk)  # type: ignore[attr-defined]
                    else:
                        out.write(chunk)
                    n += len(chunk)
                    self._sync_behind(len(chunk))
                    nxt = src.read(BIG_CHUNK)
                    for j in jobs:
                        j.result()
                    chunk = nxt
                if direct:
                    out._crc = crc[0]  # type: ignore[attr-defined]
        if scan is not None:
            scan.close()
        if n != size:
            raise IntegrityError(f"{path}: read {n} bytes, expected {size} (the store changed under us)")
        digest = h.hexdigest()
        if listed:
            self.resources.append(_Resource(path, digest, n))
        return digest

    def add_bytes(self, path: str, data: bytes, *, listed: bool = True) -> str:
        return self.add_stream(path, io.BytesIO(data), len(data), listed=listed)

    def _sync_behind(self, written: int) -> None:
        self._unsynced += written
        if self._fd is None or self._unsynced < SYNC_EVERY or (self._sync is not None and not self._sync.done()):
            return
        if self._sync is not None:
            self._sync.result()  # an I/O error surfaces here, before anything is appended
        if self._syncer is None:
            self._syncer = ThreadPoolExecutor(1, thread_name_prefix="export-sync")
        self._unsynced = 0
        self._sync = self._syncer.submit(os.fdatasync, self._fd)

    def settle(self) -> None:
        """Wait for the background fdatasync (raising its error): call before the final fsync."""
        if self._sync is not None:
            self._sync.result()
            self._sync = None

    def close(self) -> None:
        self.zf.close()
        self._stop()

    def abort(self) -> None:
        # The temp file is about to be deleted: writing a central directory
        # into it (as ZipFile.close, or its finaliser, would) is pointless.
        self.zf.fp = None
        self._stop()

    def _stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        if self._syncer is not None:
            self._syncer.shutdown()  # waits for a sync in flight: the file is closed only after it
            self._syncer = None


def _incompressible(sample: bytes) -> bool:
    """Deflate would gain under 5 % on this sample (a video, an archive, an encrypted download): store it."""
    probe = sample[:PROBE_BYTES]
    return len(zlib.compress(probe, 1)) > 0.95 * len(probe)


def _zip_time() -> tuple[int, int, int, int, int, int]:

    t = time.gmtime()
    return (max(t.tm_year, 1980), t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)


def export_case(
    ledger: Any,
    case_id: str,
    out_path: Path | str,
    *,
    progress: ProgressFn | None = None,
    tsa_roots: Sequence[bytes] = (),
    record_export: bool = True,
    mode: int = 0o644,
) -> ExportSummary:
    """Write the case file for ``case_id`` to ``out_path`` (atomically: temp file, then rename).

    ``ledger`` is a ``ledger.log.Ledger``. With ``record_export`` (the default)
    a ``case-export`` record naming every record and file of the bundle is
    appended, then a checkpoint is signed over it (both need the log key);
    without it the bundle verifies only as INCOMPLETE. ``tsa_roots`` are
    PEM/DER bytes of TSA root certificates to ship as self-declared trust
    material. Memory stays constant in the size of the artifacts. The file
    gets ``mode`` (0644 by default, so a web server can serve it for replay).
    With ``record_export``, ``datapackage-digest.json`` is signed by the home's
    WACZ signing key (``ledger.waczsign``), introduced by a ``wacz-key``
    record on first use and named by the export record.

    Order: every file the export record binds is streamed into a temporary
    file beside ``out_path`` and fsynced first; only then is the record
    appended, the checkpoint signed, and the small tail (records, proofs,
    checkpoint, maps) written into space reserved beforehand. So a failure
    before the append leaves no record, and the append is followed only by
    writes that cannot run out of disk.
    """

    out_path = Path(out_path)
    if not isinstance(case_id, str) or not case_id.strip():
        raise UsageError("export needs a case id")
    _check_target(out_path)
    case_recs = list(ledger.records(case=case_id))
    if not case_recs:
        raise UsageError(f"no records for case {case_id!r} in this ledger")
    if record_export:
        _check_can_sign(ledger)
    # The key file may be made here; its wacz-key record is appended only beside the export record.
    wacz_key = waczsign.load_or_create(ledger.home.keys_dir, ledger._passphrase) if record_export else None

    # Records that prove the keys: log-init, every rotation and key addition so
    # far, since the export record and checkpoint are signed by today's key.
    key_recs: dict[int, Record] = {}
    for kind in ("log-init", "key-rotation", "key-add", waczsign.KEY_KIND):
        for s in ledger.store.iter_records(kind=kind):
            key_recs[s.index] = _parse(s.body, s.index)
    included: dict[int, Record] = {r.index: r for r in case_recs}
    included.update(key_recs)

    # Exhibits: manifests from the store; artifacts mapped to bundle paths.
    exhibits: list[dict[str, Any]] = []
    files: list[tuple[str, str, int]] = []  # (bundle path, store sha256, size), artifacts and manifests
    pages: list[dict[str, Any]] = []
    own_names: set[str] = set()  # WARCs stored under their own WARC-Filename
    for r in case_recs:
        if r.kind != "exhibit":
            continue
        m = r.payload.get("manifest") or {}
        msha, msize = m.get("sha256"), m.get("size")
        with ledger.artifacts.open(msha) as f:
            manifest_raw = f.read(int(msize) + 1)
        manifest = loads(manifest_raw)
        files.append((manifest_path(r.index), msha, len(manifest_raw)))
        amap: dict[str, str] = {}
        used: set[str] = set()
        for a in manifest.get("artifacts", []):
            is_warc = a.get("role") == "warc" or str(a.get("media_type", "")).startswith("application/warc")
            base = safe_name(a["name"])
            if is_warc:
                gz = _is_gzip(ledger.artifacts, a["sha256"])
                base = re.sub(r"(\.warc)?(\.gz)?$", "", base) + (".warc.gz" if gz else ".warc")
            stem = f"{r.index}-{base}"
            n = 2
            while stem in used:  # two names that sanitise alike
                stem = f"{r.index}-{n}-{base}"
                n += 1
            own = _warc_filename(ledger.artifacts, a["sha256"]) if is_warc else None
            if own is not None and own.endswith(".warc.gz" if gz else ".warc") and own not in own_names:
                stem = own  # stored under its own WARC-Filename, so the two agree (and replay tools index that name)
                own_names.add(own)
            used.add(stem)
            path = f"archive/{stem}" if is_warc else f"evidence/exhibit-{stem}"
            amap[a["name"]] = path
            files.append((path, a["sha256"], int(a["size"])))
        info = manifest.get("info") or {}
        exhibits.append({"index": r.index, "manifest": manifest_path(r.index), "artifacts": amap})
        if any(p.startswith("archive/") for p in amap.values()):
            url = info.get("final_url") or info.get("url")
            if isinstance(url, str) and url:
                page: dict[str, Any] = {"id": f"exhibit-{r.index}", "url": url,
                                        "ts": info.get("started") or r.time}
                if info.get("title"):
                    page["title"] = str(info["title"])
                pages.append(page)

    # Anchors: for each exported record, the anchors of the first anchored
    # checkpoint covering it (chosen before the export record, which lists them).
    # An exhibit deposit speaks for its one exhibit: every one of this case's
    # exhibits goes in (with its checkpoint), none of another case's.
    case_exhibits = {r.index for r in case_recs if r.kind == "exhibit"}
    anchors_by_size: dict[int, list[Record]] = {}
    deposit_sizes: set[int] = set()
    for s in ledger.store.iter_records(kind="anchor"):
        a = _parse(s.body, s.index)
        size = a.payload.get("checkpoint_size")
        if isinstance(size, int) and 0 < size <= s.index:
            if a.payload.get("type") == "exhibit-deposit":
                if a.payload.get("exhibit_index") not in case_exhibits:
                    continue
                deposit_sizes.add(size)
            anchors_by_size.setdefault(size, []).append(a)
    anchored = sorted(s for s, recs in anchors_by_size.items() if any(a.payload.get("type") != "exhibit-deposit" for a in recs))
    chosen: set[int] = set(deposit_sizes)
    for i in included:
        first = next((s for s in anchored if s > i), None)
        if first is not None:
            chosen.add(first)
    anchor_recs = [a for s in sorted(chosen) for a in anchors_by_size[s]]
    for a in anchor_recs:
        included[a.index] = a
    notes = {c.size: c for c in ledger.store.checkpoints()}
    older = sorted(chosen)
    missing = [s for s in older if s not in notes]
    if missing:
        raise IntegrityError(f"anchored checkpoint(s) {missing} are not in the ledger")

    # Anchor blobs, named by record index and what they are.
    anchor_entries: list[dict[str, Any]] = []
    blob_files: list[tuple[str, str]] = []  # (path, sha256)
    for a in anchor_recs:
        p = a.payload
        blobs = {}
        for field_, suffix in (("token_sha256", "token.tsr"), ("chain_sha256", "chain.pem"),
                               ("cosignature_sha256", "cosignature.txt"), ("receipt_sha256", "receipt.bin")):
            d = p.get(field_)
            if isinstance(d, str) and d in ledger.artifacts:
                path = f"evidence/anchor-{a.index}-{suffix}"
                blobs[d] = path
                blob_files.append((path, d))
        anchor_entries.append({"index": a.index, "type": p.get("type"), "checkpoint_size": p.get("checkpoint_size"), "blobs": blobs})

    pages_raw = _pages_jsonl(case_id, pages)
    _warm_index_module()
    workdir = tempfile.TemporaryDirectory(prefix="evidence-cdxj-")
    fd, tmp = _temp_beside(out_path)
    w: _ZipWriter | None = None
    export_index: int | None = None
    try:
        with os.fdopen(fd, "w+b") as f:
            w = _ZipWriter(f, progress)
            # Part 1: everything the export record binds by digest, streamed; the
            # index comes from the same pass over each WARC (record offsets and heads).
            scans: list[tuple[str, WarcScan, Path]] = []
            for path, sha, size in files:
                scan = WarcScan() if path.startswith("archive/") else None
                with ledger.artifacts.open(sha) as src:
                    got = w.add_stream(path, src, size, scan=scan)
                if got != sha:
                    raise IntegrityError(f"artifact sha256:{sha} in the store was altered (now {got})")
                if scan is not None:
                    scans.append((path.removeprefix("archive/"), scan, BlobPath(ledger.artifacts, sha, Path(workdir.name))))
            index_file = Path(workdir.name) / "index.cdxj"
            _write_index(scans, index_file)
            with open(index_file, "rb") as src:
                w.add_stream(INDEX, src, index_file.stat().st_size)
            w.add_bytes(PAGES, pages_raw)
            for s in older:
                w.add_bytes(checkpoint_path(s), notes[s].note.encode("utf-8"))
            cons_meta = []
            for a_size, b_size in zip(older, older[1:]):
                hashes = ledger.store.consistency_proof(a_size, b_size)
                w.add_bytes(consistency_path(a_size, b_size), checkpoint.format_consistency(a_size, b_size, hashes).encode())
                cons_meta.append({"old": a_size, "new": b_size, "path": consistency_path(a_size, b_size)})
            keys_meta = []
            for kid, vkey in _log_vkeys(ledger, included):
                path = key_path(kid)
                w.add_bytes(path, (vkey + "\n").encode("utf-8"))
                keys_meta.append({"key_id": kid, "vkey": vkey, "path": path})
            for path, sha in blob_files:
                with ledger.artifacts.open(sha) as src:
                    w.add_bytes(path, src.read())
            roots_meta = []
            for n, pem in enumerate(tsa_roots, 1):
                path = f"evidence/tsa-root-{n}.pem"
                w.add_bytes(path, pem)
                roots_meta.append(path)
            bound = {r.path: {"sha256": r.sha256, "bytes": r.size} for r in w.resources}
            for i in sorted(included):
                w.add_bytes(record_path(i), included[i].raw)
            w.settle()
            f.flush()
            os.fsync(f.fileno())
            # The tail is small and known in size up to the proofs: reserve it
            # now so that nothing after the append can fail for lack of space.
            reserved_from = f.tell()
            _reserve(f, reserved_from, _tail_estimate(included, bound, exhibits, anchor_entries))

            if record_export:
                _introduce_wacz_key(ledger, wacz_key, included, w)
                listed = [{"index": i, "leaf": included[i].leaf.hex()} for i in sorted(included)]
                rec = ledger.append(EXPORT_KIND, {"v": EXPORT_VERSION, "records": listed, "files": bound,
                                                  "software": f"evidence-chain {__version__}",
                                                  **({"wacz_key": wacz_key.key_id} if wacz_key else {})}, case=case_id)
                included[rec.index] = rec
                export_index = rec.index
                w.add_bytes(record_path(rec.index), rec.raw)
            # Part 2: what depends on the checkpoint that covers the export record.
            cp = ledger.checkpoint()
            top = max(included)
            if cp.size <= top:
                raise IntegrityError(f"checkpoint of size {cp.size} does not cover record {top}")
            records_meta = []
            for i in sorted(included):
                proof = ledger.store.inclusion_proof(i, cp.size)
                w.add_bytes(proof_path(i), checkpoint.format_proof(checkpoint.TlogProof(i, proof, cp.note)).encode("utf-8"))
                records_meta.append({"index": i, "kind": included[i].kind, "path": record_path(i), "proof": proof_path(i)})
            w.add_bytes(checkpoint_path(cp.size), cp.note.encode("utf-8"))
            sizes = [*older, cp.size]
            if older:
                hashes = ledger.store.consistency_proof(older[-1], cp.size)
                w.add_bytes(consistency_path(older[-1], cp.size), checkpoint.format_consistency(older[-1], cp.size, hashes).encode())
                cons_meta.append({"old": older[-1], "new": cp.size, "path": consistency_path(older[-1], cp.size)})
            case_json = {
                "type": FILE_TYPE,
                "v": FILE_VERSION,
                "case": case_id,
                "origin": ledger.origin,
                # The export record's own time when there is one, so the map
                # asserts nothing the signed records do not.
                "exported": included[export_index].time if export_index is not None else utc_now(),
                "software": f"evidence-chain {__version__}",
                "checkpoint": {"size": cp.size, "path": checkpoint_path(cp.size)},
                "export_record": export_index,
                "records": records_meta,
                "exhibits": exhibits,
                "checkpoints": [{"size": s, "path": checkpoint_path(s)} for s in sizes],
                "consistency": cons_meta,
                "keys": keys_meta,
                "anchors": anchor_entries,
                "tsa_roots": roots_meta,
            }
            w.add_bytes(CASE_JSON, case_map_bytes(case_json))
            created = utc_now()[:19] + "Z"
            dp = _datapackage(case_id, w.resources, _case_title(case_id, case_recs), created)
            w.add_bytes(DATAPACKAGE, dp, listed=False)
            w.add_bytes(DATAPACKAGE_DIGEST, datapackage_digest(dp, _wacz_signed(wacz_key, dp, created)), listed=False)
            w.close()
            f.truncate()  # drop what is left of the reservation
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # mkstemp made it 0600
        os.replace(tmp, out_path)
        _fsync_dir(out_path.parent)
    except BaseException as e:
        if w is not None:
            w.abort()
        tmp.unlink(missing_ok=True)
        if export_index is not None and isinstance(e, Exception):
            # An append-only log cannot take the record back: say so, with its index.
            why = (e.strerror or str(e)) if isinstance(e, OSError) else str(e)
            raise EnvironmentProblem(f"writing the case file {out_path} failed after export record {export_index} "
                                     f"was appended (that export did not happen): {why}") from None
        if isinstance(e, OSError):
            raise EnvironmentProblem(f"writing the case file {out_path} failed: {e.strerror or e}") from None
        raise
    finally:
        workdir.cleanup()
    return ExportSummary(
        out_path, case_id, len(exhibits), len(included), len(w.resources) + 2,
        sum(r.size for r in w.resources), cp.size, export_index, len(anchor_recs),
    )


def _check_target(out_path: Path) -> None:
    """Refuse an output path that cannot become the case file, before anything is appended."""
    if out_path.is_dir():
        raise UsageError(f"cannot write the case file {out_path}: it is a directory")
    if out_path.exists() and not out_path.is_file():
        raise UsageError(f"cannot write the case file {out_path}: it exists and is not a regular file")
    fd, probe = _temp_beside(out_path)
    os.close(fd)
    probe.unlink()


def _check_can_sign(ledger: Any) -> None:
    """The export record is useless without a checkpoint over it: both need the log key, so check first."""

    if vkey_for(ledger.origin, ledger.key.public) not in ledger.config.trusted_vkeys:
        raise UsageError("this home signs with a writer key; a case file needs a checkpoint signed by the "
                         "log's key: export on the log's home")


def _tail_estimate(included: dict[int, Record], bound: dict[str, Any], exhibits: list[dict[str, Any]],
                   anchors: list[dict[str, Any]]) -> int:
    """Generous bound on the bytes written after the export record (ZIP headers included)."""

    n = len(included) + 1
    proof = 64 * 46 + 4096  # at most 63 base64 hashes, plus the note
    listing = n * 90 + len(json.dumps(bound)) + 1024
    maps = len(json.dumps(exhibits)) + len(json.dumps(anchors)) + n * 200 + 8192
    per_entry = 400  # local header + central directory entry + data descriptor, with ZIP64 extras
    entries = len(bound) + 3 * n + 16
    return 2 * (n * proof + listing * 2 + maps + len(bound) * 200 + entries * per_entry) + (1 << 20)


def _reserve(f: BinaryIO, start: int, size: int) -> None:
    """Allocate disk blocks for the tail; ENOSPC here is before the append, where it is harmless."""
    if hasattr(os, "posix_fallocate"):
        try:
            os.posix_fallocate(f.fileno(), start, size)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise
            # Filesystems without fallocate (EOPNOTSUPP) still work, without the guarantee.


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot fsync a directory; the rename itself is done
    finally:
        os.close(fd)


def _parse(raw: bytes, index: int) -> Record:

    return parse_record(raw, expect_index=index)


def _warc_filename(store: Any, sha: str) -> str | None:
    """The WARC-Filename of the WARC's leading warcinfo record, if it is one capture writes (else None)."""
    try:
        with store.open(sha) as f:
            for rec in ArchiveIterator(f):  # reads the first record's headers only
                name = rec.rec_headers.get_header("WARC-Filename") if rec.rec_type == "warcinfo" else None
                return name if isinstance(name, str) and WARC_NAME.fullmatch(name) else None
    except (ArchiveLoadFailed, OSError, ValueError, EOFError):
        return None
    return None


def _is_gzip(store: Any, sha: str) -> bool:
    with store.open(sha) as f:
        return bool(f.read(2) == b"\x1f\x8b")


def _log_vkeys(ledger: Any, included: dict[int, Record]) -> list[tuple[str, str]]:
    """(key id, vkey) of every log key the bundle's records introduce (nothing else: the verifier rejects others)."""




    out: dict[str, str] = {}
    for r in sorted(included.values(), key=lambda r: r.index):
        b64 = r.payload.get("public_key") if r.kind == "log-init" else (
            r.payload.get("new_public_key") if r.kind == "key-rotation" else None)
        if isinstance(b64, str):
            raw = base64.b64decode(b64)
            out[key_id_for(raw)] = vkey_for(ledger.origin, Ed25519PublicKey.from_public_bytes(raw))
    return sorted(out.items())


def _temp_beside(out_path: Path) -> tuple[int, Path]:
    """A temporary file next to ``out_path`` (so the final rename is atomic)."""
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".tmp")
    except OSError as e:
        raise UsageError(f"cannot write the case file {out_path}: {e.strerror or e}") from None
    return fd, Path(name)


def _introduce_wacz_key(ledger: Any, key: waczsign.WaczKey | None, included: dict[int, Record], w: _ZipWriter) -> None:
    """Append the ``wacz-key`` record of ``key`` on its first use, just before the export record that names it.

    Two appends, not one: the export record names the key record's leaf. If
    the second fails, the key stays introduced and the next export uses it.
    """
    if key is None or any(r.kind == waczsign.KEY_KIND and r.payload.get("key_id") == key.key_id
                          for r in included.values()):
        return
    rec = ledger.append(waczsign.KEY_KIND, waczsign.key_record_payload(key, ledger.origin))
    included[rec.index] = rec
    w.add_bytes(record_path(rec.index), rec.raw)


def _wacz_signed(key: waczsign.WaczKey | None, dp: bytes, created: str) -> dict[str, str] | None:
    return None if key is None else waczsign.sign_datapackage(key, dp, created, f"evidence-chain {__version__}")


def _case_title(case_id: str, case_recs: Sequence[Record]) -> str:
    """What ReplayWeb.page shows as the archive's name: the case id, then its cause and party when set."""
    info = latest_case_info(case_recs, case_id)
    parts = [f"Case {case_id}"]
    if info is not None:
        parts += [p for p in (info.cause, info.party) if p]
    return " — ".join(parts)


def _pages_jsonl(case_id: str, pages: list[dict[str, Any]]) -> bytes:

    lines = [{"format": "json-pages-1.0", "id": "pages", "title": f"Case {case_id}"}, *pages]
    return "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in lines).encode("utf-8")


def _datapackage(case_id: str, resources: list[_Resource], title: str, created: str) -> bytes:
    """``created`` is also ``signedData.created`` (py-wacz refuses a signature whose time differs)."""
    obj = {
        "profile": "data-package",
        "resources": [
            {"name": r.path, "path": r.path, "hash": f"sha256:{r.sha256}", "bytes": r.size} for r in resources
        ],
        "wacz_version": WACZ_VERSION,
        "software": f"evidence-chain {__version__}",
        "created": created,
        "title": title,
        # ReplayWeb.page names the archive from metadata.title.
        "metadata": {"title": title},
    }
    return json.dumps(obj, ensure_ascii=False, indent=1).encode("utf-8")


def _warm_index_module() -> threading.Thread:
    """Import the index writer (surt, warcio: ~0.35 s of Python) on a thread while the artifacts copy.

    Not at module level: the verifier imports this module and never writes an index.
    """
    t = threading.Thread(target=_load_index_module, name="export-import", daemon=True)
    t.start()
    return t


def _load_index_module() -> Any:
    from . import cdxj  # see _warm_index_module

    return cdxj


def _write_index(scans: list[tuple[str, WarcScan, Path]], out: Path) -> None:
    """One sorted CDXJ of all WARCs, from the scans of the copy (cdxj-indexer for a WARC the scan could not read)."""
    _load_index_module().write_index(scans, out)


# -- reading (hostile input) ----------------------------------------------------------


