"""The `evidence` command fed names, URLs and case ids chosen by an adversary.

What a terminal shows must be the data itself: rich markup shown as text,
control and bidi characters shown escaped (``\\x1b``, ``\\u202e``), never a
traceback; ``--json`` keeps the exact data.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "verify"))
sys.path.insert(0, str(ROOT / "tests" / "capture"))

from case_fixtures import make_exhibit_files  # noqa: E402

from ledger.log import Ledger  # noqa: E402

# each hostile string, and what a terminal must show for it
HOSTILE = {
    "[/b]": "[/b]",
    "[red]x[/red]": "[red]x[/red]",
    "[link=file:///etc/passwd]x[/link]": "[link=file:///etc/passwd]x[/link]",
    "\x1b[31m": "\\x1b[31m",
    "\u202e": "\\u202e",
    "\u200f": "\\u200f",
    ":thumbs_up:": ":thumbs_up:",
    "a\nb": "a\\nb",
}
RAW = ("\x1b", "\u202e", "\u200f", "\x9b", "\U0001f44d")


def run(
    home: Path, *args: str, check: int | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    e = dict(os.environ, EVIDENCE_HOME=str(home), COLUMNS="400")
    e.pop("EVIDENCE_KEY_PASSPHRASE", None)
    e.setdefault("EVIDENCE_OFFICER_PASSPHRASE", "officer-pw")  # officers' keys are under their own passphrase
    e.update(env or {})
    p = subprocess.run(
        [sys.executable, "-m", "evidence.cli", *args], capture_output=True, text=True, env=e, timeout=300
    )
    both = p.stdout + p.stderr
    assert "Traceback" not in both and "MarkupError" not in both and "internal error" not in both, both
    for ch in RAW:
        assert ch not in both, (repr(ch), both)
    if check is not None:
        assert p.returncode == check, (p.returncode, p.stdout, p.stderr)
    return p


def one_line_error(p: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), p.stderr
    return lines[0]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    run(h, "init", "--no-passphrase", check=0)
    return h


def test_hostile_officer_names_print_as_text(home: Path) -> None:
    p = run(home, "key", "add", "--officer", "Li Wei", "--badge", "0042", check=0)
    assert "registered for Li Wei (officer)" in p.stdout  # control: a plain name is unchanged
    names = {raw: seen for raw, seen in HOSTILE.items() if "\n" not in raw}
    for raw, seen in names.items():
        p = run(home, "key", "add", "--officer", f"op{raw}end", "--badge", f"b{raw}", check=0)
        assert f"registered for op{seen}end (officer)" in p.stdout, p.stdout
    shown = run(home, "key", "show", check=0).stdout
    for seen in names.values():
        assert f"op{seen}end" in shown and f"b{seen}" in shown
    assert "one-line" in one_line_error(run(home, "key", "add", "--officer", "a\nb", "--badge", "1", check=2))
    # --json is the data itself, control characters in JSON escapes
    p = run(home, "key", "add", "--officer", "op\x1b[31m\u202e[/b]\x9b", "--badge", "1", "--json", check=0)
    assert json.loads(p.stdout)["name"] == "op\x1b[31m\u202e[/b]\x9b"


def _hostile_ledger(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A home holding one exhibit per hostile string in its case id, URL, operator and note."""
    h = tmp_path / "lhome"
    led = Ledger.init(h, unencrypted=True, origin="test.example/log")
    cases = {}
    try:
        for n, raw in enumerate(HOSTILE):
            case = f"C{raw}{n}"
            url = f"http://shop.example/item?q={raw}&n={n}"
            files = make_exhibit_files(tmp_path / f"ex{n}", n, url)
            info = {
                "url": url,
                "final_url": url,
                "title": f"t{raw}",
                "operator": f"op{raw}",
                "note": f"note{raw}",
                "started": "2026-11-22T10:00:00Z",
                "ended": "2026-11-22T10:00:05Z",
            }
            led.seal_exhibit(case, files, info)
            led.append("custody", {"note": f"copied{raw}"}, case=case)
            cases[raw] = case
    finally:
        led.close()
    return h, cases


