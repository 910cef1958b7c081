"""A body stored once: a WARC revisit record names the download artifact, and the verifier binds the two.

The exhibits here are sealed by the real ledger with the real capture WARC
writer (``capture.warc.WarcFile``), so a forger holding the log key, or a
capture that went wrong, can make a WARC whose reference does not match the
artifact while every digest and signature is right. Each refusal has a
control: the same path with the matching artifact verifies VALID.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import random
import sys
import time
import zipfile
from pathlib import Path

import pytest
from warcio.warcwriter import WARCWriter

sys.path.insert(0, str(Path(__file__).resolve().parent))

from case_fixtures import png_bytes, read_zip, write_zip  # noqa: E402

from capture.network import Hop  # noqa: E402
from capture.warc import PayloadRef, WarcFile  # noqa: E402
from evidence.case import export_case  # noqa: E402
from ledger.exhibit import ArtifactFile  # noqa: E402
from verify.case import verify_case  # noqa: E402
from verify.warc import check_warc_bytes  # noqa: E402

URL = "http://shop.example/files/price-list.bin"
BODY = random.Random(18).randbytes(300_000)
NAME = "download-0-price-list.bin"


def _hop() -> Hop:
    return Hop("1", 0, URL, "GET", "Document", None, None, time.time(), {"Host": "shop.example"},
               response={"status": 200, "statusText": "OK",
                         "headers": {"Content-Type": "application/octet-stream", "Content-Length": str(len(BODY)),
                                     "Content-Disposition": 'attachment; filename="price-list.bin"'}})


def _exhibit(d: Path, *, stored: bytes, ref: PayloadRef | None = None, exchange: bool = True) -> list[ArtifactFile]:
    """The WARC names the download by ``ref`` (default: the true digest of BODY); the artifact holds ``stored``."""
    d.mkdir(parents=True)
    ref = ref or PayloadRef(NAME, hashlib.sha256(BODY).hexdigest(), len(BODY))
    warc = WarcFile(d / "page.warc.gz")
    warc.warcinfo({"software": "evidence-chain tests"})
    if exchange:
        warc.exchange(_hop(), main=True, stored_as=ref)
    else:
        warc.payload_reference(f"urn:evidence-chain:download:{URL}", ref, "2026-12-02T01:00:00Z")
    warc.close()
    (d / NAME).write_bytes(stored)
    (d / "shot.png").write_bytes(png_bytes(8, 8, (1, 2, 3)))
    return [ArtifactFile("page.warc.gz", d / "page.warc.gz", "application/warc", "warc"),
            ArtifactFile(NAME, d / NAME, "application/octet-stream", "download"),
            ArtifactFile("screenshot-full.png", d / "shot.png", "image/png", "screenshot-full")]


def _case(home, tmp_path: Path, **kw) -> Path:
    files = _exhibit(tmp_path / "ex", **kw)
    home.seal_exhibit("C-ONCE", files, {"url": URL, "final_url": URL, "operator": "test"})
    out = tmp_path / "case.wacz"
    export_case(home, "C-ONCE", out)
    return out


def _occurrences(case: Path, needle: bytes) -> int:
    """How often ``needle`` occurs in the case file's decoded content (ZIP members inflated, WARC gzip members too)."""
    n = 0
    with zipfile.ZipFile(case) as zf:
        for name in zf.namelist():
            data = zf.read(name)
            n += data.count(needle)
            if name.endswith(".warc.gz"):
                n += gzip.decompress(data).count(needle)
    return n


def test_control_a_download_stored_by_reference_verifies_and_is_stored_once(home, tmp_path):
    out = _case(home, tmp_path, stored=BODY)
    res = verify_case(out, trust=home.config.trusted_vkeys)
    assert res.ok and res.trusted, res.first_failure
    bound = [c for c in res.checks if c.name == "warc-payload-artifact"]
    assert len(bound) == 1 and bound[0].ok and NAME in bound[0].detail
    assert res.exhibits[0]["proven"]
    assert _occurrences(out, BODY[100_000:104_096]) == 1  # the artifact; the WARC holds headers only
    with zipfile.ZipFile(out) as zf:
        warc = next(n for n in zf.namelist() if n.startswith("archive/"))
        summary = check_warc_bytes(zf.read(warc))
        assert summary.ok and len(summary.claims) == 1
        assert summary.claims[0].digest == hashlib.sha256(BODY).digest()
        assert zf.getinfo(warc).file_size < 4096


