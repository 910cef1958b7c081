"""A database restored from an older copy is refused, because the home keeps
its latest signed checkpoint outside the database (latest-checkpoint.note).

Without that file an old copy opens cleanly (its own checkpoints table is just
as old) and its next checkpoint signs a second, different tree of a size the
key already signed: the fork a witness exists to catch. The tests check both
that the refusal comes, and that the key never signs two checkpoints of one
size across the whole sequence.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from ledger import Checkpoint, Ledger, Store
from ledger.errors import RollbackError, UsageError
from ledger.note import verify_note
from ledger.record import Draft

ORIGIN = "rollback.example/log"


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, EVIDENCE_HOME=str(home), COLUMNS="400")
    env.pop("EVIDENCE_KEY_PASSPHRASE", None)
    p = subprocess.run([sys.executable, "-m", "evidence.cli", *args], capture_output=True, text=True, env=env, timeout=120)
    assert "Traceback" not in p.stderr, p.stderr
    return p


def one_line(p: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), p.stderr
    return lines[0]


def backup(home: Path, to: Path) -> Path:
    with sqlite3.connect(home / "ledger.db") as live, sqlite3.connect(to) as out:
        live.backup(out)
    return to


def restore(copy: Path, home: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{home / 'ledger.db'}{suffix}").unlink(missing_ok=True)
    shutil.copy2(copy, home / "ledger.db")


class Signed:
    """Every checkpoint note the key signed, wherever it ended up."""

    def __init__(self) -> None:
        self.roots: dict[int, set[bytes]] = {}

    def add(self, note: str) -> None:
        cp = Checkpoint.parse(note.split("\n\n", 1)[0] + "\n")
        self.roots.setdefault(cp.size, set()).add(cp.root)

    def collect(self, url: str, home: Path) -> None:
        engine = sa.create_engine(url)
        with engine.connect() as c:
            for (note,) in c.exec_driver_sql("SELECT note FROM checkpoints"):
                self.add(note)
        engine.dispose()
        if (home / "latest-checkpoint.note").exists():
            self.add((home / "latest-checkpoint.note").read_text())

    def assert_no_fork(self) -> None:
        forks = {s: r for s, r in self.roots.items() if len(r) > 1}
        assert not forks, f"the key signed two different trees of size(s) {sorted(forks)}"


def test_restoring_an_older_copy_is_refused(tmp_path):
    home = tmp_path / "home"
    signed = Signed()
    with Ledger.init(home, unencrypted=True, origin=ORIGIN) as led:
        led.append_many([Draft("custody", {"i": i}) for i in range(4)])
        first = led.checkpoint()
        old = backup(home, tmp_path / "old.db")
        led.append_many([Draft("custody", {"i": i}) for i in range(4, 9)])
        last = led.checkpoint()
        fresh = backup(home, tmp_path / "fresh.db")
    assert (home / "latest-checkpoint.note").read_text() == last.note
    signed.collect(f"sqlite:///{home / 'ledger.db'}", home)

    restore(old, home)
    with pytest.raises(RollbackError) as e:
        Ledger.open(home)
    msg = str(e.value)
    assert f"has {first.size} records" in msg and f"checkpoint of size {last.size}" in msg and "\n" not in msg
    line = one_line(cli(home, "log"))
    assert cli(home, "checkpoint").returncode == 1  # nothing gets signed on top of the old copy
    assert f"has {first.size} records" in line and f"size {last.size}" in line and "--continues" in line
    signed.collect(f"sqlite:///{home / 'ledger.db'}", home)

    # Control: a copy taken after the last checkpoint opens and goes on.
    restore(fresh, home)
    with Ledger.open(home) as led:
        led.append("custody", {"after": "restore"})
        assert led.checkpoint().size == last.size + 1
    assert cli(home, "audit").returncode == 0
    signed.collect(f"sqlite:///{home / 'ledger.db'}", home)
    signed.assert_no_fork()


def test_old_copy_would_have_forked_without_the_file(tmp_path):
    """Why the file matters: delete it and the old copy signs a second tree of an already-signed size."""
    home = tmp_path / "home"
    signed = Signed()
    with Ledger.init(home, unencrypted=True, origin=ORIGIN) as led:
        led.checkpoint()
        old = backup(home, tmp_path / "old.db")
        led.append_many([Draft("custody", {"i": i}) for i in range(3)])
        led.checkpoint()
    signed.collect(f"sqlite:///{home / 'ledger.db'}", home)
    restore(old, home)
    (home / "latest-checkpoint.note").unlink()
    with Ledger.open(home) as led:
        led.append_many([Draft("custody", {"other": i}) for i in range(3)])
        led.checkpoint()
    signed.collect(f"sqlite:///{home / 'ledger.db'}", home)
    with pytest.raises(AssertionError, match="two different trees"):
        signed.assert_no_fork()


def test_another_history_of_the_same_size_is_refused(tmp_path):
    """An old copy someone wrote to elsewhere: as large as the file says, but another tree."""
    home = tmp_path / "home"
    with Ledger.init(home, unencrypted=True, origin=ORIGIN) as led:
        led.checkpoint()
        old = backup(home, tmp_path / "old.db")
        led.append_many([Draft("custody", {"i": i}) for i in range(3)])
        cp = led.checkpoint()
        key = led.key
    store = Store(f"sqlite:///{old}")
    store.append_many([Draft("custody", {"forked": i}) for i in range(5)], key=key, origin=ORIGIN)
    store.dispose()
    restore(old, home)
    line = one_line(cli(home, "log"))
    assert f"at size {cp.size}" in line and "another history" in line
    assert cli(home, "log").returncode == 1


def test_a_damaged_checkpoint_file_is_refused(tmp_path):
    home = tmp_path / "home"
    with Ledger.init(home, unencrypted=True, origin=ORIGIN) as led:
        led.checkpoint()
    note = home / "latest-checkpoint.note"
    good = note.read_text()
    note.write_text(good.replace(f"{ORIGIN}\n1\n", f"{ORIGIN}\n2\n"))
    line = one_line(cli(home, "log"))
    assert "latest-checkpoint.note" in line and cli(home, "log").returncode == 1
    note.write_text(good)
    assert cli(home, "log").returncode == 0


def test_the_file_only_grows(tmp_path):
    home = tmp_path / "home"
    note = home / "latest-checkpoint.note"
    with Ledger.init(home, unencrypted=True, origin=ORIGIN) as led:
        small = led.checkpoint()
        assert note.read_text() == small.note
        led.append("custody", {})
        big = led.checkpoint()
        assert note.read_text() == big.note
        # A slower process of this home that signed the older size writes last: the file keeps the larger.
        led._keep_latest(small)
    assert note.read_text() == big.note


def test_continue_in_a_new_log(tmp_path):
    """The documented way out: a new home whose log-init states the checkpoint it continues."""
    home = tmp_path / "home"
    with Ledger.init(home, unencrypted=True, origin=ORIGIN) as led:
        led.append("custody", {})
        led.checkpoint()
        old_verifiers = led.verifiers()
    note_file = home / "latest-checkpoint.note"
    new = tmp_path / "new"
    p = cli(new, "init", "--no-passphrase", "--origin", "rollback.example/log-2", "--continues", str(note_file))
    assert p.returncode == 0, p.stderr
    with Ledger.open(new) as led2:
        init = next(led2.records())
    cont = init.payload["continues"]
    assert cont["checkpoint"] == note_file.read_text() and cont["origin"] == ORIGIN and cont["size"] == 2
    verify_note(cont["checkpoint"], old_verifiers)  # the old log's key vouches for what is continued
    # Same origin as the old log, or not a signed note: one line, exit 2, no home left behind.
    for args, why in ((("--origin", ORIGIN), "another origin"), ((), "signed checkpoint")):
        target = tmp_path / f"bad-{len(args)}"
        src = note_file if args else tmp_path / "junk.note"
        if not args:
            src.write_text("not a note\n")
        p = cli(target, "init", "--no-passphrase", *args, "--continues", str(src))
        assert p.returncode == 2 and why in one_line(p) and not target.exists()
    with pytest.raises(UsageError):
        Ledger.init(tmp_path / "lib", unencrypted=True, origin=ORIGIN, continues=note_file.read_text())


@pytest.mark.postgres
def test_postgres_rollback_and_shared_homes(tmp_path, pg_url):
    """A team ledger: a joined writer home appends, the log home checkpoints; a rollback of the
    database (here: its tables put back to an earlier state) is refused by the log home."""
    log = tmp_path / "log"
    led = Ledger.init(log, unencrypted=True, origin=ORIGIN, db_url=pg_url)
    vkey = led.config.trusted_vkeys[0]
    led.checkpoint()
    engine = sa.create_engine(pg_url)
    tables = ["records", "nodes", "tree_state", "checkpoints", "keys", "anchors", "meta", "jobs"]
    with engine.begin() as c:
        for t in tables:
            c.exec_driver_sql(f"CREATE TABLE snap_{t} AS SELECT * FROM {t}")
    w, req = Ledger.join(tmp_path / "w", trust=vkey, name="capture-02", db_url=pg_url, unencrypted=True)
    led.register_request(req)
    w.append("custody", {"from": "capture-02"})
    cp = led.checkpoint()
    led.close()
    w.close()
    signed = Signed()
    signed.collect(pg_url, log)
    # Shared use goes on: both homes open, the writer appends, the log home signs.
    with Ledger.open(tmp_path / "w") as w2:
        w2.append("custody", {"again": True})
    with Ledger.open(log) as led2:
        cp = led2.checkpoint()
    signed.collect(pg_url, log)

    with engine.begin() as c:
        for t in tables:
            c.exec_driver_sql(f"DELETE FROM {t}")
            c.exec_driver_sql(f"INSERT INTO {t} SELECT * FROM snap_{t}")
    with pytest.raises(RollbackError, match=f"has 1 records, but this home signed a checkpoint of size {cp.size}"):
        Ledger.open(log)
    # A joined home signs no checkpoints and keeps no file: it opens, and the
    # log home's refusal is what stops the fork.
    Ledger.open(tmp_path / "w").close()
    signed.collect(pg_url, log)
    signed.assert_no_fork()
    engine.dispose()
