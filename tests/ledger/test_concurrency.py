"""Several processes appending to one ledger, and writers killed mid-append."""

import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from ledger.log import Ledger
from verify.ledger import audit_store

WORKERS, PER_WORKER = 4, 500


def _writer(home: str, db_url: str | None, n: int, tag: int) -> None:
    led = Ledger.open(home, db_url=db_url)
    for i in range(n):
        led.append("custody", {"writer": tag, "i": i})
    led.close()


def _run_writers(home, db_url=None):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(home), db_url, PER_WORKER, t)) for t in range(WORKERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
        assert p.exitcode == 0


def _check_linear(led, expected):
    recs = list(led.records())
    assert len(recs) == expected
    assert [r.index for r in recs] == list(range(expected))
    for a, b in zip(recs, recs[1:]):
        assert b.prev == a.leaf.hex()
    per_writer = {}
    for r in recs[1:]:
        per_writer.setdefault(r.payload["writer"], []).append(r.payload["i"])
    assert all(v == list(range(PER_WORKER)) for v in per_writer.values())
    led.checkpoint()
    res = audit_store(led.store, led.config.trusted_vkeys)
    assert res.ok, res.problems


@pytest.mark.slow
def test_sqlite_four_processes(tmp_path):
    led = Ledger.init(tmp_path, unencrypted=True)
    led.close()
    _run_writers(tmp_path)
    with Ledger.open(tmp_path) as led:
        _check_linear(led, 1 + WORKERS * PER_WORKER)


@pytest.mark.slow
@pytest.mark.postgres
def test_postgres_four_processes(tmp_path, pg_url):
    Ledger.init(tmp_path, unencrypted=True, db_url=pg_url).close()
    _run_writers(tmp_path)
    with Ledger.open(tmp_path) as led:
        assert led.store.engine.dialect.name == "postgresql"
        _check_linear(led, 1 + WORKERS * PER_WORKER)


CHILD = """
import sys
from ledger.record import Draft
from ledger.log import Ledger
led = Ledger.open(sys.argv[1])
print("ready", flush=True)
i = 0
while True:
    led.append_many([Draft("custody", {"i": i + k, "pad": "x" * 2000}) for k in range(50)])
    i += 50
"""


@pytest.mark.slow
def test_sigkill_while_appending(tmp_path):
    Ledger.init(tmp_path, unencrypted=True).close()
    rng = random.Random(1)
    for round_ in range(20):
        p = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, env=os.environ.copy())
        assert p.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.02, 0.4))
        p.send_signal(signal.SIGKILL)
        p.wait()
        with Ledger.open(tmp_path) as led:
            size = led.size()
            res = audit_store(led.store, led.config.trusted_vkeys)
            assert res.ok, (round_, res.problems)
            # whole batches only: the kill never leaves half a transaction
            assert (size - 1) % 50 == 0
            if round_ % 5 == 4:
                led.checkpoint()
