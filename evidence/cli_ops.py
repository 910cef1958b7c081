"""`evidence` commands for running a team deployment: schema migrations,
homes joining a shared ledger, and the capture queue with its workers.

Registered on the main app by ``evidence.cli`` through ``register`` (which
hands over the running CLI module, also when it runs as ``python -m
evidence.cli``); same conventions (``--json``, one-line errors, exit codes of
DESIGN.md).
"""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Any

import typer

from ledger.display import shown, text
from ledger.errors import UsageError

from . import cli_fleet as _cli_fleet

JsonOpt = typer.Option(False, "--json", help="Print one JSON object on stdout.")
_cli: Any = None  # the running evidence.cli module (set by register)


def register(cli_module: Any) -> None:
    global _cli
    _cli = cli_module
    for cmd in (migrate, join, enqueue, worker, jobs):
        cli_module.app.command()(cmd)
    cli_module.key_app.command("register")(key_register)


def emit(obj: dict[str, Any]) -> None:
    _cli.emit(obj)


def _open() -> Any:
    return _cli._open()


def migrate(
    status_only: bool = typer.Option(False, "--status", help="Only report the schema revision; change nothing."),
    db_url: str | None = typer.Option(None, "--db-url", help="SQLAlchemy URL (default: the home's ledger)."),
    as_json: bool = JsonOpt,
) -> None:
    """Upgrade the ledger database schema to this version's revision."""
    from ledger import migrations
    from ledger.config import Home, default_home
    from ledger.store import Store, safe_url

    url = Home(default_home()).db_url(db_url)
    before = migrations.status(url)
    if before.empty:
        _cli.fail(f"{safe_url(url)} holds no ledger (run `evidence init`)", 2)
    if not status_only and not before.up_to_date:
        before = migrations.upgrade(url)
    after = migrations.status(url)
    if not status_only:
        # Opening runs every open-time check (revision, truncation) on the result.
        Store(url).dispose()
    info = {
        "database": safe_url(url),
        "before": before.current or ("pre-migrations" if before.legacy else None),
        "current": after.current or ("pre-migrations" if after.legacy else None),
        "head": after.head,
        "up_to_date": after.up_to_date,
    }
    if as_json:
        emit(info)
    elif status_only:
        _cli.out.print(f"schema revision {shown(info['current'])}, head {shown(info['head'])}" + ("" if after.up_to_date else ": run `evidence migrate`"), highlight=False)
    elif info["before"] == info["current"]:
        _cli.out.print(f"Ledger schema is at revision {shown(info['current'])} (head {shown(info['head'])}): nothing to do", highlight=False)
    else:
        _cli.out.print(f"Ledger schema migrated from {shown(info['before'])} to {shown(info['current'])} (head {shown(info['head'])})", highlight=False)
    if status_only and not after.up_to_date:
        raise typer.Exit(1)


def join(
    name: str = typer.Option(..., "--name", help="Name of this writer (machine or worker) in the ledger."),
    trust: str = typer.Option(..., "--trust", help="The log's verifier key (vkey, or a file holding it): `evidence key show` on the log's home."),
    db_url: str | None = typer.Option(None, "--db-url", help="The shared ledger (default: EVIDENCE_DB_URL)."),
    artifacts: str | None = typer.Option(None, "--artifacts", help="Shared artifact directory (absolute path) to use."),
    no_passphrase: bool = typer.Option(False, "--no-passphrase", help="Store the signing key unencrypted."),
    as_json: bool = JsonOpt,
) -> None:
    """Create a home on this machine that writes to an existing shared ledger."""
    from ledger.log import KEY_REQUEST, Ledger

    vkey = _one_vkey(trust)
    led, request = Ledger.join(
        name=name, trust=vkey, db_url=db_url, unencrypted=no_passphrase, artifacts=artifacts
    )
    info = {
        "home": str(led.home.root), "origin": led.origin, "key_id": request["key_id"],
        "request": str(led.home.root / KEY_REQUEST),
    }
    led.close()
    if as_json:
        emit(info)
        return
    _cli.out.print(f"Home {shown(info['home'])} joined log {shown(info['origin'])} with key {shown(info['key_id'])}", highlight=False)
    _cli.out.print(f"On the log's home run: evidence key register {shown(info['request'])}", highlight=False)