def test_control_a_download_without_exchange_is_referenced_too(home, tmp_path):
    out = _case(home, tmp_path, stored=BODY, exchange=False)
    res = verify_case(out, trust=home.config.trusted_vkeys)
    assert res.ok, res.first_failure
    assert [c.ok for c in res.checks if c.name == "warc-payload-artifact"] == [True]


@pytest.mark.parametrize("what", ["other-bytes", "other-name", "other-length"])
def test_warc_reference_that_does_not_match_the_artifact_is_refused(home, tmp_path, what):
    true = PayloadRef(NAME, hashlib.sha256(BODY).hexdigest(), len(BODY))
    stored = BODY
    ref = true
    if what == "other-bytes":  # the artifact sealed is not the body the WARC names
        stored = BODY[:-1] + bytes([BODY[-1] ^ 1])
    elif what == "other-name":
        ref = PayloadRef("download-1-other.bin", true.sha256, true.size)
    else:
        ref = PayloadRef(NAME, true.sha256, true.size + 1)
    out = _case(home, tmp_path, stored=stored, ref=ref)
    res = verify_case(out, trust=home.config.trusted_vkeys)
    assert not res.ok and res.exit_code() == 1
    f = res.first_failure
    assert f.name == "warc-payload-artifact" and f.where.startswith("archive/"), f
    assert not res.exhibits[0]["proven"]


def test_download_bytes_swapped_after_export_are_refused(home, tmp_path):
    out = _case(home, tmp_path, stored=BODY)
    trust = home.config.trusted_vkeys
    entries = read_zip(out)
    path = next(zi.filename for zi, _ in entries if zi.filename.endswith(NAME))
    write_zip(tmp_path / "control.wacz", entries, fix_datapackage=False)  # rewritten, nothing changed
    assert verify_case(tmp_path / "control.wacz", trust=trust).ok
    swapped = [(zi, BODY[::-1] if zi.filename == path else data) for zi, data in entries]
    write_zip(tmp_path / "swapped.wacz", swapped, fix_datapackage=False)
    res = verify_case(tmp_path / "swapped.wacz", trust=trust)
    assert not res.ok and res.exit_code() == 1
    assert any(c.name == "artifact-digest" and not c.ok and c.where == path for c in res.checks), res.first_failure
    assert not res.exhibits[0]["proven"]


def test_revisit_claim_without_payload_digest_is_malformed():
    # Control: the same record with its digest parses, with its claim.
    def warc(with_digest: bool) -> bytes:
        buf = io.BytesIO()
        w = WARCWriter(buf, gzip=True, warc_version="1.1")
        rec = w.create_warc_record(URL, "revisit", warc_headers_dict={"Evidence-Payload-Artifact": NAME})
        if with_digest:
            rec.rec_headers.add_header("WARC-Payload-Digest",
                                       "sha256:" + base64.b32encode(hashlib.sha256(BODY).digest()).decode())
        w.write_record(rec)
        return buf.getvalue()

    assert check_warc_bytes(warc(True)).ok and len(check_warc_bytes(warc(True)).claims) == 1
    bad = check_warc_bytes(warc(False))
    assert not bad.ok and "no WARC-Payload-Digest" in bad.errors[0]


# -- one read, several lanes: the pipelined checker finds what the serial one finds ---------------


