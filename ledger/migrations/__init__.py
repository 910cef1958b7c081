"""Versioned schema of the ledger database (Alembic), for SQLite and PostgreSQL.

    from ledger.migrations import upgrade, status
    status(url)      # Status(current="0001", head="0002", legacy=False)
    upgrade(url)     # Status before the upgrade; the database is then at head

The revisions live in ``versions/`` inside the package and run through a
programmatic Alembic config, so no ``alembic.ini`` and no working directory
are involved. A ledger written before migrations existed (tables, no
``alembic_version``) is recognised, stamped at ``0001`` (that exact schema)
and upgraded.

Opening a ledger checks its revision without importing Alembic: ``KNOWN`` lists
the revisions in order (a test keeps it equal to ``versions/``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.exc import SQLAlchemyError

from ledger.errors import SchemaError, StoreError

from ..engine import make_engine, safe_url

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy import Connection

#: Every revision this version of the library knows, oldest first.
KNOWN = ("0001", "0002", "0003", "0004", "0005")
HEAD = KNOWN[-1]
#: The schema written before versioned migrations is revision 0001.
LEGACY = "0001"
VERSION_TABLE = "alembic_version"
# Any constant: concurrent `evidence migrate`/`init` on one PostgreSQL database
# queue on it instead of racing to create the same tables.
_PG_LOCK = 0x65766964656E6365  # "evidence"


@dataclass(frozen=True)
class Status:
    current: str | None  # None: empty database, or a legacy ledger (see legacy)
    head: str
    legacy: bool = False  # ledger tables present but no version table

    @property
    def empty(self) -> bool:
        return self.current is None and not self.legacy

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def alembic_config(conn: Connection) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).resolve().parent))
    cfg.attributes["connection"] = conn
    return cfg


def read_status(conn: Connection) -> Status:
    names = set(inspect(conn).get_table_names())
    if VERSION_TABLE in names:
        rows = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
        if len(rows) > 1:
            raise SchemaError(f"ledger schema has several heads ({', '.join(rows)}): not a ledger this tool wrote")
        return Status(rows[0] if rows else None, HEAD)
    return Status(None, HEAD, legacy="tree_state" in names)


def check(conn: Connection, where: str) -> None:
    """Raise SchemaError unless the database is at the head revision."""
    st = read_status(conn)
    if st.up_to_date:
        return
    if st.legacy:
        raise SchemaError(f"ledger {where} predates versioned migrations: run `evidence migrate`")
    if st.current is None:
        raise StoreError(f"{where} holds no ledger (run `evidence init`)")
    if st.current not in KNOWN:
        raise SchemaError(
            f"ledger {where} is at schema revision {st.current}, newer than this evidence-chain "
            f"knows (head {HEAD}): upgrade evidence-chain, do not write with this version"
        )
    raise SchemaError(
        f"ledger {where} is at schema revision {st.current}, this version needs {HEAD}: run `evidence migrate`"
    )


def lock(conn: Connection) -> None:
    """Serialise schema changes between processes (SQLite: BEGIN IMMEDIATE does it)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK})


def upgrade_conn(conn: Connection, target: str = "head") -> Status:
    """Upgrade inside the caller's transaction; return the status before."""
    from alembic import command

    lock(conn)
    before = read_status(conn)
    if before.current is not None and before.current not in KNOWN:
        check(conn, "database")  # raises: newer than we know
    cfg = alembic_config(conn)
    # Alembic's migration context is module-global: two threads migrating
    # two ledgers at once would run in each other's context.
    with _ALEMBIC:
        if before.legacy:
            _check_legacy(conn)
            command.stamp(cfg, LEGACY)
        command.upgrade(cfg, target)
    return before


_ALEMBIC = threading.Lock()


def _check_legacy(conn: Connection) -> None:
    try:
        version = conn.execute(text("SELECT value FROM meta WHERE key = 'schema_version'")).scalar()
    except SQLAlchemyError as e:
        raise SchemaError(f"database has a tree_state table but no readable meta table: {e}") from e
    if version != "1":
        raise SchemaError(
            f"database has ledger tables of unknown schema version {version!r}: refusing to stamp it"
        )


def upgrade(url: str, target: str = "head") -> Status:
    """Bring the ledger at ``url`` to ``target`` in one transaction; return the status before."""
    engine = make_engine(url)
    try:
        with engine.connect().execution_options(evidence_write=True) as conn, conn.begin():
            if read_status(conn).empty:
                raise StoreError(f"{safe_url(url)} holds no ledger (run `evidence init`)")
            return upgrade_conn(conn, target)
    except SQLAlchemyError as e:
        raise StoreError(f"migration of {safe_url(url)} failed: {str(getattr(e, 'orig', None) or e).strip().splitlines()[0]}") from e
    finally:
        engine.dispose()


def status(url: str) -> Status:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return read_status(conn)
    except SQLAlchemyError as e:
        raise StoreError(f"cannot read the schema revision of {safe_url(url)}: {str(getattr(e, 'orig', None) or e).strip().splitlines()[0]}") from e
    finally:
        engine.dispose()
