"""Supervision: watch lists, probes, events, alerts and the embedded scheduler.

    from evidence.watch import WatchSpec, add_watches, run_scheduler
    add_watches(led, [WatchSpec.build("https://shop.example/item/1", "SAMR-2026-017", "10m",
                                      fields={"price": ".price"}, price_field="price", price_below="50")])
    stats = asyncio.run(run_scheduler(led, duration=3600, concurrency=2))

Each due watch is probed (``capture.probe``: a light page load) and the probe
is appended as a signed ``probe`` record, whatever it shows: the ledger then
proves when a listing was seen and what it showed. The probe is compared with
the watch's previous one (``evaluate``); an event (first sight, a change, a
rule hit, a removal) makes a full capture, sealed as an exhibit whose info
names the watch, the probe record and the event, and queues an alert
(``watch_events`` rows; webhooks POSTed with retries by ``deliver_due``).

The three steps a scheduler performs are separate functions, so another
engine (a task queue) can run them elsewhere: ``find_due`` (claim the due
watches, moving their next due time in the same transaction), ``run_probe``
(load the page) and ``handle_outcome`` (record, compare, capture, alert).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import dataclasses
import json
import random
import re
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from capture.browser import Browser, device_descriptor
from capture.options import CaptureOptions, check_url
from capture.page import latest_anchor, preflight, workdir
from capture.probe import ProbeResult, check_selectors, distance, probe
from capture.session import capture_into
from ledger.canonical import loads
from ledger.errors import CaptureError, ConfigError, EvidenceError, KeyFileError, UsageError
from ledger.log import Ledger
from ledger.record import Draft, Record
from ledger.sessions import SessionStore
from ledger.version import __version__
from ledger.watches import NewWatch, Watch, WatchEvent, WatchStore

PROBE_KIND = "probe"
EVENT_KINDS = ("first-seen", "change", "rule-hit", "removal")
#: what a listing page says when the platform took it down (checked in the page text)
DEFAULT_REMOVED_MARKERS = ("商品已下架", "该商品已下架", "宝贝已下架", "商品已失效", "商品不存在", "宝贝不存在")
#: SimHash bits (of 64) the page text may move before it counts as changed
TEXT_THRESHOLD = 8
#: dHash bits (of 64) the screenshot may move before it counts as changed
VISUAL_THRESHOLD = 12
#: the next due time moves by up to this fraction of the interval either way
JITTER = 0.1
#: an import spreads its first probes over at most this many seconds
IMPORT_SPREAD = 300.0
MIN_EVERY, MAX_EVERY = 5, 365 * 86400
WEBHOOK_TIMEOUT = 5.0
WEBHOOK_ATTEMPTS = 8
WEBHOOK_BACKOFF = 5.0
WEBHOOK_BACKOFF_CAP = 600.0
_DURATION = re.compile(r"(\d{1,9})([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_NAME = re.compile(r"[^\s=]{1,64}")
_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
#: the settings a watch row may carry (also the JSONL keys of `watch import`, with url/case/every)
SETTINGS = ("fields", "keywords", "price_field", "price_below", "removed_markers", "webhook",
            "text_threshold", "visual_threshold", "session", "device")


def parse_duration(value: str, what: str = "--every") -> int:
    """``30s``, ``10m``, ``1h``, ``1d`` -> seconds; a UsageError names what is wrong."""
    m = _DURATION.fullmatch(str(value).strip())
    if not m:
        raise UsageError(f"{what} must be a number and a unit (s, m, h, d) such as 30s, 10m, 1h, 1d; not {value!r}")
    return int(m.group(1)) * _UNITS[m.group(2)]


def _check_every(value: str) -> int:
    s = parse_duration(value)
    if not MIN_EVERY <= s <= MAX_EVERY:
        raise UsageError(f"--every must be between {MIN_EVERY}s and 365d, not {value!r}")
    return s


def check_http_url(url: Any, what: str) -> str:
    try:
        return check_url(url)
    except UsageError:
        raise UsageError(f"{what} must be an http:// or https:// URL, not {url!r}") from None


@dataclass(frozen=True)
class WatchSpec:
    """A watch as the user gave it, checked (all but the selectors: see ``check_specs``)."""

    url: str
    case: str
    every: int
    settings: dict[str, Any]

    @classmethod
    def build(
        cls, url: str, case: str, every: str, *, fields: dict[str, str] | None = None,
        keywords: Iterable[str] = (), price_field: str | None = None, price_below: str | None = None,
        removed_markers: Iterable[str] = (), webhook: str | None = None,
        text_threshold: int | None = None, visual_threshold: int | None = None,
        session: str | None = None, device: str | None = None,
    ) -> WatchSpec:
        url = check_http_url(url, "a watch URL")
        if not isinstance(case, str) or not case.strip() or len(case) > 200:
            raise UsageError("a watch needs a case id (--case) of at most 200 characters")
        fields = dict(fields or {})
        for name, css in fields.items():
            if not isinstance(name, str) or not _NAME.fullmatch(name):
                raise UsageError(f"field name {name!r} must be 1 to 64 characters, no spaces or '='")
            if not isinstance(css, str) or not css.strip() or len(css) > 1000:
                raise UsageError(f"field {name!r} needs a CSS selector (NAME=CSS)")
        kws = [k for k in keywords]
        for k in kws:
            if not isinstance(k, str) or not k.strip() or len(k) > 200:
                raise UsageError(f"a keyword must be 1 to 200 characters, not {k!r}")
        markers = [m for m in removed_markers]
        for mk in markers:
            if not isinstance(mk, str) or not mk.strip() or len(mk) > 200:
                raise UsageError(f"a removed marker must be 1 to 200 characters, not {mk!r}")
        if (price_field is None) != (price_below is None):
            raise UsageError("--price-field and --price-below go together")
        settings: dict[str, Any] = {"fields": {n: c.strip() for n, c in fields.items()}}
        if kws:
            settings["keywords"] = kws
        if price_field is not None:
            if price_field not in fields:
                raise UsageError(f"--price-field {price_field!r} is not one of the --field names")
            try:
                bound = Decimal(str(price_below).strip())
            except InvalidOperation:
                bound = Decimal("NaN")
            if not bound.is_finite() or bound <= 0:
                raise UsageError(f"--price-below must be a positive number, not {price_below!r}")
            settings["price_field"], settings["price_below"] = price_field, str(bound)
        if markers:
            settings["removed_markers"] = markers
        if webhook is not None:
            settings["webhook"] = check_http_url(webhook, "--webhook")
        if device is not None:
            device_descriptor(device)
            settings["device"] = device
        if session is not None:
            if not isinstance(session, str) or not session.strip():
                raise UsageError("--session needs a saved session's name")
            settings["session"] = session
        for key, v in (("text_threshold", text_threshold), ("visual_threshold", visual_threshold)):
            if v is not None:
                if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 64:
                    raise UsageError(f"{key} must be a whole number of bits from 0 to 64, not {v!r}")
                settings[key] = v
        return cls(url, case.strip(), _check_every(every) if isinstance(every, str) else _every_int(every), settings)


def _every_int(v: Any) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not MIN_EVERY <= v <= MAX_EVERY:
        raise UsageError(f"every must be a duration such as 10m, not {v!r}")
    return v


def check_specs(specs: list[WatchSpec], where: Callable[[int], str] | None = None) -> None:
    """Every field selector must parse in Chromium, the engine that will apply it."""
    sels = sorted({css for s in specs for css in s.settings.get("fields", {}).values()})
    if not sels:
        return

    async def go() -> dict[str, str]:
        async with Browser() as b:
            return await check_selectors(b, sels)

    bad = asyncio.run(go())
    if not bad:
        return
    for i, s in enumerate(specs):
        for name, css in s.settings.get("fields", {}).items():
            if css in bad:
                prefix = where(i) + ": " if where else ""
                raise UsageError(f"{prefix}field {name!r}: {css!r} is not a valid CSS selector")


def add_watches(led: Ledger, specs: list[WatchSpec], *, spread: bool = False, now: float | None = None) -> list[int]:
    """Add checked watches in one transaction. ``spread``: first probes jittered over
    a part of each interval, so an import of thousands does not fire at once."""
    now = time.time() if now is None else now
    items = [
        NewWatch(s.url, s.case, s.every, s.settings,
                 random.uniform(0, min(s.every * JITTER * 2, IMPORT_SPREAD)) if spread else 0.0)
        for s in specs
    ]
    return WatchStore(led.store).add_many(items, now=now)


def _split(cell: str | None) -> list[str]:
    return [p.strip() for p in (cell or "").split(";") if p.strip()]


CSV_COLUMNS = ("url", "case", "every", "fields", "keywords", "price_field", "price_below", "removed_markers", "webhook",
               "session", "device")


def read_import(path: Path, *, case: str | None = None, every: str | None = None) -> list[WatchSpec]:
    """Watches from a CSV (header row; several values in a cell separated by ';',
    fields as NAME=CSS) or JSONL file; the first bad row is a UsageError naming it."""
    try:
        raw = path.read_text("utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    specs: list[WatchSpec] = []
    lines: list[int] = []
    jsonl = path.suffix.lower() in (".jsonl", ".ndjson") or raw.lstrip().startswith("{")

    def row_spec(n: int, d: dict[str, Any]) -> None:
        try:
            specs.append(_spec_from_row(d, case, every))
        except UsageError as e:
            raise UsageError(f"{path} line {n}: {e}") from None
        lines.append(n)

    if jsonl:
        for n, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except ValueError as e:
                raise UsageError(f"{path} line {n}: not JSON ({e.args[0] if e.args else e})") from None
            if not isinstance(d, dict):
                raise UsageError(f"{path} line {n}: a row must be a JSON object")
            unknown = sorted(set(d) - {"url", "case", "every", *SETTINGS})
            if unknown:
                raise UsageError(f"{path} line {n}: unknown key(s) {', '.join(unknown)}")
            row_spec(n, d)
    else:
        reader = csv.DictReader(raw.splitlines())
        cols = reader.fieldnames or []
        unknown = sorted(set(cols) - set(CSV_COLUMNS))
        if "url" not in cols or unknown:
            raise UsageError(f"{path} line 1: the header must name columns of {', '.join(CSV_COLUMNS)} (with url)"
                             + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
        for row in reader:
            n = reader.line_num
            if None in row:
                raise UsageError(f"{path} line {n}: more cells than header columns")
            fields: dict[str, str] = {}
            for f in _split(row.get("fields")):
                name, eq, css = f.partition("=")
                if not eq:
                    raise UsageError(f"{path} line {n}: field {f!r} must be NAME=CSS")
                fields[name.strip()] = css.strip()
            d = {k: v for k, v in row.items() if v not in (None, "")}
            d["fields"] = fields
            for k in ("keywords", "removed_markers"):
                d[k] = _split(row.get(k))
            row_spec(n, d)
    if not specs:
        raise UsageError(f"{path} holds no watch")
    check_specs(specs, where=lambda i: f"{path} line {lines[i]}")
    return specs


def _spec_from_row(d: dict[str, Any], case: str | None, every: str | None) -> WatchSpec:
    if "url" not in d:
        raise UsageError("no url")
    ev = d.get("every", every)
    if ev is None:
        raise UsageError("no every (give the column, or --every)")
    for k in ("keywords", "removed_markers"):
        if k in d and not isinstance(d[k], list):
            raise UsageError(f"{k} must be a list")
    if "fields" in d and not isinstance(d["fields"], dict):
        raise UsageError("fields must be an object of NAME: CSS")
    pb = d.get("price_below")
    return WatchSpec.build(
        d["url"], d.get("case", case), ev if isinstance(ev, str) else str(ev), fields=d.get("fields"),
        keywords=d.get("keywords") or (), price_field=d.get("price_field"),
        price_below=None if pb is None else str(pb), removed_markers=d.get("removed_markers") or (),
        webhook=d.get("webhook"), text_threshold=d.get("text_threshold"), visual_threshold=d.get("visual_threshold"),
        session=d.get("session"), device=d.get("device"),
    )


# -- comparing a probe with the last one ----------------------------------------


def observe(watch: Watch, r: ProbeResult) -> dict[str, Any]:
    """What the rules and the next probe need from this one (no page text)."""
    s = watch.settings
    text = f"{r.title}\n{r.text}"
    markers = s.get("removed_markers") or DEFAULT_REMOVED_MARKERS
    removed = None
    if r.status in (404, 410):
        removed = f"HTTP {r.status}"
    else:
        hit = next((m for m in markers if m in text), None)
        if hit is not None:
            removed = f"marker {hit!r}" + (f" after a redirect to {r.final_url}" if r.redirects else "")
    price = None
    if s.get("price_field"):
        m = _NUMBER.search(r.fields.get(s["price_field"]) or "")
        price = str(Decimal(m.group(0).replace(",", ""))) if m else None
    return {
        "status": r.status, "final_url": r.final_url, "fields": r.fields, "text_sha256": r.text_sha256,
        "text_simhash": r.text_simhash, "phash": r.phash, "removed": removed, "price": price,
        "keywords": sorted(k for k in s.get("keywords", ()) if k in text),
    }


def evaluate(watch: Watch, now: dict[str, Any], last: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The events of observation ``now`` after ``last`` (None: never seen)."""
    s = watch.settings
    events: list[dict[str, Any]] = []
    if last is None:
        events.append({"kind": "first-seen", "status": now["status"], "fields": now["fields"]})
    if now["removed"] and not (last or {}).get("removed"):
        events.append({"kind": "removal", "reason": now["removed"], "status": now["status"], "final_url": now["final_url"]})
    if last is not None and not now["removed"]:
        changed = [
            {"field": n, "old": last.get("fields", {}).get(n), "new": v}
            for n, v in now["fields"].items() if last.get("fields", {}).get(n) != v
        ]
        if last.get("removed"):
            changed.append({"field": "(removed)", "old": last["removed"], "new": None})
        td = distance(last.get("text_simhash"), now["text_simhash"])
        vd = distance(last.get("phash"), now["phash"])
        text_moved = td is not None and td > s.get("text_threshold", TEXT_THRESHOLD)
        look_moved = vd is not None and vd > s.get("visual_threshold", VISUAL_THRESHOLD)
        if changed or text_moved or look_moved:
            events.append({"kind": "change", "changes": changed, "text_distance": td, "visual_distance": vd,
                           "text_sha256": {"old": last.get("text_sha256"), "new": now["text_sha256"]}})
    if not now["removed"]:
        before = set((last or {}).get("keywords") or ())
        for k in now["keywords"]:
            if k not in before:
                events.append({"kind": "rule-hit", "rule": "keyword", "keyword": k})
        bound = s.get("price_below")
        price = now.get("price")
        if bound is not None and price is not None and Decimal(price) < Decimal(bound):
            old = (last or {}).get("price")
            was_hit = old is not None and Decimal(old) < Decimal(bound)
            if not was_hit or old != price:
                events.append({"kind": "rule-hit", "rule": "price-below", "field": s["price_field"],
                               "price": price, "bound": bound, "old": old})
    return events


