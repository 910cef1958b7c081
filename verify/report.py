"""A self-contained verification report (Chinese and English) for a court file.

    write_report(result, "case.wacz", "report.html")   # or "report.pdf" (WeasyPrint)

One HTML file: no scripts, no external resources; screenshot thumbnails are
embedded as data URIs, so the report reads the same offline and years later.
It lists the case (with its case facts when a verified ``case-info`` record
is in the bundle), each exhibit (URL, capture time, operator, thumbnail,
artifact digests, ledger index, checkpoint, and each anchor time labelled by
what stands behind it), every check with its result, and the exact commands
to re-verify without this tool. It is a technical self-verification by the
software, not a 鉴定意见 (expert opinion), and says so.
"""

from __future__ import annotations

import base64
import html
import io
import shlex
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ledger.casefacts import latest
from ledger.display import printable
from ledger.errors import EnvironmentProblem, EvidenceError, UsageError
from ledger.record import parse_record
from ledger.version import __version__

from .case import VerificationResult
from .casefile import CaseReader, record_path

THUMB_WIDTH = 360
THUMB_MAX_SOURCE = 64 << 20  # never decode a bigger screenshot for a thumbnail
_CSS = """
@page{size:A4;margin:14mm}
body{font-family:"Noto Sans CJK SC","Noto Sans SC","Source Han Sans SC","Microsoft YaHei",sans-serif;margin:1.5em auto;max-width:1050px;color:#222;line-height:1.45}
h1{font-size:1.45em;border-bottom:3px solid #333;padding-bottom:.3em}
h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #999}
h3{font-size:1em;margin:1.2em 0 .3em}
.verdict{font-size:1.15em;padding:.6em 1em;margin:1em 0;border-radius:4px}
.ok{background:#e6f4ea;color:#135200}.bad{background:#fdecea;color:#a50e0e}.warn{background:#fff4e5;color:#7a4b00}
table{border-collapse:collapse;width:100%;font-size:.82em;margin:.4em 0}
td,th{border:1px solid #bbb;padding:.2em .45em;vertical-align:top;text-align:left}
th{background:#f0f0f0;width:15em}
table.list th{width:auto}
code,.mono{font-family:"DejaVu Sans Mono","Noto Sans Mono CJK SC",monospace;font-size:.8em;word-break:break-all}
pre{background:#f6f6f6;border:1px solid #ddd;padding:.5em;white-space:pre-wrap;word-break:break-all;font-size:.78em}

.shotbox{margin:.3em 0 .6em 0;page-break-inside:avoid}
.shot{display:block;width:240px;max-width:100%;border:1px solid #999}
.pass{color:#135200;font-weight:bold}.fail{color:#a50e0e;font-weight:bold}
.small{font-size:.8em;color:#555}
"""


def _e(v: Any) -> str:
    # Control and bidi characters from the bundle are shown as escapes, never obeyed.
    return html.escape(printable("" if v is None else v))


#: how each kind of anchor time is labelled: what stands behind the time, no more
def anchor_label(a: dict[str, Any]) -> str:
    kind = a.get("type")
    if kind == "rfc3161":
        if not a.get("verified"):
            return "RFC 3161 时间戳，签名未验证 RFC 3161 timestamp, signature not verified"
        if not a.get("trusted"):
            return "RFC 3161 时间戳，已验证（根证书为证据包自带）RFC 3161 timestamp, verified (root self-declared by the bundle)"
        return "RFC 3161 时间戳，已验证 RFC 3161 timestamp, verified"
    if kind == "witness":
        state = "已验证 verified" if a.get("verified") else "未验证 not verified"
        return f"日志见证服务器联署时间（{state}）log-witness cosignature time ({state})"
    if kind == "exhibit-deposit":
        return "存证服务声明的本证据存证时间 the deposit service's statement of when it received this exhibit's digest"
    return "存证服务声明的时间 the deposit service's statement of time"


