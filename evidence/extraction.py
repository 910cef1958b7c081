"""The extraction record (电子数据提取笔录) of an exhibit, in Chinese with English.

    from evidence.extraction import build_record, write_record, missing, disclosures
    rec = build_record(ledger, 12, tz="Asia/Shanghai")
    write_record(rec, "docx", Path("exhibit-12.docx"))     # also "pdf", "html"

What the national rules ask such a record to carry (see README, "Legal-grade
capture record"), in this order: case, 执法单位, 案由, 当事人/对象, the
officers with their 执法证 numbers and signature lines, the 见证人 (or why there
is none, and whether the process was filmed), the holder's signature or the
reason it is missing, time (Beijing time by default, offset shown) and time
source, place, method, a narrative of the process detailed enough to repeat
it, the device and environment, why the original storage medium was not
seized, the data list with check values, 证明对象, anchoring exactly as it
stands, and 说明: every fact that weakens the record, stated by the record
itself rather than found by the other side.

Everything is read from the ledger: the exhibit record and its manifest
(capture facts), the network, environment and capture-log artifacts of the
exhibit (digests checked on read), ``case-info`` records of the case,
``key-add`` records (officer names, badge, unit), attestation records, the
latest checkpoint and every anchor over the exhibit. An attestation counts as
an officer's signature only when its key was registered for that officer by a
``key-add`` record and its signature verifies. ``build_record`` reads; the
renderers take the record and write one file; both share one document model
(``document``), so the three formats say the same things in the same order.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ledger.anchors.run import check_anchor_record
from ledger.canonical import loads
from ledger.casefacts import CaseInfo, case_info
from ledger.digest import sha256_hex
from ledger.display import printable
from ledger.errors import EnvironmentProblem, EvidenceError, IntegrityError, UsageError
from ledger.keys import public_from_raw
from ledger.log import verify_key_add
from ledger.record import parse_record
from ledger.version import __version__

FORMATS = ("html", "pdf", "docx")
TITLE_ZH = "电子数据提取笔录"
TITLE_EN = "Electronic Data Extraction Record"
DEFAULT_TZ = "Asia/Shanghai"
TZ_ENV = "EVIDENCE_TZ"
CJK_FONTS = '"Noto Serif CJK SC", "Noto Sans CJK SC", "Source Han Serif SC", "SimSun", "Songti SC", serif'
#: East Asian font named in the Word file; Word substitutes when it is missing
DOCX_CJK_FONT = "SimSun"
#: JSON artifacts (network, environment, capture log) read for the narrative, at most this big
MAX_FACTS = 16 << 20
#: transformed exchanges named one by one in 说明; the rest are counted
MAX_LISTED = 12
#: prefix of a sub-item line in Items (the details of a 说明 item)
SUB = "    – "
ART42 = "《中华人民共和国行政处罚法》第四十二条：执法人员不得少于两人"
SIGNATURE_ZH = "电子签名（本机构密钥）"
SIGNATURE_EN = "electronic signature (agency key)"

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
    "frame-dom": ("框架页面源码", "DOM of a frame"),
    "screen-recording": ("直播间录屏", "screen recording of the live room"),
}

STEP_NAMES = {
    "start": "开始", "clock": "时钟核对", "outbound-ip": "出口IP", "profile": "环境检查", "video": "录像",
    "navigate": "导航", "load": "加载完成", "settle": "网络静止", "scroll": "滚动", "screenshot": "截图",
    "dom": "网页源码", "mhtml": "网页快照", "visit": "访问页面", "interactive": "交互操作", "dialog": "对话框",
    "dialogs": "对话框", "popup": "弹出窗口", "download": "下载", "tls": "证书", "end": "结束", "warc": "写入WARC",
    "warning": "警告", "facts": "页面信息", "close": "关闭",
}


@dataclass(frozen=True)
class Officer:
    """A signer registered by a ``key-add`` record of this ledger."""

    name: str
    key_id: str
    role: str
    badge: str | None
    unit: str | None
    record: int
    raw: bytes = field(default=b"", repr=False)


@dataclass(frozen=True)
class Attestation:
    index: int
    officer: str
    key_id: str
    time: str
    statement: str
    verified: bool
    problem: str | None = None
    at_capture: bool = False
    witness: dict[str, Any] | None = None
    holder_note: str | None = None


@dataclass(frozen=True)
class Anchor:
    """One anchor over the exhibit, re-checked here; ``status``: verified, unverified or failed."""

    record: int
    type: str
    service: str
    time: str | None
    checkpoint_size: int
    status: str
    detail: str
    serial: str | None = None
    tsa_name: str | None = None
    reference: str | None = None


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
    anchors: list[Anchor]
    generated: str
    tool: str
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo(DEFAULT_TZ))
    case_info: CaseInfo | None = None
    registered: dict[str, Officer] = field(default_factory=dict)  # key_id -> officer
    network: dict[str, Any] | None = None
    environment: dict[str, Any] | None = None
    capture_log: list[dict[str, Any]] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # artifacts whose facts could not be read
    warnings: list[str] = field(default_factory=list)

    @property
    def officers(self) -> list[str]:
        """Distinct officers whose signature verifies, in signing order."""
        out: list[str] = []
        for a in self.attestations:
            if a.verified and a.officer not in out:
                out.append(a.officer)
        return out

    @property
    def anchor(self) -> dict[str, Any] | None:
        """The earliest anchor that states a time: it bounds the exhibit's time most tightly."""
        timed = [a for a in self.anchors if a.time]
        if not timed:
            return None
        a = min(timed, key=lambda a: (_parse(a.time) or dt.datetime.max.replace(tzinfo=dt.UTC), a.record))
        return {"type": a.type, "service": a.service, "time": a.time, "record": a.record, "checkpoint_size": a.checkpoint_size}

    @property
    def urls(self) -> list[str]:
        out: list[str] = []
        for u in (self.info.get("url"), self.info.get("final_url"), *(v.get("url") for v in _dicts(self.info.get("visits")))):
            if u and u not in out:
                out.append(str(u))
        return out

    @property
    def roles(self) -> set[str]:
        return {str(a.get("role")) for a in self.artifacts}

    @property
    def cause(self) -> str | None:
        return self.case_info.cause if self.case_info else None

    @property
    def party(self) -> str | None:
        return self.case_info.party if self.case_info else None

    @property
    def unit(self) -> str | None:
        if self.case_info and self.case_info.unit:
            return self.case_info.unit
        units = []
        for o in self.signing_officers():
            if o.unit and o.unit not in units:
                units.append(o.unit)
        return "；".join(units) or None

    @property
    def proves(self) -> str | None:
        p = self.info.get("proves")
        return str(p) if isinstance(p, str) and p.strip() else None

    def officer_named(self, name: str) -> Officer | None:
        return next((o for o in self.registered.values() if o.name == name and o.role == "officer"), None)

    def signing_officers(self) -> list[Officer]:
        """Registered officers (role officer) with a verified attestation, distinct."""
        out: list[Officer] = []
        for a in self.attestations:
            o = self.registered.get(a.key_id)
            if a.verified and o is not None and o.role == "officer" and o not in out:
                out.append(o)
        return out

    @property
    def witness(self) -> dict[str, Any] | None:
        w = self.info.get("witness")
        if isinstance(w, dict) and w.get("name"):
            return w
        return next((a.witness for a in self.attestations if a.verified and a.witness and a.witness.get("name")), None)

    @property
    def holder_note(self) -> str | None:
        n = self.info.get("holder_note")
        if isinstance(n, str) and n.strip():
            return n
        return next((a.holder_note for a in self.attestations if a.verified and a.holder_note), None)

    @property
    def methods(self) -> list[tuple[str, str]]:
        roles = self.roles
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


