"""A self-contained verification report (Chinese and English) for a court file.

One HTML file: no scripts, no external resources; screenshots are embedded
as data URIs, so the report reads the same offline and years later.
"""

from __future__ import annotations

import base64
import html
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from evidence import __version__
from evidence.case import CaseReader

from .case import VerificationResult

_CSS = """
body{font-family:"Noto Sans CJK SC","Noto Sans SC","Source Han Sans SC","Microsoft YaHei",sans-serif;margin:2em auto;max-width:1000px;color:#222;line-height:1.5}
h1{font-size:1.5em;border-bottom:3px solid #333;padding-bottom:.3em}
h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #999}
.verdict{font-size:1.3em;padding:.6em 1em;margin:1em 0;border-radius:4px}
.ok{background:#e6f4ea;color:#135200}.bad{background:#fdecea;color:#a50e0e}.warn{background:#fff4e5;color:#7a4b00}
table{border-collapse:collapse;width:100%;font-size:.85em;margin:.5em 0}
td,th{border:1px solid #bbb;padding:.25em .5em;vertical-align:top;text-align:left}
th{background:#f0f0f0}
code,.mono{font-family:"DejaVu Sans Mono",monospace;font-size:.85em;word-break:break-all}
.shot{max-width:420px;border:1px solid #999}
.pass{color:#135200;font-weight:bold}.fail{color:#a50e0e;font-weight:bold}
.small{font-size:.8em;color:#555}
"""


def _e(v: Any) -> str:
    return html.escape("" if v is None else str(v))