def _plain_warc(body: bytes, *, flip_at: int | None = None) -> bytes:
    """An uncompressed WARC with a large HTTP response and a large resource; optionally one body byte flipped afterwards."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.utils import Digester

    buf = io.BytesIO()
    w = WARCWriter(buf, gzip=False, warc_version="1.1")
    w._create_digester = lambda: Digester("sha256")  # type: ignore[attr-defined]
    http = StatusAndHeaders("200 OK", [("Content-Type", "video/mp4"), ("Content-Length", str(len(body)))], protocol="HTTP/1.1")
    w.write_record(w.create_warc_record(URL, "response", payload=io.BytesIO(body), length=len(body), http_headers=http))
    w.write_record(w.create_warc_record(URL + "#shot", "resource", payload=io.BytesIO(body[::-1]), length=len(body),
                                        warc_content_type="image/png"))
    raw = bytearray(buf.getvalue())
    if flip_at is not None:
        raw[raw.index(body[:64]) + flip_at] ^= 0x01
    return bytes(raw)


@pytest.mark.parametrize("lanes", [False, True])
def test_pipelined_checker_matches_serial_and_catches_a_flipped_byte(lanes):
    from concurrent.futures import ThreadPoolExecutor

    from verify.warc import WarcChecker

    body = random.Random(7).randbytes(3 << 20)

    def check(data: bytes):
        with ThreadPoolExecutor(3) as pool:
            c = WarcChecker(pool if lanes else None)
            for i in range(0, len(data), 1 << 20):
                c.feed(data[i:i + (1 << 20)])
            return c.close()

    good = check(_plain_warc(body))  # control
    assert good.ok and good.block_checked == 2 and good.payload_checked == 2, good.errors
    bad = check(_plain_warc(body, flip_at=(2 << 20) + 5))
    assert not bad.ok and bad.block_checked == 1
    assert any("record 1" in e and "Block-Digest" in e for e in bad.errors), bad.errors
    assert any("record 1" in e and "Payload-Digest" in e for e in bad.errors), bad.errors


def test_large_warc_verifies_through_the_lanes_and_a_changed_byte_is_named(home, tmp_path):
    from case_fixtures import build_case

    from verify.case import SIDE_HASH_MIN

    build_case(home, tmp_path / "w", "C-BIG", exhibits=1, warc_extra=SIDE_HASH_MIN + (1 << 20))
    out = tmp_path / "case.wacz"
    export_case(home, "C-BIG", out)
    trust = home.config.trusted_vkeys
    res = verify_case(out, trust=trust)  # control
    assert res.ok, res.first_failure
    warc = next(n for n in res.files if n.startswith("archive/"))
    assert res.files[warc]["bytes"] > SIDE_HASH_MIN
    entries = read_zip(out)
    changed = []
    for zi, data in entries:
        if zi.filename == warc:
            b = bytearray(data)
            b[len(b) // 2] ^= 0x40
            data = bytes(b)
        changed.append((zi, data))
    write_zip(tmp_path / "flip.wacz", changed, fix_datapackage=True)
    res = verify_case(tmp_path / "flip.wacz", trust=trust)
    assert not res.ok and res.exit_code() == 1
    assert any(not c.ok and c.where == warc for c in res.checks), res.first_failure


@pytest.mark.parametrize("gz", [True, False])
def test_index_from_the_copy_pass_is_what_cdxj_indexer_writes(tmp_path, gz):
    """gzip: built from the scan; plain .warc: the scan declines and cdxj-indexer indexes it. Same lines either way."""
    from cdxj_indexer.main import CDXJIndexer

    from evidence.cdxj import write_index
    from ledger.warcscan import WarcScan

    name = "1-page.warc.gz" if gz else "1-page.warc"
    path = tmp_path / name
    if gz:
        from case_fixtures import write_warc

        write_warc(path, "http://shop.example/item/1", "<p>商品</p>".encode(), extra=300_000)
    else:
        path.write_bytes(_plain_warc(BODY))
    scan = WarcScan()
    data = path.read_bytes()
    for i in range(0, len(data), 100_000):
        scan.feed(data[i:i + 100_000])
    scan.close()
    assert scan.ok is gz
    (tmp_path / "work").mkdir()
    write_index([(name, scan, path)], tmp_path / "work" / "index.cdxj")
    ours = (tmp_path / "work" / "index.cdxj").read_text()
    with open(tmp_path / "theirs.cdxj", "w", encoding="utf-8") as fh:
        CDXJIndexer(output=fh, inputs=[str(path)], sort=True).process_all()
    assert ours == (tmp_path / "theirs.cdxj").read_text() and ours.count("\n") >= 2
