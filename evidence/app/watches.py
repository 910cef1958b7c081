"""Watch lists for a face: add (checked as `watch add` checks), list, pause, resume, remove,
events and one listing's history. The work is ``evidence.watch``'s; the CLI's watch commands
and the web app's ``/watches`` pages call these and only present the result.

    from evidence.app import watches
    with Ledger.open(home) as led:
        w = watches.add(led, "https://shop.example/item/1", "SAMR-2026-017", "10m", fields=["price=.price"])
        rows = watches.list_watches(led)
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger.errors import UsageError
from ledger.record import Record
from ledger.watches import Watch, WatchEvent, WatchStore

from ..watch import PROBE_KIND, WatchSpec, add_watches, check_specs, parse_duration, parse_since, read_import
from ..watch import history as _history
from .options import page_options

if TYPE_CHECKING:
    from ledger.log import Ledger


def parse_fields(items: Iterable[str]) -> dict[str, str]:
    """``NAME=CSS`` items (as `--field` takes them) -> {name: css}; a bad or repeated one is a UsageError."""
    out: dict[str, str] = {}
    for it in items:
        name, eq, css = it.partition("=")
        if not eq:
            raise UsageError(f"--field must be NAME=CSS, not {it!r}")
        if name.strip() in out:
            raise UsageError(f"--field {name.strip()!r} is given twice")
        out[name.strip()] = css.strip()
    return out


def add(
    led: Ledger, url: str, case: str, every: str, *, fields: Sequence[str] | dict[str, str] = (),
    keywords: Iterable[str] = (), price_field: str | None = None, price_below: str | None = None,
    removed_markers: Iterable[str] = (), webhook: str | None = None, session: str | None = None,
    device: str | None = None,
) -> Watch:
    """Add one watch, its first probe due now. Everything is checked before the row is written:
    the URL (http/https), the duration, the fields, the bounds, the selectors (in Chromium), and
    the saved login (it must exist and unlock now, not at the first probe)."""
    named = dict(fields) if isinstance(fields, dict) else parse_fields(fields)
    spec = WatchSpec.build(url, case, every, fields=named, keywords=keywords, price_field=price_field,
                           price_below=price_below, removed_markers=removed_markers, webhook=webhook,
                           session=session, device=device)
    page_options(led, session=session, device=device, expect=[])
    check_specs([spec])
    (wid,) = add_watches(led, [spec])
    w = WatchStore(led.store).get(wid)
    assert w is not None
    return w


def import_file(led: Ledger, file: Path, *, case: str | None = None, every: str | None = None) -> list[int]:
    """Add every row of a CSV/JSONL file (one bad row and nothing is added); first probes spread out."""
    if every is not None:
        parse_duration(every)
    specs = read_import(file, case=case, every=every)
    for sess, dev in sorted({(s.settings.get("session"), s.settings.get("device")) for s in specs}, key=str):
        page_options(led, session=sess, device=dev, expect=[])
    return add_watches(led, specs, spread=True)


@dataclass(frozen=True)
class WatchRow:
    """A watch with its latest event, for a list."""

    watch: Watch
    last_event: WatchEvent | None


def list_watches(led: Ledger, *, case: str | None = None, last_events: bool = True) -> list[WatchRow]:
    """Every watch (of ``case``, when given), each with its latest event (unless ``last_events`` is False:
    a list of thousands of watches need not read every event)."""
    ws = WatchStore(led.store)
    latest: dict[int, WatchEvent] = {}
    for e in ws.events() if last_events else ():
        if e.watch_id not in latest or e.id > latest[e.watch_id].id:
            latest[e.watch_id] = e
    return [WatchRow(w, latest.get(w.id)) for w in ws.all() if case is None or w.case == case]


def get(led: Ledger, watch_id: int) -> Watch:
    w = WatchStore(led.store).get(watch_id)
    if w is None:
        raise UsageError(f"no watch {watch_id}")
    return w


def remove(led: Ledger, watch_id: int) -> None:
    """Stop watching; its probe records and exhibits stay in the ledger."""
    if not WatchStore(led.store).remove(watch_id):
        raise UsageError(f"no watch {watch_id}")


def pause(led: Ledger, watch_id: int) -> None:
    if not WatchStore(led.store).set_state(watch_id, "paused", now=time.time()):
        raise UsageError(f"no watch {watch_id}")


def resume(led: Ledger, watch_id: int) -> None:
    """Probe a paused watch again, starting now."""
    if not WatchStore(led.store).set_state(watch_id, "active", now=time.time()):
        raise UsageError(f"no watch {watch_id}")


def events(led: Ledger, since: str | None = None, *, watch_id: int | None = None) -> tuple[str | None, list[WatchEvent]]:
    """(the UTC time ``since`` meant, the events at or after it); ``since``: ISO 8601 or a duration ago (1h)."""
    t = parse_since(since) if since else None
    return t, WatchStore(led.store).events(since=t, watch_id=watch_id)


def history(led: Ledger, target: str) -> dict[str, Any]:
    """The listing's timeline from its signed probe records (``evidence.watch.history``)."""
    return _history(led, target)


def last_probe(led: Ledger, watch_id: int, case: str | None) -> Record | None:
    """The watch's latest probe record (what the listing showed last: title, status, fields)."""
    last = None
    for r in led.records(case=case) if case else led.records_of_kind(PROBE_KIND):
        if r.kind == PROBE_KIND and r.payload.get("watch") == watch_id:
            last = r
    return last


def detail(d: dict[str, Any]) -> str:
    """An event's detail in one line: old -> new of each changed field, the rule hit, the removal reason."""
    k = d.get("kind")
    if k == "change":
        parts = [f"{c['field']}: {c['old']!s} -> {c['new']!s}" for c in d.get("changes") or []]
        if d.get("text_distance") is not None:
            parts.append(f"text distance {d['text_distance']}, visual {d.get('visual_distance')}")
        return "; ".join(parts)
    if k == "rule-hit":
        return f"keyword {d['keyword']}" if d.get("rule") == "keyword" else f"{d.get('field')} {d.get('old')} -> {d.get('price')} (below {d.get('bound')})"
    if k == "removal":
        return str(d.get("reason"))
    if k == "first-seen":
        return ", ".join(f"{n}={v}" for n, v in (d.get("fields") or {}).items())
    return ""


def every_text(seconds: int) -> str:
    """An interval as `--every` takes it: 3600 -> 1h (the largest unit that divides it)."""
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % n == 0:
            return f"{seconds // n}{unit}"
    return f"{seconds}s"


def utc(t: float | None) -> str:
    """A Unix time as the records' UTC form (for a next due time)."""
    if t is None:
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
