"""Real cases for case-file tests: a ledger, exhibits with a warcio WARC, a PNG, a DOM.

    led = Ledger.init(tmp / "home", unencrypted=True, origin="test.example/log")
    build_case(led, tmp, "C-1", exhibits=3)
    export_case(led, "C-1", tmp / "case.wacz")

Also used by ``benchmarks/tamper.py`` and ``benchmarks/verify_throughput.py``.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path
from typing import Any

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from ledger.exhibit import ArtifactFile
from ledger.waczsign import sign_datapackage
from verify.casefile import datapackage_digest


def png_bytes(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A valid RGB PNG of one colour with a stripe (so thumbnails show something)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = []
    for y in range(height):
        c = (30, 30, 30) if (y // 8) % 6 == 0 else rgb
        rows.append(b"\x00" + bytes(c) * width)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b"")


def write_warc(path: Path, url: str, html: bytes, extra: int = 0, digest: str = "sha256") -> None:
    """A gzip-per-record WARC: warcinfo, request, response (+ an optional big resource)."""
    with open(path, "wb") as f:
        w = WARCWriter(f, gzip=True, warc_version="1.1")
        if digest != "sha1":
            from warcio.utils import Digester

            w._create_digester = lambda: Digester(digest)  # type: ignore[attr-defined]
        w.write_record(w.create_warcinfo_record(path.name, {"software": "evidence-chain tests"}))
        req = StatusAndHeaders("GET / HTTP/1.1", [("Host", url.split("/")[2])], is_http_request=True)
        w.write_record(w.create_warc_record(url, "request", http_headers=req))
        http = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(html)))], protocol="HTTP/1.1")
        w.write_record(w.create_warc_record(url, "response", payload=io.BytesIO(html), http_headers=http, length=len(html)))
        if extra:
            w.write_record(
                w.create_warc_record(url + "video.mp4", "resource", payload=_RandomStream(extra), length=extra,
                                     warc_content_type="video/mp4")
            )


class _RandomStream(io.RawIOBase):
    """Incompressible bytes, generated as read (big WARCs without big memory)."""

    def __init__(self, n: int):
        self.left = n

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = min(len(b), self.left, 1 << 20)
        b[:n] = os.urandom(n)
        self.left -= n
        return n


def make_exhibit_files(directory: Path, n: int, url: str, *, warc_extra: int = 0, shot_size: int = 200) -> list[ArtifactFile]:
    directory.mkdir(parents=True, exist_ok=True)
    # Unique per exhibit (the directory is): two exhibits never share a file's bytes.
    html = f"<html><head><title>Listing {n}</title></head><body><h1>商品 {n}</h1><p>价格 ¥{100 + n}</p><!-- {directory.name} --></body></html>".encode()
    warc = directory / "page.warc.gz"
    write_warc(warc, url, html, extra=warc_extra)
    shot = directory / "screenshot-full.png"
    tint = zlib.crc32(directory.name.encode()) % 200
    shot.write_bytes(png_bytes(shot_size, shot_size * 3 // 2, ((40 * n) % 256, 120, tint)))
    view = directory / "screenshot-viewport.png"
    view.write_bytes(png_bytes(shot_size, shot_size * 3 // 4, (200, (60 * n) % 256, tint)))
    dom = directory / "dom.html"
    dom.write_bytes(html)
    log = directory / "capture-log.jsonl"
    log.write_text(f'{{"step":"start","message":"capture of {url} into {directory.name}"}}\n', "utf-8")
    return [
        ArtifactFile("page.warc.gz", warc, "application/warc", "warc"),
        ArtifactFile("screenshot-full.png", shot, "image/png", "screenshot-full"),
        ArtifactFile("screenshot-viewport.png", view, "image/png", "screenshot-viewport"),
        ArtifactFile("dom.html", dom, "text/html; charset=utf-8", "dom"),
        ArtifactFile("capture-log.jsonl", log, "application/x-ndjson", "capture-log"),
    ]


def build_case(led: Any, work: Path, case: str, exhibits: int = 3, *, warc_extra: int = 0, shot_size: int = 200,
               other_case_between: bool = True) -> list[int]:
    """Seal ``exhibits`` exhibits of ``case`` (records of another case in between); return their indexes."""
    out = []
    for n in range(exhibits):
        url = f"http://shop.example/item/{n}"
        files = make_exhibit_files(work / f"ex-{case}-{n}", n, url, warc_extra=warc_extra, shot_size=shot_size)
        info = {
            "url": url, "final_url": url, "title": f"商品 Listing {n}", "operator": "李伟 Li Wei",
            "started": f"2026-11-22T10:0{n % 10}:00Z", "ended": f"2026-11-22T10:0{n % 10}:05Z",
        }
        ex = led.seal_exhibit(case, files, info)
        out.append(ex.index)
        led.append("custody", {"note": f"exhibit {ex.index} copied to evidence drive"}, case=case)
        if other_case_between:
            led.append("custody", {"note": "unrelated"}, case="OTHER-1")
    return out


# -- tampering -------------------------------------------------------------------------

import hashlib  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import zipfile  # noqa: E402
from dataclasses import dataclass  # noqa: E402

MUTATIONS = ("flip", "flip-raw", "delete-record", "reorder-records", "swap-artifact", "resign", "rollback",
             # forgeries with every digest and derived file recomputed (see Forger)
             "drop-exhibit-export", "drop-export", "add-listed-file", "replace-index", "forged-warc", "two-warcs-one-url",
             "older-export")


@dataclass
class Mutation:
    kind: str
    target: str  # what was damaged
    names: tuple[str, ...]  # a detection must mention one of these
    fixed_datapackage: bool


def read_zip(path: Path) -> list[tuple[zipfile.ZipInfo, bytes]]:
    with zipfile.ZipFile(path) as zf:
        return [(zi, zf.read(zi)) for zi in zf.infolist()]


def write_zip(path: Path, entries: list[tuple[zipfile.ZipInfo, bytes]], fix_datapackage: bool,
              wacz_key: Any = None) -> None:
    """Write entries back; with ``fix_datapackage`` the attacker also recomputes every digest.

    ``wacz_key`` (the exporter's own WACZ signing key) re-signs the new datapackage, as an
    honest re-export would: controls use it, forgers do not have it."""
    if fix_datapackage:
        d = dict((zi.filename, data) for zi, data in entries)
        dp = json.loads(d["datapackage.json"])
        dp["resources"] = [
            {"name": n, "path": n, "hash": "sha256:" + hashlib.sha256(data).hexdigest(), "bytes": len(data)}
            for n, data in d.items() if n not in ("datapackage.json", "datapackage-digest.json")
        ]
        raw = json.dumps(dp, indent=1).encode()
        dig = datapackage_digest(raw)  # the attacker knows the exact form, but holds no WACZ signing key
        if wacz_key is not None:
            dig = datapackage_digest(raw, sign_datapackage(wacz_key, raw, dp["created"], "evidence-chain tests"))
        old = json.loads(d["datapackage.json"])["resources"]
        if wacz_key is None and sorted(map(json.dumps, old)) == sorted(map(json.dumps, dp["resources"])):
            # Nothing it lists changed: the forger keeps the signed datapackage and its signedData.
            raw, dig = d["datapackage.json"], d["datapackage-digest.json"]
        entries = [(zi, raw if zi.filename == "datapackage.json" else dig if zi.filename == "datapackage-digest.json" else data)
                   for zi, data in entries]
    with zipfile.ZipFile(path, "w") as zf:
        for zi, data in entries:
            zf.writestr(zi, data)


def mutate(src: Path, dst: Path, rng: random.Random, kind: str, *, old_notes: list[str], attacker: Any = None) -> Mutation:
    """Apply one mutation of ``kind`` to the case file ``src``, writing ``dst``."""
    entries = read_zip(src)
    names = [zi.filename for zi, _ in entries]
    fix = rng.random() < 0.5
    records = sorted(n for n in names if re.fullmatch(r"evidence/record-\d+\.json", n))

    def replace(name: str, data: bytes) -> None:
        for i, (zi, _) in enumerate(entries):
            if zi.filename == name:
                entries[i] = (zi, data)

    if kind == "flip":
        zi, data = rng.choice([e for e in entries if e[1]])
        pos = rng.randrange(len(data))
        b = bytearray(data)
        b[pos] ^= 1 << rng.randrange(8)
        name = zi.filename
        fix = fix and name not in ("datapackage.json", "datapackage-digest.json")
        replace(name, bytes(b))
        write_zip(dst, entries, fix)
        return Mutation(kind, name, (name, "datapackage"), fix)
    if kind == "flip-raw":
        dst.write_bytes(src.read_bytes())
        with zipfile.ZipFile(dst) as zf:
            infos = [zi for zi in zf.infolist() if zi.compress_size]
        zi = rng.choice(infos)
        with open(dst, "r+b") as f:
            f.seek(zi.header_offset + 26)
            n, m = struct.unpack("<HH", f.read(4))
            pos = zi.header_offset + 30 + n + m + rng.randrange(zi.compress_size)
            f.seek(pos)
            c = f.read(1)[0]
            f.seek(pos)
            f.write(bytes([c ^ (1 << rng.randrange(8))]))
        return Mutation(kind, zi.filename, (zi.filename, "datapackage"), False)
    if kind == "delete-record":
        name = rng.choice(records)
        idx = name.split("-")[1].split(".")[0]
        entries = [e for e in entries if e[0].filename != name]
        write_zip(dst, entries, fix)
        return Mutation(kind, name, (name, f"record {idx}", f"record-{idx}"), fix)
    if kind == "reorder-records":
        a, b = rng.sample(records, 2)
        da, db = next(d for zi, d in entries if zi.filename == a), next(d for zi, d in entries if zi.filename == b)
        replace(a, db)
        replace(b, da)
        write_zip(dst, entries, fix)
        return Mutation(kind, f"{a}<->{b}", (a, b), fix)
    if kind == "swap-artifact":
        # Same role in two exhibits, e.g. exhibit-1-dom.html <-> exhibit-4-dom.html.
        arts = [n for n in names if re.fullmatch(r"(archive/\d+-|evidence/exhibit-\d+-).+", n)]
        groups: dict[str, list[str]] = {}
        for n in arts:
            groups.setdefault(re.sub(r"\d+-", "N-", n, count=1), []).append(n)
        content = {zi.filename: d for zi, d in entries}
        # Only pairs that differ: swapping equal bytes changes nothing.
        pairs = [(a, b) for g in groups.values() for a in g for b in g if a < b and content[a] != content[b]]
        a, b = rng.choice(pairs)
        da, db = content[a], content[b]
        replace(a, db)
        replace(b, da)
        write_zip(dst, entries, fix)
        return Mutation(kind, f"{a}<->{b}", (a, b), fix)
    if kind == "resign":
        # The attacker's own key replaces the log key: checkpoint re-signed, vkeys replaced.
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        from ledger.note import parse_note, sign_note, vkey_for

        key = attacker or Ed25519PrivateKey.generate()
        notes = [n for n in names if n.startswith("evidence/checkpoint-")]
        cp_name = notes[-1]
        old = next(d for zi, d in entries if zi.filename == cp_name).decode()
        text, _ = parse_note(old)
        origin = text.split("\n", 1)[0]
        new = sign_note(text, origin, key)
        for zi, data in list(entries):
            n = zi.filename
            if n.startswith("evidence/checkpoint-") or n.endswith(".tlog-proof"):
                replace(n, data.decode().replace(old, new).encode())
            elif n.endswith(".vkey"):
                replace(n, (vkey_for(origin, key.public_key()) + "\n").encode())
        write_zip(dst, entries, True)
        return Mutation(kind, cp_name, ("checkpoint",), True)
    if kind == "rollback":
        # An older genuine checkpoint (and proofs against it) put in place of the case checkpoint.
        notes = [n for n in names if n.startswith("evidence/checkpoint-")]
        cp_name = notes[-1]
        cur = next(d for zi, d in entries if zi.filename == cp_name).decode()
        older = rng.choice(old_notes)
        for zi, data in list(entries):
            n = zi.filename
            if n == cp_name or n.endswith(".tlog-proof"):
                replace(n, data.decode().replace(cur, older).encode())
        write_zip(dst, entries, True)
        return Mutation(kind, cp_name, ("checkpoint", ".tlog-proof"), True)
    if kind in FORGERIES:
        return FORGERIES[kind](src, dst, rng)
    raise ValueError(kind)


def _export_index(f: Forger) -> int:
    return int(f.case["export_record"])


def _forge_drop_exhibit_export(src: Path, dst: Path, rng: random.Random) -> Mutation:
    f = Forger(src)
    ex = rng.choice([x["index"] for x in f.case["exhibits"]])
    f.drop_record(ex)
    f.drop_record(_export_index(f))
    f.write(dst)
    return Mutation("drop-exhibit-export", f"exhibit {ex} and the export record",
                    ("case-export", "export record", f"record-{ex}.", f"record {ex} "), True)


def _forge_drop_export(src: Path, dst: Path, rng: random.Random) -> Mutation:
    f = Forger(src)
    f.drop_record(_export_index(f), everywhere=rng.random() < 0.5)
    f.write(dst)
    return Mutation("drop-export", "the export record", ("case-export", "export record", "record-", "record "), True)


def _forge_add_listed_file(src: Path, dst: Path, rng: random.Random) -> Mutation:
    f = Forger(src)
    ex = rng.choice([x["index"] for x in f.case["exhibits"]])
    folder = rng.choice(["archive/", f"archive/{ex}-", "evidence/", f"evidence/exhibit-{ex}-", "indexes/", "pages/", ""])
    ext = rng.choice([".warc.gz", ".png", ".json", ".cdxj", ".jsonl", ".txt"])
    name = f"{folder}x{rng.randrange(10**6)}{ext}"
    f.put(name, forged_warc("http://shop.example/item/1", b"<p>1</p>") if ext == ".warc.gz" else png_bytes(8, 8, (1, 2, 3)))
    f.write(dst)
    return Mutation("add-listed-file", name, (name,), True)


def _forge_replace_index(src: Path, dst: Path, rng: random.Random) -> Mutation:
    f = Forger(src)
    lines = f.cdxj().splitlines(keepends=True)
    how = rng.choice(["drop-line", "offset", "other-file"])
    i = rng.randrange(len(lines))
    if how == "drop-line":
        del lines[i]
    elif how == "offset":
        lines[i] = lines[i].replace(b'"offset": "', b'"offset": "9', 1)
    else:
        lines[i] = re.sub(rb'"filename": "[^"]+"', b'"filename": "' + rng.choice(f.warcs()).split("/", 1)[1].encode() + b'"', lines[i])
    f.index_override = b"".join(lines)
    if f.index_override == f.cdxj():
        f.index_override += b"\n"
    f.write(dst)
    return Mutation("replace-index", f"indexes/index.cdx ({how})", ("indexes/index.cdx",), True)


def _forge_warc(src: Path, dst: Path, rng: random.Random, *, same_url: bool = False) -> Mutation:
    f = Forger(src)
    ex = rng.choice(f.case["exhibits"])
    url = next(p["url"] for p in f.pages if p.get("id") == f"exhibit-{ex['index']}")
    name = f"archive/{ex['index']}-2-page.warc.gz" if same_url else f"archive/{rng.randrange(100, 999)}-page.warc.gz"
    f.put(name, forged_warc(url, "<html><body><p>价格 ¥1</p></body></html>".encode()))
    names: tuple[str, ...] = (name, "indexes/index.cdx")
    if not same_url and rng.random() < 0.5:  # and the forger drops the export record that would name the rest
        f.drop_record(_export_index(f))
        names += ("case-export", "export record")
    f.write(dst)
    return Mutation("two-warcs-one-url" if same_url else "forged-warc", name, names, True)


def _forge_older_export(src: Path, dst: Path, rng: random.Random) -> Mutation:
    f = Forger(src)
    newest = _export_index(f)
    older = [i for i in f.records() if i != newest and f.record(i)["kind"] == "case-export"]
    if not older:
        raise ValueError("the case file holds no older export record")
    e = rng.choice(older)
    f.drop_record(newest)
    f.case["export_record"] = e
    f.case["exported"] = f.record(e)["time"]
    f.write(dst)
    return Mutation("older-export", f"export record {newest} -> {e}", (f"export record {e}", "case-export", "record-"), True)


FORGERIES = {
    "drop-exhibit-export": _forge_drop_exhibit_export,
    "drop-export": _forge_drop_export,
    "add-listed-file": _forge_add_listed_file,
    "replace-index": _forge_replace_index,
    "forged-warc": _forge_warc,
    "two-warcs-one-url": lambda src, dst, rng: _forge_warc(src, dst, rng, same_url=True),
    "older-export": _forge_older_export,
}


def detected(path: Path, m: Mutation, trust: list[str]) -> tuple[bool, bool, str]:
    """(detected, named the damaged item, message) for one mutated case file."""
    from ledger.errors import CaseFileError
    from verify.case import verify_case

    try:
        r = verify_case(path, trust=trust)
    except CaseFileError as e:
        msg = str(e)
        return True, any(n in msg for n in m.names) or "ZIP" in msg, msg
    if r.ok:
        return False, False, "verified as valid"
    f = r.first_failure
    assert f is not None
    msg = f"{f.where}: {f.detail}"
    return True, any(n in msg for n in m.names), msg


# -- a forger with the project's own tools ------------------------------------------------

class Forger:
    """Rewrites a case file as a careful forger would: every digest and derived file recomputed.

    ``Forger(src).write(dst)`` with no change in between re-serialises everything
    (case.json via ``case_map_bytes``, the page list, the CDXJ index regenerated
    from the WARCs, datapackage.json and its digest) and must verify VALID: that
    is the control every forgery test runs first.
    """

    def __init__(self, src: Path):
        self.entries: dict[str, tuple[zipfile.ZipInfo, bytes]] = {zi.filename: (zi, d) for zi, d in read_zip(src)}
        self.case = json.loads(self.entries["evidence/case.json"][1])
        self.pages = [json.loads(line) for line in self.entries["pages/pages.jsonl"][1].splitlines()]
        self.index_override: bytes | None = None

    # what a forger edits
    def names(self) -> list[str]:
        return list(self.entries)

    def data(self, name: str) -> bytes:
        return self.entries[name][1]

    def put(self, name: str, data: bytes) -> None:
        zi = self.entries[name][0] if name in self.entries else zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
        if name not in self.entries:
            zi.compress_type = zipfile.ZIP_STORED if name.endswith((".gz", ".png")) else zipfile.ZIP_DEFLATED
        self.entries[name] = (zi, data)

    def drop(self, name: str) -> None:
        self.entries.pop(name, None)

    def records(self) -> list[int]:
        return sorted(int(m.group(1)) for n in self.entries if (m := re.fullmatch(r"evidence/record-(\d+)\.json", n)))

    def record(self, index: int) -> dict[str, Any]:
        return json.loads(self.data(f"evidence/record-{index}.json"))

    def drop_record(self, index: int, *, everywhere: bool = True) -> None:
        """Remove a record and its proof; with ``everywhere`` also every mention of it and, for an exhibit, its files."""
        self.drop(f"evidence/record-{index}.json")
        self.drop(f"evidence/record-{index}.tlog-proof")
        if not everywhere:
            return
        self.case["records"] = [r for r in self.case["records"] if r["index"] != index]
        if self.case["export_record"] == index:
            self.case["export_record"] = None
        for ex in [x for x in self.case["exhibits"] if x["index"] == index]:
            self.drop(ex["manifest"])
            for path in ex["artifacts"].values():
                self.drop(path)
            self.case["exhibits"].remove(ex)
            self.pages = [p for p in self.pages if p.get("id") != f"exhibit-{index}"]
        for a in [x for x in self.case["anchors"] if x["index"] == index]:
            for path in a["blobs"].values():
                self.drop(path)
            self.case["anchors"].remove(a)

    def warcs(self) -> list[str]:
        return sorted(n for n in self.entries if n.startswith("archive/") and n.endswith((".warc.gz", ".warc")))

    def cdxj(self) -> bytes:
        """The index cdxj-indexer writes for the WARCs now in the bundle (as export does)."""
        import tempfile

        from cdxj_indexer.main import CDXJIndexer

        with tempfile.TemporaryDirectory() as td:
            inputs = []
            for n in self.warcs():
                p = Path(td) / n.split("/", 1)[1]
                p.write_bytes(self.data(n))
                inputs.append(str(p))
            if not inputs:
                return b""
            out = Path(td) / "index.cdxj"
            with open(out, "w", encoding="utf-8") as fh:
                CDXJIndexer(output=fh, inputs=inputs, sort=True).process_all()
            return out.read_bytes()

    def write(self, dst: Path, *, fix_datapackage: bool = True) -> Path:
        from verify.casefile import case_map_bytes

        self.put("evidence/case.json", case_map_bytes(self.case))
        self.put("pages/pages.jsonl", "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in self.pages).encode("utf-8"))
        self.put("indexes/index.cdx", self.index_override if self.index_override is not None else self.cdxj())
        write_zip(dst, list(self.entries.values()), fix_datapackage)
        return dst


def forged_warc(url: str, html: bytes) -> bytes:
    """A WARC with correct block and payload digests for ``html`` at ``url``."""
    import tempfile

    with tempfile.TemporaryDirectory() as td:
        p = Path(td) / "forged.warc.gz"
        write_warc(p, url, html)
        return p.read_bytes()