# -- one probe, start to end ---------------------------------------------------


@dataclass
class Outcome:
    watch_id: int
    probe: Record
    events: list[dict[str, Any]]
    exhibit_index: int | None = None
    capture_error: str | None = None


def find_due(ws: WatchStore, now: float, limit: int) -> list[Watch]:
    """Claim up to ``limit`` due watches; each one's next due time moves one jittered interval on."""
    return ws.claim_due(now, limit, lambda w: now + w.every * random.uniform(1 - JITTER, 1 + JITTER))


async def run_probe(browser: Browser, watch: Watch, options: CaptureOptions) -> ProbeResult:
    return await probe(browser, watch.url, dict(watch.settings.get("fields") or {}), options)


def record_probe(led: Ledger, ws: WatchStore, watch: Watch, result: ProbeResult,
                 webhook: str | None = None, seal_key: str | None = None,
                 ) -> tuple[Record, list[dict[str, Any]], dict[str, Any]]:
    """Append the signed probe record; in the same transaction cache what it saw and
    store its events (waiting for their capture), so a kill cannot lose one.
    ``seal_key``: a fleet task's idempotency key (a probe delivered twice is recorded
    once; the second raises ledger.store.AlreadySealed)."""
    seen = observe(watch, result)
    events = evaluate(watch, seen, watch.last)
    payload = {**result.to_payload(), "watch": watch.id, "previous_probe": watch.last_probe_idx, "events": events}
    hook = watch.settings.get("webhook") or webhook

    def locked(conn: Any, recs: list[Record]) -> None:
        ws.note_probe_in(conn, watch.id, recs[0].index, {**seen, "probe_leaf": recs[0].leaf.hex()})
        ws.add_events_in(conn, watch, recs[0].index, events, hook)

    (rec,) = led.append_many([Draft(PROBE_KIND, payload, watch.case)], on_locked=locked, seal_key=seal_key)
    return rec, events, seen


