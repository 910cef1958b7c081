"""PostgreSQL restarted while writers append: nothing acknowledged is lost,
nothing is appended twice, the ledger audits clean.

This restarts the shared local server (a few seconds): it runs once per suite
and makes sure the server is back before it ends.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledger.log import Ledger
from ledger.record import parse_record
from verify.ledger import audit_store

WRITERS, BATCH = 4, 20

WRITER = """
import os, sys, time
from ledger.errors import EvidenceError
from ledger.record import Draft
from ledger.log import Ledger

home, ack_path, stop_path, tag = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
led = Ledger.open(home)
led.store.retry_seconds = 40
end = time.monotonic() + 90
b = 0
with open(ack_path, "a") as ack:
    while not os.path.exists(stop_path) and time.monotonic() < end:
        try:
            recs = led.append_many([Draft("custody", {"writer": tag, "b": b, "k": k}) for k in range(int(sys.argv[5]))])
        except EvidenceError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(3)
        # Acknowledged only once this line is on disk.
        ack.write(" ".join(f"{r.index}:{r.leaf.hex()}" for r in recs) + "\\n")
        ack.flush()
        os.fsync(ack.fileno())
        b += 1
        time.sleep(0.005)
print(led.store.retries)
"""


def _cluster() -> tuple[str, str] | None:
    if not shutil.which("pg_ctlcluster") or not Path("/etc/postgresql").is_dir():
        return None
    versions = sorted(os.listdir("/etc/postgresql"))
    return (versions[-1], "main") if versions else None


def _ready() -> bool:
    return subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"]).returncode == 0


def _acks(path: Path) -> list[list[tuple[int, str]]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        out.append([(int(i), leaf) for i, leaf in (x.split(":") for x in line.split())])
    return out


def _wait(cond, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.postgres
def test_postgres_restart_mid_load(tmp_path, pg_url):
    cluster = _cluster()
    if cluster is None:
        if os.environ.get("CI"):
            pytest.fail("pg_ctlcluster is needed in CI to restart PostgreSQL")
        pytest.skip("no pg_ctlcluster on this machine")
    Ledger.init(tmp_path / "home", unencrypted=True, origin="faults.example/log", db_url=pg_url).close()
    stop = tmp_path / "stop"
    acks = [tmp_path / f"ack{t}" for t in range(WRITERS)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path / "home"), str(acks[t]), str(stop), str(t), str(BATCH)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for t in range(WRITERS)
    ]
    try:
        _wait(lambda: all(len(_acks(a)) >= 5 for a in acks), 60, "writers to start")
        before = [len(_acks(a)) for a in acks]
        restart = subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, "restart"],
            capture_output=True, text=True, timeout=120,
        )
        assert restart.returncode == 0, restart.stderr
        # Every writer that is still running acknowledges more after the restart.
        _wait(
            lambda: all(len(_acks(a)) >= n + 5 or p.poll() is not None for a, n, p in zip(acks, before, procs)),
            60, "writers to resume",
        )
    finally:
        stop.touch()
        results = [p.communicate(timeout=120) for p in procs]
        if not _ready() and cluster is not None:
            subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, "start"], timeout=120)
        _wait(_ready, 60, "PostgreSQL to accept connections again")

    retries = 0
    for p, (out, err) in zip(procs, results):
        assert "Traceback" not in err, err
        if p.returncode == 0:
            retries += int(out.strip() or 0)
        else:  # failing is allowed, but cleanly: one line saying why
            assert p.returncode == 3 and len(err.strip().splitlines()) == 1, (p.returncode, err)
    assert sum(p.returncode == 0 for p in procs) >= 1
    assert retries >= 1, "no writer ever saw the restart"

    with Ledger.open(tmp_path / "home") as led:
        stored = {s.index: s for s in led.store.iter_records()}
        assert sorted(stored) == list(range(len(stored)))
        acked = 0
        for t, path in enumerate(acks):
            for batch in _acks(path):
                for idx, leaf in batch:
                    assert idx in stored and stored[idx].leaf.hex() == leaf, (t, idx)
                    acked += 1
        # A retried append never lands twice (each writer's batch number once).
        seen = set()
        for s in stored.values():
            rec = parse_record(s.body, expect_index=s.index)
            if rec.kind == "custody":
                key = (rec.payload["writer"], rec.payload["b"], rec.payload["k"])
                assert key not in seen, key
                seen.add(key)
        assert acked <= len(seen)
        led.checkpoint()
        res = audit_store(led.store, led.config.trusted_vkeys)
        assert res.ok, res.problems
    print(f"{acked} acknowledged records, {len(stored)} stored, {retries} retried transactions")


def _lost(after_commit: bool, times: int = 1):
    """Make the store's write transactions lose their connection ``times`` times,
    either before COMMIT (nothing landed) or after it (landed, ack lost)."""
    from contextlib import contextmanager

    import psycopg
    from sqlalchemy.exc import OperationalError

    def install(store):
        real = store._write
        left = [times]

        def boom():
            left[0] -= 1
            return OperationalError(
                "COMMIT", {}, psycopg.OperationalError("server closed the connection unexpectedly"),
                connection_invalidated=True,
            )

        @contextmanager
        def flaky():
            with real() as conn:
                yield conn
                if left[0] > 0 and not after_commit:
                    raise boom()
            if left[0] > 0 and after_commit:
                raise boom()

        store._write = flaky

    return install


@pytest.mark.postgres
@pytest.mark.parametrize("after_commit", [False, True], ids=["lost-before-commit", "lost-ack-after-commit"])
def test_retried_append_lands_exactly_once(tmp_path, pg_url, after_commit):
    from ledger.record import Draft

    led = Ledger.init(tmp_path / "h", unencrypted=True, db_url=pg_url)
    _lost(after_commit)(led.store)
    recs = led.append_many([Draft("custody", {"k": k}) for k in range(3)])
    assert led.store.retries == 1
    assert [r.index for r in recs] == [1, 2, 3] and led.size() == 4
    stored = [s.leaf for s in led.store.iter_records(start=1)]
    assert stored == [r.leaf for r in recs]
    res = audit_store(led.store, led.config.trusted_vkeys)
    assert res.ok, res.problems
    led.close()


@pytest.mark.postgres
def test_unreachable_database_fails_in_one_line_after_the_window(tmp_path, pg_url):
    from ledger.errors import StoreError

    led = Ledger.init(tmp_path / "h", unencrypted=True, db_url=pg_url)
    led.store.retry_seconds = 0.5
    _lost(after_commit=False, times=1000)(led.store)
    t = time.monotonic()
    with pytest.raises(StoreError, match=r"append failed: database .* unreachable for 0.5s") as e:
        led.append("custody", {"never": "lands"})
    assert time.monotonic() - t < 5 and "\n" not in str(e.value)
    assert led.size() == 1
    led.close()


def test_sqlite_errors_are_not_retried(tmp_path):
    from ledger.errors import StoreError

    led = Ledger.init(tmp_path / "h", unencrypted=True)
    led.store.execute_raw("CREATE TRIGGER no_more BEFORE INSERT ON records BEGIN SELECT RAISE(ABORT, 'disk says no'); END")
    with pytest.raises(StoreError, match="append failed: disk says no"):
        led.append("custody", {})
    assert led.store.retries == 0 and led.size() == 1
    led.close()
