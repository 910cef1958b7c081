"""Capture queue and workers: several homes, one PostgreSQL ledger, one artifact store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from capture.browser import chromium_available
from capture.worker import enqueue
from ledger.errors import ConfigError, SignatureError, UsageError
from ledger.exhibit import ArtifactFile
from ledger.log import Ledger
from ledger.queue import LeaseLost, Queue
from ledger.record import parse_record
from verify.ledger import audit_store

ROOT = Path(__file__).resolve().parents[2]
FAST = {"settle_timeout": 1.0, "load_timeout": 20.0, "max_scroll_steps": 2, "mhtml": False}


def cli(home, *args, env=None, timeout=300):
    e = dict(os.environ, EVIDENCE_HOME=str(home), COLUMNS="200")
    e.pop("EVIDENCE_DB_URL", None)
    e.update(env or {})
    return subprocess.Popen(
        [sys.executable, "-m", "evidence.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e
    )


def finish(p, timeout=300):
    out, err = p.communicate(timeout=timeout)
    assert "Traceback" not in err, err
    return p.returncode, out, err


@pytest.fixture
def team(tmp_path, pg_url):
    """The log's home A (with writer key worker-a) and home B joined on 'another machine'."""
    shared = tmp_path / "shared-store"
    a = Ledger.init(tmp_path / "a", unencrypted=True, origin="office.example/ledger", db_url=pg_url, artifacts=str(shared))
    a.add_key("worker-a", role="writer")
    b, request = Ledger.join(
        tmp_path / "b", trust=a.config.trusted_vkeys[0], name="worker-b", db_url=pg_url,
        unencrypted=True, artifacts=str(shared),
    )
    with pytest.raises(ConfigError, match="not registered in the ledger"):
        b.append("custody", {"too": "early"})
    a.register_request(request)
    yield a, b, shared
    a.close()
    b.close()


def _files(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, "utf-8")
    return [ArtifactFile(name, p, "text/plain", "note")]


def test_two_homes_share_ledger_and_artifacts(team, tmp_path):
    a, b, shared = team
    ex_a = a.seal_exhibit("C-7", _files(tmp_path, "a.txt", "seen by A"), {"url": "https://a.example/"})
    ex_b = b.seal_exhibit("C-7", _files(tmp_path, "b.txt", "seen by B"), {"url": "https://b.example/"})
    assert ex_a.record.key_id == a.key.key_id and ex_b.record.key_id == b.key.key_id
    assert a.artifacts.root == b.artifacts.root == shared
    # each home reads (and re-hashes) what the other stored
    for led, ex in ((a, ex_b), (b, ex_a)):
        led.artifacts.check(ex.manifest_sha256)
        for art in ex.artifacts:
            led.artifacts.check(art.sha256)
    assert not (tmp_path / "a" / "store").exists() and not (tmp_path / "b" / "store").exists()
    a.checkpoint()
    with pytest.raises(ConfigError, match="checkpoints are signed with the log's key"):
        b.checkpoint()
    for led in (a, b):
        res = audit_store(led.store, led.config.trusted_vkeys)
        assert res.ok, res.problems


def test_join_refuses_a_wrong_log_key(team, tmp_path, pg_url):
    from ledger.keys import SigningKey
    from ledger.note import vkey_for

    other = vkey_for("office.example/ledger", SigningKey.generate().public)
    with pytest.raises(SignatureError, match="is not the one --trust names"):
        Ledger.join(tmp_path / "c", trust=other, name="intruder", db_url=pg_url, unencrypted=True)
    assert not (tmp_path / "c" / "config.json").exists()


def test_forged_key_request_is_refused(team, tmp_path, pg_url):
    a, _b, _ = team
    _c, request = Ledger.join(tmp_path / "c", trust=a.config.trusted_vkeys[0], name="worker-c", db_url=pg_url, unencrypted=True)
    _c.close()
    forged = dict(request, role="writer", name="worker-d")  # statement changed after signing
    size = a.size()
    with pytest.raises(SignatureError, match="signature does not verify"):
        a.register_request(forged)
    assert a.size() == size


def test_dead_workers_job_is_retaken_and_never_sealed_twice(team, tmp_path):
    a, b, _ = team
    q = Queue(a.store)
    (job_id,) = enqueue(a, ["https://shop.example/item/1"], case="C-7", max_attempts=3)
    dead = q.claim("dead-worker:1", lease=0.3)
    assert dead.id == job_id and dead.attempts == 1
    assert q.claim("other:2", lease=60) is None  # leased: nobody else may take it
    time.sleep(0.6)
    live = q.claim("live-worker:3", lease=60)
    assert live.id == job_id and live.attempts == 2 and live.claimed_by == "live-worker:3"
    # The dead worker wakes up and tries to seal: its append is rolled back.
    size = a.size()
    with pytest.raises(LeaseLost):
        a.seal_exhibit("C-7", _files(tmp_path, "late.txt", "late"), {"url": dead.url},
                       on_locked=lambda conn, recs: q.complete_in(conn, dead, recs[0].index))
    assert a.size() == size
    ex = b.seal_exhibit("C-7", _files(tmp_path, "live.txt", "live"), {"url": live.url},
                        on_locked=lambda conn, recs: q.complete_in(conn, live, recs[0].index))
    done = q.get(job_id)
    assert (done.state, done.record_idx, done.error) == ("done", ex.index, None)


