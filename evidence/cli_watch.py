"""`evidence watch ...`: watch lists, the embedded scheduler, events and history.

Registered on the main app by ``evidence.cli`` through ``register``, like
``cli_case``; same conventions (``--json``, one-line errors, exit codes of
DESIGN.md). The work is ``evidence.watch``'s.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ledger.display import shown, text
from ledger.errors import UsageError

# The watch machinery (browser, database layer) is imported inside each command, as
# evidence.cli does: `evidence --help` or `evidence verify` must not pay for it.

watch_app = typer.Typer(no_args_is_help=True, help="Watch listings: probe them on a schedule, capture what changes.")
_cli: Any = None  # the running evidence.cli module (set by register)
JsonOpt = typer.Option(False, "--json", help="Print one JSON object on stdout.")


def register(cli_module: Any) -> None:
    global _cli
    _cli = cli_module
    cli_module.app.add_typer(watch_app, name="watch")


def _when(t: float | None) -> str:
    if t is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) + "Z"


@watch_app.command("add")
def watch_add(
    url: str = typer.Argument(..., help="The listing to watch (http:// or https://)."),
    case: str = typer.Option(..., "--case", help="Case id its probes and exhibits belong to."),
    every: str = typer.Option(..., "--every", help="How often to probe: 30s, 10m, 1h, 1d."),
    field: list[str] = typer.Option([], "--field", help="NAME=CSS: a field whose text each probe records (repeat)."),
    keyword: list[str] = typer.Option([], "--keyword", help="A word whose appearance in the page is a rule hit (repeat)."),
    price_field: str | None = typer.Option(None, "--price-field", help="The --field that holds the price."),
    price_below: str | None = typer.Option(None, "--price-below", help="A price below this is a rule hit."),
    removed_marker: list[str] = typer.Option([], "--removed-marker", help="Text that means the listing is gone (repeat; default: 商品已下架 and the like)."),
    webhook: str | None = typer.Option(None, "--webhook", help="URL that gets a JSON POST for each event (default: watch_webhook in config.json)."),
    session: str | None = typer.Option(None, "--session", help="Saved login (`evidence session`) the probes and captures start from."),
    device: str | None = typer.Option(None, "--device", help="Device to emulate, e.g. 'iPhone 13' (`evidence devices`)."),
    as_json: bool = JsonOpt,
) -> None:
    """Add a watch; its first probe is due now."""
    from .app import watches

    fields = watches.parse_fields(field)  # a bad --field is said before the home is opened
    led = _cli._open()
    try:
        w = watches.add(led, url, case, every, fields=fields, keywords=keyword, price_field=price_field,
                        price_below=price_below, removed_markers=removed_marker, webhook=webhook,
                        session=session, device=device)
    finally:
        led.close()
    wid = w.id
    if as_json:
        _cli.emit(w.to_json())
    else:
        _cli.out.print(f"Watch {wid}: {shown(w.url)} every {w.every}s (case {shown(w.case)}); first probe due now", highlight=False)


@watch_app.command("import")
def watch_import(
    file: Path = typer.Argument(..., help="CSV (header: url,case,every,fields,keywords,price_field,price_below,removed_markers,webhook; ';' between values) or JSONL."),
    case: str | None = typer.Option(None, "--case", help="Case id of rows that name none."),
    every: str | None = typer.Option(None, "--every", help="Interval of rows that name none."),
    as_json: bool = JsonOpt,
) -> None:
    """Add many watches; one bad row and nothing is imported. First probes are spread out."""
    from .app import watches

    led = _cli._open()
    try:
        ids = watches.import_file(led, file, case=case, every=every)
    finally:
        led.close()
    if as_json:
        _cli.emit({"imported": len(ids), "first_id": ids[0], "last_id": ids[-1]})
    else:
        _cli.out.print(f"Imported {len(ids)} watch(es): ids {ids[0]}..{ids[-1]}", highlight=False)


@watch_app.command("list")
def watch_list(as_json: bool = JsonOpt) -> None:
    """The watch list, with each watch's next due time and last probe."""
    from .app import watches

    led = _cli._open()
    try:
        rows = [r.watch for r in watches.list_watches(led, last_events=False)]
    finally:
        led.close()
    if as_json:
        _cli.emit({"watches": [w.to_json() for w in rows]})
        return
    table = Table(title=text(f"{len(rows)} watch(es)"))
    for col in ("id", "state", "every", "next due (UTC)", "last probe", "case", "url", "last error"):
        table.add_column(col, overflow="fold")
    for w in rows:
        table.add_row(*(text(c) for c in (str(w.id), w.state, f"{w.every}s", _when(w.next_due),
                                          "" if w.last_probe_idx is None else str(w.last_probe_idx),
                                          w.case, w.url, w.last_error or "")))
    _cli.out.print(table)


def _one(watch_id: int, verb: str, act: Any) -> None:
    led = _cli._open()
    try:
        act(led)
    finally:
        led.close()
    _cli.out.print(f"Watch {watch_id} {verb}", highlight=False)


