"""Capture workers: take queued URLs from the shared ledger, capture, seal.

    from capture.worker import enqueue, run_worker
    enqueue(led, ["https://shop.example/item/1"], case="SAMR-2026-017", operator="Li Wei")
    stats = run_worker(led, once=True)      # until the queue is empty

Any number of workers, on any machines whose homes share one PostgreSQL
ledger (and one artifact store), run ``evidence worker``. Each signs with its
own registered key, so every record says which worker sealed it. A job is
captured into a private temporary directory, its artifacts go to the store,
and the exhibit record is appended in the same transaction that marks the job
done (``ledger.queue``): a job is sealed once even when a worker dies at any
point, because a dead worker's job is only taken over after its lease ran out,
and a worker that lost its lease cannot seal.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.errors import EvidenceError, ExpectationFailed, StoreError, UsageError
from ledger.queue import Job, LeaseLost, Queue
from ledger.sessions import LoginSession, SessionStore

from .options import CaptureOptions, check_url
from .page import _check_case, capture_to_dir

#: log(message): one line per event (claimed, sealed, failed)
Log = Callable[[str], None]


@dataclass
class WorkerStats:
    worker: str
    done: list[tuple[int, int]] = field(default_factory=list)  # (job id, record index)
    failed: list[tuple[int, str]] = field(default_factory=list)  # (job id, error)
    lost: list[int] = field(default_factory=list)  # jobs whose lease another worker took

    def to_json(self) -> dict[str, Any]:
        return {
            "worker": self.worker,
            "done": [{"job": j, "record": r} for j, r in self.done],
            "failed": [{"job": j, "error": e} for j, e in self.failed],
            "lost": self.lost,
        }


def enqueue(
    ledger: Any,
    urls: list[str],
    *,
    case: str,
    operator: str | None = None,
    note: str | None = None,
    max_attempts: int = 3,
    **options: Any,
) -> list[int]:
    """Check the URLs, case and options now (not on a worker later), then queue them."""
    case = _check_case(case)
    checked = [check_url(u) for u in urls]
    if not checked:
        raise UsageError("nothing to enqueue: give a URL or --urls FILE")
    session = options.get("session")
    if isinstance(session, str):
        # Unlocked now, so a missing session or wrong passphrase is found before anything is queued.
        options = {**options, "session": SessionStore.of_home(ledger.home.root).load(session)}
    CaptureOptions.from_kwargs(options)
    opts = {k: [str(p) for p in v] if k == "trust_roots" else list(v) if k == "expect" else v for k, v in options.items()}
    if isinstance(opts.get("session"), LoginSession):
        # The queue is a database table: a job names its session, the cookies stay encrypted in the home.
        opts["session"] = opts["session"].name
    return Queue(ledger.store).enqueue_many(
        checked, case=case, operator=operator, note=note, options=opts, max_attempts=max_attempts
    )


def default_worker_id(key_id: str) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{key_id[:8]}"


class _Heartbeat(threading.Thread):
    """Renews a job's lease while its capture runs; notes when the claim is gone."""

    def __init__(self, queue: Queue, job: Job, lease: float):
        super().__init__(daemon=True)
        self.queue, self.job, self.lease = queue, job, lease
        self.stop = threading.Event()
        self.lost = False

    def run(self) -> None:
        while not self.stop.wait(self.lease / 3):
            try:
                if not self.queue.renew(self.job, self.lease):
                    self.lost = True
                    return
            except EvidenceError:
                continue  # database away for now; the seal will tell if the claim is gone


