"""Fixtures shared by the whole suite: evidence homes on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import uuid
from urllib.parse import quote

import pytest

from ledger.log import Ledger


@pytest.fixture
def home(tmp_path):
    """A fresh evidence home on SQLite with an unencrypted key."""
    led = Ledger.init(tmp_path / "home", unencrypted=True, origin="test.example/log")
    yield led
    led.close()


@pytest.fixture
def pg_url():
    """A PostgreSQL URL on a fresh schema; required (not skipped) in CI."""
    base = os.environ.get("EVIDENCE_TEST_PG_URL")
    if not base:
        if os.environ.get("CI"):
            pytest.fail("EVIDENCE_TEST_PG_URL must be set in CI")
        pytest.skip("EVIDENCE_TEST_PG_URL not set")
    import sqlalchemy as sa

    schema = f"t_{uuid.uuid4().hex[:12]}"
    # pre-ping: the fault tests restart the server while this engine is pooled.
    admin = sa.create_engine(base, pool_pre_ping=True)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in base else "?"
    yield f"{base}{sep}options={quote(f'-csearch_path={schema}')}"
    with admin.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    admin.dispose()
