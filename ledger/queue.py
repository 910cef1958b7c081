"""A capture queue in the ledger database, shared by workers on many machines.

    from ledger.queue import Queue
    q = Queue(led.store)
    q.enqueue("https://shop.example/item/1", case="SAMR-2026-017", operator="Li Wei")
    job = q.claim("host-a:4242", lease=600)      # None when nothing is ready
    led.seal_exhibit(job.case, files, info, on_locked=lambda conn, recs: q.complete_in(conn, job, recs[0].index))

Claiming takes the oldest ready job with ``SELECT ... FOR UPDATE SKIP LOCKED``
on PostgreSQL (workers never wait for each other's rows) and inside
``BEGIN IMMEDIATE`` on SQLite. A claim is a lease timed by the database's
clock, not the workers' (their clocks may disagree); a worker renews it while
it captures, and a job whose lease ran out (its worker died) is claimed again,
up to ``max_attempts`` claims.

A job is marked done inside the transaction that appends its exhibit record,
and only if this worker's claim still holds: a record is never appended for a
job another worker has taken over, and a done job always has its record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, case, func, select, text
from sqlalchemy.exc import DBAPIError

from ledger.errors import EvidenceError, StoreError, UsageError
from ledger.record import utc_now

from .store import Store, jobs

STATES = ("queued", "running", "done", "failed")
DEFAULT_MAX_ATTEMPTS = 3


class LeaseLost(EvidenceError):
    """This worker's claim on a job ended (lease expired, another worker took it)."""

    exit_code = 3


@dataclass(frozen=True)
class Job:
    id: int
    url: str
    case: str
    operator: str | None
    note: str | None
    options: dict[str, Any]
    state: str
    attempts: int
    max_attempts: int
    claimed_by: str | None
    lease_until: float | None
    created: str
    updated: str
    record_idx: int | None
    error: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "url": self.url, "case": self.case, "operator": self.operator,
            "state": self.state, "attempts": self.attempts, "max_attempts": self.max_attempts,
            "claimed_by": self.claimed_by, "record": self.record_idx, "error": self.error,
            "created": self.created, "updated": self.updated,
        }


def _job(r: Any) -> Job:
    try:
        options = json.loads(r.options)
    except ValueError:
        options = {}
    return Job(
        r.id, r.url, r.case_id, r.operator, r.note, options, r.state, r.attempts, r.max_attempts,
        r.claimed_by, r.lease_until, r.created, r.updated, r.record_idx, r.error,
    )