def test_log_of_hostile_records(tmp_path: Path) -> None:
    h, cases = _hostile_ledger(tmp_path)
    out = run(h, "log", check=0).stdout
    for n, (raw, seen) in enumerate(HOSTILE.items()):
        assert f"http://shop.example/item?q={seen}&n={n}" in out
        assert f"copied{seen}" in out
        p = run(h, "log", "--case", cases[raw], check=0)
        assert f"2 record(s) of case C{seen}{n}" in p.stdout
        recs = json.loads(run(h, "log", "--case", cases[raw], "--json", check=0).stdout)["records"]
        assert [r["case"] for r in recs] == [cases[raw]] * 2
        assert recs[1]["payload"]["note"] == f"copied{raw}"


def test_export_and_verify_of_a_hostile_case(tmp_path: Path) -> None:
    h, cases = _hostile_ledger(tmp_path)
    for n, (raw, seen) in enumerate(HOSTILE.items()):
        # the file name is hostile too
        wacz = tmp_path / f"case{raw.replace('/', '_')}{n}.wacz"
        p = run(h, "export", cases[raw], "-o", str(wacz), check=0)
        assert f"Case C{seen}{n}: 1 exhibit(s)" in p.stdout
        p = run(h, "verify", str(wacz), "--trust", str(h / "keys"), check=0)
        assert f"Case C{seen}{n}: all" in p.stdout
        assert f"http://shop.example/item?q={seen}&n={n}" in p.stdout and f"by op{seen}" in p.stdout
        res = json.loads(run(h, "verify", str(wacz), "--json", check=0).stdout)
        assert res["case"] == cases[raw]
    # a damaged case file: one failure line, the hostile where/detail shown as text
    bad = tmp_path / "bad.wacz"
    with zipfile.ZipFile(tmp_path / "case[red]x[_red]1.wacz") as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("dom.html"):
                data = data.replace(b"Listing", b"Listinh")
            dst.writestr(item, data)
    p = run(h, "verify", str(bad), "--trust", str(h / "keys"), check=1)
    assert "case file is INVALID" in one_line_error(p) and "dom.html" in p.stderr


def test_error_lines_show_data_as_text(home: Path, tmp_path: Path) -> None:
    nope = tmp_path / "[/b]\x1b[31m\u202enope.wacz"
    line = one_line_error(run(home, "verify", str(nope), check=2))
    assert "[/b]\\x1b[31m\\u202enope.wacz" in line
    line = one_line_error(
        run(home, "attest", "0", "--officer", "[/b][link=file:///etc/passwd]x[/link]", check=2)
    )
    assert "'[/b][link=file:///etc/passwd]x[/link]'" in line
    # the parser's own errors are one line too, with what was typed escaped
    line = one_line_error(run(home, "log", "--x\x1b[31m", check=2))
    assert "--x\\x1b[31m" in line
    # an argument that is not even UTF-8 (a lone surrogate once decoded) cannot be recorded
    p = run(home, "key", "add", "--officer", os.fsdecode(b"op\xff"), "--badge", "1", check=2)
    assert "surrogates" in one_line_error(p)


@pytest.mark.parametrize(
    "args",
    [
        ("record", "99999999999999999999", "-o", "x.html", "--format", "html"),
        ("record", "-1", "-o", "x.html", "--format", "html"),
        ("record", "--", "-1", "-o", "x.html", "--format", "html"),
        ("record", "9223372036854775808", "-o", "x.html", "--format", "html"),
        ("attest", "99999999999999999999", "--officer", "Li Wei"),
        ("attest", "-5", "--officer", "Li Wei"),
        ("log", "--tail", "99999999999999999999"),
        ("log", "--tail", "0"),
        ("log", "--tail", "-3"),
    ],
)
def test_index_out_of_range_is_a_usage_error(home: Path, args: tuple[str, ...]) -> None:
    line = one_line_error(run(home, *args, check=2))
    assert "must be a whole number from" in line and "9223372036854775807" in line