@watch_app.command("remove")
def watch_remove(watch_id: int = typer.Argument(..., help="Watch id (see `watch list`).")) -> None:
    """Stop watching; its probe records and exhibits stay in the ledger."""
    from .app import watches

    _one(watch_id, "removed", lambda led: watches.remove(led, watch_id))


@watch_app.command("pause")
def watch_pause(watch_id: int = typer.Argument(..., help="Watch id.")) -> None:
    """Stop probing a watch until `watch resume`."""
    from .app import watches

    _one(watch_id, "paused", lambda led: watches.pause(led, watch_id))


@watch_app.command("resume")
def watch_resume(watch_id: int = typer.Argument(..., help="Watch id.")) -> None:
    """Probe a paused watch again, starting now."""
    from .app import watches

    _one(watch_id, "resumed", lambda led: watches.resume(led, watch_id))


@watch_app.command("run")
def watch_run(
    for_: str | None = typer.Option(None, "--for", help="Stop after this long (30s, 10m, 1h, 1d); default: until Ctrl-C or SIGTERM."),
    concurrency: int = typer.Option(2, "--concurrency", help="Pages loading at once (one browser)."),
    engine: str = typer.Option("db", "--engine", help="db: probe here; celery: only send probe tasks to EVIDENCE_BROKER_URL's workers."),
    queue: str | None = typer.Option(None, "--queue", help="Broker queue of the probe tasks (--engine celery; default: evidence)."),
    as_json: bool = JsonOpt,
) -> None:
    """Run the scheduler in the foreground: probe due watches, capture events, send alerts."""
    from . import cli_fleet
    from .watch import parse_duration, run_scheduler

    duration = float(parse_duration(for_, "--for")) if for_ is not None else None
    if cli_fleet.engine_of(engine) == "celery":
        cli_fleet.watch_run(_cli, duration=duration, queue=queue, as_json=as_json)
        return
    if queue is not None:
        raise UsageError("--queue names a broker queue: it needs --engine celery")
    if not 1 <= concurrency <= 64:
        raise UsageError(f"--concurrency must be between 1 and 64, not {concurrency}")
    led = _cli._open()

    def say(m: str) -> None:
        if not as_json:
            _cli.err.print(text(m), highlight=False, soft_wrap=True)

    try:
        if not as_json:
            _cli.err.print(f"Probing due watches with {concurrency} page(s) at a time; Ctrl-C stops.", highlight=False)
        stats = asyncio.run(run_scheduler(led, duration=duration, concurrency=concurrency, log=say))
    finally:
        led.close()
    info = stats.to_json()
    if as_json:
        _cli.emit(info)
    else:
        _cli.out.print(f"{info['probes']} probe(s), {info['events']} event(s), {info['exhibits']} exhibit(s), "
                       f"{info['failures']} failure(s); lag p50 {info['lag_p50_s']} s, p99 {info['lag_p99_s']} s", highlight=False)


@watch_app.command("events")
def watch_events(
    since: str | None = typer.Option(None, "--since", help="Only events at or after this time (ISO 8601) or this long ago (1h)."),
    as_json: bool = JsonOpt,
) -> None:
    """Events (first sight, change, rule hit, removal) with their probe and exhibit records."""
    from .app import watches

    led = _cli._open()
    try:
        t, evs = watches.events(led, since)
    finally:
        led.close()
    if as_json:
        _cli.emit({"since": t, "events": [e.to_json() for e in evs]})
        return
    table = Table(title=text(f"{len(evs)} event(s)" + (f" since {t}" if t else "")))
    for col in ("id", "time (UTC)", "watch", "kind", "probe", "exhibit", "alert", "url", "detail"):
        table.add_column(col, overflow="fold")
    for e in evs:
        table.add_row(*(text(c) for c in (str(e.id), e.time, str(e.watch_id), e.kind, str(e.probe_idx),
                                          "" if e.exhibit_idx is None else str(e.exhibit_idx),
                                          e.delivery, e.url, _detail(e.detail))))
    _cli.out.print(table)


def _detail(d: dict[str, Any]) -> str:
    from .app import watches

    return watches.detail(d)


@watch_app.command("history")
def watch_history(
    target: str = typer.Argument(..., help="Watch id or the listing's URL."),
    as_json: bool = JsonOpt,
) -> None:
    """The listing's timeline from its signed probe records: first seen, changes, hits, removal."""
    from .app import watches

    led = _cli._open()
    try:
        h = watches.history(led, target)
    finally:
        led.close()
    if as_json:
        _cli.emit(h)
        return
    _cli.out.print(f"{shown(h['url'])} (watch {shown(h['watch'])}, case {shown(h['case'])}): {h['probes']} probe(s), "
                   f"first {shown(h['first_probe'])}, last {shown(h['last_probe'])} (HTTP {shown(h['last_status'])})", highlight=False)
    for e in h["timeline"]:
        ex = f", exhibit {e['exhibit_index']}" if e.get("exhibit_index") is not None else ""
        _cli.out.print(f"  {shown(e['time'])}  {shown(e['kind'])}: {shown(_detail(e))}  (probe record {e['probe_index']}{ex})", highlight=False)
    for p in h["unverified"]:
        _cli.err.print(f"[yellow]warning:[/] {shown(p)}", highlight=False)