async def handle_outcome(
    led: Ledger, ws: WatchStore, browser: Browser, watch: Watch, result: ProbeResult, *,
    capture_options: dict[str, Any] | None = None, webhook: str | None = None, seal_key: str | None = None,
) -> Outcome:
    """Record the probe; on an event, capture the page in full and queue the alerts."""
    rec, events, _seen = record_probe(led, ws, watch, result, webhook, seal_key)
    out = Outcome(watch.id, rec, events)
    if not events:
        return out
    info_watch = {"id": watch.id, "url": watch.url, "probe_index": rec.index, "probe_leaf": rec.leaf.hex(),
                  "events": events}
    opts = CaptureOptions.from_kwargs(dict(capture_options or {}))
    try:
        with workdir("evidence-capture-") as tmp:
            pc = await capture_into(
                browser, watch.url, tmp / "page", options=opts, case=watch.case,
                note=f"watch {watch.id}: {', '.join(e['kind'] for e in events)} (probe record {rec.index})",
                anchor=latest_anchor(led),
            )
            ex = led.seal_exhibit(
                watch.case, pc.artifacts, {**pc.info, "watch": info_watch},
                on_locked=lambda conn, recs: ws.captured_in(conn, rec.index, recs[0].index, now=time.time()),
            )
            out.exhibit_index = ex.index
    except CaptureError as e:
        # The probe record stands; the event is kept (and alerted) with why no exhibit exists.
        out.capture_error = str(e)
        ws.captured_in(None, rec.index, None, now=time.time(), error=f"no exhibit: {e}")
    return out


