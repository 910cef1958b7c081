"""Opening a ledger database: the engine settings every connection needs.

Below both the store and the schema migrations, which each open engines
(the migrations must not import the store that runs them).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import SQLAlchemyError

from ledger.errors import StoreError


def make_engine(url: str) -> Engine:
    try:
        if url.startswith("sqlite"):
            # timeout: how long BEGIN IMMEDIATE waits for another writer.
            engine = create_engine(url, connect_args={"timeout": 120})

            @event.listens_for(engine, "connect")
            def _sqlite_connect(dbapi_conn: Any, _rec: Any) -> None:
                # Let us issue BEGIN ourselves (pysqlite's implicit BEGIN is deferred).
                dbapi_conn.isolation_level = None
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=FULL")
                cur.close()

            @event.listens_for(engine, "begin")
            def _sqlite_begin(conn: Connection) -> None:
                write = conn.get_execution_options().get("evidence_write", False)
                conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

            return engine
        return create_engine(url, pool_pre_ping=True)
    except (SQLAlchemyError, ImportError, ValueError) as e:
        raise StoreError(f"cannot use database URL {safe_url(url)}: {e}") from e


def safe_url(url: str) -> str:
    # Never echo a password from a URL into an error line.
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def writer_lock_path(database: str) -> str:
    """The file SQLite writers queue on (``Store._writer_turn``), beside the database."""
    return f"{database}.writers"
