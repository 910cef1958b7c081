"""Hostile case files: each gives a clean exit 1 or 2 with a clear message, bounded, never extracts."""

from __future__ import annotations

import gzip
import os
import resource
import stat
import sys
import time
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))

from case_fixtures import build_case, read_zip, write_zip  # noqa: E402

from evidence.case import export_case  # noqa: E402
from ledger.errors import CaseFileError  # noqa: E402
from ledger.log import Ledger  # noqa: E402
from verify.case import verify_case  # noqa: E402
from verify.casefile import CaseReader  # noqa: E402


@pytest.fixture(scope="module")
def genuine(tmp_path_factory):
    """One small genuine case file (2 exhibits) and the log key that signed it."""
    d = tmp_path_factory.mktemp("genuine")
    led = Ledger.init(d / "home", unencrypted=True, origin="test.example/log")
    build_case(led, d / "w", "C-H", exhibits=2, other_case_between=False)
    out = d / "case.wacz"
    export_case(led, "C-H", out)
    trust = list(led.config.trusted_vkeys)
    led.close()
    return out, trust


def outcome(path: Path, trust: list[str]) -> tuple[int, str]:
    """(exit code, message) as `evidence verify` would give them."""
    try:
        res = verify_case(path, trust=trust)
    except CaseFileError as e:
        return 2, str(e)
    f = res.first_failure
    return (0, "") if f is None else (1, f"{f.where}: {f.detail}")