# -- alerts ---------------------------------------------------------------------


def alert_body(ev: WatchEvent) -> dict[str, Any]:
    return {"source": f"evidence-chain {__version__}", "event": ev.id, "watch": ev.watch_id, "case": ev.case,
            "url": ev.url, "kind": ev.kind, "time": ev.time, "probe_index": ev.probe_idx,
            "exhibit_index": ev.exhibit_idx, "detail": ev.detail, **({"error": ev.error} if ev.error else {})}


def post_json(url: str, body: dict[str, Any], timeout: float = WEBHOOK_TIMEOUT) -> None:
    """POST ``body``; raises OSError (urllib's errors are) unless the answer is 2xx."""
    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    req = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/json; charset=utf-8", "User-Agent": f"evidence-chain/{__version__}"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - http(s) checked at add time
        resp.read(65536)
        if not 200 <= resp.status < 300:
            raise OSError(f"HTTP {resp.status}")


async def deliver_due(ws: WatchStore, *, now: float, backoff: float = WEBHOOK_BACKOFF,
                      log: Callable[[str], None] | None = None, limit: int = 16) -> tuple[int, int]:
    """POST the alerts that are due (in threads); return (delivered, failed attempts)."""
    due = ws.due_deliveries(now, limit)
    if not due:
        return 0, 0

    async def one(ev: WatchEvent) -> bool:
        try:
            await asyncio.to_thread(post_json, str(ev.webhook), alert_body(ev))
        except (OSError, ValueError) as e:
            n = ev.attempts + 1
            give_up = n >= WEBHOOK_ATTEMPTS
            wait = min(WEBHOOK_BACKOFF_CAP, backoff * 2 ** (n - 1)) * random.uniform(0.8, 1.2)
            cause = f"HTTP {e.code}" if isinstance(e, urllib.error.HTTPError) else (getattr(e, "reason", None) or e)
            why = f"webhook {ev.webhook} for event {ev.id} failed (attempt {n}): {cause}"
            ws.note_delivery(ev.id, delivered=False, attempts=n, next_try=time.time() + wait, error=why, give_up=give_up)
            if log:
                log(why + ("; giving up" if give_up else f"; retrying in {wait:.1f} s"))
            return False
        ws.note_delivery(ev.id, delivered=True, attempts=ev.attempts + 1, next_try=None, error=None)
        return True

    done = await asyncio.gather(*(one(ev) for ev in due))
    return sum(done), len(done) - sum(done)