def _case_facts(r: VerificationResult, z: CaseReader) -> list[tuple[str, Any]]:
    """Rows of the latest case-info record, only if every check of that record passed."""

    recs = []
    for path in sorted({c.where for c in r.checks if c.name == "record-signature" and c.ok and c.where}):
        if any(c.where == path and not c.ok for c in r.checks) or path not in z:
            continue
        try:
            rec = parse_record(z.read(path))
        except EvidenceError:
            continue
        if rec.kind == "case-info" and record_path(rec.index) == path:
            recs.append(rec)
    facts = latest(recs, str(r.case)) if r.case else None
    if facts is None:
        return []
    return [
        ("案由 Cause", facts.cause), ("当事人/对象 Party", facts.party),
        ("执法单位 Enforcement unit", facts.unit or "—"), ("地点 Place", facts.place or "—"),
        ("案件信息记录 Case facts record", f"record {facts.index}, {facts.time}"),
    ]


def _thumbnail(z: CaseReader, path: str) -> tuple[str, str] | None:
    """(media type, base64) of a small thumbnail; the original if Pillow is missing and it is small."""
    if path not in z or z.size(path) > THUMB_MAX_SOURCE:
        return None
    try:
        data = z.read(path, THUMB_MAX_SOURCE)
    except EvidenceError:
        return None
    try:
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = 200_000_000  # full-page screenshots are tall; refuse absurd ones
        with Image.open(io.BytesIO(data)) as im:
            im = im.convert("RGB")
            w, h = im.size
            # Top of a tall page, at most 1.6 times as high as wide: what a reader checks first.
            im = im.crop((0, 0, w, min(h, int(w * 1.6))))
            im.thumbnail((THUMB_WIDTH, int(THUMB_WIDTH * 1.6)))
            out = io.BytesIO()
            im.save(out, "JPEG", quality=80)
        return "image/jpeg", base64.b64encode(out.getvalue()).decode()
    except ImportError:
        if len(data) <= 2 << 20:
            return "image/png", base64.b64encode(data).decode()
        return None
    except Exception:  # Pillow raises many types for a damaged image; the report goes on without it
        return None


