"""Versioned schema: init at head, upgrades from 0001 and from pre-migration
ledgers, refusal of older and newer revisions, on SQLite and PostgreSQL."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from ledger import migrations
from ledger.errors import SchemaError
from ledger.log import Ledger
from ledger.store import make_engine, metadata
from verify.ledger import audit_store


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    return request.getfixturevalue("pg_url")


def cli(home, url, *args, cwd=None):
    env = dict(os.environ, EVIDENCE_HOME=str(home), EVIDENCE_DB_URL=url, COLUMNS="200")
    p = subprocess.run(
        [sys.executable, "-m", "evidence.cli", *args], capture_output=True, text=True, env=env, timeout=120, cwd=cwd
    )
    assert "Traceback" not in p.stderr
    return p


def _ledger_with_records(tmp_path, url, n=30):
    led = Ledger.init(tmp_path / "home", unencrypted=True, origin="mig.example/log", db_url=url)
    for i in range(n):
        led.append("custody", {"i": i}, case="C-1")
    led.checkpoint()
    led.close()
    return tmp_path / "home"


def _sql(url, *statements):
    # Raw access: the store refuses to open a ledger at another revision.
    eng = make_engine(url)
    with eng.connect().execution_options(evidence_write=True) as conn, conn.begin():
        for s in statements:
            conn.exec_driver_sql(s)
    eng.dispose()


def _alembic(url, fn, *args):
    eng = make_engine(url)
    with eng.connect().execution_options(evidence_write=True) as conn, conn.begin():
        fn(migrations.alembic_config(conn), *args)
    eng.dispose()


def test_known_revisions_match_the_scripts():
    script = ScriptDirectory(str(Path(migrations.__file__).parent))
    revs = [s.revision for s in reversed(list(script.walk_revisions()))]
    assert tuple(revs) == migrations.KNOWN
    assert script.get_current_head() == migrations.HEAD


def test_migrations_ship_in_the_package():
    from setuptools import find_packages

    root = Path(__file__).resolve().parents[2]
    pkgs = find_packages(str(root), include=["evidence*", "capture*", "ledger*", "verify*"])
    assert "ledger.migrations" in pkgs and "ledger.migrations.versions" in pkgs


def test_head_schema_is_exactly_the_models(tmp_path, url):
    """Migrations and the Table definitions the code uses describe one schema."""
    led = Ledger.init(tmp_path / "h", unencrypted=True, db_url=url)
    with led.store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert migrations.read_status(conn).current == migrations.HEAD
    led.close()
    assert diff == []


def test_upgrade_from_initial_revision(tmp_path, url):
    home = _ledger_with_records(tmp_path, url)
    _alembic(url, command.downgrade, "0001")  # the ledger as revision 0001 left it
    with pytest.raises(SchemaError, match=rf"revision 0001, this version needs {migrations.HEAD}: run `evidence migrate`"):
        Ledger.open(home)
    p = cli(home, url, "audit")
    assert p.returncode == 3 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "evidence migrate" in p.stderr
    st = cli(home, url, "migrate", "--status", "--json")
    assert st.returncode == 1 and json.loads(st.stdout)["current"] == "0001"
    # From another directory: no alembic.ini, no cwd-relative paths.
    p = cli(home, url, "migrate", "--json", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    assert (info["before"], info["current"], info["head"]) == ("0001", migrations.HEAD, migrations.HEAD)
    with Ledger.open(home) as led:
        assert led.size() == 31
        led.append("custody", {"after": "migration"})
        led.checkpoint()
        res = audit_store(led.store, led.config.trusted_vkeys)
        assert res.ok, res.problems
    assert cli(home, url, "audit").returncode == 0
    again = cli(home, url, "migrate")
    assert again.returncode == 0 and "nothing to do" in again.stdout


def test_upgrade_of_a_ledger_from_before_migrations(tmp_path, url):
    home = _ledger_with_records(tmp_path, url)
    # What evidence-chain wrote before Alembic: these tables, no version table, none added since.
    _alembic(url, command.downgrade, "0001")
    _sql(url, "DROP TABLE alembic_version")
    with pytest.raises(SchemaError, match="predates versioned migrations: run `evidence migrate`"):
        Ledger.open(home)
    p = cli(home, url, "migrate", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["before"] == "pre-migrations"
    assert migrations.status(url).current == migrations.HEAD
    with Ledger.open(home) as led:
        res = audit_store(led.store, led.config.trusted_vkeys)
        assert res.ok and res.size == 31, res.problems


def test_unknown_legacy_schema_is_not_stamped(tmp_path, url):
    home = _ledger_with_records(tmp_path, url)
    _sql(url, "DROP TABLE jobs", "DROP TABLE alembic_version", "UPDATE meta SET value = '7' WHERE key = 'schema_version'")
    p = cli(home, url, "migrate")
    assert p.returncode == 3 and "unknown schema version '7'" in p.stderr
    assert migrations.status(url).legacy  # nothing was changed


def test_newer_revision_is_refused(tmp_path, url):
    home = _ledger_with_records(tmp_path, url, n=2)
    _sql(url, "UPDATE alembic_version SET version_num = '0099'")
    with pytest.raises(SchemaError, match="newer than this evidence-chain knows"):
        Ledger.open(home)
    for args in (("log",), ("migrate",)):
        p = cli(home, url, *args)
        assert p.returncode == 3, p.stderr
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and "0099" in lines[0] and "upgrade evidence-chain" in lines[0]
    assert migrations.status(url).current == "0099"


def test_migrate_without_a_ledger(tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    p = cli(tmp_path / "nohome", url, "migrate")
    assert p.returncode == 2 and "holds no ledger" in p.stderr


def test_init_does_not_migrate_an_old_ledger(tmp_path, url):
    _ledger_with_records(tmp_path, url, n=1)
    _alembic(url, command.downgrade, "0001")
    with pytest.raises(SchemaError, match="run `evidence migrate`"):
        Ledger.init(tmp_path / "second", unencrypted=True, db_url=url)
    assert migrations.status(url).current == "0001"


def test_homes_created_from_several_threads_at_once(tmp_path):
    """Alembic keeps its migration context in a module global: migrations are serialised in-process."""
    import threading

    from ledger.log import Ledger

    errors: list[str] = []

    def make(i: int) -> None:
        try:
            Ledger.init(tmp_path / f"h{i}", unencrypted=True, origin=f"t{i}.example/log").close()
        except Exception as e:  # collected: a thread's exception would otherwise vanish
            errors.append(repr(e))

    threads = [threading.Thread(target=make, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for i in range(6):
        with Ledger.open(tmp_path / f"h{i}") as led:
            assert led.size() == 1