# -- the embedded scheduler ----------------------------------------------------


def percentile(ordered: list[float], p: float) -> float | None:
    """The ``p`` quantile (0..1) of an ascending list, to the millisecond; None when empty."""
    return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 3) if ordered else None


@dataclass
class RunStats:
    probes: int = 0
    failures: int = 0
    events: int = 0
    exhibits: int = 0
    delivered: int = 0
    delivery_failures: int = 0
    #: seconds from each probe's due time to its start
    lags: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        lags = sorted(self.lags)

        return {"probes": self.probes, "failures": self.failures, "events": self.events, "exhibits": self.exhibits,
                "delivered": self.delivered, "delivery_failures": self.delivery_failures,
                "lag_p50_s": percentile(lags, 0.5), "lag_p99_s": percentile(lags, 0.99)}


#: a probe waits less than a capture: it is one of thousands, and the next one comes
PROBE_OPTIONS = CaptureOptions(load_timeout=20.0, settle_timeout=2.0, mhtml=False)


def capture_settings(led: Ledger) -> dict[str, Any]:
    """The home's environment-check settings, as `evidence capture` reads them."""
    cfg = led.config.extra
    return {k: cfg[k] for k in ("time_source", "max_clock_offset", "ip_echo") if cfg.get(k) is not None}