def resolve_tz(name: str | None = None) -> ZoneInfo:
    """``name``, else ``EVIDENCE_TZ``, else Beijing time."""
    name = name or os.environ.get(TZ_ENV) or DEFAULT_TZ
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"unknown time zone {printable(name)!r} (--tz and {TZ_ENV} take an IANA name such as Asia/Shanghai)") from None


def build_record(
    ledger: Any,
    index: int,
    *,
    place: str | None = None,
    tz: str | None = None,
    tsa_roots: list[Any] | None = None,
    now: dt.datetime | None = None,
) -> ExtractionRecord:
    """Collect the record of exhibit ``index``.

    ``place`` defaults to the case's ``case-info`` place, then to the home's
    ``office`` setting. ``tsa_roots`` (certificates) let RFC 3161 anchors be
    re-verified here; without them they are shown as not verified.
    """

    zone = resolve_tz(tz)
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
    facts = case_info(ledger, str(rec.case))
    if place is None and facts is not None and facts.place:
        place = facts.place
    if place is None:
        configured = ledger.config.extra.get("office")
        place = str(configured) if configured else None
    info = dict(manifest.get("info") or {})
    registered = _registered(ledger)
    unreadable: list[str] = []
    network = _json_artifact(ledger, arts, "network", unreadable)
    environment = _json_artifact(ledger, arts, "environment", unreadable)
    log = _capture_log(ledger, arts, unreadable)
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
        attestations=_attestations(ledger, rec, registered),
        checkpoint=_checkpoint(ledger, index),
        anchors=_anchors(ledger, index, tsa_roots or []),
        generated=_utc(now or dt.datetime.now(dt.UTC)),
        tool=f"evidence-chain {__version__}",
        tz=zone,
        case_info=facts,
        registered=registered,
        network=network if isinstance(network, dict) else None,
        environment=environment if isinstance(environment, dict) else None,
        capture_log=log,
        unreadable=unreadable,
        warnings=[str(w) for w in info.get("warnings") or []],
    )


def _read_artifact(ledger: Any, a: dict[str, Any]) -> bytes:
    if int(a.get("size", 0)) > MAX_FACTS:
        raise ValueError(f"larger than {MAX_FACTS >> 20} MiB")
    with ledger.artifacts.open(a["sha256"]) as f:
        data = f.read(MAX_FACTS + 1)
    # The narrative is built from these bytes: they must be the ones the manifest fixed.
    if sha256_hex(data) != a["sha256"]:
        raise IntegrityError(f"artifact {a['name']!r} in the store does not match its SHA-256 in the manifest")
    return data


def _json_artifact(ledger: Any, arts: list[dict[str, Any]], role: str, unreadable: list[str]) -> Any:
    a = next((a for a in arts if a.get("role") == role), None)
    if a is None:
        return None
    try:
        return json.loads(_read_artifact(ledger, a))
    except IntegrityError:
        raise
    except (OSError, ValueError, EvidenceError) as e:
        unreadable.append(f"{a['name']}: {e}")
        return None


def _capture_log(ledger: Any, arts: list[dict[str, Any]], unreadable: list[str]) -> list[dict[str, Any]]:
    a = next((a for a in arts if a.get("role") == "capture-log"), None)
    if a is None:
        return []
    try:
        lines = _read_artifact(ledger, a).decode("utf-8").splitlines()
        entries = [json.loads(line) for line in lines if line.strip()]
    except IntegrityError:
        raise
    except (OSError, ValueError, EvidenceError) as e:
        unreadable.append(f"{a['name']}: {e}")
        return []
    return [e for e in entries if isinstance(e, dict)]


def _registered(ledger: Any) -> dict[str, Officer]:

    out: dict[str, Officer] = {}
    # Filtered by kind in the database: the bodies of every other record stay there.
    for s in ledger.store.iter_records(kind="key-add"):
        r = parse_record(s.body, expect_index=s.index)
        try:
            kid, raw, name, role = verify_key_add(r.payload)
        except EvidenceError:
            continue
        badge, unit = r.payload.get("badge"), r.payload.get("unit")
        out[kid] = Officer(name, kid, role, str(badge) if badge else None, str(unit) if unit else None, r.index, raw)
    return out


def _attestations(ledger: Any, exhibit: Any, registered: dict[str, Officer]) -> list[Attestation]:

    found = []
    for s in ledger.store.iter_records(kind="attestation", start=exhibit.index + 1):
        r = parse_record(s.body, expect_index=s.index)
        if r.payload.get("exhibit_index") == exhibit.index:
            found.append(r)
    out = []
    for r in found:
        p = r.payload
        officer = str(p.get("officer", ""))
        problem = None
        signer = registered.get(r.key_id)
        if signer is None:
            problem = f"key {r.key_id[:16]} was never registered in this ledger"
        elif signer.name != officer:
            problem = f"key {r.key_id[:16]} belongs to {signer.name!r}, not {officer!r}"
        elif signer.role != "officer":
            problem = f"key {r.key_id[:16]} is a {signer.role} key, not an officer's"
        elif p.get("exhibit_leaf") != exhibit.leaf.hex():
            problem = "it names another version of the exhibit record (leaf mismatch)"
        else:
            try:
                r.verify(public_from_raw(signer.raw))
            except EvidenceError as e:
                problem = str(e)
        w = p.get("witness")
        note = p.get("holder_note")
        out.append(
            Attestation(
                r.index, officer, r.key_id, r.time, str(p.get("statement", "")), problem is None, problem,
                at_capture=p.get("at_capture") is True,
                witness=w if isinstance(w, dict) else None,
                holder_note=str(note) if isinstance(note, str) and note.strip() else None,
            )
        )
    return out


def _checkpoint(ledger: Any, index: int) -> dict[str, Any] | None:
    cp = ledger.store.latest_checkpoint()
    if cp is None or cp.size <= index:
        return None
    return {"size": cp.size, "root": cp.root.hex(), "created": cp.created}


def _anchors(ledger: Any, index: int, roots: list[Any]) -> list[Anchor]:

    notes = {c.size: c.note for c in ledger.store.checkpoints()}

    def load(digest: str) -> bytes:
        with ledger.artifacts.open(digest) as f:
            return f.read(16 << 20)

    out = []
    for s in ledger.store.iter_records(kind="anchor", start=index + 1):
        p = parse_record(s.body, expect_index=s.index).payload
        size = p.get("checkpoint_size")
        if type(size) is not int or size <= index:
            continue
        if p.get("type") == "exhibit-deposit" and p.get("exhibit_index") != index:
            continue  # another exhibit's deposit says nothing of this one
        kind = str(p.get("type"))
        service = str(p.get("tsa") or p.get("witness") or p.get("service") or "")
        note = notes.get(size)
        if note is None:
            status, detail = "failed", f"the ledger holds no checkpoint of size {size}"
        else:
            chk = check_anchor_record(p, load, note, roots=roots)
            status = "failed" if not chk.ok else "verified" if chk.verified else "unverified"
            detail = chk.detail
        out.append(
            Anchor(
                s.index, kind, service, str(p["time"]) if p.get("time") else None, size, status, detail,
                serial=str(p["serial"]) if p.get("serial") is not None else None,
                tsa_name=str(p["tsa_name"]) if p.get("tsa_name") else None,
                reference=str(p["reference"]) if p.get("reference") else None,
            )
        )
    return out