def run_worker(
    ledger: Any,
    *,
    worker_id: str | None = None,
    once: bool = False,
    max_jobs: int | None = None,
    poll: float = 2.0,
    lease: float = 600.0,
    stop: threading.Event | None = None,
    log: Log | None = None,
    defaults: dict[str, Any] | None = None,
    capture: Callable[..., Any] = capture_to_dir,
) -> WorkerStats:
    """Claim and capture jobs until ``max_jobs`` are handled, the queue is
    empty (``once``), or ``stop`` is set.

    A job that fails with a bad URL or option fails at once; other failures
    (host unreachable, browser crash) put it back in the queue until its
    attempts are used up. Losing the database for longer than the store's
    retry window ends the worker with StoreError; its job is then taken over
    by another worker when the lease runs out. ``defaults`` are capture
    options of this machine (its clock reference, say) that a job's own
    options override.
    """
    if lease < 10:
        raise UsageError("the lease must be at least 10 seconds")
    if max_jobs is not None and max_jobs < 1:
        raise UsageError("--max-jobs must be at least 1")
    key = ledger.key
    ledger.check_registered(key)  # fail before claiming anything
    queue = Queue(ledger.store)
    stats = WorkerStats(worker_id or default_worker_id(key.key_id))
    say = log or (lambda _m: None)
    handled = 0
    while (max_jobs is None or handled < max_jobs) and not (stop and stop.is_set()):
        job = queue.claim(stats.worker, lease)
        if job is None:
            if once:
                break
            if stop is not None:
                stop.wait(poll)
            else:
                time.sleep(poll)
            continue
        handled += 1
        say(f"job {job.id}: capturing {job.url} (attempt {job.attempts}/{job.max_attempts})")
        _handle(ledger, queue, job, stats, lease, say, capture, defaults or {})
    return stats


def _handle(
    ledger: Any,
    queue: Queue,
    job: Job,
    stats: WorkerStats,
    lease: float,
    say: Log,
    capture: Callable[..., Any],
    defaults: dict[str, Any],
) -> None:
    beat = _Heartbeat(queue, job, lease)
    beat.start()
    try:
        with tempfile.TemporaryDirectory(prefix=f"evidence-job{job.id}-") as tmp:
            options = {**defaults, **job.options}
            if isinstance(options.get("session"), str):
                # The worker's own home holds the session under the same name.
                options["session"] = SessionStore.of_home(ledger.home.root).load(options["session"])
            pc = capture(job.url, Path(tmp), case=job.case, operator=job.operator, note=job.note, **options)
            info = dict(pc.info)
            info["queue_job"] = {"id": job.id, "worker": stats.worker, "attempt": job.attempts}
            ex = ledger.seal_exhibit(
                job.case, pc.artifacts, info,
                on_locked=lambda conn, recs: queue.complete_in(conn, job, recs[0].index),
            )
        stats.done.append((job.id, ex.index))
        say(f"job {job.id}: sealed as record {ex.index}")
    except LeaseLost as e:
        stats.lost.append(job.id)
        say(f"job {job.id}: {e}; the capture was dropped")
    except StoreError:
        raise
    except UsageError as e:
        queue.fail(job, str(e), retry=False)
        stats.failed.append((job.id, str(e)))
        say(f"job {job.id}: failed: {e}")
    except ExpectationFailed as e:
        # Retrying would capture the same login page; the session's other jobs stop too.
        queue.fail(job, str(e), retry=False)
        stats.failed.append((job.id, str(e)))
        say(f"job {job.id}: failed: {e}")
        name = job.options.get("session")
        if isinstance(name, str):
            held = queue.hold_session(name, f"job {job.id} with session {name} lacked its expected text (session expired?)")
            for j in held:
                stats.failed.append((j, "not captured: session expired?"))
            if held:
                say(f"session {name}: {len(held)} queued job(s) stopped: {', '.join(map(str, held))}")
    except Exception as e:  # noqa: BLE001 - one hostile page must not end the worker
        msg = str(e) if isinstance(e, EvidenceError) else f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        state = queue.fail(job, msg, retry=True)
        if state == "failed":
            stats.failed.append((job.id, msg))
        say(f"job {job.id}: {'failed' if state == 'failed' else 'will be retried'}: {msg}")
    finally:
        beat.stop.set()
        beat.join(5)