def test_index_in_range_still_reaches_the_ledger(home: Path) -> None:
    # controls: the largest index passes the check and is looked up; --tail 1 lists one record
    assert "no record 9223372036854775807" in one_line_error(
        run(home, "record", "9223372036854775807", "-o", "x.html", "--format", "html", check=2)
    )
    assert len(json.loads(run(home, "log", "--tail", "1", "--json", check=0).stdout)["records"]) == 1
    run(home, "key", "add", "--officer", "Li Wei", "--badge", "7", check=0)
    assert "exhibit" in one_line_error(run(home, "attest", "0", "--officer", "Li Wei", check=2))


# -- a real capture -------------------------------------------------------------------


def _chromium() -> bool:
    from capture.browser import chromium_available

    return chromium_available()


@pytest.fixture(scope="module")
def plain_shop():
    from capture_fixtures import load_serve

    server = load_serve().ShopServer().start()
    yield server
    server.stop()


@pytest.mark.browser
@pytest.mark.skipif(
    not os.environ.get("CI") and not _chromium(), reason="Chromium not installed; required when CI is set"
)
def test_capture_of_a_url_with_brackets(home: Path, plain_shop) -> None:
    url = plain_shop.url("/item/123") + "?q=[x]&r=[/b]"
    started = time.monotonic()
    p = run(
        home,
        "capture",
        url,
        "--case",
        "C[red]1[/red]\u202e",
        "--operator",
        "op[/b]\x1b[31m",
        "--note",
        "n[link=file:///etc/passwd]x[/link]",
        check=0,
    )
    assert time.monotonic() - started < 280
    assert f"{plain_shop.url('/item/123')}?q=[x]&r=[/b] ->" in p.stdout, p.stdout
    rec = json.loads(run(home, "log", "--case", "C[red]1[/red]\u202e", "--json", check=0).stdout)["records"][
        -1
    ]
    assert rec["payload"]["url"] == url
    out = run(home, "log", check=0).stdout
    assert "?q=[x]&r=[/b]" in out and "C[red]1[/red]\\u202e" in out


def test_display_helpers_escape_hidden_characters_and_keep_data():
    from rich.console import Console

    from ledger.display import hidden, json_safe, printable, shown, text

    nasty = "a\x00\x07\x1b[2J\x7f\x85\x9b\u061c\u200b\u200e\u200f\u202a\u202e\u2066\u2069\u2028\u2029\ufeff\U000e0041\udcffz"
    seen = printable(nasty)
    assert not any(hidden(c) for c in seen) and seen.isprintable()
    assert seen == (
        "a\\x00\\x07\\x1b[2J\\x7f\\x85\\x9b\\u061c\\u200b\\u200e\\u200f\\u202a\\u202e\\u2066\\u2069"
        "\\u2028\\u2029\\ufeff\\U000e0041\\udcffz"
    )
    # controls: ordinary text of any script, joiners inside words and emoji, spacing, is unchanged
    for plain in ("李伟 Li Wei", "淘优选 ¥128", "می\u200cخواهم", "👩\u200d💻", "a b\u00a0c", "C:\\path\\[x]"):
        assert printable(plain) == plain
    # rich shows shown()/text() as exactly printable(), whatever markup is inside
    console = Console(width=500, emoji=False, color_system=None, force_terminal=False)
    for raw in [*HOSTILE, "[bold]x[/]", "\\[b]", "x\\", "[/b]\x1b[b]"]:
        with console.capture() as cap:
            console.print(f"<{shown(raw)}>", highlight=False)
            console.print(text(raw))
        assert cap.get() == f"<{printable(raw)}>\n{printable(raw)}\n", (raw, cap.get())
    # JSON: the same data after parsing, and no hidden character left in the text
    for s in (nasty, *HOSTILE):
        j = json_safe(json.dumps({"v": s}, ensure_ascii=False, indent=2))
        assert json.loads(j) == {"v": s}
        assert not any(hidden(c) for c in j if c not in "\n")
