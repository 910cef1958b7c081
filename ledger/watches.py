"""Watch lists in the ledger database: what to probe, when, and the alerts owed.

    from ledger.watches import WatchStore
    ws = WatchStore(led.store)
    (wid,) = ws.add_many([NewWatch("https://shop.example/item/1", "SAMR-2026-017", 600, {})], now=time.time())
    for w in ws.claim_due(time.time(), limit=8, next_due=lambda w: time.time() + w.every):
        ...

A watch's next due time lives in its row, so a scheduler that is killed and
started again goes on where it was. ``claim_due`` moves the due time of the
watches it hands out forward in the same transaction (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite): two schedulers on one
database never hand out the same probe twice.

What a probe saw is in its signed ``probe`` record; the ``last`` column only
caches the last observation (for change detection) and is written in the
transaction that appends that record (``note_probe_in``), so the two agree.
Events and their webhook deliveries are rows of ``watch_events``; the
evidence of an event is its probe record and its exhibit.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Connection,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)

from ledger.record import utc_now

from .store import Store, watch_events, watches

STATES = ("active", "paused")
#: waiting for the event's capture; no delivery owed (no webhook); owed; done; given up
DELIVERIES = ("waiting", "none", "pending", "delivered", "failed")

@dataclass(frozen=True)
class NewWatch:
    url: str
    case: str
    every: int
    settings: dict[str, Any]
    #: seconds after ``now`` of the first probe (spreads an import's first probes)
    delay: float = 0.0


@dataclass(frozen=True)
class Watch:
    id: int
    url: str
    case: str
    every: int
    settings: dict[str, Any]
    state: str
    next_due: float
    last_probe_idx: int | None
    last: dict[str, Any] | None
    last_error: str | None
    created: str
    updated: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "url": self.url, "case": self.case, "every_s": self.every, "state": self.state,
            "next_due": self.next_due, "last_probe": self.last_probe_idx, "last_error": self.last_error,
            "settings": self.settings, "created": self.created, "updated": self.updated,
        }


@dataclass(frozen=True)
class WatchEvent:
    id: int
    watch_id: int
    case: str
    url: str
    kind: str
    time: str
    probe_idx: int
    exhibit_idx: int | None
    detail: dict[str, Any]
    webhook: str | None
    delivery: str
    attempts: int
    next_try: float | None
    error: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "watch": self.watch_id, "case": self.case, "url": self.url, "kind": self.kind,
            "time": self.time, "probe_index": self.probe_idx, "exhibit_index": self.exhibit_idx,
            "detail": self.detail, "webhook": self.webhook, "delivery": self.delivery,
            "attempts": self.attempts, "error": self.error,
        }


def _loads(s: str | None) -> Any:
    if s is None:
        return None
    try:
        return json.loads(s)
    except ValueError:
        return None


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _watch(r: Any) -> Watch:
    return Watch(
        r.id, r.url, r.case_id, r.every_s, _loads(r.settings) or {}, r.state, r.next_due, r.last_probe_idx,
        _loads(r.last), r.last_error, r.created, r.updated,
    )


def _event(r: Any) -> WatchEvent:
    return WatchEvent(
        r.id, r.watch_id, r.case_id, r.url, r.kind, r.time, r.probe_idx, r.exhibit_idx, _loads(r.detail) or {},
        r.webhook, r.delivery, r.attempts, r.next_try, r.error,
    )


class WatchStore:
    def __init__(self, store: Store):
        self.store = store

    def _begin(self) -> Any:
        # The store's write transaction (BEGIN IMMEDIATE on SQLite), as the job queue uses.
        return self.store._write()

    # -- the watch list -----------------------------------------------------

    def add_many(self, items: Iterable[NewWatch], *, now: float) -> list[int]:
        """Insert watches (already checked by the caller) in one transaction; return their ids."""
        stamp = utc_now()
        ids: list[int] = []
        with self._begin() as conn:
            for w in items:
                res = conn.execute(
                    insert(watches).values(
                        url=w.url, case_id=w.case, every_s=w.every, settings=_dumps(w.settings), state="active",
                        next_due=now + w.delay, created=stamp, updated=stamp,
                    )
                )
                ids.append(int(res.inserted_primary_key[0]))
        return ids

    def get(self, watch_id: int) -> Watch | None:
        with self.store.engine.connect() as conn:
            r = conn.execute(select(watches).where(watches.c.id == watch_id)).first()
        return _watch(r) if r is not None else None

    def by_url(self, url: str) -> list[Watch]:
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(watches).where(watches.c.url == url).order_by(watches.c.id)).all()
        return [_watch(r) for r in rows]

    def all(self) -> list[Watch]:
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(watches).order_by(watches.c.id)).all()
        return [_watch(r) for r in rows]

    def count(self) -> int:
        with self.store.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(watches)).scalar_one())

    def remove(self, watch_id: int) -> bool:
        # Its probe records and exhibits stay in the ledger; only the schedule goes.
        with self._begin() as conn:
            return conn.execute(delete(watches).where(watches.c.id == watch_id)).rowcount > 0

    def set_state(self, watch_id: int, state: str, *, now: float) -> bool:
        if state not in STATES:
            raise ValueError(state)
        values: dict[str, Any] = {"state": state, "updated": utc_now()}
        if state == "active":
            # A resumed watch is probed now, not after the time it spent paused.
            values["next_due"] = now
        with self._begin() as conn:
            return conn.execute(update(watches).where(watches.c.id == watch_id).values(**values)).rowcount > 0

    # -- scheduling ---------------------------------------------------------

    def claim_due(self, now: float, limit: int, next_due: Callable[[Watch], float]) -> list[Watch]:
        """Active watches due by ``now``, oldest due first; each one's next due time is
        set to ``next_due(watch)`` before the transaction ends. The watches returned
        carry the due time they had (``next_due``), so callers can measure lag."""
        if limit <= 0:
            return []
        q = (
            select(watches)
            .where(watches.c.state == "active", watches.c.next_due <= now)
            .order_by(watches.c.next_due, watches.c.id)
            .limit(limit)
        )
        if not self.store.is_sqlite:
            q = q.with_for_update(skip_locked=True)
        with self._begin() as conn:
            got = [_watch(r) for r in conn.execute(q).all()]
            if got:
                # One executemany for the batch, not a statement per watch.
                conn.execute(
                    update(watches).where(watches.c.id == bindparam("wid")).values(next_due=bindparam("due")),
                    [{"wid": w.id, "due": next_due(w)} for w in got],
                )
        return got

    def next_due(self) -> float | None:
        """The earliest due time of an active watch."""
        with self.store.engine.connect() as conn:
            v = conn.execute(select(func.min(watches.c.next_due)).where(watches.c.state == "active")).scalar()
        return float(v) if v is not None else None

    def note_probe_in(self, conn: Connection, watch_id: int, probe_idx: int, last: dict[str, Any]) -> None:
        """Inside the transaction appending probe record ``probe_idx``: its observation."""
        conn.execute(
            update(watches).where(watches.c.id == watch_id).values(
                last_probe_idx=probe_idx, last=_dumps(last), last_error=None, updated=utc_now()
            )
        )

    def note_error(self, watch_id: int, error: str) -> None:
        with self._begin() as conn:
            conn.execute(update(watches).where(watches.c.id == watch_id).values(last_error=error[:2000], updated=utc_now()))

    # -- events and their alerts -------------------------------------------

    def add_events_in(self, conn: Connection, watch: Watch, probe_idx: int, events: list[dict[str, Any]],
                      webhook: str | None) -> list[int]:
        """Inside the probe record's transaction: its events, waiting for their capture."""
        stamp = utc_now()
        ids = []
        for ev in events:
            res = conn.execute(
                insert(watch_events).values(
                    watch_id=watch.id, case_id=watch.case, url=watch.url, kind=str(ev["kind"]), time=stamp,
                    probe_idx=probe_idx, exhibit_idx=None, detail=_dumps(ev), webhook=webhook,
                    delivery="waiting", attempts=0, next_try=None, error=None,
                )
            )
            ids.append(int(res.inserted_primary_key[0]))
        return ids

    def captured_in(self, conn: Connection | None, probe_idx: int, exhibit_idx: int | None, *, now: float,
                    error: str | None = None) -> None:
        """The events of probe ``probe_idx`` have their exhibit (or ``error`` says why not):
        their alerts are owed now. ``conn``: the exhibit's transaction, else a new one."""
        values = {"exhibit_idx": exhibit_idx, "error": error}
        where = (watch_events.c.probe_idx == probe_idx) & (watch_events.c.delivery == "waiting")
        with (contextlib.nullcontext(conn) if conn is not None else self._begin()) as c:
            c.execute(update(watch_events).where(where & watch_events.c.webhook.is_not(None)).values(
                **values, delivery="pending", next_try=now))
            c.execute(update(watch_events).where(where & watch_events.c.webhook.is_(None)).values(**values, delivery="none"))

    def interrupted(self) -> list[int]:
        """Probe records whose events still wait for a capture (a scheduler died meanwhile)."""
        with self.store.engine.connect() as conn:
            q = select(watch_events.c.probe_idx).where(watch_events.c.delivery == "waiting").distinct()
            return [int(v) for v in conn.execute(q).scalars().all()]

    def events(self, *, since: str | None = None, watch_id: int | None = None) -> list[WatchEvent]:
        q = select(watch_events).order_by(watch_events.c.id)
        if since is not None:
            q = q.where(watch_events.c.time >= since)
        if watch_id is not None:
            q = q.where(watch_events.c.watch_id == watch_id)
        with self.store.engine.connect() as conn:
            return [_event(r) for r in conn.execute(q).all()]

    def due_deliveries(self, now: float, limit: int) -> list[WatchEvent]:
        q = (
            select(watch_events)
            .where(watch_events.c.delivery == "pending", or_(watch_events.c.next_try.is_(None), watch_events.c.next_try <= now))
            .order_by(watch_events.c.next_try, watch_events.c.id)
            .limit(limit)
        )
        with self.store.engine.connect() as conn:
            return [_event(r) for r in conn.execute(q).all()]

    def note_delivery(self, event_id: int, *, delivered: bool, attempts: int, next_try: float | None,
                      error: str | None, give_up: bool = False) -> None:
        state = "delivered" if delivered else ("failed" if give_up else "pending")
        with self._begin() as conn:
            conn.execute(
                update(watch_events).where(watch_events.c.id == event_id).values(
                    delivery=state, attempts=attempts, next_try=None if state != "pending" else next_try,
                    error=None if delivered else (error or "")[:2000],
                )
            )