def zip_with(path: Path, entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for zi, data in entries:
            zf.writestr(zi, data)
    return path


@pytest.mark.parametrize("name,why", [
    ("../evil.txt", "'..'"),
    ("evidence/../../evil.txt", "'..'"),
    ("/etc/evil", "absolute path"),
    ("C:/evil", "absolute path"),
    ("evidence\\..\\evil", "backslash"),
])
def test_escaping_names_are_refused_and_nothing_is_written(genuine, tmp_path, monkeypatch, name, why):
    src, trust = genuine
    entries: list = read_zip(src)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    bad = zip_with(tmp_path / "slip.wacz", [*entries, (name, b"pwned")])
    code, msg = outcome(bad, trust)
    assert code == 2 and "unsafe name" in msg and why in msg
    assert list(work.iterdir()) == [] and not (tmp_path / "evil.txt").exists()


def test_symlink_entry_is_refused(genuine, tmp_path):
    src, trust = genuine
    zi = zipfile.ZipInfo("evidence/exhibit-1-link")
    zi.create_system = 3
    zi.external_attr = (stat.S_IFLNK | 0o777) << 16
    bad = zip_with(tmp_path / "link.wacz", [*read_zip(src), (zi, b"/etc/passwd")])
    code, msg = outcome(bad, trust)
    assert code == 2 and "symbolic link" in msg


def test_duplicate_entries_are_refused(genuine, tmp_path):
    src, trust = genuine
    entries = read_zip(src)
    case_json = next(e for e in entries if e[0].filename == "evidence/case.json")
    bad = tmp_path / "dup.wacz"
    with pytest.warns(UserWarning, match="Duplicate name"):
        zip_with(bad, [*entries, case_json])
    code, msg = outcome(bad, trust)
    assert code == 2 and "appears twice" in msg


def test_zip_bomb_is_refused_before_inflating(genuine, tmp_path):
    src, trust = genuine
    bad = tmp_path / "bomb.wacz"
    with zipfile.ZipFile(bad, "w") as zf:
        for zi, data in read_zip(src):
            zf.writestr(zi, data)
        zi = zipfile.ZipInfo("evidence/exhibit-1-bomb.html")
        zi.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(zi, "w", force_zip64=True) as out:
            zero = bytes(1 << 20)
            for _ in range(512):  # 512 MiB of zeros in about half a MiB
                out.write(zero)
    assert bad.stat().st_size < 10 << 20
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    code, msg = outcome(bad, trust)
    assert code == 2 and "zip bomb" in msg
    assert time.perf_counter() - t0 < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB


def lie_about_size(path: Path, name: str, declared: int) -> None:
    """Patch the uncompressed size of ``name`` in the central directory (offset 24 of its entry)."""
    raw = bytearray(path.read_bytes())
    pos = raw.find(name.encode(), raw.find(b"PK\x01\x02"))
    cd = raw.rfind(b"PK\x01\x02", 0, pos)
    assert cd > 0
    raw[cd + 24:cd + 28] = declared.to_bytes(4, "little")
    path.write_bytes(bytes(raw))


def test_an_unexpected_liar_is_refused_without_being_read(genuine, tmp_path, monkeypatch):
    """An entry no signed statement names is refused on its name alone, lies and all."""
    src, trust = genuine
    liar = zipfile.ZipInfo("evidence/exhibit-1-liar.html")
    liar.compress_type = zipfile.ZIP_DEFLATED
    bad = zip_with(tmp_path / "liar.wacz", [*read_zip(src), (liar, bytes(900_000))])
    lie_about_size(bad, "evidence/exhibit-1-liar.html", 1000)
    read = spy_reads(monkeypatch)
    code, msg = outcome(bad, trust)
    assert code == 1 and "evidence/exhibit-1-liar.html" in msg and "refused unread" in msg
    assert "evidence/exhibit-1-liar.html" not in read


def test_an_expected_entry_inflating_past_its_declared_size_is_stopped(genuine, tmp_path):
    """A lying entry the statements do expect: its declared size is checked first, then reading stops at it."""
    src, trust = genuine
    name = "evidence/exhibit-1-dom.html"
    entries = read_zip(src)
    size = next(len(d) for zi, d in entries if zi.filename == name)
    # The forger pads the file to inflate past its true size, then declares the true size.
    padded = [(zi, d + bytes(900_000) if zi.filename == name else d) for zi, d in entries]
    bad = tmp_path / "liar.wacz"
    write_zip(bad, padded, fix_datapackage=False)
    lie_about_size(bad, name, size)
    code, msg = outcome(bad, trust)
    assert code == 2 and name in msg and "beyond its declared" in msg


def test_a_lying_zip_bomb_named_datapackage_json_is_unusable(genuine, tmp_path, monkeypatch):
    src, trust = genuine
    entries = [(zi, d) for zi, d in read_zip(src) if zi.filename != "datapackage.json"]
    dp = zipfile.ZipInfo("datapackage.json")
    dp.compress_type = zipfile.ZIP_DEFLATED
    bad = zip_with(tmp_path / "dp-bomb.wacz", [*entries, (dp, b" " * (200 << 20))])  # 200 MiB of blanks, about 200 KiB deflated
    lie_about_size(bad, "datapackage.json", 4000)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    code, msg = outcome(bad, trust)
    assert code == 2 and "datapackage.json" in msg and "beyond its declared 4000 bytes" in msg
    assert time.perf_counter() - t0 < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB: never inflated in full


class _SparseZeros:
    """A file wrapper that turns long runs of zeros into holes: a 1 GiB entry costs no disk."""

    def __init__(self, f):
        self.f = f

    def write(self, b):
        if len(b) >= 1 << 16 and not any(b):
            self.f.seek(len(b), 1)
            return len(b)
        return self.f.write(b)

    def __getattr__(self, name):
        return getattr(self.f, name)


def spy_reads(monkeypatch) -> list[str]:
    """Names of every entry the verifier starts to inflate or copy."""
    seen: list[str] = []
    real = CaseReader.iter_chunks

    def spy(self, name, *a, **k):
        seen.append(name)
        return real(self, name, *a, **k)

    monkeypatch.setattr(CaseReader, "iter_chunks", spy)
    return seen


@pytest.mark.parametrize("name", ["archive/9-page.warc.gz", "evidence/exhibit-1-huge.bin", "evidence/huge.bin"])
def test_an_unlisted_gigabyte_entry_is_refused_without_reading_it(genuine, tmp_path, monkeypatch, name):
    src, trust = genuine
    bad = tmp_path / "huge.wacz"
    with open(bad, "wb") as raw, zipfile.ZipFile(_SparseZeros(raw), "w") as zf:
        for zi, data in read_zip(src):
            zf.writestr(zi, data)
        zi = zipfile.ZipInfo(name)
        zi.compress_type = zipfile.ZIP_STORED
        with zf.open(zi, "w", force_zip64=True) as out:
            zero = bytes(1 << 20)
            for _ in range(1024):
                out.write(zero)
    assert bad.stat().st_size > 1 << 30
    read = spy_reads(monkeypatch)
    t0 = time.perf_counter()
    code, msg = outcome(bad, trust)
    assert code == 1 and name in msg, msg
    assert name not in read and time.perf_counter() - t0 < 5


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.999])
def test_truncated_zip_is_unusable(genuine, tmp_path, keep):
    src, trust = genuine
    data = src.read_bytes()
    bad = tmp_path / "cut.wacz"
    bad.write_bytes(data[: int(len(data) * keep)])
    code, msg = outcome(bad, trust)
    assert code == 2 and ("truncated" in msg or "not a readable ZIP" in msg)


def test_not_a_zip_and_missing_file(tmp_path):
    junk = tmp_path / "junk.wacz"
    junk.write_bytes(os.urandom(4096))
    assert outcome(junk, [])[0] == 2
    assert outcome(tmp_path / "nope.wacz", [])[0] == 2
    assert outcome(tmp_path, [])[0] == 2


def replace_entry(src: Path, dst: Path, name: str, transform) -> Path:
    entries = [(zi, transform(d) if zi.filename == name else d) for zi, d in read_zip(src)]
    write_zip(dst, entries, fix_datapackage=True)  # the forger recomputes every digest
    return dst


