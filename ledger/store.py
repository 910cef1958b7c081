"""Persistence of the log: records, Merkle nodes, tree state, checkpoints.

SQLAlchemy 2 Core over SQLite (default) or PostgreSQL. Appends serialise on
the single ``tree_state`` row: ``BEGIN IMMEDIATE`` on SQLite (the write lock
is taken before the size is read), ``SELECT ... FOR UPDATE`` on PostgreSQL.
``idx`` is always ``tree_state.size`` read under that lock, never a sequence,
so an aborted transaction can leave no gap.

The schema is versioned (``ledger/migrations``, Alembic): a new database is
created by running the migrations, and a ledger at another revision is not
opened (``evidence migrate`` upgrades it).

On PostgreSQL a write transaction that loses its connection (server restart,
failover, network) is retried with bounded backoff, as a whole. A retried
append first checks, under the tree lock, whether the lost attempt had in
fact committed (its first record is at its index with its leaf hash) and
then returns those records instead of appending them again.

Interior Merkle nodes of every completed perfect subtree are stored as they
complete (``nodes(level, idx)``), so a proof for one record of a million reads
O(log n) rows and never the whole log.
"""

from __future__ import annotations

import fcntl
import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    func,
    select,
)
from sqlalchemy.exc import DBAPIError, OperationalError

from ledger.errors import EvidenceError, RollbackError, StoreError
from ledger.keys import SigningKey
from ledger.record import (
    GENESIS_PREV,
    Draft,
    Prepared,
    Record,
    prepare,
    record_tail,
    seal_prepared,
    utc_now,
)

from . import merkle, migrations
from .engine import make_engine, safe_url, writer_lock_path

# Written into ``meta`` since before versioned migrations; a ledger without an
# alembic_version table but with this value is the schema of revision 0001.
SCHEMA_VERSION = "1"
#: Seconds a write keeps retrying while the database is unreachable (PostgreSQL).
RETRY_SECONDS = float(os.environ.get("EVIDENCE_DB_RETRY_SECONDS") or 30)
# SQLSTATEs after which the same transaction may simply be run again: the
# connection is gone (class 08) or the server is shutting down / starting up.
_RETRY_SQLSTATES = ("57P01", "57P02", "57P03")
T = TypeVar("T")
# Bound parameters per INSERT: SQLite before 3.32 allows no more than 999.
_SQLITE_VARS = 999
# Column types of the tables appends write by binary COPY on PostgreSQL, in insert order.
_COPY_TYPES = {
    "records": ["int8", "bytea", "text", "text", "text", "text", "bytea"],
    "nodes": ["int2", "int8", "bytea"],
}


@dataclass(frozen=True)
class SignedDraft(Draft):
    """A draft signed by a key of its own, whose payload may name earlier records of its batch.

    ``link(records)`` gets the records sealed so far in the same append (in
    order) and returns the payload: an officer's at-capture attestation names
    the exhibit record's index and leaf, which exist only once it is sealed.
    """

    key: SigningKey | None = None
    link: Callable[[list[Record]], dict[str, Any]] | None = None


metadata = MetaData()