# -- times ---------------------------------------------------------------------------


def _utc(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else None


def _offset(t: dt.datetime) -> str:
    off = t.strftime("%z")
    return f"UTC{off[:3]}:{off[3:]}"


def when(value: Any, tz: ZoneInfo, *, original: bool = True, ms: bool = False) -> str:
    """An RFC 3339 time in ``tz`` with its offset (and the UTC original)."""
    t = _parse(value)
    if t is None:
        return str(value) if value else "—"
    local = t.astimezone(tz)
    shown = local.strftime("%Y-%m-%d %H:%M:%S") + (f".{local.microsecond // 1000:03d}" if ms else "")
    out = f"{shown} ({_offset(local)} {tz.key})"
    return f"{out} · UTC {value}" if original else out


def short(value: Any, tz: ZoneInfo) -> str:
    """Date and time in ``tz`` without the zone, for table cells under a heading that names it."""
    t = _parse(value)
    return t.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S") if t else str(value or "—")


def _zone(tz: ZoneInfo) -> str:
    return f"{_offset(dt.datetime.now(tz))} {tz.key}"


def _when_lines(value: Any, tz: ZoneInfo) -> list[str]:
    """``when`` as two lines: the zone's time, then the UTC original."""
    return [when(value, tz, original=False)] + ([f"UTC {value}"] if _parse(value) else [])


def _clock(t: str | None, tz: ZoneInfo, day: str | None) -> str:
    """Time of day in ``tz`` (milliseconds); the date too when it is not ``day``."""
    p = _parse(t)
    if p is None:
        return str(t or "—")
    local = p.astimezone(tz)
    tod = local.strftime("%H:%M:%S.") + f"{local.microsecond // 1000:03d}"
    d = local.strftime("%Y-%m-%d")
    return tod if d == day else f"{d} {tod}"


def _day(t: Any, tz: ZoneInfo) -> str | None:
    p = _parse(t)
    return p.astimezone(tz).strftime("%Y-%m-%d") if p else None


# -- facts, stated once for every format ----------------------------------------------


def _dicts(v: Any) -> list[dict[str, Any]]:
    return [x for x in v if isinstance(x, dict)] if isinstance(v, list) else []


def _yes(v: Any) -> str:
    return {True: "是 yes", False: "否 no"}.get(v, "未检查 not checked")


def _check(r: ExtractionRecord) -> dict[str, Any]:
    c = r.info.get("environment_check")
    return c if isinstance(c, dict) else {}


def clock_text(c: dict[str, Any] | None) -> str:
    if not c or c.get("offset_ms") is None:
        why = (c or {}).get("error") or "no reference"
        return f"未与外部时间源核对 not checked against any reference ({why})"
    src = c.get("url") or f"RFC 3161 {c.get('tsa') or ''} genTime {c.get('gen_time')}".strip()
    off = c["offset_ms"] / 1000
    verdict = "在允许范围内 within limit" if c.get("within_limit") else "超出允许范围 OUTSIDE LIMIT"
    return (
        f"与 {src} 核对 checked against {src}: 偏差 offset {off:+.1f} s (±{c.get('uncertainty_ms', 0) / 1000:.1f} s), "
        f"限值 limit {c.get('max_offset_ms', 0) / 1000:g} s, {verdict}"
    )


def ip_text(ip: dict[str, Any] | None) -> str:
    if not ip or not ip.get("checked"):
        return "未检查 not checked" + (f" ({ip.get('reason')})" if ip and ip.get("reason") else "")
    if not ip.get("reachable"):
        return f"无法访问 unreachable: {ip.get('endpoint')} ({ip.get('error')})"
    if ip.get("ip"):
        return f"{ip['ip']}（经 via {ip.get('endpoint')}, {ip.get('route')}）"
    return f"未取得 not obtained: {ip.get('error')}"


def _clock_checked(r: ExtractionRecord) -> dict[str, Any] | None:
    c = _check(r).get("clock")
    return c if isinstance(c, dict) and c.get("offset_ms") is not None else None


def _ip_known(r: ExtractionRecord) -> bool:
    ip = _check(r).get("outbound_ip")
    return isinstance(ip, dict) and bool(ip.get("checked") and ip.get("reachable") and ip.get("ip"))


def _browser_facts(r: ExtractionRecord) -> dict[str, Any]:
    b = (r.environment or {}).get("browser")
    return b if isinstance(b, dict) else {}


def headless(r: ExtractionRecord) -> bool | None:
    h = _check(r).get("headless")
    if h is None:
        h = _browser_facts(r).get("headless")
    return h if isinstance(h, bool) else None


def sandbox(r: ExtractionRecord) -> bool | None:
    b = _browser_facts(r)
    if "--no-sandbox" in (b.get("command_line") or []):
        return False
    s = b.get("sandbox")
    return s if isinstance(s, bool) else None


def _exchanges(r: ExtractionRecord) -> list[dict[str, Any]]:
    return _dicts((r.network or {}).get("exchanges"))


def transformed(r: ExtractionRecord) -> list[tuple[str, str]]:
    """(URL, what was changed) for every exchange not stored byte for byte."""
    out = []
    for x in _exchanges(r):
        notes = [str(n) for n in x.get("transformations") or []]
        if notes:
            out.append((f"{x.get('method', 'GET')} {x.get('url')}", "; ".join(notes)))
    if not out and r.network is None:
        # No network log: the capture log names the same changes.
        for e in r.capture_log:
            if e.get("step") == "warc" and ":" in str(e.get("message", "")) and "header" in str(e.get("message")):
                what, _, notes = str(e["message"]).partition(": ")
                out.append((what, notes))
    return out


def _status_of(r: ExtractionRecord, url: str) -> str:
    for x in _exchanges(r):
        if x.get("url") == url and x.get("resource_type") == "Document" and x.get("status") is not None:
            return f"HTTP {x['status']}"
    if url == r.info.get("final_url") and r.info.get("status") is not None:
        return f"HTTP {r.info['status']}"
    return ""


def missing(r: ExtractionRecord) -> list[str]:
    """One line per hard requirement the record does not meet (``record --strict``)."""
    out = []
    n = len(r.signing_officers())
    if n < 2:
        out.append(f"only {n} registered officer(s) signed this exhibit; at least two are required ({ART42})")
    if not r.cause:
        out.append(f"案由 (cause) is not recorded: run `evidence case set {r.case} --cause ... --party ...`")
    if not r.party:
        out.append(f"当事人/对象 (party) is not recorded: run `evidence case set {r.case} --cause ... --party ...`")
    if not r.proves:
        out.append("证明对象 (what the exhibit proves) is not recorded: capture with --proves TEXT")
    return out


@dataclass(frozen=True)
class Disclosure:
    code: str
    text: str
    details: tuple[str, ...] = ()


def disclosures(r: ExtractionRecord) -> list[Disclosure]:
    """The 说明 items; each appears exactly when its fact holds."""
    out: list[Disclosure] = []

    def add(code: str, text: str, details: list[str] | None = None) -> None:
        out.append(Disclosure(code, text, tuple(details or ())))
    signers = r.signing_officers()
    if len(signers) < 2:
        who = "、".join(o.name for o in signers) or "无 none"
        add("officers", f"经电子签名确认本次提取的登记执法人员为 {len(signers)} 名（{who}），少于两名：{ART42}。"
            f"Only {len(signers)} registered officer(s) signed this extraction; the Administrative Penalty Law, "
            "art. 42, requires at least two enforcement officers.")
    op = r.info.get("operator")
    if isinstance(op, str) and op.strip() and r.officer_named(op) is None:
        add("operator", f"提取操作人 {op} 不是本账本登记的执法人员。The person who operated the capture ({op}) "
            "is not an officer registered in this ledger.")
    bad = [a for a in r.attestations if not a.verified]
    if bad:
        add("unverified", "以下确认记录未通过验证，不计为签名 these attestation records do not verify and are not "
            "counted as signatures: " + "; ".join(f"record {a.index} ({a.officer}): {a.problem}" for a in bad))
    lacking = [label for label, v in (("案由 cause", r.cause), ("当事人/对象 party", r.party), ("证明对象 what it proves", r.proves),
                                      ("执法单位 enforcement unit", r.unit), ("地点 place", r.place)) if not v]
    if lacking:
        add("case-facts", "以下事项未记录 not recorded: " + "、".join(lacking) + "。")
    video = "process-video" in r.roles
    if r.witness is None:
        reason = r.info.get("no_witness_reason")
        why = f"原因 reason: {reason}" if isinstance(reason, str) and reason.strip() else "未记录原因 no reason recorded"
        add("no-witness", f"无见证人 no witness; {why}; "
            + ("已对提取过程全程录像 the process was video-recorded." if video
               else "且未对提取过程录像 and the process was not video-recorded (刑诉解释第八十条 asks for a recording when there is no witness)."))
    if not video:
        add("no-video", "无取证过程录像 no video recording of the extraction process (capture with --record-process).")
    t = transformed(r)
    if t:
        listed = [f"{u}: {n}" for u, n in t[:MAX_LISTED]]
        if len(t) > MAX_LISTED:
            listed.append(f"另有 {len(t) - MAX_LISTED} 项 and {len(t) - MAX_LISTED} more, listed in network.json")
        add("transformed", f"{len(t)} 个网络交互未按原字节保存：浏览器交付的是解码后的响应体，相应报头已改名为 X-Archive-Orig-*（原值保留）。"
            f"{len(t)} exchange(s) are not stored byte for byte: the browser hands over decoded bodies, and the "
            "matching headers were renamed X-Archive-Orig-* (values kept):", listed)
    c = _check(r).get("clock")
    checked = _clock_checked(r)
    if checked is None:
        add("clock-unchecked", "取证计算机系统时钟未与外部时间源核对 the capturing machine's clock was not checked against "
            f"an external time source ({(c or {}).get('error') or 'no reference'}).")
    elif not checked.get("within_limit"):
        add("clock-offset", f"系统时钟偏差超出允许范围 the system clock was off by more than the limit: {clock_text(checked)}。")
    if not _ip_known(r):
        add("ip-unchecked", f"出口 IP 未核实 the outbound IP address was not established: {ip_text(_check(r).get('outbound_ip'))}。")
    if headless(r):
        add("headless", "浏览器以无界面（headless）模式运行 the browser ran headless (no visible window).")
    if sandbox(r) is False:
        add("no-sandbox", "浏览器未启用沙箱（--no-sandbox）the browser ran without its sandbox (--no-sandbox)"
            + ("，且以 root 用户运行 and as root" if (r.environment or {}).get("user") == "root" else "") + "。")
    if r.info.get("mode") == "interactive":
        add("interactive", "提取过程中调查人员手动操作了浏览器（见过程记载与录像）an investigator operated the browser "
            "during the extraction (see the narrative and the video).")
    s = r.info.get("session")
    if s:
        name = s.get("name") if isinstance(s, dict) else s
        made = (f"，由 {s.get('made_by') or '未记录 not recorded'} 于 {s.get('made_at') or '未记录 not recorded'} 建立 "
                f"made by {s.get('made_by') or 'not recorded'} at {s.get('made_at') or 'not recorded'}") if isinstance(s, dict) else ""
        cookies = [f"{c.get('name')} @ {c.get('domain')}" for c in _dicts(s.get("cookies"))] if isinstance(s, dict) else []
        add("session", f"提取时使用了已保存的登录会话 a saved login session was used: {name}{made}。浏览器以该会话的 Cookie "
            "与本地存储启动，而非全新配置；页面内容可能因账号而异 the browser started from that session's cookies and local "
            "storage, not a fresh profile; what the page shows may depend on the account. Cookie（仅名称与域 names and domains only）:",
            cookies)
    st = r.info.get("storage")
    if isinstance(st, dict) and st.get("backend") == "s3":
        lock = st.get("object_lock") if isinstance(st.get("object_lock"), dict) else None
        where = f"s3://{st.get('bucket')}/{st.get('prefix') or ''}" + (f" ({st.get('endpoint')})" if st.get("endpoint") else "")
        until = lock.get("retain_until") if lock and lock.get("mode") == "COMPLIANCE" else None
        add("object-store", f"原始电子数据保存在对象存储 the originals are kept in an object store: {where}；" + (
            f"以合规模式保留锁定至 {until}，此前任何人不能删除或覆盖 under compliance-mode retention until {until}: "
            "nobody can delete or overwrite them before then。" if until else
            "部分原始数据不在对象锁定保留期内 some originals are not under Object Lock retention。" if lock else
            "该存储桶未启用对象锁定，保存期限不由存储保障 the bucket has no Object Lock, so the store does not enforce "
            "their retention。"))
    hidden = [u for u, n in transformed(r) if "(a credential)" in n]
    if hidden:
        add("credentials", f"{len(hidden)} 个网络交互中的凭据报头（Cookie、Authorization、Proxy-Authorization、Set-Cookie）"
            "在 WARC 中以其值的 SHA-256 代替（报头名称保留），接收案卷者无法以调查人员身份登录。"
            f"In {len(hidden)} exchange(s) the credential headers (Cookie, Authorization, Proxy-Authorization, "
            "Set-Cookie) are stored in the WARC as sha256:<hex> of their value (header names kept), so whoever "
            "receives the case file cannot log in as the investigator:", hidden[:MAX_LISTED]
            + ([f"另有 {len(hidden) - MAX_LISTED} 项 and {len(hidden) - MAX_LISTED} more, listed in network.json"]
               if len(hidden) > MAX_LISTED else []))
    if not r.anchors:
        add("not-anchored", "本记录尚未经外部时间戳或存证锚定 no external timestamp or deposit covers this record yet.")
    if r.warnings:
        add("warnings", "提取中的警告 warnings during extraction:", r.warnings)
    if r.unreadable:
        add("unreadable", "以下文件的内容无法读取，过程记载据清单生成 could not be read, the narrative uses the manifest: "
            + "; ".join(r.unreadable))
    return out


# -- the document model, once for every format -----------------------------------------


@dataclass
class Rows:
    """Label / value rows; each value a list of lines."""

    rows: list[tuple[str, str, list[str]]]
    mono: set[int] = field(default_factory=set)  # row numbers set in a fixed-width font


@dataclass
class Span:
    """A line across the whole width of a Grid (a digest under its file)."""

    lines: list[str]
    mono: bool = True


@dataclass
class Grid:
    head: list[str]
    widths: list[float]  # millimetres, summing to the text width
    rows: list[list[list[str]] | Span]
    sign: bool = False  # rows tall enough for a handwritten signature


@dataclass
class Items:
    lines: list[str]


@dataclass
class Section:
    zh: str
    en: str
    blocks: list[Rows | Grid | Items]


def _party_lines(r: ExtractionRecord) -> list[tuple[str, str, list[str]]]:
    i = r.info
    host = urlsplit(str(i.get("final_url") or i.get("url") or "")).hostname
    return [
        ("当事人", "Party (case facts)", [r.party or "未记录 not recorded"]),
        ("店铺/网页名称", "Shop / page title", [str(i.get("title") or "—")]),
        ("平台/网站", "Platform / site", [host or "—"]),
        ("账号/网址", "Account / URL", r.urls or ["—"]),
    ]


def _officer_rows(r: ExtractionRecord) -> list[list[list[str]] | Span]:
    rows: list[list[list[str]] | Span] = []
    named: list[tuple[str, str | None]] = []  # (name, key id) in the order the record lists them
    for o in _dicts(r.info.get("officers")):
        if o.get("name"):
            named.append((str(o["name"]), str(o["key_id"]) if o.get("key_id") else None))
    for a in r.attestations:
        if a.verified and a.officer not in [n for n, _ in named]:
            named.append((a.officer, a.key_id))
    for name, kid in named:
        off = r.registered.get(kid or "") or r.officer_named(name)
        sigs = [a for a in r.attestations if a.verified and a.officer == name]
        if sigs:
            a = sigs[0]
            signed = [short(a.time, r.tz), ("提取时签署 at capture" if a.at_capture else "事后确认 attested later") + f" · record {a.index}"]
        else:
            signed = ["无电子签名 no electronic signature"]
        rows.append([
            [name],
            [off.badge if off and off.badge else "未登记 not registered"],
            [off.unit if off and off.unit else "—"],
            [(off.key_id if off else (kid or "—"))[:8]],
            signed,
            [""],
        ])
    if not rows:
        rows.append([["无 none"], [""], [""], [""], [""], [""]])
    return rows


def _witness_block(r: ExtractionRecord) -> list[Rows | Grid | Items]:
    w = r.witness
    video = next((a for a in r.artifacts if a.get("role") == "process-video"), None)
    # Its digest is in the data list; here a reader needs only which file it is.
    video_line = (
        [f"有 yes: {video['name']}（见数据清单第 {r.artifacts.index(video) + 1} 项 see data list No. {r.artifacts.index(video) + 1}）"]
        if video
        else ["无 none"]
    )
    if w:
        return [
            Rows([
                ("姓名", "Name", [str(w.get("name"))]),
                ("身份证件种类及号码", "ID type and number", [f"{w.get('id_type') or '—'} {w.get('id_number') or '—'}"]),
                ("联系方式", "Contact", [str(w.get("contact") or "—")]),
                ("过程录像", "Process video", video_line),
            ]),
            Grid(["见证人签名 Witness signature", "日期 Date"], [118.0, 60.0], [[[""], [""]]], sign=True),
        ]
    reason = r.info.get("no_witness_reason")
    return [Rows([
        ("见证人", "Witness", ["无见证人 no witness"]),
        ("原因", "Reason", [str(reason) if isinstance(reason, str) and reason.strip() else "未记录 not recorded"]),
        ("过程录像", "Process video", video_line),
    ])]


def _holder_block(r: ExtractionRecord) -> list[Rows | Grid | Items]:
    note = r.holder_note
    if note:
        return [Rows([("当事人/持有人签名", "Party / holder signature", ["未签名 not signed"]), ("原因", "Reason recorded", [note])])]
    return [
        Grid(["当事人/持有人签名 Party / holder signature", "日期 Date"], [118.0, 60.0], [[[""], [""]]], sign=True),
        Items(["当事人或持有人拒绝签名或不能签名的，在此注明原因 if the party or holder refuses or cannot sign, note why: ________________"]),
    ]


def _time_rows(r: ExtractionRecord) -> Rows:
    i = r.info
    host = _check(r).get("hostname") or ((r.environment or {}).get("os") or {}).get("hostname") or "—"
    c = _check(r).get("clock")
    return Rows([
        ("提取开始时间", "Time started", _when_lines(i.get("started"), r.tz)),
        ("提取结束时间", "Time ended", _when_lines(i.get("ended"), r.tz)),
        ("时间来源", "Time source", [f"取证计算机系统时钟 system clock of the capturing machine ({host})",
                                   clock_text(c if isinstance(c, dict) else None)]),
    ])


def narrative(r: ExtractionRecord) -> list[tuple[str, str, str]]:
    """(time, step, what happened) of the extraction, in time order."""
    rows: list[tuple[dt.datetime | None, int, str, str, str]] = []
    n = 0

    def add(t: Any, step: str, text: str) -> None:
        nonlocal n
        n += 1
        rows.append((_parse(t), n, str(t or ""), step, text))

    log = r.capture_log
    for e in log:
        step = str(e.get("step", ""))
        msg = str(e.get("message", ""))
        # Per-exchange WARC notes are listed in 说明; the narrative keeps the summary line.
        if step == "warc" and "header" in msg and ":" in msg:
            continue
        extra = ""
        if step == "scroll":
            extra = f" (steps {e.get('steps')}, page {e.get('width')}×{e.get('height')} px, reached bottom: {e.get('reachedBottom')})"
        elif step == "screenshot":
            extra = f" ({e.get('width')}×{e.get('height')} px)"
        add(e.get("time"), f"{STEP_NAMES.get(step, step)} {step}", msg + extra)
    if not log:
        add(r.info.get("started"), "开始 start", f"capture of {r.info.get('url')}")
    for v in _dicts(r.info.get("navigations")):
        status = _status_of(r, str(v.get("url")))
        add(v.get("time"), "导航 navigation", " · ".join(x for x in (str(v.get("url")), str(v.get("cause") or ""), status,
                                                                   f"id {v.get('navigation_id')}" if v.get("navigation_id") else "") if x))
    for s in _dicts(r.info.get("snapshots")):
        add(s.get("time"), "快照 snapshot", f"{s.get('artifact')} of {s.get('url')}")
    if not log:
        for v in _dicts(r.info.get("visits")):
            add(v.get("time"), "访问页面 page visited", f"{v.get('url')}" + (f" → {v.get('screenshot')}, {v.get('dom')}" if v.get("screenshot") else ""))
        add(r.info.get("ended"), "结束 end", "page closed")
    add(r.record_time, "封存 sealed",
        f"各文件 SHA-256 已写入清单，清单哈希由账本记录 {r.index} 签名固定 every file's SHA-256 in the manifest; "
        f"the manifest's digest signed in ledger record {r.index} ({SIGNATURE_EN})")
    for a in r.attestations:
        if a.verified:
            add(a.time, "签名 signature", f"{a.officer}: {SIGNATURE_EN}, record {a.index}")
    rows.sort(key=lambda x: (x[0] is None, x[0] or dt.datetime.min.replace(tzinfo=dt.UTC), x[1]))
    day = _day(r.info.get("started"), r.tz)
    return [(_clock(t, r.tz, day), step, text) for _, _, t, step, text in rows]


def _request_rows(r: ExtractionRecord) -> Rows:
    i = r.info
    redirects = [f"{x.get('status')} {x.get('url')} → {x.get('location')}" for x in _dicts(i.get("redirects"))]
    srv = i.get("server") if isinstance(i.get("server"), dict) else None
    tls = i.get("tls") if isinstance(i.get("tls"), dict) else None
    if tls and isinstance(tls.get("certificate"), dict):
        c = tls["certificate"]
        v = tls.get("validation") or {}
        tls_lines = [
            f"{tls.get('protocol') or ''} {tls.get('cipher') or ''}".strip() or "—",
            f"主体 subject: {c.get('subject')}",
            f"签发者 issuer: {c.get('issuer')}",
            f"有效期 valid: {when(c.get('not_before'), r.tz, original=False)} — {when(c.get('not_after'), r.tz, original=False)}",
            f"校验 validation: {'通过 valid' if v.get('valid') else '未通过 not valid: ' + str(v.get('error')) if v.get('valid') is False else '未检查 not checked'}",
        ]
    else:
        scheme = urlsplit(str(i.get("final_url") or "")).scheme
        tls_lines = ["无（未加密的 HTTP 连接）none (plain HTTP)" if scheme == "http" else "未记录 not recorded"]
    scroll = (r.network or {}).get("scroll") if isinstance((r.network or {}).get("scroll"), dict) else None
    size = (scroll or {}).get("content_size") or {}
    return Rows([
        ("目标网址", "Target URL", [str(i.get("url") or "—")]),
        ("跳转", "Redirects", redirects or ["无 none"]),
        ("最终网址及状态", "Final URL and status", [str(i.get("final_url") or "—"), f"HTTP {i.get('status')}" if i.get("status") is not None else "—"]),
        ("服务器地址", "Server address", [f"{srv.get('ip')}:{srv.get('port')}" if srv else "未记录 not recorded"]),
        ("TLS 证书", "TLS certificate", tls_lines),
        ("滚动", "Scrolling", [f"{scroll.get('steps')} 步 steps; 到达页底 reached bottom: {scroll.get('reachedBottom')}; "
                              f"页面 page {size.get('width', scroll.get('width'))}×{size.get('height', scroll.get('height'))} px"]
         if scroll else ["未记录 not recorded"]),
        ("哈希计算", "Hashing", [f"封存时计算各文件 SHA-256，不晚于账本记录时间 computed when sealed, no later than the ledger record time "
                               f"{when(r.record_time, r.tz, original=False)}"]),
    ])


def _device_rows(r: ExtractionRecord) -> Rows:
    i = r.info
    chk = _check(r)
    env = r.environment or {}
    osf = env.get("os") if isinstance(env.get("os"), dict) else {}
    b = _browser_facts(r)
    vp = i.get("viewport") if isinstance(i.get("viewport"), dict) else {}
    tzf = env.get("timezone") if isinstance(env.get("timezone"), dict) else {}
    ext = chk.get("extensions") if isinstance(chk.get("extensions"), dict) else {}
    fonts = chk.get("fonts") if isinstance(chk.get("fonts"), dict) else {}
    browser = chk.get("browser") or (f"{i['browser'].get('name')} {i['browser'].get('version')}" if isinstance(i.get("browser"), dict) else "—")
    h = headless(r)
    sb = sandbox(r)
    return Rows([
        ("主机名", "Hostname", [str(chk.get("hostname") or osf.get("hostname") or "—")]),
        ("操作系统", "Operating system", [f"{osf.get('distribution') or osf.get('system')} ({osf.get('system')} {osf.get('release')} {osf.get('machine')})" if osf else "未记录 not recorded"]),
        ("运行用户", "Run as user", [str(env.get("user") or "未记录 not recorded")]),
        ("取证工具", "Tool", [str(i.get("tool") or "—")]),
        ("浏览器", "Browser", [str(browser)] + ([str(b["driver"])] if b.get("driver") else [])),
        ("浏览器模式", "Browser mode", ["无界面 headless" if h else "有界面 headed" if h is False else "未记录 not recorded"]),
        ("沙箱", "Sandbox", ["启用 on" if sb else "未启用 off (--no-sandbox)" if sb is False else "未记录 not recorded"]),
        ("用户代理", "User agent", [str(vp.get("user_agent") or b.get("user_agent") or "—")]),
        ("视口/设备", "Viewport / device", [f"{vp.get('width')}×{vp.get('height')} px, ×{vp.get('device_scale_factor')}, "
                                           f"{vp.get('device_name') or i.get('device') or vp.get('device')}" if vp else "—"]),
        ("时区", "Time zone of the machine", [f"{tzf.get('name')} (UTC{tzf.get('utc_offset')})" if tzf else "未记录 not recorded"]),
        ("代理", "Proxy", [str(chk.get("proxy") or "无 none")]),
        ("出口 IP", "Outbound IP", [ip_text(chk.get("outbound_ip") if isinstance(chk.get("outbound_ip"), dict) else None)]),
        ("全新浏览器配置", "Fresh browser profile", [f"否 no: 已登录会话 logged-in session {chk['logged_in_session']}"
                                                   if chk.get("logged_in_session") else _yes(chk.get("fresh_profile"))]),
        ("无浏览器扩展", "No extensions", [_yes(ext.get("none"))]),
        ("字体", "Fonts", [f"{fonts.get('families', '—')} 种 families, 中文字体 CJK: {len(fonts.get('chinese') or [])}"]),
    ])


def _anchor_lines(r: ExtractionRecord) -> list[str]:
    if not r.anchors:
        return ["尚未锚定：账本中没有覆盖本记录的时间戳或存证 not anchored: no timestamp or deposit in the ledger covers this record yet"]
    out = []
    for a in r.anchors:
        t = when(a.time, r.tz) if a.time else "—"
        if a.type == "rfc3161":
            state = {"verified": "签名已核验 signature verified", "unverified": "令牌完整，签名未核验（未提供时间戳机构根证书）token intact, signature not verified (no TSA root given)"}.get(a.status, f"核验失败 check failed: {a.detail}")
            out.append(f"RFC 3161 时间戳 timestamp · TSA {a.tsa_name or ''} {a.service} · 序列号 serial {a.serial or '—'} · 时间 time {t} · {state} · record {a.record}, checkpoint {a.checkpoint_size}")
        elif a.type == "witness":
            state = {"verified": "联署已核验 cosignature verified", "unverified": "联署完整，未核验（未提供见证服务器公钥）intact, not verified (no witness key given)"}.get(a.status, f"核验失败 check failed: {a.detail}")
            out.append(f"日志见证服务器联署（非笔录见证人）log-witness cosignature (not a 见证人) · {a.service} · 时间 time {t} · {state} · record {a.record}, checkpoint {a.checkpoint_size}")
        elif a.type == "exhibit-deposit":
            state = {"verified": "回执已核验 receipt verified"}.get(a.status, "时间为存证服务方的声明 the time is the service's statement" if a.status == "unverified" else f"核验失败 check failed: {a.detail}")
            out.append(f"本证据清单哈希存证 deposit of this exhibit's manifest SHA-256 {r.manifest_sha256} · {a.service} · 回执编号 receipt/transaction id {a.reference or '—'} · 时间 time {t} · {state} · record {a.record}")
        else:
            state = {"verified": "回执已核验 receipt verified"}.get(a.status, "时间为存证服务方的声明 the time is the service's statement" if a.status == "unverified" else f"核验失败 check failed: {a.detail}")
            out.append(f"存证 deposit · {a.service} · 回执编号 receipt/transaction id {a.reference or '—'} · 时间 time {t} · {state} · record {a.record}, checkpoint {a.checkpoint_size}")
    return out


def document(r: ExtractionRecord) -> list[Section]:
    """The record's sections, in the order the rules list their contents."""
    i = r.info
    proves = r.proves or "未记录 not recorded"
    attest_rows: list[list[list[str]] | Span] = [
        [[str(a.index)], [a.officer], [a.key_id[:8]], [short(a.time, r.tz)],
         ["已验证 verified" if a.verified else f"未验证 NOT VERIFIED: {a.problem}"] + ([a.statement] if a.statement else [])]
        for a in r.attestations
    ] or [[["无 none"], [""], [""], [""], [""]]]
    data_rows: list[list[list[str]] | Span] = []
    for n, a in enumerate(r.artifacts, 1):
        zh, en = ROLE_NAMES.get(str(a.get("role")), ("", str(a.get("role"))))
        data_rows.append([[str(n)], [str(a["name"])], [zh, en] if zh else [en], [str(a.get("media_type"))], [f"{a['size']:,}"]])
        data_rows.append(Span([f"SHA-256 {a['sha256']}"]))
    srv = i.get("server") if isinstance(i.get("server"), dict) else None
    host = urlsplit(str(i.get("final_url") or i.get("url") or "")).hostname or "—"
    cp = r.checkpoint
    nar = narrative(r)
    start = _parse(i.get("started"))
    local_start = (start or dt.datetime.now(dt.UTC)).astimezone(r.tz)
    day = f"{local_start:%Y-%m-%d}, " if start else ""
    return [
        Section("案件", "Case", [Rows([
            ("案件编号", "Case number", [r.case]),
            ("证据编号", "Exhibit", [f"账本记录 ledger record {r.index}"]),
            ("执法单位", "Enforcement unit", [r.unit or "未记录 not recorded"]),
            ("案由", "Cause", [r.cause or "未记录 not recorded"]),
        ] + ([("案件信息来源", "Case facts from", [f"账本记录 ledger record {r.case_info.index} ({when(r.case_info.time, r.tz, original=False)})"])] if r.case_info else []))]),
        Section("当事人/对象", "Party / object", [Rows(_party_lines(r))]),
        Section("执法人员", "Enforcement officers", [
            Grid(["姓名 Name", "执法证号 Badge", "单位 Unit", "密钥 Key",
                  f"{SIGNATURE_ZH}时间 E-signature time ({_zone(r.tz)})", "签名 Signature"],
                 [28.0, 24.0, 31.0, 21.0, 44.0, 30.0], _officer_rows(r), sign=True),
            Items([f"提取操作人 Capture operated by: {i.get('operator') or '未记录 not recorded'}"
                   + ("" if not i.get("operator") or r.officer_named(str(i.get("operator"))) else "（非登记执法人员 not a registered officer）")]),
            Grid(["记录 Record", "人员 Officer", "密钥 Key", f"时间 Time ({_zone(r.tz)})", "状态 Status"], [18.0, 34.0, 22.0, 40.0, 64.0], attest_rows),
        ]),
        Section("见证人", "Witness", _witness_block(r)),
        Section("当事人/持有人", "Party / data holder", _holder_block(r)),
        Section("时间", "Time", [_time_rows(r)]),
        Section("地点", "Place", [Rows([("提取地点", "Place", [r.place or "未记录 not recorded"])])]),
        Section("方法", "Method", [Rows([
            ("提取方法", "Method", ["；".join(f"{zh} {en}" for zh, en in r.methods)]),
            ("提取工具及版本", "Tool and version", [str(i.get("tool") or "—")]),
        ])]),
        Section("提取过程", "Process of the extraction", [
            Grid([f"时间 Time ({day}{_offset(local_start)} {r.tz.key})", "步骤 Step", "经过 What happened"], [34.0, 34.0, 110.0],
                 [[[t], [s], [x]] for t, s, x in nar]),
            _request_rows(r),
        ]),
        Section("取证设备与环境", "Device and environment", [_device_rows(r)]),
        Section("未扣押原始存储介质的原因", "Why the original storage medium was not seized", [Items([
            "数据存储于平台服务器，采用网络在线提取 the data is stored on the platform's servers and was extracted online; "
            f"数据来源 source: {host}" + (f"（{srv.get('ip')}:{srv.get('port')}）" if srv else ""),
        ])]),
        Section("提取的电子数据清单", f"Data extracted ({len(r.artifacts)} files)", [
            Grid(["序号 No.", "名称 Name", "类别 Category", "格式 Format", "大小（字节）Size (bytes)"], [14.0, 50.0, 44.0, 42.0, 28.0], data_rows),
        ]),
        Section("证明对象", "What the exhibit is offered to prove", [Rows([("证明对象", "Offered to prove", [proves])])]),
        Section("完整性与锚定", "Integrity and anchoring", [Rows([
            ("清单校验值", "Manifest SHA-256", [r.manifest_sha256, f"{r.manifest_size:,} bytes"]),
            ("账本记录", "Ledger record", [f"{r.index} · {r.origin}", *_when_lines(r.record_time, r.tz), f"{SIGNATURE_ZH} {SIGNATURE_EN}, Ed25519"]),
            ("记录叶哈希", "Record leaf hash", [r.leaf]),
            ("覆盖该记录的最新检查点", "Latest checkpoint covering it",
             [f"size {cp['size']}", f"root {cp['root']}", when(cp["created"], r.tz, original=False)] if cp else ["尚无 none yet (run `evidence checkpoint`)"]),
            ("锚定", "Anchoring", _anchor_lines(r)),
        ], mono={0, 2, 3}), Items([
            "核验方法：计算每个文件的 SHA-256 并与本笔录及账本记录比对；账本记录以本机构密钥电子签名（Ed25519），并收入 RFC 6962 默克尔树及已签名检查点。"
            "Verification: compute each file's SHA-256 and compare it with this record and the ledger record; the ledger record "
            f"carries an {SIGNATURE_EN} (Ed25519) and is included in an RFC 6962 Merkle tree and its signed checkpoints.",
        ])]),
        Section("说明", "Disclosures", [Items(
            [line for n, d in enumerate(disclosures(r), 1) for line in (f"{n}. {d.text}", *(f"{SUB}{x}" for x in d.details))] or ["无 none"]
        )]),
    ]


# -- HTML (and PDF from it) -----------------------------------------------------------


def show(s: Any) -> str:
    """Text from outside, with control and bidi characters shown as escapes (and XML-safe)."""
    return printable(s).replace("\ufffe", "\\ufffe").replace("\uffff", "\\uffff")


CSS = """
@page { size: A4; margin: 14mm 14mm 16mm 14mm;
        @bottom-center { content: "第 " counter(page) " 页 / 共 " counter(pages) " 页  Page " counter(page) " of " counter(pages); font-size: 8pt; } }
body { font-family: %s; font-size: 9.5pt; line-height: 1.4; color: #000; max-width: 182mm; margin: auto; }
h1 { text-align: center; font-size: 18pt; margin: 0 0 2pt 0; letter-spacing: 2pt; }
h1 + p.en { text-align: center; margin: 0 0 8pt 0; font-size: 11pt; }
h2 { font-size: 11pt; margin: 10pt 0 3pt 0; border-bottom: 1px solid #000; break-after: avoid; }
table { border-collapse: collapse; width: 100%%; table-layout: fixed; margin: 0 0 4pt 0; }
td, th { border: 1px solid #000; padding: 2pt 3pt; vertical-align: top; text-align: left; overflow-wrap: anywhere; word-break: break-word; }
th.label { width: 30%%; font-weight: normal; background: #f2f2f2; }
th.label span { display: block; font-size: 8pt; color: #333; }
tr.head th { background: #e6e6e6; font-size: 8.5pt; font-weight: normal; }
.mono { font-family: "DejaVu Sans Mono", "Noto Sans Mono CJK SC", monospace; font-size: 8pt; }
td.span { white-space: nowrap; overflow-wrap: normal; word-break: normal; }
tbody.row, tr { break-inside: avoid; }
table.sign td { height: 34pt; }
ol, ul { margin: 2pt 0 4pt 0; padding-left: 0; list-style: none; }
li { margin: 0 0 2pt 0; overflow-wrap: anywhere; }
li.sub { margin-left: 12pt; font-size: 8.5pt; }
p.note { font-size: 8pt; color: #333; }
"""


def _lines_html(lines: list[str]) -> str:
    return "<br>".join(html.escape(show(x)) for x in lines)


def _block_html(b: Rows | Grid | Items) -> str:
    if isinstance(b, Rows):
        return "<table>" + "".join(
            f'<tr><th class="label">{html.escape(zh)}<span>{html.escape(en)}</span></th>'
            f'<td{" class=mono" if n in b.mono else ""}>{_lines_html(v)}</td></tr>'
            for n, (zh, en, v) in enumerate(b.rows)
        ) + "</table>"
    if isinstance(b, Grid):
        total = sum(b.widths)
        cols = "".join(f'<col style="width:{w / total * 100:.2f}%">' for w in b.widths)
        head = "<thead><tr class=head>" + "".join(f"<th>{html.escape(h)}</th>" for h in b.head) + "</tr></thead>"
        body = []
        for row in b.rows:
            if isinstance(row, Span):
                # A digest belongs to the row above: one tbody keeps them on one page.
                body[-1] = body[-1].removesuffix("</tbody>") + (
                    f'<tr><td colspan="{len(b.widths)}" class="span{" mono" if row.mono else ""}">{_lines_html(row.lines)}</td></tr></tbody>'
                )
            else:
                body.append("<tbody class=row><tr>" + "".join(f"<td>{_lines_html(c)}</td>" for c in row) + "</tr></tbody>")
        return f'<table class="{"sign" if b.sign else "grid"}"><colgroup>{cols}</colgroup>{head}{"".join(body)}</table>'
    return "<ul>" + "".join(
        f"<li class=sub>{html.escape(show(x.strip()))}</li>" if x.startswith(SUB) else f"<li>{html.escape(show(x))}</li>"
        for x in b.lines
    ) + "</ul>"


def render_html(r: ExtractionRecord) -> str:
    sections = "".join(
        f"<h2>{html.escape(s.zh)} {html.escape(s.en)}</h2>" + "".join(_block_html(b) for b in s.blocks) for s in document(r)
    )
    return f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8">
<title>{TITLE_ZH} {TITLE_EN} — {html.escape(show(r.case))} #{r.index}</title>
<style>{CSS % CJK_FONTS}</style></head>
<body>
<h1>{TITLE_ZH}</h1><p class="en">{TITLE_EN}</p>
{sections}
<p class="note">本笔录由 {html.escape(r.tool)} 于 {html.escape(when(r.generated, r.tz))} 根据账本生成。This record was generated by {html.escape(r.tool)} from the ledger.</p>
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
    from docx.enum.table import WD_ROW_HEIGHT_RULE
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn
    from docx.shared import Mm, Pt

    doc = Document()
    sec = doc.sections[0]
    sec.page_width, sec.page_height = Mm(210), Mm(297)
    sec.left_margin = sec.right_margin = Mm(16)
    sec.top_margin = sec.bottom_margin = Mm(16)
    normal = doc.styles["Normal"]
    normal.font.name = "Times New Roman"
    normal.font.size = Pt(9.5)
    normal.paragraph_format.space_after = Pt(0)
    # Word picks the font for Chinese from eastAsia, not from the font name.
    normal.element.get_or_add_rPr().get_or_add_rFonts().set(qn("w:eastAsia"), DOCX_CJK_FONT)

    def mono(run: Any) -> None:
        run.font.name = "Courier New"
        run.font.size = Pt(8)

    def fill(cell: Any, lines: list[str], *, fixed: bool = False, small: str | None = None, shade: bool = False) -> None:
        cell.paragraphs[0].text = ""
        for k, line in enumerate(lines):
            para = cell.paragraphs[0] if k == 0 else cell.add_paragraph()
            run = para.add_run(show(line))
            if fixed:
                mono(run)
        if small is not None:
            run = cell.add_paragraph().add_run(small)
            run.font.size = Pt(8)
        if shade:
            pr = cell._tc.get_or_add_tcPr()
            shd = OxmlElement("w:shd")
            shd.set(qn("w:val"), "clear")
            shd.set(qn("w:fill"), "F2F2F2")
            pr.append(shd)

    def table(widths: list[float]) -> Any:
        t = doc.add_table(rows=0, cols=len(widths))
        t.style = "Table Grid"
        t.autofit = False
        for col, w in zip(t.columns, widths):
            col.width = Mm(w)
        return t

    def add_row(t: Any, widths: list[float]) -> Any:
        cells = t.add_row().cells
        for c, w in zip(cells, widths):
            c.width = Mm(w)
        return cells

    def block(b: Rows | Grid | Items) -> None:
        if isinstance(b, Rows):
            w = [52.0, 126.0]
            t = table(w)
            for n, (zh, en, v) in enumerate(b.rows):
                cells = add_row(t, w)
                fill(cells[0], [zh], small=en, shade=True)
                fill(cells[1], v, fixed=n in b.mono)
        elif isinstance(b, Grid):
            t = table(b.widths)
            cells = add_row(t, b.widths)
            for c, h in zip(cells, b.head):
                fill(c, [h], shade=True)
            for row in b.rows:
                cells = add_row(t, b.widths)
                if isinstance(row, Span):
                    merged = cells[0].merge(cells[-1])
                    fill(merged, row.lines, fixed=row.mono)
                    continue
                for c, v in zip(cells, row):
                    fill(c, v)
                if b.sign:
                    t.rows[-1].height = Mm(13)
                    t.rows[-1].height_rule = WD_ROW_HEIGHT_RULE.AT_LEAST
        else:
            for line in b.lines:
                p = doc.add_paragraph(show(line.strip() if line.startswith(SUB) else line))
                p.paragraph_format.space_after = Pt(2)
                if line.startswith(SUB):
                    p.paragraph_format.left_indent = Mm(5)
                    for run in p.runs:
                        run.font.size = Pt(8.5)

    title = doc.add_paragraph()
    title.alignment = WD_ALIGN_PARAGRAPH.CENTER
    run = title.add_run(TITLE_ZH)
    run.bold = True
    run.font.size = Pt(18)
    sub = doc.add_paragraph()
    sub.alignment = WD_ALIGN_PARAGRAPH.CENTER
    sub.add_run(TITLE_EN).font.size = Pt(11)
    for s in document(r):
        p = doc.add_paragraph()
        p.paragraph_format.space_before = Pt(8)
        p.paragraph_format.space_after = Pt(2)
        p.paragraph_format.keep_with_next = True
        h = p.add_run(f"{s.zh} {s.en}")
        h.bold = True
        h.font.size = Pt(11)
        for b in s.blocks:
            block(b)
    note = doc.add_paragraph()
    note.paragraph_format.space_before = Pt(6)
    note.add_run(
        f"本笔录由 {r.tool} 于 {when(r.generated, r.tz)} 根据账本生成。This record was generated by {r.tool} from the ledger."
    ).font.size = Pt(8)
    doc.core_properties.title = show(f"{TITLE_ZH} {TITLE_EN} {r.case} #{r.index}")
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
