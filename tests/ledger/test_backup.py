"""Backups taken while a writer appends restore to ledgers that audit clean
(the procedures of the README's Operations section)."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import threading
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from ledger.config import Home
from ledger.log import Ledger
from verify.ledger import audit_store


class Writer(threading.Thread):
    """Keeps appending until stopped, so the backup is taken of a live ledger."""

    def __init__(self, home: Path):
        super().__init__(daemon=True)
        self.home, self.stop, self.appended = home, threading.Event(), 0

    def run(self) -> None:
        with Ledger.open(self.home) as led:
            while not self.stop.is_set():
                led.append("custody", {"n": self.appended, "pad": "x" * 200}, case="C-B")
                self.appended += 1


def _restored_home(src: Path, dst: Path, db_url: str | None) -> Path:
    """A home restored from its backed-up config and keys, pointing at the restored database."""
    dst.mkdir()
    shutil.copy2(src / "config.json", dst / "config.json")
    shutil.copytree(src / "keys", dst / "keys")
    home = Home(dst)
    cfg = home.load_config()
    cfg.db_url = db_url
    home.save_config(cfg)
    return dst


def _audit(home: Path, min_size: int) -> int:
    with Ledger.open(home) as led:
        size = led.size()
        assert size >= min_size
        res = audit_store(led.store, led.config.trusted_vkeys)
        assert res.ok, res.problems
        led.append("custody", {"after": "restore"})  # and it is writable again
        return size


def test_sqlite_online_backup_restores_and_audits(tmp_path):
    src = tmp_path / "home"
    Ledger.init(src, unencrypted=True, origin="backup.example/log").close()
    w = Writer(src)
    w.start()
    try:
        while w.appended < 200:
            threading.Event().wait(0.01)
        with Ledger.open(src) as led:
            led.checkpoint()
        # The online backup API: a consistent copy while the writer goes on.
        backup = tmp_path / "ledger-backup.db"
        with sqlite3.connect(src / "ledger.db") as live, sqlite3.connect(backup) as out:
            live.backup(out)
    finally:
        w.stop.set()
        w.join(30)
    dst = _restored_home(src, tmp_path / "restored", None)
    shutil.copy2(backup, dst / "ledger.db")
    size = _audit(dst, 200)
    assert size <= 1 + w.appended


@pytest.mark.postgres
def test_postgres_dump_and_restore_audits(tmp_path, pg_url):
    if not (shutil.which("pg_dump") and shutil.which("pg_restore")):
        pytest.skip("pg_dump/pg_restore not installed")
    src = tmp_path / "home"
    Ledger.init(src, unencrypted=True, origin="backup.example/log", db_url=pg_url).close()
    url = sa.make_url(pg_url)
    schema = url.query["options"].split("search_path=", 1)[1]
    conn_args = ["-h", url.host or "127.0.0.1", "-p", str(url.port or 5432), "-U", url.username or "postgres"]
    w = Writer(src)
    w.start()
    try:
        while w.appended < 200:
            threading.Event().wait(0.01)
        with Ledger.open(src) as led:
            led.checkpoint()
        dump = tmp_path / "ledger.dump"
        # pg_dump reads one snapshot: records, nodes and tree_state agree.
        subprocess.run(
            ["pg_dump", *conn_args, "-d", url.database, "-n", schema, "-Fc", "-f", str(dump)],
            check=True, capture_output=True, timeout=120,
        )
    finally:
        w.stop.set()
        w.join(30)
    target = f"restore_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url.set(query={}), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f"CREATE DATABASE {target}")
    try:
        subprocess.run(
            ["pg_restore", *conn_args, "-d", target, "--no-owner", "--exit-on-error", str(dump)],
            check=True, capture_output=True, timeout=120,
        )
        restored_url = url.set(database=target).render_as_string(hide_password=False)
        dst = _restored_home(src, tmp_path / "restored", restored_url)
        size = _audit(dst, 200)
        assert size <= 1 + w.appended
    finally:
        with admin.connect() as c:
            c.exec_driver_sql(f"DROP DATABASE IF EXISTS {target} WITH (FORCE)")
        admin.dispose()