def _one_vkey(item: str) -> str:
    p = Path(item)
    if "+" in item and not p.exists():
        return item
    try:
        lines = [ln.strip() for ln in p.read_text("utf-8").splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read --trust {item}: {getattr(e, 'strerror', None) or e}") from None
    if len(lines) != 1:
        raise UsageError(f"--trust {item} must hold exactly one verifier key (the log's)")
    return lines[0]


def key_register(
    request: Path = typer.Argument(..., help="key-request.json written by `evidence join` on the other machine."),
    as_json: bool = JsonOpt,
) -> None:
    """Register another machine's writer key (its proof of possession is checked)."""
    try:
        payload = json.loads(request.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UsageError(f"cannot read key request {request}: {getattr(e, 'strerror', None) or e}") from None
    led = _open()
    try:
        rec = led.register_request(payload)
    finally:
        led.close()
    info = {"index": rec.index, "name": rec.payload["name"], "role": rec.payload["role"], "key_id": rec.payload["key_id"]}
    if as_json:
        emit(info)
    else:
        _cli.out.print(f"Key {shown(info['key_id'])} registered for {shown(info['name'])} ({shown(info['role'])}) at record {rec.index}", highlight=False)


def enqueue(
    url: list[str] = typer.Argument(None, help="Page(s) to capture (or use --urls)."),
    case: str = typer.Option(..., "--case", help="Case id the exhibits belong to."),
    operator: str | None = typer.Option(None, "--operator", help="Who asked for the capture (recorded)."),
    note: str | None = typer.Option(None, "--note", help="Free text recorded with each exhibit."),
    urls: Path | None = typer.Option(None, "--urls", help="File of URLs, one a line."),
    max_attempts: int = typer.Option(3, "--max-attempts", help="Claims of a job before it is marked failed."),
    load_timeout: float | None = typer.Option(None, "--load-timeout", help="Seconds to wait for the load event."),
    settle_timeout: float | None = typer.Option(None, "--settle-timeout", help="Seconds to wait for requests to settle."),
    max_scroll: int | None = typer.Option(None, "--max-scroll", help="Scroll steps for lazy loading."),
    no_mhtml: bool = typer.Option(False, "--no-mhtml", help="Skip the MHTML snapshot."),
    session: str | None = typer.Option(None, "--session", help="Saved login the worker's browser starts from (the job names it; the worker's home holds it)."),
    device: str | None = typer.Option(None, "--device", help="Device to emulate (see `evidence devices`)."),
    expect: list[str] = typer.Option([], "--expect", help="Text the page must show, else the job fails unsealed (repeat)."),
    engine: str = typer.Option("db", "--engine", help="db: the ledger database's queue; celery: the broker at EVIDENCE_BROKER_URL."),
    queue: str | None = typer.Option(None, "--queue", help="Named broker queue (--engine celery; default: evidence)."),
    as_json: bool = JsonOpt,
) -> None:
    """Queue pages for capture by `evidence worker` processes (on any machine sharing the ledger)."""
    from capture.worker import enqueue as enqueue_urls

    todo = list(url or [])
    if urls is not None:
        try:
            lines = [ln.strip() for ln in urls.read_text("utf-8").splitlines()]
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"cannot read {urls}: {getattr(e, 'strerror', None) or e}") from None
        todo += [ln for ln in lines if ln and not ln.startswith("#")]
    opts: dict[str, Any] = {}
    for k, v in (("load_timeout", load_timeout), ("settle_timeout", settle_timeout), ("max_scroll_steps", max_scroll)):
        if v is not None:
            opts[k] = v
    if no_mhtml:
        opts["mhtml"] = False
    for k, v in (("session", session), ("device", device)):
        if v is not None:
            opts[k] = v
    if expect:
        opts["expect"] = tuple(expect)
    if _cli_fleet.engine_of(engine) == "celery":
        _cli_fleet.enqueue(_cli, todo, case=case, operator=operator, note=note, queue=queue, options=opts, as_json=as_json)
        return
    if queue is not None:
        raise UsageError("--queue names a broker queue: it needs --engine celery")
    led = _open()
    try:
        ids = enqueue_urls(led, todo, case=case, operator=operator, note=note, max_attempts=max_attempts, **opts)
    finally:
        led.close()
    if as_json:
        emit({"jobs": ids})
    else:
        _cli.out.print(f"Queued {len(ids)} job(s): {', '.join(map(str, ids))}")


def worker(
    signer: str | None = typer.Option(None, "--signer", help="Registered writer key of this home to sign with (default: the home's key)."),
    once: bool = typer.Option(False, "--once", help="Exit when the queue is empty."),
    max_jobs: int | None = typer.Option(None, "--max-jobs", help="Exit after handling this many jobs."),
    poll: float = typer.Option(2.0, "--poll", help="Seconds between looks at an empty queue."),
    lease: float = typer.Option(600.0, "--lease", help="Seconds a claim holds without renewal; a dead worker's job is retaken after it."),
    name: str | None = typer.Option(None, "--name", help="Worker name in the queue (default HOST:PID:KEYID)."),
    engine: str = typer.Option("db", "--engine", help="db: the ledger database's queue; celery: a Celery worker on EVIDENCE_BROKER_URL."),
    queues: str | None = typer.Option(None, "--queues", help="Broker queues to serve, comma-separated (--engine celery; default: evidence)."),
    concurrency: int = typer.Option(1, "--concurrency", help="Worker processes (--engine celery)."),
    as_json: bool = JsonOpt,
) -> None:
    """Capture queued pages and seal them, signed with this worker's key; Ctrl-C stops after the current job."""
    from capture.worker import run_worker

    if _cli_fleet.engine_of(engine) == "celery":
        _cli_fleet.worker(_cli, queues=queues, concurrency=concurrency, signer=signer)
        return
    if queues is not None:
        raise UsageError("--queues names broker queues: it needs --engine celery")
    led = _open()
    stop = threading.Event()
    try:
        if signer:
            led.use_signer(signer)
        # SIGTERM (systemd, docker stop) ends the loop after the current job.
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
        stats = run_worker(
            led, worker_id=name, once=once, max_jobs=max_jobs, poll=poll, lease=lease, stop=stop,
            defaults=_cli._check_settings(led, None, None, None),
            log=None if as_json else (lambda m: _cli.err.print(text(m), highlight=False)),
        )
    finally:
        led.close()
    if as_json:
        emit(stats.to_json())
    else:
        _cli.out.print(f"Worker {shown(stats.worker)}: {len(stats.done)} sealed, {len(stats.failed)} failed, {len(stats.lost)} lost", highlight=False)


def jobs(
    state: str | None = typer.Option(None, "--state", help="queued, running, done or failed."),
    case: str | None = typer.Option(None, "--case", help="Only jobs of this case."),
    as_json: bool = JsonOpt,
) -> None:
    """List the capture queue."""
    from rich.table import Table

    from ledger.queue import Queue

    led = _open()
    try:
        q = Queue(led.store)
        items, counts = q.list(state=state, case_id=case), q.counts()
    finally:
        led.close()
    if as_json:
        emit({"counts": counts, "jobs": [j.to_json() for j in items]})
        return
    table = Table(title=text(", ".join(f"{n} {s}" for s, n in counts.items())))
    for col in ("job", "state", "case", "url", "tries", "worker", "record", "error"):
        table.add_column(col, overflow="fold")
    for j in items:
        row = (
            str(j.id), j.state, j.case, j.url, f"{j.attempts}/{j.max_attempts}", j.claimed_by or "",
            "" if j.record_idx is None else str(j.record_idx), (j.error or "")[:120],
        )
        table.add_row(*(text(c) for c in row))
    _cli.out.print(table)
