"""Layouts a clerk can print: no text under an image, no text on text, nothing off the page.

``layout_problems(pdf)`` is the checker (pdfplumber: every character box
against every image box, every other character box, and the page). The
extraction-record tests use it too. The controls show it can fail: the
verification report's old flex layout, and an image laid over text.
"""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from case_fixtures import build_case, png_bytes  # noqa: E402

pdfplumber = pytest.importorskip("pdfplumber")
weasyprint = pytest.importorskip("weasyprint")

#: boxes that touch by less than this (points) are neighbours, not overlaps
SLACK = 0.6


def _overlap(a: dict, b: dict) -> float:
    w = min(a["x1"], b["x1"]) - max(a["x0"], b["x0"])
    h = min(a["bottom"], b["bottom"]) - max(a["top"], b["top"])
    return min(w, h) if w > 0 and h > 0 else 0.0


def layout_problems(pdf: Path, limit: int = 20) -> list[str]:
    """What a reader would find wrong: characters under images, on other characters, or off the page."""
    out: list[str] = []
    with pdfplumber.open(str(pdf)) as doc:
        for n, page in enumerate(doc.pages, 1):
            chars = [c for c in page.chars if c["text"].strip()]
            for c in chars:
                if c["x0"] < -SLACK or c["top"] < -SLACK or c["x1"] > page.width + SLACK or c["bottom"] > page.height + SLACK:
                    out.append(f"page {n}: {c['text']!r} at ({c['x0']:.0f},{c['top']:.0f}) is off the page")
            for img in page.images:
                for c in chars:
                    if _overlap(c, img) > SLACK:
                        out.append(f"page {n}: {c['text']!r} at ({c['x0']:.0f},{c['top']:.0f}) lies under an image")
            # Text on text: sorted by x, each character is compared with those that start before it ends.
            chars.sort(key=lambda c: c["x0"])
            for i, a in enumerate(chars):
                for b in chars[i + 1:]:
                    if b["x0"] >= a["x1"] - SLACK:
                        break
                    if _overlap(a, b) > max(SLACK, 0.3 * min(a["size"], b["size"])):
                        out.append(f"page {n}: {a['text']!r} and {b['text']!r} at ({a['x0']:.0f},{a['top']:.0f}) overlap")
            if len(out) >= limit:
                return out
    return out


def _pdf(html: str, path: Path) -> Path:
    weasyprint.HTML(string=html).write_pdf(str(path))
    return path


def _png_uri() -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(120, 180, (200, 60, 60))).decode()


@pytest.fixture(scope="module")
def case_report(tmp_path_factory):
    from evidence.case import export_case
    from ledger.casefacts import set_case_info
    from ledger.log import Ledger
    from verify import verify_case
    from verify.report import render_html, write_report

    tmp = tmp_path_factory.mktemp("report")
    led = Ledger.init(tmp / "home", unencrypted=True, origin="test.example/log")
    try:
        build_case(led, tmp, "C-1", exhibits=2, shot_size=400)
        set_case_info(led, "C-1", cause="销售假冒注册商标的商品 counterfeit goods", party="某某数码旗舰店（某平台）")
        led.add_key("王芳 Wang Fang", "officer")
        led.attest(1, "王芳 Wang Fang")
        export_case(led, "C-1", tmp / "case.wacz")
    finally:
        led.close()
    result = verify_case(tmp / "case.wacz")
    pdf = write_report(result, tmp / "case.wacz", tmp / "report.pdf")
    return result, tmp / "case.wacz", pdf, render_html(result, tmp / "case.wacz")


def test_report_pdf_has_no_text_under_images(case_report):
    result, _case, pdf, _html = case_report
    assert result.ok
    with pdfplumber.open(str(pdf)) as doc:
        assert sum(len(p.images) for p in doc.pages) == 2  # one thumbnail per exhibit
    assert layout_problems(pdf) == []


def test_report_states_what_it_is_and_what_each_time_rests_on(case_report):
    result, _case, pdf, html = case_report
    text = "\n".join(p.extract_text() or "" for p in pdfplumber.open(str(pdf)).pages)
    assert "不是鉴定意见" in html and "not an expert opinion" in html
    assert "可信时间" not in html
    # The case facts travel in the case file as a signed record and are read back from it.
    assert "销售假冒注册商标的商品" in text and "某某数码旗舰店" in text
    assert "Officer's electronic signature (agency key)" in html and "复核人" not in html


def test_anchor_labels_say_what_stands_behind_each_time():
    from verify.report import anchor_label

    assert anchor_label({"type": "rfc3161", "verified": True, "trusted": True}) == "RFC 3161 时间戳，已验证 RFC 3161 timestamp, verified"
    assert "root self-declared" in anchor_label({"type": "rfc3161", "verified": True, "trusted": False})
    assert "not verified" in anchor_label({"type": "rfc3161", "verified": False, "trusted": False})
    assert "log-witness cosignature" in anchor_label({"type": "witness", "verified": True})
    assert "service's statement" in anchor_label({"type": "deposit", "verified": False})


def test_case_facts_of_a_tampered_record_are_not_shown(case_report, tmp_path):
    """A case-info record whose checks fail is not read into the report."""
    import zipfile

    from verify import verify_case
    from verify.report import render_html

    _result, case, _pdf, _html = case_report
    bad = tmp_path / "bad.wacz"
    with zipfile.ZipFile(case) as src, zipfile.ZipFile(bad, "w") as dst:
        for zi in src.infolist():
            data = src.read(zi)
            if b'"kind":"case-info"' in data:
                data = data.replace("某某数码旗舰店".encode(), "另一家店铺铺".encode())
            dst.writestr(zi, data)
    result = verify_case(bad)
    assert not result.ok
    html = render_html(result, bad)
    assert "另一家店铺铺" not in html and "某某数码旗舰店" not in html


def test_checker_finds_the_old_flex_layout(tmp_path):
    """The report's old layout: a flex row, facts table beside the thumbnail. WeasyPrint overlaps them."""
    rows = "".join(
        f"<tr><th>字段 Field {n}</th><td class='mono'>{'0123456789abcdef' * 4} https://shop.example/item/{n}?q=长长的网址</td></tr>"
        for n in range(12)
    )
    old = (
        "<html><head><style>table{border-collapse:collapse;width:100%;font-size:.82em}"
        "td,th{border:1px solid #bbb}th{width:15em}.mono{word-break:break-all}"
        ".exhibit{display:flex;gap:1em;align-items:flex-start}.exhibit table{flex:1}.shot{width:240px}</style></head>"
        f"<body><div class='exhibit'><table>{rows}</table><div><img class='shot' src='{_png_uri()}'></div></div></body></html>"
    )
    problems = layout_problems(_pdf(old, tmp_path / "old.pdf"))
    assert any("under an image" in p for p in problems), problems


def test_checker_finds_an_image_over_text_and_text_on_text(tmp_path):
    over = f"<p>证据 Evidence text that an image hides</p><img src='{_png_uri()}' style='position:absolute;top:0;left:0;width:300px'>"
    assert any("under an image" in p for p in layout_problems(_pdf(over, tmp_path / "over.pdf")))
    clash = "<p style='position:absolute;top:0'>第一行 First line</p><p style='position:absolute;top:2px'>第二行 Second line</p>"
    assert any("overlap" in p for p in layout_problems(_pdf(clash, tmp_path / "clash.pdf")))
    clean = f"<p>证据 Evidence</p><img src='{_png_uri()}' style='width:100px'>"
    assert layout_problems(_pdf(clean, tmp_path / "clean.pdf")) == []
