"""Crawl state in the ledger database: each crawl's frontier and the pages it sealed.

    from ledger.crawls import Crawls
    c = Crawls(led.store)
    crawl = c.create("SAMR-2026-017", "https://shop.example/", operator="Li Wei", options={...})
    page = c.next_page(crawl.id)                       # oldest queued page, None when none
    led.seal_exhibit(case, files, info, on_locked=lambda conn, recs: c.page_done_in(
        conn, crawl.id, page.url, recs[0].index, links=[...], out_of_scope=[...], found=[(url, depth)]))

A page is marked done inside the transaction that appends its exhibit
record, and only if it was still queued: a crawl resumed after a kill never
seals a page twice (not even two resumes of one crawl running at once), and
a done page always has its exhibit. The links it found are queued in the same
transaction, so the frontier is never behind the sealed pages.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy.exc import DBAPIError

from ledger.digest import sha256_hex
from ledger.errors import EvidenceError, StoreError, UsageError
from ledger.record import utc_now

from .store import Store, crawl_pages, crawls

STATES = ("running", "paused", "done")
PAGE_STATES = ("queued", "done", "failed")


class PageTaken(EvidenceError):
    """The page is no longer queued: another run of the same crawl sealed it."""

    exit_code = 3


def url_key(url: str) -> str:
    return sha256_hex(url.encode("utf-8", "surrogatepass"))


@dataclass(frozen=True)
class Crawl:
    id: int
    case: str
    start_url: str
    operator: str | None
    options: dict[str, Any]
    state: str
    created: str
    updated: str
    record_idx: int | None
    reason: str | None


@dataclass(frozen=True)
class CrawlPage:
    url: str
    seq: int
    depth: int
    state: str
    record_idx: int | None
    links: list[str]
    out_of_scope: list[str]
    error: str | None


def _list(raw: str | None) -> list[str]:
    try:
        v = json.loads(raw) if raw else []
    except ValueError:
        return []
    return [x for x in v if isinstance(x, str)] if isinstance(v, list) else []


def _crawl(r: Any) -> Crawl:
    try:
        options = json.loads(r.options)
    except ValueError:
        options = {}
    return Crawl(r.id, r.case_id, r.start_url, r.operator, options if isinstance(options, dict) else {},
                 r.state, r.created, r.updated, r.record_idx, r.reason)


def _page(r: Any) -> CrawlPage:
    return CrawlPage(r.url, r.seq, r.depth, r.state, r.record_idx, _list(r.links), _list(r.out_of_scope), r.error)


def _dumps(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False, sort_keys=True)


class Crawls:
    def __init__(self, store: Store):
        self.store = store

    def create(self, case: str, start_url: str, *, operator: str | None, options: dict[str, Any]) -> Crawl:
        """Record a new crawl and queue its start page (depth 0), in one transaction."""
        try:
            opts = _dumps(options)
        except (TypeError, ValueError) as e:
            raise UsageError(f"crawl options cannot be stored: {e}") from None
        now = utc_now()
        # Not retried on a lost connection: a commit that landed would start a second crawl.
        try:
            with self.store._write() as conn:
                cid = int(conn.execute(crawls.insert().values(
                    case_id=case, start_url=start_url, operator=operator, options=opts, state="running",
                    created=now, updated=now,
                )).inserted_primary_key[0])
                conn.execute(crawl_pages.insert().values(
                    crawl_id=cid, url_key=url_key(start_url), url=start_url, seq=0, depth=0, state="queued",
                ))
                return _crawl(conn.execute(select(crawls).where(crawls.c.id == cid)).one())
        except DBAPIError as e:
            raise StoreError(f"cannot start the crawl: {str(e.orig).strip().splitlines()[0]}") from e

    def get(self, crawl_id: int) -> Crawl | None:
        with self.store.engine.connect() as conn:
            r = conn.execute(select(crawls).where(crawls.c.id == crawl_id)).first()
        return None if r is None else _crawl(r)

    def list(self, case_id: str | None = None) -> list[Crawl]:
        q = select(crawls).order_by(crawls.c.id)
        if case_id is not None:
            q = q.where(crawls.c.case_id == case_id)
        with self.store.engine.connect() as conn:
            return [_crawl(r) for r in conn.execute(q)]

    def next_pages(self, crawl_id: int, limit: int) -> list[CrawlPage]:
        """The oldest ``limit`` queued pages, breadth first (queue order is discovery order)."""
        q = (select(crawl_pages).where(crawl_pages.c.crawl_id == crawl_id, crawl_pages.c.state == "queued")
             .order_by(crawl_pages.c.seq).limit(limit))
        with self.store.engine.connect() as conn:
            return [_page(r) for r in conn.execute(q)]

    def pages(self, crawl_id: int, batch: int = 500) -> Iterator[CrawlPage]:
        """Every page of the crawl in discovery order, read in batches."""
        last = -1
        while True:
            q = (select(crawl_pages).where(crawl_pages.c.crawl_id == crawl_id, crawl_pages.c.seq > last)
                 .order_by(crawl_pages.c.seq).limit(batch))
            with self.store.engine.connect() as conn:
                rows = [_page(r) for r in conn.execute(q)]
            yield from rows
            if len(rows) < batch:
                return
            last = rows[-1].seq

    def counts(self, crawl_id: int) -> dict[str, int]:
        with self.store.engine.connect() as conn:
            rows = conn.execute(
                select(crawl_pages.c.state, func.count()).where(crawl_pages.c.crawl_id == crawl_id)
                .group_by(crawl_pages.c.state)
            ).all()
        out = dict.fromkeys(PAGE_STATES, 0)
        out.update({r[0]: int(r[1]) for r in rows})
        return out

    def _queue(self, conn: Connection, crawl_id: int, found: Iterable[tuple[str, int]]) -> int:
        """Queue the pages not yet known to this crawl; return how many were new."""
        found = list(dict.fromkeys(found))
        if not found:
            return 0
        keys = {url_key(u): (u, d) for u, d in found}
        known: set[str] = set()
        ks = list(keys)
        for i in range(0, len(ks), 500):
            known.update(conn.execute(select(crawl_pages.c.url_key).where(
                crawl_pages.c.crawl_id == crawl_id, crawl_pages.c.url_key.in_(ks[i:i + 500]))).scalars())
        seq = int(conn.execute(select(func.max(crawl_pages.c.seq)).where(crawl_pages.c.crawl_id == crawl_id)).scalar() or 0)
        new = [
            dict(crawl_id=crawl_id, url_key=k, url=u, seq=(seq := seq + 1), depth=d, state="queued")
            for k, (u, d) in keys.items() if k not in known
        ]
        if new:
            conn.execute(crawl_pages.insert(), new)
        return len(new)

    def _settle(self, conn: Connection, crawl_id: int, url: str, values: dict[str, Any]) -> None:
        res = conn.execute(crawl_pages.update().where(
            crawl_pages.c.crawl_id == crawl_id, crawl_pages.c.url_key == url_key(url), crawl_pages.c.state == "queued",
        ).values(**values))
        if res.rowcount != 1:
            raise PageTaken(f"crawl {crawl_id}: {url} is no longer queued (another run of this crawl took it)")
        conn.execute(crawls.update().where(crawls.c.id == crawl_id).values(updated=utc_now()))

    def page_done_in(
        self, conn: Connection, crawl_id: int, url: str, record_idx: int, *,
        links: list[str], out_of_scope: list[str], found: Iterable[tuple[str, int]],
    ) -> None:
        """In the exhibit's append transaction: mark ``url`` done and queue what it links to."""
        self._settle(conn, crawl_id, url, dict(
            state="done", record_idx=record_idx, links=_dumps(links), out_of_scope=_dumps(out_of_scope), error=None,
        ))
        self._queue(conn, crawl_id, found)

    def page_failed(self, crawl_id: int, url: str, error: str) -> None:
        """A page that could not be captured: kept as failed (listed in the crawl record), not retried."""
        def body(conn: Connection) -> None:
            self._settle(conn, crawl_id, url, dict(state="failed", error=error[:4000]))

        self.store.write(body, "record a failed crawl page")

    def set_state(self, crawl_id: int, state: str, reason: str | None = None) -> None:
        if state not in STATES:
            raise UsageError(f"crawl state must be one of {', '.join(STATES)}")

        def body(conn: Connection) -> None:
            conn.execute(crawls.update().where(crawls.c.id == crawl_id, crawls.c.state != "done").values(
                state=state, reason=reason, updated=utc_now()))

        self.store.write(body, "update a crawl")

    def finish_in(self, conn: Connection, crawl_id: int, record_idx: int) -> None:
        """In the crawl record's append transaction: the crawl is done, with that record."""
        res = conn.execute(crawls.update().where(crawls.c.id == crawl_id, crawls.c.state != "done").values(
            state="done", record_idx=record_idx, reason=None, updated=utc_now()))
        if res.rowcount != 1:
            raise PageTaken(f"crawl {crawl_id} was finished by another run")
