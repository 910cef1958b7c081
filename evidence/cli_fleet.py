"""`--engine celery` of `evidence enqueue`, `evidence worker` and `evidence watch run`:
the same commands, with the work on a Celery broker (``EVIDENCE_BROKER_URL``) instead
of the ledger database's queue. The work is ``evidence.fleet``'s.

Called by ``cli_ops`` and ``cli_watch`` (which own the options); same conventions
(``--json``, one-line errors, exit codes of DESIGN.md: a missing or bad broker
setting is 2, an unreachable broker 3).
"""

from __future__ import annotations

import signal
import threading
from typing import Any

import typer

from ledger.display import shown, text
from ledger.errors import UsageError

ENGINES = ("db", "celery")


def engine_of(value: str) -> str:
    v = (value or "").strip().lower()
    if v not in ENGINES:
        raise UsageError(f"--engine must be db or celery, not {value!r}")
    return v


def enqueue(cli: Any, urls: list[str], *, case: str, operator: str | None, note: str | None, queue: str | None,
            options: dict[str, Any], as_json: bool) -> None:
    from .fleet import DEFAULT_QUEUE, Settings
    from .fleet import enqueue as send

    settings = Settings.from_env()
    led = cli._open()
    try:
        sent = send(led, settings, urls, case=case, operator=operator, note=note,
                    queue=queue or DEFAULT_QUEUE, options=options)
    finally:
        led.close()
    if as_json:
        cli.emit({"engine": "celery", "queue": sent[0].queue, "tasks": [s.to_json() for s in sent]})
        return
    cli.out.print(f"Queued {len(sent)} task(s) on queue {shown(sent[0].queue)}:", highlight=False)
    for s in sent:
        cli.out.print(f"  {shown(s.key)}  {shown(s.url)}", highlight=False)


def worker(cli: Any, *, queues: str | None, concurrency: int, signer: str | None) -> None:
    from dataclasses import replace

    from .fleet import DEFAULT_QUEUE, Settings, run_worker

    settings = replace(Settings.from_env(), signer=signer)
    names = [q.strip() for q in (queues or DEFAULT_QUEUE).split(",") if q.strip()]
    code = run_worker(settings, queues=names, concurrency=concurrency)
    if code:
        raise typer.Exit(code)


def watch_run(cli: Any, *, duration: float | None, queue: str | None, as_json: bool) -> None:
    from .fleet import DEFAULT_QUEUE, Settings, run_scheduler

    settings = Settings.from_env()
    led = cli._open()
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())

    def say(m: str) -> None:
        if not as_json:
            cli.err.print(text(m), highlight=False, soft_wrap=True)

    try:
        stats = run_scheduler(led, settings, duration=duration, queue=queue or DEFAULT_QUEUE, stop=stop, log=say,
                              on_start=lambda: say(f"Sending probe tasks for due watches to queue {queue or DEFAULT_QUEUE}; Ctrl-C stops."))
    finally:
        led.close()
    info = {"engine": "celery", **stats.to_json()}
    if as_json:
        cli.emit(info)
    else:
        cli.out.print(f"{info['sent']} probe task(s) sent; {info['delivered']} alert(s) delivered; "
                      f"lag p50 {info['lag_p50_s']} s, p99 {info['lag_p99_s']} s", highlight=False)