def render_html(result: VerificationResult, case_path: Path | str) -> str:
    r = result
    name = Path(str(case_path)).name
    parts: list[str] = []
    add = parts.append
    add(f"<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'><title>电子证据校验报告 Verification report — {_e(r.case)}</title><style>{_CSS}</style></head><body>")
    add("<h1>电子证据校验报告<br><span class='small'>Electronic evidence verification report</span></h1>")
    add("<p class='small'>本报告为软件对证据包所作的技术性自我校验，不是鉴定意见。"
        "This report is a technical self-verification of the case file by the software that made it, not an expert opinion (鉴定意见).</p>")
    rows: list[tuple[str, Any]] = [
        ("案件编号 Case ID", r.case),
        ("证据文件 Case file", name),
        ("日志 Log origin", r.origin),
        ("校验时间 Verified at (UTC, this machine's clock)", datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")),
        ("校验工具 Tool", f"evidence-chain {__version__} (offline: no database, no network)"),
        ("密钥 Log key", "已由校验方指定 pinned by the verifier" if r.trusted else "证据包自带，未经独立确认 untrusted, self-declared by the bundle"),
    ]
    if r.checkpoint:
        rows.append(("检查点 Checkpoint", f"size {r.checkpoint['size']}, root {r.checkpoint['root']}"))
    add("<table>" + "".join(f"<tr><th>{_e(k)}</th><td class='mono'>{_e(v)}</td></tr>" for k, v in rows) + "</table>")
    with CaseReader(case_path) as z:
        facts = _case_facts(r, z)
    if facts:
        add("<table>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts) + "</table>")
    failed = [c for c in r.checks if not c.ok]
    if failed:
        f = failed[0]
        word = r.verdict().split(":", 1)[0]  # INVALID, or INCOMPLETE when only parts are missing
        add(f"<div class='verdict bad'>✗ 校验未通过 {_e(word)} — {len(failed)} 项检查失败 check(s) failed.<br>首个失败 First failure: <b>{_e(f.where)}</b>: {_e(f.detail)}</div>")
    elif not r.complete:
        add(f"<div class='verdict warn'>⚠ 证据包不完整，仅部分得到证明（见下列各项）。<br>{_e(r.verdict())}</div>")
    elif not r.trusted:
        add("<div class='verdict warn'>⚠ 内容完整且自洽，但签名密钥为证据包自带，未经独立确认。请向取证机构独立获取日志公钥并以 --trust 复核。<br>"
            "INTACT and self-consistent, but UNTRUSTED: the log key is self-declared by the bundle. Obtain the log's key independently and re-run with --trust.</div>")
    else:
        add("<div class='verdict ok'>✓ 校验通过 VALID — 所有检查均通过，检查点由校验方指定的密钥签名。<br>All checks passed; the checkpoint is signed by a key the verifier pinned.</div>")
    for w in r.warnings:
        add(f"<p class='small'>⚠ {_e(w)}</p>")

    add(f"<h2>证据 Exhibits ({len(r.exhibits)})</h2>")
    with CaseReader(case_path) as z:
        for ex in r.exhibits:
            add(f"<h3>证据 Exhibit — 账本记录 ledger record {ex['index']}</h3><div class='exhibit'><table>")
            add(f"<tr><th>网址 URL</th><td class='mono'>{_e(ex['url'])}</td></tr>")
            if ex.get("final_url") and ex["final_url"] != ex["url"]:
                add(f"<tr><th>最终网址 Final URL</th><td class='mono'>{_e(ex['final_url'])}</td></tr>")
            add(f"<tr><th>标题 Title</th><td>{_e(ex.get('title'))}</td></tr>")
            add(f"<tr><th>取证时间 Captured (UTC, capturing machine's clock)</th><td>{_e(ex.get('started'))} — {_e(ex.get('ended'))}</td></tr>")
            add(f"<tr><th>取证人 Operator</th><td>{_e(ex.get('operator'))}</td></tr>")
            add(f"<tr><th>入账时间 Recorded (ledger record time)</th><td>{_e(ex.get('time'))}, key {_e(ex.get('key_id'))}</td></tr>")
            add(f"<tr><th>清单 Manifest</th><td class='mono'>{_e(ex.get('manifest'))}<br>sha256 {_e(ex.get('manifest_sha256'))}</td></tr>")
            if r.checkpoint:
                add(f"<tr><th>检查点 Checkpoint</th><td>包含于大小为 {_e(r.checkpoint['size'])} 的树 included in the tree of size {_e(r.checkpoint['size'])}</td></tr>")
            a = ex.get("anchor")
            if a:
                add(f"<tr><th>锚定时间 Anchor time</th><td>{_e(a['time'])} — {_e(anchor_label(a))}; {_e(a['service'])}, checkpoint {_e(a['checkpoint_size'])}</td></tr>")
            else:
                add("<tr><th>锚定时间 Anchor time</th><td>无 none in this bundle</td></tr>")
            for att in (x for x in r.attestations if x["exhibit_index"] == ex["index"]):
                add(f"<tr><th>执法人员电子签名（本机构密钥）Officer's electronic signature (agency key)</th><td>{_e(att['officer'])} (record {att['index']}, {_e(att['time'])}, key {_e(att['key_id'])})</td></tr>")
            add("</table>")
            # Below the table, never beside it: a flex row let WeasyPrint lay the image over the table's text.
            thumb = _thumbnail(z, ex["screenshot"]) if ex.get("screenshot") else None
            if thumb:
                add(f"<div class='shotbox'><img class='shot' alt='screenshot' src='data:{thumb[0]};base64,{thumb[1]}'><div class='small'>{_e(ex['screenshot'])}</div></div>")
            add("</div>")
            add("<table class='list'><tr><th>文件 File</th><th>角色 Role</th><th>大小 Bytes</th><th>SHA-256</th><th>结果 Result</th></tr>")
            for art in ex["artifacts"]:
                mark = "<span class='pass'>✓</span>" if art.get("ok") else "<span class='fail'>✗</span>"
                add(f"<tr><td class='mono'>{_e(art['path'] or art['name'])}</td><td>{_e(art['role'])}</td><td>{_e(art['size'])}</td><td class='mono'>{_e(art['sha256'])}</td><td>{mark}</td></tr>")
            add("</table>")

    if r.anchors:
        add("<h2>时间戳与存证 Anchors (RFC 3161 timestamps, witnesses, deposits)</h2><table class='list'><tr><th>记录 Record</th><th>类型 Type</th><th>服务 Service</th><th>时间 Time</th><th>时间的依据 What the time rests on</th><th>检查点 Checkpoint</th></tr>")
        for a in r.anchors:
            add(f"<tr><td>{_e(a['index'])}</td><td>{_e(a['type'])}</td><td class='mono'>{_e(a['service'])}</td><td>{_e(a['time'])}</td><td>{_e(anchor_label(a))}</td><td>{_e(a['checkpoint_size'])}</td></tr>")
        add("</table>")
        deposits = [a for a in r.anchors if a.get("type") == "exhibit-deposit"]
        if deposits:
            add("<h3>证据存证 Exhibit deposits (each exhibit's manifest SHA-256 with the service)</h3><table class='list'><tr><th>证据 Exhibit</th><th>服务 Service</th><th>回执编号 Receipt / transaction id</th><th>时间 Time</th><th>清单 SHA-256 Manifest</th><th>结果 Result</th></tr>")
            for a in deposits:
                state = "回执已核验 receipt verified" if a.get("verified") else ("回执完整，未核验 receipt intact, not verified (no adapter given)" if a.get("ok") else "失败 FAILED")
                add(f"<tr><td>{_e(a.get('exhibit_index'))}</td><td class='mono'>{_e(a['service'])}</td><td class='mono'>{_e(a.get('reference'))}</td><td>{_e(a['time'])}</td><td class='mono'>{_e(a.get('manifest_sha256'))}</td><td>{_e(state)}</td></tr>")
            add("</table>")

    add(f"<h2>检查项 Checks ({len(r.checks)}, {len(failed)} 失败 failed)</h2><table class='list'><tr><th>结果 Result</th><th>检查 Check</th><th>对象 Where</th><th>说明 Detail</th></tr>")
    for c in r.checks:
        mark = "<span class='pass'>通过 PASS</span>" if c.ok else "<span class='fail'>失败 FAIL</span>"
        add(f"<tr><td>{mark}</td><td>{_e(c.name)}</td><td class='mono'>{_e(c.where)}</td><td class='mono'>{_e(c.detail)}</td></tr>")
    add("</table>")
    add(_reverify(r, name))
    add(f"<p class='small'>记录格式：RFC 8785 规范化 JSON，Ed25519 签名，SHA-256 哈希链，RFC 6962 Merkle 树，C2SP 签名检查点，RFC 3161 时间戳。"
        f"Records: RFC 8785 canonical JSON, Ed25519 signatures, SHA-256 hash chain, RFC 6962 Merkle tree, C2SP signed checkpoints, RFC 3161 timestamps. "
        f"Generated by evidence-chain {__version__}.</p>")
    add("</body></html>")
    return "\n".join(parts)


def _reverify(r: VerificationResult, name: str) -> str:
    q = shlex.quote
    lines = ["<h2>如何独立复核 How to re-verify independently</h2><ol>"]
    lines.append(f"<li>解压证据包（WACZ 即 ZIP）Unpack the case file (a WACZ is a ZIP):<pre>mkdir case &amp;&amp; cd case &amp;&amp; unzip {_e(q('../' + name))}</pre></li>")
    sums = [f"{v['sha256']}  {p}" for p, v in sorted(r.files.items()) if v.get("sha256")]
    if sums:
        lines.append("<li>用 sha256sum 核对每个文件（与 datapackage.json 及证据清单一致）Check every file's SHA-256 "
                     "(the same digests are in datapackage.json and in the exhibit manifests):<pre>sha256sum -c &lt;&lt;'EOF'\n"
                     + _e("\n".join(sums)) + "\nEOF</pre></li>")
    if r.exhibits:
        ex = r.exhibits[0]
        lines.append(
            "<li>证据清单的哈希写在其账本记录中 Each manifest's digest is in its signed ledger record, e.g.:"
            f"<pre>sha256sum {_e(ex['manifest'])}\ngrep -o '\"manifest\":{{[^}}]*}}' evidence/record-{ex['index']}.json</pre></li>"
        )
    tsa = [a for a in r.anchors if a["type"] == "rfc3161"]
    if tsa:
        a = tsa[0]
        token = next((f for f in a["files"] if f.endswith("token.tsr")), "evidence/anchor-N-token.tsr")
        chain = next((f for f in a["files"] if f.endswith("chain.pem")), None)
        untrusted = f" -untrusted {_e(chain)}" if chain else ""
        lines.append(
            "<li>用 OpenSSL 核对 RFC 3161 时间戳（根证书应向时间戳机构独立获取）Verify the RFC 3161 timestamp over the signed checkpoint "
            "with OpenSSL (obtain the TSA root certificate from the TSA, not from this bundle):"
            f"<pre>openssl ts -reply -in {_e(token)} -text\nopenssl ts -verify -in {_e(token)} -data evidence/checkpoint-{a['checkpoint_size']}.note -CAfile tsa-root.pem{untrusted}</pre></li>"
        )
    lines.append("<li>核对 WACZ 结构 Check the WACZ structure (py-wacz):<pre>pip install wacz &amp;&amp; wacz validate -f " + _e(q(name)) + "</pre></li>")
    lines.append(
        "<li>全面复核：签名、哈希链、Merkle 包含证明、检查点（日志公钥须独立获取）Full re-verification of signatures, hash chain, "
        "Merkle inclusion proofs and checkpoints, with the log key obtained independently:"
        f"<pre>evidence verify {_e(q(name))} --trust LOG_VKEY --tsa-root tsa-root.pem --report report.html</pre>"
        "检查点与包含证明采用公开格式（C2SP tlog-checkpoint、tlog-proof；RFC 6962），任何实现均可核对。"
        "Checkpoints and proofs use published formats (C2SP tlog-checkpoint and tlog-proof, RFC 6962) that any implementation can check.</li>"
    )
    lines.append("</ol>")
    return "".join(lines)


def write_report(result: VerificationResult, case_path: Path | str, out: Path | str) -> Path:
    """Write the report as HTML, or as PDF when ``out`` ends in ``.pdf`` (needs WeasyPrint)."""
    out = Path(out)
    if not out.parent.is_dir():
        raise UsageError(f"cannot write the report {out}: folder {out.parent} does not exist")
    doc = render_html(result, case_path)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        if out.suffix.lower() == ".pdf":
            try:
                from weasyprint import HTML
            except (ImportError, OSError) as e:  # OSError: pango missing on this machine
                raise EnvironmentProblem(f"PDF reports need WeasyPrint (pip install weasyprint): {e}") from None
            HTML(string=doc).write_pdf(str(tmp))
        else:
            tmp.write_text(doc, "utf-8")
        tmp.replace(out)
    except OSError as e:
        raise UsageError(f"cannot write the report {out}: {e.strerror or e}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return out