def test_huge_and_deeply_nested_json(genuine, tmp_path):
    src, trust = genuine
    deep = replace_entry(src, tmp_path / "deep.wacz", "evidence/case.json", lambda d: b"[" * 200_000 + b"]" * 200_000)
    code, msg = outcome(deep, trust)
    assert code in (1, 2) and "case.json" in msg
    big = tmp_path / "big.wacz"
    entries = [(zi, d) for zi, d in read_zip(src) if zi.filename != "evidence/case.json"]
    with zipfile.ZipFile(big, "w") as zf:
        for zi, d in entries:
            zf.writestr(zi, d)
        with zf.open(zipfile.ZipInfo("evidence/case.json"), "w", force_zip64=True) as out:
            out.write(b'{"type": "')
            chunk = os.urandom(1 << 20).hex().encode()
            for _ in range(40):  # 80 MiB of string, incompressible enough to pass the ratio check
                out.write(chunk)
            out.write(b'"}')
    code, msg = outcome(big, trust)
    assert code == 1 and "case.json" in msg
    res = verify_case(big, trust=trust)  # and it was never parsed: the size cap said no first
    assert any("limit" in c.detail and c.where == "evidence/case.json" for c in res.checks if not c.ok)


def test_malformed_warc_fails_its_record_check(genuine, tmp_path):
    src, trust = genuine
    with zipfile.ZipFile(src) as zf:
        warc = next(n for n in zf.namelist() if n.startswith("archive/"))
    junk = gzip.compress(b"WARC/1.1\r\nWARC-Type: response\r\nContent-Length: 99999\r\n\r\nshort")
    bad = replace_entry(src, tmp_path / "warc.wacz", warc, lambda d: junk)
    code, msg = outcome(bad, trust)
    assert code == 1 and warc in msg


def test_proof_with_a_hash_missing_fails_inclusion(genuine, tmp_path):
    src, trust = genuine
    name = "evidence/record-1.tlog-proof"

    def drop_hash(d: bytes) -> bytes:
        lines = d.decode().split("\n")
        # tlog-proof: "c2sp.org/tlog-proof@v1", "index N", hashes..., "", note
        i = next(n for n, line in enumerate(lines) if line.startswith("index "))
        del lines[i + 1]
        return "\n".join(lines).encode()

    code, msg = outcome(replace_entry(src, tmp_path / "proof.wacz", name, drop_hash), trust)
    assert code == 1 and name in msg


@pytest.mark.parametrize("extra", ["garbage", "many", "unknown"])
def test_checkpoint_with_extra_signature_lines(genuine, tmp_path, extra):
    src, trust = genuine
    with zipfile.ZipFile(src) as zf:
        cp = next(n for n in zf.namelist() if n.startswith("evidence/checkpoint-"))

    def add_lines(d: bytes) -> bytes:
        if extra == "garbage":
            return d + "— not a signature line at all\n".encode()
        import base64

        line = "— other.example/x " + base64.b64encode(os.urandom(4 + 64)).decode() + "\n"
        return d + (line * (120 if extra == "many" else 1)).encode()

    entries = [(zi, add_lines(d) if zi.filename == cp else d) for zi, d in read_zip(src)]
    # Without forging the digests: the checkpoint file no longer matches datapackage.json.
    plain = tmp_path / "plain.wacz"
    write_zip(plain, entries, fix_datapackage=False)
    code, msg = outcome(plain, trust)
    assert code == 1 and cp in msg
    forged = tmp_path / "forged.wacz"
    write_zip(forged, entries, fix_datapackage=True)
    code, msg = outcome(forged, trust)
    # An unknown signer's line is ignored by signed-note rules, but the proofs
    # no longer cite the same checkpoint bytes, so the bundle still fails.
    assert code == 1, msg
    if extra == "many":
        assert "signatures" in msg


# -- fuzzing the bundle parser ------------------------------------------------------------

@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_bundles_never_crash_the_verifier(genuine, tmp_path, data):
    src, trust = genuine
    raw = bytearray(src.read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        op = data.draw(st.sampled_from(["set", "insert", "delete", "truncate"]))
        pos = data.draw(st.integers(0, len(raw) - 1))
        if op == "set":
            raw[pos] = data.draw(st.integers(0, 255))
        elif op == "insert":
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del raw[pos:pos + data.draw(st.integers(1, 64))]
        elif len(raw) > 64:
            del raw[pos:]
        if len(raw) < 64:
            break
    bad = tmp_path / "fuzz.wacz"
    bad.write_bytes(bytes(raw))
    try:
        res = verify_case(bad, trust=trust)
    except CaseFileError as e:
        assert str(e) and "\n" not in str(e)
        return
    # Whatever survived the container checks is judged check by check.
    assert all(c.detail is not None for c in res.checks)
    if bytes(raw) != src.read_bytes():
        assert not res.ok or _only_zip_metadata_changed(src, bad)


def _only_zip_metadata_changed(src: Path, bad: Path) -> bool:
    """A mutation of ZIP bookkeeping (timestamps, comments) leaves every entry's bytes as they were."""
    try:
        with CaseReader(src) as a, CaseReader(bad) as b:
            return sorted(a.names()) == sorted(b.names()) and all(
                b"".join(a.iter_chunks(n)) == b"".join(b.iter_chunks(n)) for n in a.names()
            )
    except Exception:
        return False