class Queue:
    def __init__(self, store: Store):
        self.store = store

    def _now(self, conn: Connection) -> float:
        """Seconds since the epoch by the database server's clock."""
        if self.store.is_sqlite:
            return float(conn.execute(text("SELECT (julianday('now') - 2440587.5) * 86400.0")).scalar_one())
        return float(conn.execute(text("SELECT extract(epoch FROM clock_timestamp())")).scalar_one())

    def enqueue(
        self,
        url: str,
        *,
        case: str,
        operator: str | None = None,
        note: str | None = None,
        options: dict[str, Any] | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> int:
        return self.enqueue_many(
            [url], case=case, operator=operator, note=note, options=options, max_attempts=max_attempts
        )[0]

    def enqueue_many(
        self,
        urls: list[str],
        *,
        case: str,
        operator: str | None = None,
        note: str | None = None,
        options: dict[str, Any] | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> list[int]:
        """Queue URLs (already checked by the caller) in one transaction; return job ids."""
        if not isinstance(max_attempts, int) or not 1 <= max_attempts <= 100:
            raise UsageError(f"max attempts must be between 1 and 100, not {max_attempts!r}")
        if not urls:
            return []
        try:
            opts = json.dumps(options or {}, sort_keys=True, ensure_ascii=False)
        except (TypeError, ValueError) as e:
            raise UsageError(f"capture options cannot be queued: {e}") from None
        now = utc_now()
        rows = [
            dict(url=u, case_id=case, operator=operator, note=note, options=opts, state="queued",
                 attempts=0, max_attempts=max_attempts, created=now, updated=now)
            for u in urls
        ]

        def insert(conn: Connection) -> list[int]:
            # One statement per row keeps the ids without RETURNING-many quirks.
            return [int(conn.execute(jobs.insert().values(**r)).inserted_primary_key[0]) for r in rows]

        # Not retried on a lost connection: a commit that landed would queue twice.
        try:
            with self.store._write() as conn:
                return insert(conn)
        except DBAPIError as e:
            raise StoreError(f"enqueue failed (nothing queued unless `evidence jobs` lists it): {str(e.orig).strip().splitlines()[0]}") from e

    def claim(self, worker: str, lease: float) -> Job | None:
        """Take the oldest job that is queued or whose lease ran out; None if none."""

        def body(conn: Connection) -> Job | None:
            now = self._now(conn)
            ready = (jobs.c.state == "queued") | ((jobs.c.state == "running") & (jobs.c.lease_until < now))
            q = select(jobs).where(ready).order_by(jobs.c.id).limit(1)
            if not self.store.is_sqlite:
                q = q.with_for_update(skip_locked=True)
            while True:
                r = conn.execute(q).first()
                if r is None:
                    return None
                if r.attempts >= r.max_attempts:
                    # Its last worker died holding it: stop, a person should look.
                    conn.execute(
                        jobs.update().where(jobs.c.id == r.id).values(
                            state="failed", updated=utc_now(), lease_until=None,
                            error=f"lease expired on attempt {r.attempts} of {r.max_attempts} "
                            f"(worker {r.claimed_by} died or hung)"
                            + (f"; before that: {r.error}" if r.error else ""),
                        )
                    )
                    continue
                conn.execute(
                    jobs.update().where(jobs.c.id == r.id).values(
                        state="running", claimed_by=worker, attempts=r.attempts + 1,
                        lease_until=now + lease, updated=utc_now(),
                    )
                )
                return self._get(conn, r.id)

        # Retrying a claim whose commit landed only leaves that job to its lease.
        return self.store.write(body, "claim a job")

    def renew(self, job: Job, lease: float) -> bool:
        """Extend this worker's lease; False if the claim is no longer ours."""

        def body(conn: Connection) -> bool:
            now = self._now(conn)
            res = conn.execute(
                jobs.update().where(*self._ours(job)).values(lease_until=now + lease)
            )
            return res.rowcount == 1

        return self.store.write(body, "renew a job lease")

    def complete_in(self, conn: Connection, job: Job, record_idx: int) -> None:
        """Mark ``job`` done in the caller's (append) transaction, or raise LeaseLost."""
        res = conn.execute(
            jobs.update().where(*self._ours(job)).values(
                state="done", record_idx=record_idx, lease_until=None, error=None, updated=utc_now()
            )
        )
        if res.rowcount != 1:
            raise LeaseLost(f"job {job.id}: the claim of {job.claimed_by} ended before its exhibit was sealed")

    def fail(self, job: Job, error: str, *, retry: bool) -> str:
        """Record a failed attempt: queued again (if attempts remain and ``retry``) or failed."""
        state = "queued" if retry and job.attempts < job.max_attempts else "failed"

        def body(conn: Connection) -> None:
            conn.execute(
                jobs.update().where(*self._ours(job)).values(
                    state=state, error=error[:4000], lease_until=None, updated=utc_now()
                )
            )

        self.store.write(body, "record a failed job")
        return state

    def hold_session(self, session: str, reason: str) -> list[int]:
        """Fail every queued job that would use login ``session``; return their ids.

        A lapsed login would only capture login pages: the jobs stop, say why,
        and are enqueued again after a new ``session login``.
        """

        def body(conn: Connection) -> list[int]:
            held = []
            for r in conn.execute(select(jobs).where(jobs.c.state == "queued")).all():
                if _job(r).options.get("session") != session:
                    continue
                conn.execute(
                    jobs.update().where(jobs.c.id == r.id, jobs.c.state == "queued").values(
                        state="failed", error=f"not captured: {reason}"[:4000], updated=utc_now()
                    )
                )
                held.append(int(r.id))
            return held

        return self.store.write(body, "hold the jobs of a session")

    @staticmethod
    def _ours(job: Job) -> tuple[Any, ...]:
        # claimed_by + attempts names one claim: the same worker may claim a job again later.
        return (
            jobs.c.id == job.id, jobs.c.state == "running",
            jobs.c.claimed_by == job.claimed_by, jobs.c.attempts == job.attempts,
        )

    def _get(self, conn: Connection, job_id: int) -> Job:
        return _job(conn.execute(select(jobs).where(jobs.c.id == job_id)).one())

    def get(self, job_id: int) -> Job | None:
        with self.store.engine.connect() as conn:
            r = conn.execute(select(jobs).where(jobs.c.id == job_id)).first()
        return None if r is None else _job(r)

    def list(self, state: str | None = None, case_id: str | None = None, limit: int = 1000) -> list[Job]:
        if state is not None and state not in STATES:
            raise UsageError(f"job state must be one of {', '.join(STATES)}")
        q = select(jobs).order_by(jobs.c.id).limit(limit)
        if state is not None:
            q = q.where(jobs.c.state == state)
        if case_id is not None:
            q = q.where(jobs.c.case_id == case_id)
        with self.store.engine.connect() as conn:
            return [_job(r) for r in conn.execute(q)]

    def counts(self) -> dict[str, int]:
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(jobs.c.state, func.count()).group_by(jobs.c.state)).all()
        out = dict.fromkeys(STATES, 0)
        out.update({r[0]: int(r[1]) for r in rows})
        return out

    def pending(self) -> int:
        """Jobs a worker could still take (queued or running)."""
        with self.store.engine.connect() as conn:
            n = conn.execute(
                select(func.sum(case((jobs.c.state.in_(("queued", "running")), 1), else_=0)))
            ).scalar()
        return int(n or 0)
