"""The extraction record (电子数据提取笔录) of an exhibit, in Chinese with English.

    from evidence.extraction import build_record, write_record
    rec = build_record(ledger, 12, place="某市市场监督管理局执法办案区 / Office of ...")
    write_record(rec, "docx", Path("exhibit-12.docx"))     # also "pdf", "html"

Market-regulation rules on electronic evidence (SAMR 2024 暂行规定) and the
courts' online-litigation rules ask for a record of how the data was
obtained: by whom, where, when, with what tool on what machine, by which
method, and the check values of every file. Everything here is read from the
ledger: the exhibit record and its manifest (capture facts, environment
check, artifacts), attestation records by other officers, the latest
checkpoint covering the exhibit and the earliest anchor over it.

An attestation is listed as a signature only when its key was registered
for that officer by a ``key-add`` record of this ledger and its signature
verifies; anything else is shown as unverified, never as a signature.
``build_record`` reads; the renderers take the record and write one file.
"""

from __future__ import annotations

import datetime as dt
import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .canonical import loads
from .errors import EnvironmentProblem, EvidenceError, IntegrityError, UsageError
from .keys import public_from_raw

FORMATS = ("html", "pdf", "docx")
TITLE_ZH = "电子数据提取笔录"
TITLE_EN = "Electronic Data Extraction Record"
CJK_FONTS = '"Noto Serif CJK SC", "Noto Sans CJK SC", "Source Han Serif SC", "SimSun", "Songti SC", serif'
#: East Asian font named in the Word file; Word substitutes when it is missing
DOCX_CJK_FONT = "SimSun"

ROLE_NAMES = {
    "warc": ("网络数据（WARC）", "network capture (WARC)"),
    "screenshot-full": ("整页截图", "full-page screenshot"),
    "screenshot-viewport": ("可视区截图", "viewport screenshot"),
    "dom": ("渲染后网页源码", "rendered DOM"),
    "mhtml": ("网页快照（MHTML）", "page snapshot (MHTML)"),
    "process-video": ("取证过程录像", "process video"),
    "visit-screenshot": ("访问页面截图", "screenshot of a visited page"),
    "visit-dom": ("访问页面源码", "DOM of a visited page"),
    "network": ("网络交互记录", "network log"),
    "environment": ("取证环境信息", "environment facts"),
    "capture-log": ("取证操作日志", "capture log"),
    "certificates": ("服务器证书", "server certificates"),
    "download": ("下载文件", "downloaded file"),
}


@dataclass(frozen=True)
class Attestation:
    index: int
    officer: str
    key_id: str
    time: str
    statement: str
    verified: bool
    problem: str | None = None


@dataclass(frozen=True)
class ExtractionRecord:
    """Everything the record shows, read from the ledger; no IO after this."""

    case: str
    index: int
    leaf: str
    origin: str
    record_time: str
    manifest_sha256: str
    manifest_size: int
    info: dict[str, Any]
    artifacts: list[dict[str, Any]]
    place: str | None
    attestations: list[Attestation]
    checkpoint: dict[str, Any] | None
    anchor: dict[str, Any] | None
    generated: str
    tool: str
    warnings: list[str] = field(default_factory=list)

    @property
    def officers(self) -> list[str]:
        return [a.officer for a in self.attestations if a.verified]

    @property
    def urls(self) -> list[str]:
        out: list[str] = []
        for u in (self.info.get("url"), self.info.get("final_url"), *(v.get("url") for v in self.info.get("visits") or [])):
            if u and u not in out:
                out.append(u)
        return out

    @property
    def methods(self) -> list[tuple[str, str]]:
        roles = {a["role"] for a in self.artifacts}
        m = [("网络在线提取", "online extraction")]
        if self.info.get("mode") == "interactive":
            m.append(("调查人员交互操作浏览器", "investigator-driven browser session"))
        if roles & {"screenshot-full", "screenshot-viewport", "visit-screenshot"}:
            m.append(("网页截图", "screenshot"))
        if "process-video" in roles:
            m.append(("全程录像", "video recording of the process"))
        if "warc" in roles:
            m.append(("网络数据抓取（WARC）", "network capture (WARC)"))
        m.append(("哈希校验值计算（SHA-256）", "integrity check values (SHA-256)"))
        return m


# -- reading the ledger ----------------------------------------------------------