def _options_for(led: Ledger, capture: dict[str, Any]) -> Callable[[Watch], tuple[CaptureOptions, dict[str, Any]]]:
    """A watch's probe options and full-capture options, with its saved login and device
    (sessions unlocked once per run; a missing one fails that watch's probes, not the run)."""
    sessions: dict[str, Any] = {}

    def of(w: Watch) -> tuple[CaptureOptions, dict[str, Any]]:
        name, device = w.settings.get("session"), w.settings.get("device")
        extra: dict[str, Any] = {}
        if device is not None:
            extra["device"] = device
        if name is not None:
            if name not in sessions:
                sessions[name] = SessionStore.of_home(led.home.root).load(name)
            extra["session"] = sessions[name]
        return (dataclasses.replace(PROBE_OPTIONS, **extra) if extra else PROBE_OPTIONS), {**capture, **extra}

    return of


async def run_scheduler(
    led: Ledger, *, duration: float | None = None, concurrency: int = 2, log: Callable[[str], None] | None = None,
    backoff: float = WEBHOOK_BACKOFF, stop: asyncio.Event | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> RunStats:
    """Probe due watches until ``duration`` seconds have passed (None: until ``stop``,
    SIGINT or SIGTERM). At most ``concurrency`` pages load at once, in one browser."""
    if not 1 <= concurrency <= 64:
        raise UsageError(f"--concurrency must be between 1 and 64, not {concurrency}")
    preflight(led)
    ws = WatchStore(led.store)
    stats = RunStats()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    say = log or (lambda _m: None)
    webhook = led.config.extra.get("watch_webhook")
    copts = capture_settings(led)
    opts_of = _options_for(led, copts)
    browser: Browser | None = None
    inflight: set[asyncio.Task[Any]] = set()

    async def one(w: Watch) -> None:
        assert browser is not None
        try:
            popts, full = opts_of(w)
            result = await run_probe(browser, w, popts)
        except (CaptureError, UsageError, ConfigError, KeyFileError) as e:
            stats.failures += 1
            ws.note_error(w.id, str(e))
            say(f"watch {w.id}: {e}")
            return
        out = await handle_outcome(led, ws, browser, w, result, capture_options=full, webhook=webhook)
        stats.probes += 1
        stats.events += len(out.events)
        if out.exhibit_index is not None:
            stats.exhibits += 1
        if out.events:
            say(f"watch {w.id}: {', '.join(e['kind'] for e in out.events)} -> probe record {out.probe.index}, "
                + (f"exhibit record {out.exhibit_index}" if out.exhibit_index is not None else f"no exhibit ({out.capture_error})"))
        if on_outcome:
            on_outcome(out)

    async def deliverer() -> None:
        while True:
            ok, bad = await deliver_due(ws, now=time.time(), backoff=backoff, log=say)
            stats.delivered += ok
            stats.delivery_failures += bad
            await asyncio.sleep(0.2)

    for idx in ws.interrupted():
        # Killed between a probe record and its exhibit: the page has moved on since,
        # so say so in the alert instead of sealing today's page as that probe's.
        ws.captured_in(None, idx, None, now=time.time(), error="no exhibit: the scheduler stopped before the capture was sealed")
        say(f"probe record {idx}: its event capture was interrupted; alert sent without an exhibit")
    delivery = asyncio.ensure_future(deliverer())
    try:
        browser = await Browser().__aenter__()
        # Counted from here: a slow browser start does not eat into the time asked for.
        end = loop.time() + duration if duration is not None else float("inf")
        while not stop.is_set() and loop.time() < end:
            if browser is None or not browser.browser.is_connected():
                if browser is not None:  # it crashed: a new one, the probes in flight fail
                    await browser.__aexit__(None, None, None)
                browser = await Browser().__aenter__()
            free = concurrency - len(inflight)
            now = time.time()
            for w in find_due(ws, now, free) if free > 0 else []:
                stats.lags.append(max(0.0, now - w.next_due))
                inflight.add(asyncio.ensure_future(one(w)))
            nxt = ws.next_due() if len(inflight) < concurrency else None
            wait = min(1.0, max(0.05, (nxt - time.time()) if nxt is not None else 1.0), max(0.0, end - loop.time()))
            waits: set[asyncio.Future[Any]] = {*inflight, asyncio.ensure_future(stop.wait())}
            done, _ = await asyncio.wait(waits, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            for t in waits - inflight:
                t.cancel()
            for t in done & inflight:
                inflight.discard(t)
                if not t.cancelled() and t.exception() is not None:
                    exc = t.exception()
                    if not isinstance(exc, EvidenceError):
                        raise exc  # type: ignore[misc]
                    stats.failures += 1
                    say(f"probe failed: {exc}")
        if inflight:  # what was started is finished: its probe record, its exhibit
            await asyncio.wait(inflight)
            for t in inflight:
                if not t.cancelled() and isinstance(t.exception(), EvidenceError):
                    stats.failures += 1
    finally:
        delivery.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await delivery
        for t in inflight:
            t.cancel()
        if browser is not None:
            await browser.__aexit__(None, None, None)
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
    return stats


# -- reading back ---------------------------------------------------------------


def parse_since(value: str) -> str:
    """``1h`` (that long ago) or an ISO 8601 time -> the records' UTC time form."""
    if _DURATION.fullmatch(value.strip()):
        t = datetime.now(UTC) - timedelta(seconds=parse_duration(value, "--since"))
    else:
        try:
            t = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise UsageError(f"--since must be a time (2026-12-01T08:00:00Z) or a duration (1h), not {value!r}") from None
        if t.tzinfo is None:
            t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def resolve(ws: WatchStore, target: str) -> tuple[int | None, str | None, str | None]:
    """(watch id, URL, case) for ``watch history ID|URL``; the watch may have been removed."""
    t = target.strip()
    if t.isdigit():
        w = ws.get(int(t))
        return int(t), (w.url if w else None), (w.case if w else None)
    url = check_http_url(t, "watch history's argument (an id or a URL)")
    ws_ = ws.by_url(url)
    return (ws_[0].id if len(ws_) == 1 else None), url, (ws_[0].case if ws_ else None)


def history(led: Ledger, target: str) -> dict[str, Any]:
    """The listing's timeline from its signed probe records (signatures checked)."""
    ws = WatchStore(led.store)
    wid, url, case = resolve(ws, target)
    keys = {k: Ed25519PublicKey.from_public_bytes(v) for k, v in led.store.keys().items()}
    probes: list[Record] = []
    source = led.records(case=case) if case else led.records_of_kind(PROBE_KIND)
    for r in source:
        if r.kind != PROBE_KIND:
            continue
        p = r.payload
        if (wid is not None and p.get("watch") == wid) or (wid is None and url is not None and p.get("url") == url):
            probes.append(r)
    if not probes and case is None:
        raise UsageError(f"no watch {target} and no probe records of it")
    exhibits = _event_exhibits(led, probes)
    timeline: list[dict[str, Any]] = []
    problems: list[str] = []
    for r in probes:
        key = keys.get(r.key_id)
        try:
            if key is None:
                raise EvidenceError(f"record {r.index}: signed by unknown key {r.key_id}")
            r.verify(key)
        except EvidenceError as e:
            problems.append(str(e))
            continue
        for ev in r.payload.get("events") or []:
            timeline.append({"time": r.time, "probe_index": r.index, "exhibit_index": exhibits.get(r.index), **ev})
    first = probes[0] if probes else None
    last = probes[-1] if probes else None
    return {
        "watch": wid, "url": url or (first.payload.get("url") if first else None), "case": case or (first.case if first else None),
        "probes": len(probes), "first_probe": first.time if first else None, "last_probe": last.time if last else None,
        "last_status": last.payload.get("status") if last else None, "timeline": timeline,
        "unverified": problems,
    }


def _event_exhibits(led: Ledger, probes: list[Record]) -> dict[int, int]:
    """probe record index -> the exhibit record sealed for its event (read from the manifests)."""
    wanted = {r.index for r in probes if r.payload.get("events")}
    if not wanted:
        return {}
    cases = {r.case for r in probes}
    found: dict[int, int] = {}
    for case in cases:
        for r in led.records(case=case, start=min(wanted)):
            if r.kind != "exhibit":
                continue
            m = r.payload.get("manifest") or {}
            try:
                with led.artifacts.open(m.get("sha256")) as f:
                    info = (loads(f.read(int(m.get("size") or 0) + 1)).get("info") or {})
            except (EvidenceError, OSError, ValueError, TypeError):
                continue
            w = info.get("watch") if isinstance(info, dict) else None
            if isinstance(w, dict) and w.get("probe_index") in wanted and w.get("probe_leaf") == _leaf(probes, w["probe_index"]):
                found[int(w["probe_index"])] = r.index
    return found


def _leaf(probes: list[Record], idx: int) -> str | None:
    return next((r.leaf.hex() for r in probes if r.index == idx), None)