def test_lease_expiry_uses_up_attempts(team):
    a, _b, _ = team
    q = Queue(a.store)
    (job_id,) = enqueue(a, ["https://shop.example/item/2"], case="C-7", max_attempts=2)
    for n in range(2):
        assert q.claim(f"w{n}", lease=0.2).id == job_id
        time.sleep(0.4)
    assert q.claim("w9", lease=60) is None
    job = q.get(job_id)
    assert job.state == "failed" and "lease expired on attempt 2 of 2" in job.error


def test_enqueue_checks_input_first(team):
    a, _b, _ = team
    q = Queue(a.store)
    for urls, kw, msg in (
        (["file:///etc/passwd"], {}, "http"),
        (["https://ok.example/"], {"case": " "}, "case id"),
        (["https://ok.example/"], {"load_timeout": -1}, "load_timeout"),
        (["https://ok.example/"], {"bogus": 1}, "unknown capture option"),
    ):
        with pytest.raises(UsageError, match=msg):
            enqueue(a, urls, **{"case": "C-7", **kw})
    assert q.counts()["queued"] == 0


def test_queue_on_sqlite(tmp_path):
    led = Ledger.init(tmp_path / "h", unencrypted=True)
    q = Queue(led.store)
    ids = enqueue(led, ["https://a.example/1", "https://a.example/2"], case="C-1")
    first = q.claim("w1", lease=60)
    second = q.claim("w2", lease=60)
    assert [first.id, second.id] == ids and q.claim("w3", lease=60) is None
    assert q.fail(first, "host unreachable", retry=True) == "queued"
    assert q.fail(second, "bad url", retry=False) == "failed"
    assert q.counts() == {"queued": 1, "running": 0, "done": 0, "failed": 1}
    led.close()


@pytest.mark.browser
@pytest.mark.slow
def test_two_worker_processes_capture_every_job_once(team, tmp_path):
    if not chromium_available():
        if os.environ.get("CI"):
            pytest.fail("Chromium is required in CI")
        pytest.skip("Chromium not installed")
    sys.path.insert(0, str(ROOT / "tests" / "capture"))
    from capture_fixtures import load_serve

    a, b, _ = team
    shop = load_serve().ShopServer().start()
    try:
        good = [shop.url(f"/item/123?n={i}") for i in range(6)] + [shop.url("/"), shop.url("/s/Xy7Kq")]
        ids = enqueue(a, good, case="C-Q", operator="Li Wei", **FAST)
        # Nothing listens there: retried, then failed with its error.
        (bad,) = enqueue(a, ["http://127.0.0.1:9/gone"], case="C-Q", max_attempts=2, **FAST)
        procs = [
            cli(a.home.root, "worker", "--once", "--json", "--signer", "worker-a", "--name", "wa"),
            cli(b.home.root, "worker", "--once", "--json", "--name", "wb"),
        ]
        results = [finish(p) for p in procs]
    finally:
        shop.stop()
    for code, _out, err in results:
        assert code == 0, err
    stats = [json.loads(out) for _c, out, _e in results]
    q = Queue(a.store)
    jobs = {j.id: j for j in q.list()}
    assert all(jobs[i].state == "done" for i in ids), [(jobs[i].state, jobs[i].error) for i in ids]
    assert jobs[bad].state == "failed" and jobs[bad].attempts == 2 and "127.0.0.1:9" in jobs[bad].error
    done_by = [d["job"] for s in stats for d in s["done"]]
    assert sorted(done_by) == sorted(ids)  # each job sealed by exactly one worker, once
    exhibits = [parse_record(r.body) for r in a.store.iter_records(kind="exhibit", case="C-Q")]
    assert len(exhibits) == len(ids)
    keys = {"wa": a.signer_key("worker-a").key_id, "wb": b.key.key_id}
    by_job = {}
    for rec in exhibits:
        with a.artifacts.open(rec.payload["manifest"]["sha256"]) as f:
            info = json.loads(f.read())["info"]
        job = info["queue_job"]
        assert rec.key_id == keys[job["worker"]]  # signed by the worker that sealed it
        assert jobs[job["id"]].record_idx == rec.index
        by_job[job["id"]] = rec.index
    assert sorted(by_job) == sorted(ids)
    a.checkpoint()
    for led in (a, b):
        res = audit_store(led.store, led.config.trusted_vkeys)
        assert res.ok, res.problems