def render_html(result: VerificationResult, case_path: Path | str) -> str:
    r = result
    parts: list[str] = []
    add = parts.append
    add(f"<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'><title>电子证据校验报告 Verification report — {_e(r.case)}</title><style>{_CSS}</style></head><body>")
    add(f"<h1>电子证据校验报告<br><span class='small'>Electronic evidence verification report</span></h1>")
    add("<table>")
    rows = [
        ("案件编号 Case", r.case),
        ("证据文件 Case file", Path(str(case_path)).name),
        ("日志 Log origin", r.origin),
        ("校验时间 Verified at (UTC, this machine's clock)", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")),
        ("校验工具 Tool", f"evidence-chain {__version__}"),
    ]
    if r.checkpoint:
        rows.append(("检查点 Checkpoint", f"size {r.checkpoint['size']}, root {r.checkpoint['root']}"))
    for k, v in rows:
        add(f"<tr><th>{_e(k)}</th><td class='mono'>{_e(v)}</td></tr>")
    add("</table>")
    failed = [c for c in r.checks if not c.ok]
    if failed:
        f = failed[0]
        add(f"<div class='verdict bad'>✗ 校验未通过 INVALID — {len(failed)} 项检查失败 check(s) failed. 首个 First: {_e(f.where)}: {_e(f.detail)}</div>")
    elif not r.trusted:
        add("<div class='verdict warn'>✓ 内容完整，但签名密钥为证据包自带，未经独立确认 — INTACT, but the signing key is self-declared by the bundle (not pinned with --trust)</div>")
    else:
        add("<div class='verdict ok'>✓ 校验通过 VALID — 所有检查均通过，签名密钥已独立确认 all checks passed against pinned keys</div>")

    add("<h2>证据 Exhibits</h2>")
    with CaseReader(case_path) as z:
        for ex in r.exhibits:
            add("<table>")
            add(f"<tr><th>账本序号 Ledger index</th><td>{_e(ex['index'])}</td></tr>")
            add(f"<tr><th>网址 URL</th><td class='mono'>{_e(ex['url'])}</td></tr>")
            if ex.get("final_url") and ex["final_url"] != ex["url"]:
                add(f"<tr><th>最终网址 Final URL</th><td class='mono'>{_e(ex['final_url'])}</td></tr>")
            add(f"<tr><th>标题 Title</th><td>{_e(ex.get('title'))}</td></tr>")
            add(f"<tr><th>取证时间 Captured (UTC, capturing machine's clock)</th><td>{_e(ex.get('started'))} — {_e(ex.get('ended'))}</td></tr>")
            add(f"<tr><th>取证人 Operator</th><td>{_e(ex.get('operator'))}</td></tr>")
            atts = [a for a in r.attestations if a["exhibit_index"] == ex["index"]]
            for a in atts:
                add(f"<tr><th>复核人 Attested by</th><td>{_e(a['officer'])} (record {a['index']}, {_e(a['time'])}, key {_e(a['key_id'])})</td></tr>")
            if ex.get("screenshot") and ex["screenshot"] in z and z.size(ex["screenshot"]) < 8 << 20:
                data = base64.b64encode(z.read(ex["screenshot"], 8 << 20)).decode()
                add(f"<tr><th>截图 Screenshot</th><td><img class='shot' alt='screenshot' src='data:image/png;base64,{data}'></td></tr>")
            add("</table>")
            add("<table><tr><th>文件 Artifact</th><th>类型 Type</th><th>大小 Bytes</th><th>SHA-256</th></tr>")
            for a in ex["artifacts"]:
                add(f"<tr><td class='mono'>{_e(a['path'] or a['name'])}</td><td>{_e(a['media_type'])}</td><td>{_e(a['size'])}</td><td class='mono'>{_e(a['sha256'])}</td></tr>")
            add("</table>")

    if r.anchors:
        add("<h2>时间戳与存证 Anchors (timestamps, witnesses, deposits)</h2><table><tr><th>记录 Record</th><th>类型 Type</th><th>服务 Service</th><th>时间 Asserted time</th><th>检查点 Checkpoint</th><th>已验证 Verified</th></tr>")
        for a in r.anchors:
            add(f"<tr><td>{_e(a['index'])}</td><td>{_e(a['type'])}</td><td class='mono'>{_e(a['service'])}</td><td>{_e(a['time'])}</td><td>{_e(a['checkpoint_size'])}</td><td>{'是 yes' if a['verified'] else '否 no'}</td></tr>")
        add("</table>")

    add("<h2>检查项 Checks</h2><table><tr><th>结果 Result</th><th>检查 Check</th><th>对象 Where</th><th>说明 Detail</th></tr>")
    for c in r.checks:
        mark = "<span class='pass'>通过 PASS</span>" if c.ok else "<span class='fail'>失败 FAIL</span>"
        add(f"<tr><td>{mark}</td><td>{_e(c.name)}</td><td class='mono'>{_e(c.where)}</td><td class='mono'>{_e(c.detail)}</td></tr>")
    add("</table>")

    name = Path(str(case_path)).name
    add("<h2>如何独立复核 How to re-verify independently</h2><ol>")
    add(f"<li>解压证据包 Unpack the case file: <code>mkdir case &amp;&amp; cd case &amp;&amp; unzip ../{_e(name)}</code></li>")
    add("<li>逐一核对文件哈希 Check every file against datapackage.json: <code>python3 -c \"import json,hashlib;[print(('OK ' if hashlib.sha256(open(r['path'],'rb').read()).hexdigest()==r['hash'][7:] else 'BAD ')+r['path']) for r in json.load(open('datapackage.json'))['resources']]\"</code> or <code>sha256sum FILE</code> for each file and compare with the table above.</li>")
    add("<li>核对证据清单与账本记录 The exhibit manifest's digest is in its ledger record: <code>sha256sum exhibits/N-exhibit.json</code> equals <code>payload.manifest.sha256</code> in <code>records/N.json</code>.</li>")
    add("<li>核对 RFC 3161 时间戳 Check a timestamp token over the checkpoint: <code>openssl ts -verify -data checkpoints/SIZE.note -in anchors/TOKEN_SHA256 -CAfile tsa-root.pem</code> (the TSA root from the TSA operator, not from this bundle).</li>")
    add("<li>全面复核 Full re-verification with the published tool and the log key obtained independently: <code>evidence verify " + _e(name) + " --trust LOG_VKEY --report report.html</code></li>")
    add("</ol>")
    add(f"<p class='small'>记录格式: RFC 8785 规范化 JSON，Ed25519 签名，RFC 6962 Merkle 树，C2SP 检查点。Records: RFC 8785 canonical JSON, Ed25519 signatures, RFC 6962 Merkle tree, C2SP signed checkpoints. Generated by evidence-chain {__version__}.</p>")
    add("</body></html>")
    return "\n".join(parts)


def write_report(result: VerificationResult, case_path: Path | str, out: Path | str) -> Path:
    out = Path(out)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(render_html(result, case_path), "utf-8")
    tmp.replace(out)
    return out