def build_record(ledger: Any, index: int, *, place: str | None = None, now: dt.datetime | None = None) -> ExtractionRecord:
    """Collect the record of exhibit ``index``; ``place`` defaults to the home's ``office`` setting."""
    from evidence import __version__

    rec = ledger.exhibit_record(index)
    msha = str(rec.payload.get("manifest", {}).get("sha256", ""))
    with ledger.artifacts.open(msha) as f:
        manifest = loads(f.read())
    if not isinstance(manifest, dict) or manifest.get("case") != rec.case:
        raise IntegrityError(f"the manifest of record {index} does not belong to case {rec.case!r}")
    listed = {(a["name"], a["sha256"]) for a in rec.payload.get("artifacts", [])}
    arts = list(manifest.get("artifacts", []))
    if {(a["name"], a["sha256"]) for a in arts} != listed:
        raise IntegrityError(f"the manifest of record {index} lists other artifacts than the record")
    if place is None:
        configured = ledger.config.extra.get("office")
        place = str(configured) if configured else None
    info = dict(manifest.get("info") or {})
    return ExtractionRecord(
        case=str(rec.case),
        index=index,
        leaf=rec.leaf.hex(),
        origin=rec.origin,
        record_time=rec.time,
        manifest_sha256=msha,
        manifest_size=int(rec.payload.get("manifest", {}).get("size", 0)),
        info=info,
        artifacts=arts,
        place=place,
        attestations=_attestations(ledger, rec),
        checkpoint=_checkpoint(ledger, index),
        anchor=_anchor(ledger, index),
        generated=_utc(now or dt.datetime.now(dt.UTC)),
        tool=f"evidence-chain {__version__}",
        warnings=list(info.get("warnings") or []),
    )


def _attestations(ledger: Any, exhibit: Any) -> list[Attestation]:
    from evidence.record import parse_record
    from ledger.log import verify_key_add

    officers: dict[str, tuple[str, str, bytes]] = {}  # key_id -> (name, role, raw key)
    found = []
    # Filtered by kind in the database: the bodies of every other record stay there.
    for s in ledger.store.iter_records(kind="key-add"):
        r = parse_record(s.body, expect_index=s.index)
        try:
            kid, raw, name, role = verify_key_add(r.payload)
        except EvidenceError:
            continue
        officers[kid] = (name, role, raw)
    for s in ledger.store.iter_records(kind="attestation", start=exhibit.index + 1):
        r = parse_record(s.body, expect_index=s.index)
        if r.payload.get("exhibit_index") == exhibit.index:
            found.append(r)
    out = []
    for r in found:
        p = r.payload
        officer = str(p.get("officer", ""))
        problem = None
        signer = officers.get(r.key_id)
        if signer is None:
            problem = f"key {r.key_id[:16]} was never registered in this ledger"
        elif signer[0] != officer:
            problem = f"key {r.key_id[:16]} belongs to {signer[0]!r}, not {officer!r}"
        elif p.get("exhibit_leaf") != exhibit.leaf.hex():
            problem = "it names another version of the exhibit record (leaf mismatch)"
        else:
            try:
                r.verify(public_from_raw(signer[2]))
            except EvidenceError as e:
                problem = str(e)
        out.append(
            Attestation(r.index, officer, r.key_id, r.time, str(p.get("statement", "")), problem is None, problem)
        )
    return out


def _checkpoint(ledger: Any, index: int) -> dict[str, Any] | None:
    cp = ledger.store.latest_checkpoint()
    if cp is None or cp.size <= index:
        return None
    return {"size": cp.size, "root": cp.root.hex(), "created": cp.created}


def _anchor(ledger: Any, index: int) -> dict[str, Any] | None:
    # The earliest anchor over a tree holding the exhibit bounds its time most tightly.
    rows = [r for r in ledger.store.anchor_rows() if r["checkpoint_size"] > index and r.get("time")]
    if not rows:
        return None
    r = min(rows, key=lambda r: (r["time"], r["record_idx"]))
    return {"type": r["type"], "service": r["service"], "time": r["time"], "record": r["record_idx"], "checkpoint_size": r["checkpoint_size"]}