tree_state = Table(
    "tree_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("size", BigInteger, nullable=False),
    Column("last_leaf", LargeBinary, nullable=False),
    Column("last_time", String(40), nullable=False),
)
records = Table(
    "records",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("leaf", LargeBinary, nullable=False),
    Column("kind", String(64), nullable=False),
    Column("case_id", String(200), index=True),
    Column("time", String(40), nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("body", LargeBinary, nullable=False),
)
nodes = Table(
    "nodes",
    metadata,
    Column("level", SmallInteger, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary, nullable=False),
)
checkpoints = Table(
    "checkpoints",
    metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("root", LargeBinary, nullable=False),
    Column("note", Text, nullable=False),
    Column("created", String(40), nullable=False),
)
keys = Table(
    "keys",
    metadata,
    Column("key_id", String(64), primary_key=True),
    Column("public_key", LargeBinary, nullable=False),
    Column("name", String(200), nullable=False),
    Column("added_index", BigInteger),
)
# One row per anchor record: where the external evidence for a checkpoint is.
anchors = Table(
    "anchors",
    metadata,
    Column("record_idx", BigInteger, primary_key=True, autoincrement=False),
    Column("checkpoint_size", BigInteger, nullable=False, index=True),
    Column("type", String(16), nullable=False),
    Column("service", String(500), nullable=False),
    Column("time", String(40)),
    Column("blob_sha256", String(64), nullable=False),
    Column("chain_sha256", String(64)),
)
meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
# Capture queue (revision 0002): see ledger/queue.py.
jobs = Table(
    "jobs",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("url", Text, nullable=False),
    Column("case_id", String(200), nullable=False),
    Column("operator", String(200)),
    Column("note", Text),
    Column("options", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("claimed_by", String(200)),
    Column("lease_until", Float),
    Column("created", String(40), nullable=False),
    Column("updated", String(40), nullable=False),
    Column("record_idx", BigInteger),
    Column("error", Text),
    Index("ix_jobs_state_id", "state", "id"),
)
# Crawl state (revision 0003): see ledger/crawls.py.
crawls = Table(
    "crawls",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("case_id", String(200), nullable=False),
    Column("start_url", Text, nullable=False),
    Column("operator", String(200)),
    Column("options", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("created", String(40), nullable=False),
    Column("updated", String(40), nullable=False),
    Column("record_idx", BigInteger),
    Column("reason", Text),
)
crawl_pages = Table(
    "crawl_pages",
    metadata,
    Column("crawl_id", BigInteger, ForeignKey("crawls.id"), primary_key=True),
    Column("url_key", String(64), primary_key=True),
    Column("url", Text, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("depth", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("record_idx", BigInteger),
    Column("links", Text),
    Column("out_of_scope", Text),
    Column("error", Text),
    Index("ix_crawl_pages_state_seq", "crawl_id", "state", "seq"),
)
# Watch lists and their alerts (revision 0004): see ledger/watches.py.
watches = Table(
    "watches",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("url", Text, nullable=False),
    Column("case_id", String(200), nullable=False),
    Column("every_s", Integer, nullable=False),
    Column("settings", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("next_due", Float, nullable=False),
    Column("last_probe_idx", BigInteger),
    Column("last", Text),
    Column("last_error", Text),
    Column("created", String(40), nullable=False),
    Column("updated", String(40), nullable=False),
    Index("ix_watches_state_due", "state", "next_due"),
)

watch_events = Table(
    "watch_events",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("watch_id", BigInteger, nullable=False),
    Column("case_id", String(200), nullable=False),
    Column("url", Text, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("time", String(40), nullable=False),
    Column("probe_idx", BigInteger, nullable=False),
    Column("exhibit_idx", BigInteger),
    Column("detail", Text, nullable=False),
    Column("webhook", Text),
    Column("delivery", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_try", Float),
    Column("error", Text),
    Index("ix_watch_events_delivery", "delivery", "next_try"),
    Index("ix_watch_events_time", "time"),
)
# Idempotency keys of sealed work (revision 0005): a task queued once (the fleet's
# capture tasks) names a key, checked and written under the tree lock with its records.
seal_keys = Table(
    "seal_keys",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("record_idx", BigInteger, nullable=False),
    Column("created", String(40), nullable=False),
)


class AlreadySealed(EvidenceError):
    """An append named an idempotency key that an earlier append already sealed; nothing was appended."""

    exit_code = 1

    def __init__(self, key: str, index: int):
        super().__init__(f"already sealed as record {index} (key {key})")
        self.key, self.index = key, index


@dataclass(frozen=True)
class StoredCheckpoint:
    size: int
    root: bytes
    note: str
    created: str


@dataclass(frozen=True)
class StoredRecord:
    index: int
    leaf: bytes
    kind: str
    case: str | None
    time: str
    key_id: str
    body: bytes


class Store:
    """One ledger database. Thread-safe for appends within a process."""

    #: Queue SQLite writers on a file lock (benchmarks/ledger_writers.py turns it off for its baseline).
    writer_turns = True

    def __init__(self, url: str, *, create: bool = False, check: bool = True):
        """``check=False`` skips the size and schema checks: for the audit's
        workers, which read a ledger the audit itself judges, damaged or not."""
        self.url = url
        self.engine = make_engine(url)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        self._lock = threading.Lock()
        # Right edge of the tree as of the last append by this process; reused
        # when nobody else appended since (same size and last leaf).
        self._edge: merkle.CompactRange | None = None
        self._edge_leaf: bytes | None = None
        self.rows_read = 0  # node rows read for proofs (benchmarks report it)
        self.retry_seconds = RETRY_SECONDS
        self.retries = 0  # transactions run again after a lost connection
        db = self.engine.url.database if self.is_sqlite else None
        self._lock_path = writer_lock_path(db) if db and db != ":memory:" and not db.startswith("file:") else None
        try:
            if create:
                self._create()
            if check:
                self._check_open()
        except (OperationalError, DBAPIError) as e:
            raise StoreError(f"cannot open ledger database {safe_url(url)}: {_first_line(e)}") from e

    # -- schema -------------------------------------------------------------

    def _create(self) -> None:
        with self._write() as conn:
            migrations.lock(conn)
            st = migrations.read_status(conn)
            if st.empty:
                migrations.upgrade_conn(conn)
            elif not st.up_to_date:
                return  # _check_open says what to do; init never migrates a ledger
            if conn.execute(select(tree_state.c.size)).first() is None:
                conn.execute(
                    tree_state.insert().values(
                        id=1, size=0, last_leaf=bytes.fromhex(GENESIS_PREV), last_time=""
                    )
                )
                conn.execute(meta.insert().values(key="schema_version", value=SCHEMA_VERSION))

    def _check_open(self) -> None:
        """Refuse a database at another schema revision, or whose tree is
        smaller than what it already signed."""
        with self.engine.connect() as conn:
            migrations.check(conn, safe_url(self.url))
        conn_ = self.engine.connect()
        if not self.is_sqlite:
            # One snapshot for the three reads: writers may commit in between.
            conn_ = conn_.execution_options(isolation_level="REPEATABLE READ")
        with conn_ as conn:
            try:
                state = conn.execute(select(tree_state.c.size)).first()
            except (OperationalError, DBAPIError):
                state = None
            if state is None:
                raise StoreError(
                    f"{safe_url(self.url)} holds no ledger (run `evidence init`)"
                )
            size = state.size
            top = conn.execute(select(func.max(records.c.idx))).scalar()
            signed = conn.execute(select(func.max(checkpoints.c.size))).scalar()
        count = 0 if top is None else top + 1
        if signed is not None and signed > size:
            raise RollbackError(
                f"ledger has {size} records but a checkpoint of size {signed} was signed: "
                "the log was truncated or rolled back"
            )
        if count != size:
            raise RollbackError(
                f"ledger tree size is {size} but the last stored record is index {count - 1}: "
                "records were removed or added outside the ledger"
            )

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._writer_turn(), self.engine.connect().execution_options(evidence_write=True) as conn:
            with conn.begin():
                yield conn

    @contextmanager
    def _writer_turn(self) -> Iterator[None]:
        """Hold the SQLite writers' file lock for one write transaction.

        SQLite's busy handler sleeps and retries, so a writer that just
        arrived often wins over one that has waited for seconds (8 writers:
        p99 170x p50). Writers queue on flock(2) instead, taken before BEGIN
        IMMEDIATE: the kernel wakes the waiters when it is released, so
        nobody sleeps through a free lock. A writer that does not take it
        (an older version) is still serialised by SQLite's own lock.
        """
        if self._lock_path is None or not Store.writer_turns:
            yield
            return
        try:
            # A descriptor per transaction: flock is per open file, so two
            # threads of this process sharing one would not exclude each other.
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            yield  # a read-only directory: SQLite's lock alone still serialises
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _retryable(self, e: BaseException) -> bool:
        if self.is_sqlite or not isinstance(e, DBAPIError):
            return False  # SQLite waits for its lock itself (timeout); nothing to reconnect to
        if e.connection_invalidated:
            return True
        code = getattr(e.orig, "sqlstate", None)
        if code:
            return code.startswith("08") or code in _RETRY_SQLSTATES
        # No SQLSTATE: the connection attempt itself failed (server down or restarting).
        return isinstance(e, OperationalError)

    def write(self, body: Callable[[Connection], T], what: str = "write") -> T:
        """Run ``body`` in one write transaction, again if the connection is lost.

        ``body`` must be safe to run again after a failed attempt: everything it
        did in the lost transaction either committed or did not, and it must
        find out which (as appends do) when that matters.
        """
        deadline: float | None = None
        delay = 0.05
        while True:
            try:
                with self._write() as conn:
                    return body(conn)
            except (OperationalError, DBAPIError) as e:
                self._edge = None
                if not self._retryable(e):
                    raise StoreError(f"{what} failed: {_first_line(e)}") from e
                now = time.monotonic()
                deadline = deadline if deadline is not None else now + self.retry_seconds
                if now >= deadline:
                    raise StoreError(
                        f"{what} failed: database {safe_url(self.url)} unreachable for "
                        f"{self.retry_seconds:g}s ({_first_line(e)})"
                    ) from e
                self.retries += 1
                # Jitter: writers that lost the server together do not return in lockstep.
                time.sleep(min(delay, deadline - now) * random.uniform(0.5, 1.0))
                delay = min(delay * 2, 2.0)
            except BaseException:
                self._edge = None
                raise

    # -- appends -----------------------------------------------------------

    def append_many(
        self,
        drafts: Sequence[Draft],
        *,
        key: SigningKey,
        origin: str,
        on_locked: Callable[[Connection, list[Record]], None] | None = None,
        seal_key: str | None = None,
    ) -> list[Record]:
        """Append drafts as one transaction; all or none become records.

        ``seal_key``: an idempotency key; if an earlier append sealed it, raise
        AlreadySealed (with that record's index) instead of appending again.
        """
        for d in drafts:
            d.check()
        if not drafts:
            return []
        # Encoded before the lock: only what depends on the chain is done under it.
        preps = [_prepare(d, key, origin) for d in drafts]
        # Records sealed by the last attempt; if its connection died during
        # COMMIT they may have landed, and must then not be appended twice.
        sealed: list[Record] = []

        def attempt(conn: Connection) -> list[Record]:
            state = conn.execute(self._lock_state()).one()
            if sealed and self._landed(conn, sealed, state.size):
                return list(sealed)
            sealed.clear()
            if seal_key is not None:
                # Under the tree lock: two workers holding one redelivered task cannot both pass.
                done = conn.execute(select(seal_keys.c.record_idx).where(seal_keys.c.key == seal_key)).scalar()
                if done is not None:
                    raise AlreadySealed(seal_key, int(done))
            out = self._append_locked(conn, state, preps, key, origin, sealed)
            if seal_key is not None:
                conn.execute(seal_keys.insert().values(key=seal_key, record_idx=out[0].index, created=utc_now()))
            if on_locked is not None:
                # Same transaction: side rows commit with the records or not at all.
                on_locked(conn, out)
            return out

        with self._lock:
            return self.write(attempt, "append")

    def _lock_state(self) -> Any:
        q = select(tree_state).where(tree_state.c.id == 1)
        return q if self.is_sqlite else q.with_for_update()

    def _landed(self, conn: Connection, recs: Sequence[Record], size: int) -> bool:
        first, last = recs[0], recs[-1]
        if size <= last.index:
            return False
        got = conn.execute(
            select(records.c.idx, records.c.leaf).where(records.c.idx.in_((first.index, last.index)))
        ).all()
        return {r.idx: bytes(r.leaf) for r in got} == {first.index: first.leaf, last.index: last.leaf}

    def _append_locked(
        self,
        conn: Connection,
        state: Any,
        preps: Sequence[Prepared | SignedDraft],
        key: SigningKey,
        origin: str,
        sealed: list[Record],
    ) -> list[Record]:
        size, prev_leaf = state.size, state.last_leaf
        edge = self._edge
        if edge is None or edge.size != size or self._edge_leaf != prev_leaf:
            edge = merkle.CompactRange.from_nodes(size, self._node_source(conn))
        # One time for the whole batch: all of it is appended in this instant.
        # The recorded time never runs backwards even if the clock does.
        time = max(utc_now(), state.last_time)
        tail = record_tail(time)
        out: list[Record] = []
        node_rows: list[tuple[Any, ...]] = []
        add_node = node_rows.append
        prev = prev_leaf.hex()
        with self._rows_into(conn, "records (idx, leaf, kind, case_id, time, key_id, body)") as put_record:
            for i, p in enumerate(preps):
                if not isinstance(p, Prepared):
                    # Its payload names records of this batch: known only now.
                    d = Draft(p.kind, p.link(list(out)), p.case)  # type: ignore[misc]  # link is set: see _prepare
                    d.check()
                    p = prepare(d, origin=origin, key=p.key or key)
                rec = seal_prepared(p, index=size + i, prev=prev, time=time, tail=tail)
                leaf = rec.leaf
                put_record((rec.index, leaf, rec.kind, rec.case, time, rec.key_id, rec.raw))
                for node in edge.append(leaf):
                    add_node(node)
                prev = leaf.hex()
                out.append(rec)
        sealed.extend(out)
        if node_rows:
            self._insert(conn, "nodes (level, idx, hash)", node_rows)
        conn.execute(
            tree_state.update()
            .where(tree_state.c.id == 1)
            .values(size=size + len(preps), last_leaf=out[-1].leaf, last_time=time)
        )
        self._edge, self._edge_leaf = edge, out[-1].leaf
        return out

    @contextmanager
    def _rows_into(self, conn: Connection, into: str) -> Iterator[Callable[[tuple[Any, ...]], None]]:
        """``put(row)`` for rows made one at a time; they are in the table when the block ends.

        Driver errors are wrapped as SQLAlchemy would (OperationalError,
        IntegrityError, ...), so `write` judges retries the same way.
        """
        base = self.engine.dialect.loaded_dbapi.Error
        try:
            if self.is_sqlite:
                # In this process: nothing to overlap, the rows go in at the end.
                rows: list[tuple[Any, ...]] = []
                yield rows.append
                if rows:
                    self._insert_sqlite(conn, into, rows)
                return
            # Over the network every statement is a round trip made while the
            # tree lock is held: COPY sends the rows in one stream, open for the
            # whole block, so the server stores them while the next records are
            # still being signed (on its own core). Binary COPY: in text COPY each
            # bytea body is hex-escaped, 3x the cost per row.
            raw = conn.connection.driver_connection
            with raw.cursor() as cur, cur.copy(f"COPY {into} FROM STDIN (FORMAT BINARY)") as copy:  # type: ignore[union-attr]
                copy.set_types(_COPY_TYPES[into.split(" ", 1)[0]])
                yield copy.write_row
        except base as e:
            raise DBAPIError.instance(f"INSERT INTO {into}", None, e, base) from e

    def _insert(self, conn: Connection, into: str, rows: list[tuple[Any, ...]]) -> None:
        with self._rows_into(conn, into) as put:
            for row in rows:
                put(row)

    def _insert_sqlite(self, conn: Connection, into: str, rows: list[tuple[Any, ...]]) -> None:
        # Many rows per statement: per-statement work in pysqlite (reset,
        # rebind, step) was ~15 % of the insert, cheaper in one big VALUES.
        cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        width = len(rows[0])
        per = _SQLITE_VARS // width
        for i in range(0, len(rows), per):
            chunk = rows[i : i + per]
            values = ",".join(["(" + ",".join("?" * width) + ")"] * len(chunk))
            cur.execute(f"INSERT INTO {into} VALUES {values}", [x for row in chunk for x in row])
        cur.close()

    # -- reads -------------------------------------------------------------

    def size(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(tree_state.c.size)).scalar_one())

    def _node_source(self, conn: Connection) -> merkle.NodeSource:
        def node(level: int, idx: int) -> bytes:
            self.rows_read += 1
            if level == 0:
                h = conn.execute(select(records.c.leaf).where(records.c.idx == idx)).scalar()
            else:
                h = conn.execute(
                    select(nodes.c.hash).where(nodes.c.level == level, nodes.c.idx == idx)
                ).scalar()
            if h is None:
                raise StoreError(f"Merkle node ({level}, {idx}) is missing from the ledger")
            return bytes(h)

        return node

    def _walk(self, conn: Connection, walk: Callable[[merkle.NodeSource], T]) -> T:
        """Run ``walk`` (a proof or a root) over its nodes, fetched in one query.

        One statement per node made a proof ~10x the cost of the same lookups
        with bare sqlite3, nearly all of it in building the statements, and on
        PostgreSQL it is one round trip per node.
        """
        coords = merkle.nodes_read(walk)
        self.rows_read += len(coords)
        found = self._fetch_nodes(conn, coords)

        def node(level: int, idx: int) -> bytes:
            h = found.get((level, idx))
            if h is None:
                raise StoreError(f"Merkle node ({level}, {idx}) is missing from the ledger")
            return h

        return walk(node)

    def _fetch_nodes(self, conn: Connection, coords: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        m = self._mark
        leaves = [idx for level, idx in coords if level == 0]
        inner = [c for c in coords if c[0] != 0]
        parts: list[str] = []
        params: list[int] = []
        if leaves:
            parts.append(f"SELECT 0, idx, leaf FROM records WHERE idx IN ({', '.join([m] * len(leaves))})")
            params += leaves
        if inner:
            # OR of point lookups, not (level, idx) IN (VALUES ...): SQLite
            # scans the whole table for the row-value form.
            where = " OR ".join([f"(level = {m} AND idx = {m})"] * len(inner))
            parts.append(f"SELECT level, idx, hash FROM nodes WHERE {where}")
            params += [x for c in inner for x in c]
        if not parts:
            return {}
        rows = conn.exec_driver_sql(" UNION ALL ".join(parts), tuple(params)).all()
        return {(r[0], r[1]): bytes(r[2]) for r in rows}

    def root(self, size: int | None = None) -> tuple[int, bytes]:
        with self.engine.connect() as conn:
            n = size if size is not None else int(conn.execute(select(tree_state.c.size)).scalar_one())
            if n == 0:
                return 0, merkle.EMPTY_ROOT
            return n, self._walk(conn, lambda node: merkle.subtree_hash(0, n, node))

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        with self.engine.connect() as conn:
            return self._walk(conn, lambda node: merkle.inclusion_proof(index, size, node))

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        with self.engine.connect() as conn:
            return self._walk(conn, lambda node: merkle.consistency_proof(size1, size2, node))

    def record(self, index: int) -> StoredRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(records).where(records.c.idx == index)).first()
        return None if row is None else _stored(row)

    def iter_records(
        self,
        *,
        case: str | None = None,
        kind: str | None = None,
        start: int = 0,
        end: int | None = None,
        chunk: int = 5000,
    ) -> Iterator[StoredRecord]:
        """Records in index order, fetched in keyset-paginated chunks."""
        pos = start
        while True:
            q = select(records).where(records.c.idx >= pos).order_by(records.c.idx).limit(chunk)
            if end is not None:
                q = q.where(records.c.idx < end)
            if case is not None:
                q = q.where(records.c.case_id == case)
            if kind is not None:
                q = q.where(records.c.kind == kind)
            with self.engine.connect() as conn:
                rows = conn.execute(q).all()
            for row in rows:
                yield _stored(row)
            if len(rows) < chunk:
                return
            pos = rows[-1].idx + 1

    def nodes_in(self, level: int, lo: int, hi: int) -> dict[int, bytes]:
        """Stored nodes of one level with lo <= idx < hi (for audit)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(nodes.c.idx, nodes.c.hash).where(
                    nodes.c.level == level, nodes.c.idx >= lo, nodes.c.idx < hi
                )
            ).all()
        return {r.idx: bytes(r.hash) for r in rows}

    # -- checkpoints and keys ------------------------------------------------

    def checkpoints(self) -> list[StoredCheckpoint]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(checkpoints).order_by(checkpoints.c.size)).all()
        return [StoredCheckpoint(r.size, bytes(r.root), r.note, r.created) for r in rows]

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        with self.engine.connect() as conn:
            r = conn.execute(
                select(checkpoints).order_by(checkpoints.c.size.desc()).limit(1)
            ).first()
        return None if r is None else StoredCheckpoint(r.size, bytes(r.root), r.note, r.created)

    def add_checkpoint(
        self, make: Callable[[int, bytes, StoredCheckpoint | None, merkle.NodeSource], str]
    ) -> StoredCheckpoint:
        """Sign a checkpoint of the current tree under the append lock.

        ``make(size, root, last, node)`` must prove consistency with ``last``
        and return the signed note; it runs while appends are blocked, so the
        tree cannot move between proving and storing.
        """
        # Safe to run again: if a lost attempt committed, the retry finds a
        # checkpoint of this size with this root and returns it.
        with self._lock:
            return self.write(lambda conn: self._checkpoint_locked(conn, make), "checkpoint")

    def _checkpoint_locked(
        self, conn: Connection, make: Callable[[int, bytes, StoredCheckpoint | None, merkle.NodeSource], str]
    ) -> StoredCheckpoint:
        size = conn.execute(self._lock_state()).one().size
        node = self._node_source(conn)
        root = merkle.subtree_hash(0, size, node) if size else merkle.EMPTY_ROOT
        r = conn.execute(select(checkpoints).order_by(checkpoints.c.size.desc()).limit(1)).first()
        last = None if r is None else StoredCheckpoint(r.size, bytes(r.root), r.note, r.created)
        if last is not None and last.size == size:
            if last.root != root:
                raise RollbackError(
                    f"tree of size {size} has root {root.hex()} but its checkpoint says {last.root.hex()}"
                )
            return last
        note = make(size, root, last, node)
        cp = StoredCheckpoint(size, root, note, utc_now())
        conn.execute(checkpoints.insert().values(size=size, root=root, note=note, created=cp.created))
        return cp

    def add_key(self, key_id: str, public_key: bytes, name: str, added_index: int | None, conn: Connection | None = None) -> None:
        stmt = keys.insert().values(key_id=key_id, public_key=public_key, name=name, added_index=added_index)
        if conn is not None:
            conn.execute(stmt)
            return
        with self._write() as c:
            c.execute(stmt)

    def keys(self) -> dict[str, bytes]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(keys.c.key_id, keys.c.public_key)).all()
        return {r.key_id: bytes(r.public_key) for r in rows}

    def add_anchor_rows(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            conn.execute(anchors.insert(), list(rows))

    def anchor_rows(self, checkpoint_size: int | None = None) -> list[dict[str, Any]]:
        q = select(anchors).order_by(anchors.c.record_idx)
        if checkpoint_size is not None:
            q = q.where(anchors.c.checkpoint_size == checkpoint_size)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def execute_raw(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one write statement (tests use this to tamper with a ledger)."""
        with self._write() as conn:
            conn.exec_driver_sql(sql.replace("?", self._mark), tuple(params))

    def dispose(self) -> None:
        self.engine.dispose()


def _prepare(draft: Draft, key: SigningKey, origin: str) -> Prepared | SignedDraft:
    if isinstance(draft, SignedDraft):
        if draft.link is not None:
            return draft  # its payload is made under the lock, from the records before it
        return prepare(Draft(draft.kind, draft.payload, draft.case), origin=origin, key=draft.key or key)
    return prepare(draft, origin=origin, key=key)


def _as_bytes(value: Any) -> bytes:
    # A tampered SQLite row can hold TEXT where BLOB belongs; the audit must
    # report that record, not crash on it.
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    return b"" if value is None else bytes(value)


def _stored(row: Any) -> StoredRecord:
    return StoredRecord(row.idx, _as_bytes(row.leaf), row.kind, row.case_id, row.time, row.key_id, _as_bytes(row.body))


def _first_line(e: BaseException) -> str:
    text = str(getattr(e, "orig", None) or e).strip()
    return text.splitlines()[0] if text else type(e).__name__