def _utc(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _local(value: str | None) -> str:
    """An RFC 3339 UTC time shown in this machine's zone, with the UTC original."""
    if not value:
        return "—"
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    local = t.astimezone()
    off = local.strftime("%z")
    return f"{local.strftime('%Y-%m-%d %H:%M:%S')} (UTC{off[:3]}:{off[3:]}) · {value}"


# -- the content, once for every format ---------------------------------------------


def _yes(v: Any) -> str:
    return {True: "是 yes", False: "否 no"}.get(v, "未检查 not checked")


def _clock_text(c: dict[str, Any] | None) -> str:
    if not c or c.get("offset_ms") is None:
        why = (c or {}).get("error") or "no reference"
        return f"未检查 not checked ({why})"
    src = c.get("url") or f"RFC 3161 {c.get('tsa') or ''} genTime {c.get('gen_time')}".strip()
    off = c["offset_ms"] / 1000
    verdict = "在允许范围内 within limit" if c.get("within_limit") else "超出允许范围 OUTSIDE LIMIT"
    return (
        f"偏差 offset {off:+.1f} s (±{c.get('uncertainty_ms', 0) / 1000:.1f} s), "
        f"限值 limit {c.get('max_offset_ms', 0) / 1000:g} s, {verdict}; 参照 reference: {src}"
    )


def _ip_text(ip: dict[str, Any] | None) -> str:
    if not ip or not ip.get("checked"):
        return "未检查 not checked" + (f" ({ip.get('reason')})" if ip and ip.get("reason") else "")
    if not ip.get("reachable"):
        return f"无法访问 unreachable: {ip.get('endpoint')} ({ip.get('error')})"
    if ip.get("ip"):
        return f"{ip['ip']} （经 via {ip.get('endpoint')}, {ip.get('route')}）"
    return f"未取得 not obtained: {ip.get('error')}"


def fields(r: ExtractionRecord) -> list[tuple[str, str, str]]:
    """(中文, English, value) rows of the record's head, in order."""
    i = r.info
    chk = i.get("environment_check") or {}
    ext = chk.get("extensions") or {}
    fonts = chk.get("fonts") or {}
    operator = i.get("operator") or "—"
    att = ", ".join(f"{a.officer}（记录 record {a.index}）" for a in r.attestations if a.verified) or "无 none"
    tool = i.get("tool") or ""
    browser = chk.get("browser") or (f"{i['browser']['name']} {i['browser']['version']}" if i.get("browser") else "")
    env = [
        f"全新浏览器配置 fresh browser profile: {_yes(chk.get('fresh_profile'))}",
        f"无浏览器扩展 no extensions: {_yes(ext.get('none'))}",
        f"代理 proxy: {chk.get('proxy') or '无 none'}",
        f"主机名 hostname: {chk.get('hostname') or '—'}",
        f"系统时钟 system clock: {_clock_text(chk.get('clock'))}",
        f"出口 IP outbound IP: {_ip_text(chk.get('outbound_ip'))}",
        f"字体 fonts: {fonts.get('families', '—')} 种 families, 中文字体 CJK: {len(fonts.get('chinese') or [])}",
        f"浏览器模式 browser mode: {'无界面 headless' if chk.get('headless') else '有界面 headed'}"
        if chk.get("headless") is not None
        else "",
    ]
    return [
        ("案件编号", "Case number", r.case),
        ("证据编号", "Exhibit", f"账本记录 ledger record {r.index}"),
        ("提取开始时间", "Time started", _local(i.get("started"))),
        ("提取结束时间", "Time ended", _local(i.get("ended"))),
        ("提取地点", "Place", r.place or "—"),
        ("提取人", "Extracted by", operator),
        ("见证/复核人员", "Attesting officers", att),
        ("目标网址", "Target URL(s)", "\n".join(r.urls) or "—"),
        ("提取方法", "Method", "；".join(f"{zh} {en}" for zh, en in r.methods)),
        ("提取工具及版本", "Tool and version", f"{tool}; {browser}".strip("; ")),
        ("取证环境检查", "Environment check", "\n".join(e for e in env if e)),
        ("时间说明", "Time source", "以上时间取自取证计算机系统时钟 times above are from the capturing machine's system clock"),
    ]


def integrity(r: ExtractionRecord) -> list[tuple[str, str, str]]:
    cp = r.checkpoint
    an = r.anchor
    return [
        ("清单校验值", "Manifest SHA-256", f"{r.manifest_sha256} ({r.manifest_size} bytes)"),
        ("账本记录", "Ledger record", f"{r.index} · {r.origin} · {r.record_time}"),
        ("记录叶哈希", "Record leaf hash", r.leaf),
        (
            "覆盖该记录的最新检查点",
            "Latest checkpoint covering it",
            f"size {cp['size']} · root {cp['root']} · {cp['created']}" if cp else "尚无 none yet (run `evidence checkpoint`)",
        ),
        (
            "锚定时间",
            "Anchor time",
            f"{an['time']} · {an['type']} {an['service']} · record {an['record']} (checkpoint size {an['checkpoint_size']})"
            if an
            else "尚未锚定 not yet anchored (run `evidence anchor`)",
        ),
    ]


def _role(role: str) -> str:
    zh, en = ROLE_NAMES.get(role, ("", role))
    return f"{zh} {en}".strip()


# -- HTML (and PDF from it) -----------------------------------------------------------

CSS = """
@page { size: A4; margin: 16mm 14mm 18mm 14mm;
        @bottom-center { content: "第 " counter(page) " 页 / 共 " counter(pages) " 页  Page " counter(page) " of " counter(pages); font-size: 8pt; } }
body { font-family: %s; font-size: 10pt; line-height: 1.45; color: #000; max-width: 182mm; margin: auto; }
h1 { text-align: center; font-size: 18pt; margin: 0 0 2pt 0; letter-spacing: 2pt; }
h1 + p.en { text-align: center; margin: 0 0 10pt 0; font-size: 11pt; }
h2 { font-size: 11.5pt; margin: 12pt 0 4pt 0; border-bottom: 1px solid #000; }
table { border-collapse: collapse; width: 100%%; }
td, th { border: 1px solid #000; padding: 3pt 4pt; vertical-align: top; text-align: left; }
th.label { width: 30%%; font-weight: normal; background: #f2f2f2; }
th.label span { display: block; font-size: 8.5pt; color: #333; }
td { white-space: pre-line; word-break: break-word; }
td.hash, code { font-family: "DejaVu Sans Mono", "Noto Sans Mono CJK SC", monospace; font-size: 8.6pt; white-space: nowrap; }
tr.head th { background: #e6e6e6; font-size: 9pt; }
tr, tbody.art { break-inside: avoid; }
h2 { break-after: avoid; }
p.note { font-size: 8.5pt; color: #333; }
.sign td { height: 40pt; }
.warn { color: #a00; }
"""


def render_html(r: ExtractionRecord) -> str:
    e = html.escape
    rows = "".join(
        f'<tr><th class="label">{e(zh)}<span>{e(en)}</span></th><td>{e(v)}</td></tr>' for zh, en, v in fields(r)
    )
    # One tbody per file keeps its digest on the same page as its name.
    arts = "".join(
        f"<tbody class=art><tr><td>{n}</td><td>{e(a['name'])}</td><td>{e(_role(a['role']))}<br><code>{e(a['media_type'])}</code></td>"
        f"<td>{a['size']:,}</td></tr>"
        f'<tr><td></td><td colspan="3" class="hash">SHA-256 {e(a["sha256"])}</td></tr></tbody>'
        for n, a in enumerate(r.artifacts, 1)
    )
    integ = "".join(
        f'<tr><th class="label">{e(zh)}<span>{e(en)}</span></th><td class="{"hash" if en.endswith(("SHA-256", "hash")) else ""}">{e(v)}</td></tr>'
        for zh, en, v in integrity(r)
    )
    atts = "".join(
        f"<tr><td>{a.index}</td><td>{e(a.officer)}</td><td><code>{e(a.key_id[:16])}</code></td><td>{e(a.time)}</td>"
        f"<td>{'已验证 verified' if a.verified else '<span class=warn>未验证 NOT VERIFIED: ' + e(a.problem or '') + '</span>'}</td></tr>"
        for a in r.attestations
    ) or '<tr><td colspan="5">无 none</td></tr>'
    visits = ""
    if r.info.get("visits"):
        visits = (
            "<h2>访问过的页面 Pages visited</h2><table><tr class=head><th>#</th><th>时间 Time (UTC)</th><th>网址 URL</th><th>快照 Snapshot</th></tr>"
            + "".join(
                f"<tr><td>{v.get('n')}</td><td>{e(str(v.get('time')))}</td><td>{e(str(v.get('url')))}</td>"
                f"<td>{e(', '.join(x for x in (v.get('screenshot'), v.get('dom')) if x) or '—')}</td></tr>"
                for v in r.info["visits"]
            )
            + "</table>"
        )
    warnings = ""
    if r.warnings:
        warnings = "<h2>提取中的警告 Warnings during extraction</h2><ul>" + "".join(
            f"<li class=warn>{e(w)}</li>" for w in r.warnings
        ) + "</ul>"
    signers = [("提取人", "Extracted by", r.info.get("operator") or "")] + [
        ("见证/复核人", "Attesting officer", a.officer) for a in r.attestations if a.verified
    ]
    if len(signers) < 2:
        signers.append(("见证人", "Witness", ""))
    sign = "".join(
        f"<tr><th class=label>{e(zh)}签名<span>{e(en)} — signature</span></th><td>{e(name)}</td><td>日期 Date：</td></tr>"
        for zh, en, name in signers
    )
    return f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8">
<title>{TITLE_ZH} {TITLE_EN} — {e(r.case)} #{r.index}</title>
<style>{CSS % CJK_FONTS}</style></head>
<body>
<h1>{TITLE_ZH}</h1><p class="en">{TITLE_EN}</p>
<table>{rows}</table>
{visits}
<h2>提取的电子数据 Electronic data extracted（共 {len(r.artifacts)} 个文件 files）</h2>
<table><thead><tr class=head><th>序号 No.</th><th>文件名 Name</th><th>类型 Type</th><th>大小（字节）Size (bytes)</th></tr></thead>{arts}</table>
<h2>完整性校验 Integrity</h2>
<table>{integ}</table>
<p class="note">校验方法：对每个文件计算 SHA-256 哈希值并与本笔录及账本记录比对；账本记录经 Ed25519 签名，收入 RFC 6962 默克尔树并由已签名检查点及外部时间戳锚定。
Verification: compute the SHA-256 of each file and compare with this record and the ledger record; the record is signed (Ed25519), included in an RFC 6962 Merkle tree, covered by a signed checkpoint and anchored by an external timestamp.</p>
<h2>电子签名确认 Electronic attestations</h2>
<table><tr class=head><th>记录 Record</th><th>人员 Officer</th><th>密钥 Key</th><th>时间 Time (UTC)</th><th>状态 Status</th></tr>{atts}</table>
{warnings}
<h2>签名 Signatures</h2>
<table class="sign">{sign}</table>
<p class="note">本笔录由 {e(r.tool)} 于 {e(r.generated)} 根据账本生成。This record was generated by {e(r.tool)} at {e(r.generated)} from the ledger.</p>
</body></html>
"""


def write_pdf(r: ExtractionRecord, path: Path) -> None:
    try:
        from weasyprint import HTML
    except (ImportError, OSError) as e:
        # OSError: the Python package is there but pango is not.
        raise EnvironmentProblem(
            f"PDF output needs WeasyPrint and pango ({str(e).splitlines()[0]}); "
            "run scripts/setup, or write --format html and print it"
        ) from e
    HTML(string=render_html(r)).write_pdf(str(path))


# -- Word ------------------------------------------------------------------------------


def write_docx(r: ExtractionRecord, path: Path) -> None:
    from docx import Document
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.oxml.ns import qn
    from docx.shared import Mm, Pt

    doc = Document()
    sec = doc.sections[0]
    sec.page_width, sec.page_height = Mm(210), Mm(297)
    sec.left_margin = sec.right_margin = Mm(16)
    sec.top_margin = sec.bottom_margin = Mm(16)
    normal = doc.styles["Normal"]
    normal.font.name = "Times New Roman"
    normal.font.size = Pt(10)
    # Word picks the font for Chinese from eastAsia, not from the font name.
    normal.element.get_or_add_rPr().get_or_add_rFonts().set(qn("w:eastAsia"), DOCX_CJK_FONT)

    def mono(run: Any) -> None:
        run.font.name = "Courier New"
        run.font.size = Pt(8.5)

    def heading(zh: str, en: str) -> None:
        p = doc.add_paragraph()
        p.paragraph_format.space_before = Pt(10)
        run = p.add_run(f"{zh} {en}")
        run.bold = True
        run.font.size = Pt(11.5)

    def table(cols: int, widths: list[float]) -> Any:
        t = doc.add_table(rows=0, cols=cols)
        t.style = "Table Grid"
        t.autofit = False
        for col, w in zip(t.columns, widths):
            col.width = Mm(w)
        return t

    def row(t: Any, values: list[str], widths: list[float], *, hash_col: int | None = None, bold: bool = False) -> Any:
        cells = t.add_row().cells
        for n, (c, v) in enumerate(zip(cells, values)):
            c.width = Mm(widths[n])
            lines = v.split("\n")
            c.paragraphs[0].text = ""
            for k, line in enumerate(lines):
                para = c.paragraphs[0] if k == 0 else c.add_paragraph()
                run = para.add_run(line)
                run.bold = bold
                if n == hash_col:
                    mono(run)
        return cells

    t = doc.add_paragraph()
    t.alignment = WD_ALIGN_PARAGRAPH.CENTER
    run = t.add_run(TITLE_ZH)
    run.bold = True
    run.font.size = Pt(18)
    sub = doc.add_paragraph()
    sub.alignment = WD_ALIGN_PARAGRAPH.CENTER
    sub.add_run(TITLE_EN).font.size = Pt(11)

    w2 = [52.0, 126.0]
    tb = table(2, w2)
    for zh, en, v in fields(r):
        row(tb, [f"{zh}\n{en}", v], w2)

    if r.info.get("visits"):
        heading("访问过的页面", "Pages visited")
        w4 = [10.0, 44.0, 84.0, 40.0]
        tb = table(4, w4)
        row(tb, ["#", "时间 Time (UTC)", "网址 URL", "快照 Snapshot"], w4, bold=True)
        for v in r.info["visits"]:
            snap = ", ".join(x for x in (v.get("screenshot"), v.get("dom")) if x) or "—"
            row(tb, [str(v.get("n")), str(v.get("time")), str(v.get("url")), snap], w4)

    heading("提取的电子数据", f"Electronic data extracted ({len(r.artifacts)} files)")
    wa = [14.0, 62.0, 70.0, 32.0]
    tb = table(4, wa)
    row(tb, ["序号 No.", "文件名 Name", "类型 Type", "大小 Size (bytes)"], wa, bold=True)
    for n, a in enumerate(r.artifacts, 1):
        row(tb, [str(n), a["name"], f"{_role(a['role'])}\n{a['media_type']}", f"{a['size']:,}"], wa)
        cells = tb.add_row().cells
        merged = cells[1].merge(cells[3])
        merged.paragraphs[0].text = ""
        merged.paragraphs[0].add_run("SHA-256 ")
        mono(merged.paragraphs[0].add_run(a["sha256"]))

    heading("完整性校验", "Integrity")
    tb = table(2, w2)
    for zh, en, v in integrity(r):
        row(tb, [f"{zh}\n{en}", v], w2, hash_col=1 if en.endswith(("SHA-256", "hash")) else None)

    heading("电子签名确认", "Electronic attestations")
    w5 = [18.0, 38.0, 36.0, 46.0, 40.0]
    tb = table(5, w5)
    row(tb, ["记录 Record", "人员 Officer", "密钥 Key", "时间 Time (UTC)", "状态 Status"], w5, bold=True)
    for a in r.attestations:
        status = "已验证 verified" if a.verified else f"未验证 NOT VERIFIED: {a.problem}"
        row(tb, [str(a.index), a.officer, a.key_id[:16], a.time, status], w5)
    if not r.attestations:
        row(tb, ["无 none", "", "", "", ""], w5)

    if r.warnings:
        heading("提取中的警告", "Warnings during extraction")
        for w in r.warnings:
            doc.add_paragraph(w, style="List Bullet")

    heading("签名", "Signatures")
    w3 = [52.0, 70.0, 56.0]
    tb = table(3, w3)
    signers = [("提取人", "Extracted by", r.info.get("operator") or "")] + [
        ("见证/复核人", "Attesting officer", a.officer) for a in r.attestations if a.verified
    ]
    if len(signers) < 2:
        signers.append(("见证人", "Witness", ""))
    for zh, en, name in signers:
        cells = row(tb, [f"{zh}签名\n{en} — signature", f"{name}\n\n", "日期 Date："], w3)
        cells[1].height = Mm(16)
    note = doc.add_paragraph()
    note.add_run(
        f"本笔录由 {r.tool} 于 {r.generated} 根据账本生成。This record was generated by {r.tool} at {r.generated} from the ledger."
    ).font.size = Pt(8.5)
    doc.core_properties.title = f"{TITLE_ZH} {TITLE_EN} {r.case} #{r.index}"
    buf = io.BytesIO()
    doc.save(buf)
    path.write_bytes(buf.getvalue())


def write_record(r: ExtractionRecord, fmt: str, path: Path | str) -> Path:
    """Write the record as ``fmt`` (html, pdf, docx) to ``path``."""
    if fmt not in FORMATS:
        raise UsageError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    path = Path(path)
    if not path.parent.is_dir():
        raise UsageError(f"cannot write {path}: folder {path.parent} does not exist")
    try:
        if fmt == "html":
            path.write_text(render_html(r), "utf-8")
        elif fmt == "pdf":
            write_pdf(r, path)
        else:
            write_docx(r, path)
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror or e}") from None
    return path
