"""The capture fleet on Celery, end to end: real `evidence worker --engine celery` processes
(through the CLI), a real redis-server of the test's own, real Chromium loading pages of a
local site that counts its loads, and the ledger (PostgreSQL for the fleet test) audited."""

from __future__ import annotations

import json
import socket
import sys
import threading
import uuid
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fleet_fixtures  # noqa: E402
from fleet_fixtures import CountingSite, Worker, cli, free_port, wait_for  # noqa: E402

from evidence.fleet import CAPTURE_TASK, PROBE_TASK, Rate, Settings, backoff, is_network_error, make_app  # noqa: E402
from ledger.errors import CaptureError, ExpectationFailed, UsageError  # noqa: E402
from ledger.exhibit import ArtifactFile  # noqa: E402
from ledger.log import Ledger  # noqa: E402
from ledger.store import AlreadySealed, seal_keys  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow]
# The fixtures of fleet_fixtures (their own redis-server, the counting site), used by name.
redis_server = fleet_fixtures.redis_server
counting_site = fleet_fixtures.counting_site


def init_home(path: Path, db_url: str | None = None) -> Path:
    args = ["init", "--no-passphrase", "--origin", "fleet.test/log"] + (["--db-url", db_url] if db_url else [])
    p = cli(path, "redis://unused", *args)
    assert p.returncode == 0, p.stderr
    return path


def exhibits(home: Path) -> list[dict]:
    with Ledger.open(home) as led:
        return [dict(r.payload, index=r.index) for r in led.records() if r.kind == "exhibit"]


def kinds(home: Path) -> Counter[str]:
    with Ledger.open(home) as led:
        return Counter(r.kind for r in led.records())


def keys_sealed(home: Path) -> dict[str, int]:
    with Ledger.open(home) as led, led.store.engine.connect() as conn:
        return {r.key: int(r.record_idx) for r in conn.execute(seal_keys.select())}


def enqueue(home: Path, broker: str, *args: str) -> list[dict]:
    p = cli(home, broker, "enqueue", "--engine", "celery", "--json", *args)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)["tasks"]


def one_line_error(p, code: int, *words: str) -> None:
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), p.stderr
    for w in words:
        assert w in lines[0], lines[0]


# -- the units the worker decides with ------------------------------------------


def test_settings_from_the_environment():
    s = Settings.from_env({"EVIDENCE_BROKER_URL": "redis://:pw@10.0.0.5:6379/1"})
    assert s.rate == Rate(60, 60.0) and s.rate_url == s.broker
    assert Settings.from_env({"EVIDENCE_BROKER_URL": "redis://h/0", "EVIDENCE_HOST_RATE": "2/10s"}).rate == Rate(2, 10.0)
    assert Settings.from_env({"EVIDENCE_BROKER_URL": "redis://h/0", "EVIDENCE_HOST_RATE": "off"}).rate is None
    # RabbitMQ keeps no rate windows: the limit needs a Redis of its own, or is turned off knowingly.
    with pytest.raises(UsageError, match="EVIDENCE_RATE_URL"):
        Settings.from_env({"EVIDENCE_BROKER_URL": "amqp://guest@rabbit//"})
    assert Settings.from_env({"EVIDENCE_BROKER_URL": "amqp://guest@rabbit//", "EVIDENCE_RATE_URL": "redis://r/0"}).rate_url == "redis://r/0"
    for bad in ({}, {"EVIDENCE_BROKER_URL": "http://h/"}, {"EVIDENCE_BROKER_URL": "redis://h/0", "EVIDENCE_HOST_RATE": "lots"},
                {"EVIDENCE_BROKER_URL": "redis://h/0", "EVIDENCE_BROKER_VISIBILITY_TIMEOUT": "nan"}):
        with pytest.raises(UsageError):
            Settings.from_env(bad)


def test_only_errors_that_loaded_nothing_are_retried():
    refused = CaptureError("cannot capture http://x/: connection refused for x (net::ERR_CONNECTION_REFUSED); nothing was recorded")
    probe_refused = CaptureError("cannot probe http://x/: connection refused (net::ERR_CONNECTION_REFUSED)")
    slow = CaptureError("probe of http://x/ did not finish within 30 s")
    assert is_network_error(refused) and is_network_error(probe_refused) and is_network_error(slow)
    # Pages that loaded: a missing expected text, a capture that broke after the load.
    assert not is_network_error(ExpectationFailed("http://x/ does not show 'x'"))
    assert not is_network_error(CaptureError("capture of http://x/ failed: Target page crashed"))
    waits = [backoff(n, 2.0) for n in (1, 2, 3, 4)]
    assert all(0.8 * 2 * 2 ** i <= w <= 1.2 * 2 * 2 ** i for i, w in enumerate(waits))
    assert backoff(30, 2.0) <= 600 * 1.2


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_seal_key_checked_under_the_tree_lock(tmp_path, backend, request):
    db_url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    led = Ledger.init(tmp_path / "home", unencrypted=True, origin="fleet.test/log", db_url=db_url)
    try:
        f = tmp_path / "page.html"
        f.write_bytes(b"<html>listing</html>")
        files = [ArtifactFile("page.html", f, "text/html", "dom")]
        first = led.seal_exhibit("C-9", files, {"url": "http://shop.test/1"}, seal_key="k" * 32)
        size = led.size()
        with pytest.raises(AlreadySealed) as e:
            led.seal_exhibit("C-9", files, {"url": "http://shop.test/1"}, seal_key="k" * 32)
        assert e.value.index == first.index and led.size() == size
        # Control through the same path: another key, and no key, both append.
        other = led.seal_exhibit("C-9", files, {"url": "http://shop.test/1"}, seal_key="j" * 32)
        plain = led.seal_exhibit("C-9", files, {"url": "http://shop.test/1"})
        assert (other.index, plain.index) == (size, size + 1)
        # Many writers racing with one key (each its own store, as workers are): one record.
        key = uuid.uuid4().hex
        results: list[object] = []

        def race() -> None:
            w = Ledger.open(tmp_path / "home")
            try:
                results.append(w.seal_exhibit("C-9", files, {"url": "http://shop.test/2"}, seal_key=key).index)
            except AlreadySealed as err:
                results.append(err)
            finally:
                w.close()

        threads = [threading.Thread(target=race) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        won = [r for r in results if isinstance(r, int)]
        assert len(results) == 6 and len(won) == 1
        assert all(r.index == won[0] for r in results if isinstance(r, AlreadySealed))
        assert led.size() == size + 3
    finally:
        led.close()


# -- bad input ---------------------------------------------------------------------


def test_unreachable_broker_one_line_exit_3_nothing_queued(tmp_path, counting_site):
    home = init_home(tmp_path / "home")
    closed = f"redis://127.0.0.1:{free_port()}/0"
    p = cli(home, closed, "enqueue", "--engine", "celery", "--case", "C-1", counting_site.url("/a"))
    one_line_error(p, 3, "cannot reach the broker", closed, "nothing was queued")
    # A broker address that accepts connections and never answers: the same, within the timeouts.
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(16)
    try:
        url = f"redis://127.0.0.1:{hole.getsockname()[1]}/0"
        p = cli(home, url, "enqueue", "--engine", "celery", "--case", "C-1", counting_site.url("/a"), timeout=120)
        one_line_error(p, 3, "cannot reach the broker", url)
        p = cli(home, url, "watch", "run", "--engine", "celery", "--for", "5s", timeout=120)
        one_line_error(p, 3, "cannot reach the broker", url)
    finally:
        hole.close()
    # The password never shows.
    p = cli(home, f"redis://:s3cret@127.0.0.1:{free_port()}/0", "enqueue", "--engine", "celery", "--case", "C-1", counting_site.url("/a"))
    one_line_error(p, 3, "cannot reach the broker")
    assert "s3cret" not in p.stderr
    # No broker setting, a broker that is not one, a bad queue name: usage errors.
    p = cli(home, "", "enqueue", "--engine", "celery", "--case", "C-1", counting_site.url("/a"))
    one_line_error(p, 2, "EVIDENCE_BROKER_URL")
    p = cli(home, "", "worker", "--engine", "celery")
    one_line_error(p, 2, "EVIDENCE_BROKER_URL")
    p = cli(home, "http://127.0.0.1:1/", "enqueue", "--engine", "celery", "--case", "C-1", counting_site.url("/a"))
    one_line_error(p, 2, "redis:// or amqp://")
    p = cli(home, closed, "enqueue", "--engine", "celery", "--queue", "a b", "--case", "C-1", counting_site.url("/a"))
    one_line_error(p, 2, "queue name")
    p = cli(home, closed, "enqueue", "--engine", "celery", "--case", "C-1", "file:///etc/passwd")
    one_line_error(p, 2)
    p = cli(home, closed, "enqueue", "--engine", "kafka", "--case", "C-1", counting_site.url("/a"))
    one_line_error(p, 2, "--engine")
    p = cli(home, closed, "enqueue", "--queue", "a", "--case", "C-1", counting_site.url("/a"))
    one_line_error(p, 2, "--engine celery")
    # The worker refuses an unreachable broker the same way, before it starts.
    p = cli(home, closed, "worker", "--engine", "celery")
    one_line_error(p, 3, "cannot reach the broker", closed)
    assert counting_site.count("/") == 0 and kinds(home)["exhibit"] == 0


# -- the fleet at work -------------------------------------------------------------


def test_three_urls_sealed_once_each_on_postgresql_and_audit_ok(tmp_path, redis_server, counting_site, pg_url):
    home = init_home(tmp_path / "home", pg_url)
    w = Worker(home, redis_server.url, "--concurrency", "2", log=tmp_path / "w.log")
    try:
        w.ready()
        urls = [counting_site.url(f"/item/{i}") for i in (1, 2, 3)]
        sent = enqueue(home, redis_server.url, "--case", "SAMR-F-1", *urls)
        assert len({t["key"] for t in sent}) == 3
        wait_for(lambda: w.text().count("sealed as record") >= 3, "3 exhibits sealed")
    finally:
        w.stop()
    ex = exhibits(home)
    assert sorted(e["url"] for e in ex) == sorted(urls)
    assert sorted(keys_sealed(home)) == sorted(t["key"] for t in sent)
    assert {counting_site.count(f"/item/{i}") for i in (1, 2, 3)} == {1}
    p = cli(home, redis_server.url, "audit")
    assert p.returncode == 0, p.stdout + p.stderr


def test_worker_killed_mid_capture_task_sealed_once_by_the_next(tmp_path, redis_server, counting_site):
    home = init_home(tmp_path / "home")
    env = {"EVIDENCE_BROKER_VISIBILITY_TIMEOUT": "8"}
    w1 = Worker(home, redis_server.url, log=tmp_path / "w1.log", **env)
    try:
        w1.ready()
        (held,) = enqueue(home, redis_server.url, "--case", "SAMR-F-2", counting_site.url("/hold/1"))
        others = enqueue(home, redis_server.url, "--case", "SAMR-F-2", counting_site.url("/item/a"), counting_site.url("/item/b"))
        wait_for(counting_site.held.is_set, "the worker to be loading the held page")
        w1.kill()  # SIGKILL, mid-capture: its task was not acknowledged
    finally:
        w1.stop()
    assert kinds(home)["exhibit"] == 0
    counting_site.release.set()
    w2 = Worker(home, redis_server.url, log=tmp_path / "w2.log", **env)
    try:
        w2.ready()
        wait_for(lambda: w2.text().count("sealed as record") >= 3, "the 3 tasks sealed by the second worker")
    finally:
        w2.stop()
    ex = exhibits(home)
    by_url = Counter(e["url"] for e in ex)
    assert by_url == Counter({counting_site.url("/hold/1"): 1, counting_site.url("/item/a"): 1, counting_site.url("/item/b"): 1}), by_url
    assert sorted(keys_sealed(home)) == sorted([held["key"], *(t["key"] for t in others)])
    assert "(delivered again)" in w2.text()
    p = cli(home, redis_server.url, "audit")
    assert p.returncode == 0, p.stdout + p.stderr


def test_task_delivered_twice_while_running_is_sealed_once(tmp_path, redis_server, counting_site):
    """The redelivery the seal key exists for: the same task (same key) delivered twice, both
    deliveries load the page and reach the append; the key, checked under the tree lock,
    lets one through. (Redis redelivers so when a visibility timeout runs out mid-capture.)"""
    home = init_home(tmp_path / "home")
    w1 = Worker(home, redis_server.url, log=tmp_path / "w1.log")
    w2 = Worker(home, redis_server.url, log=tmp_path / "w2.log")
    try:
        w1.ready()
        w2.ready()
        (t,) = enqueue(home, redis_server.url, "--case", "SAMR-F-3", counting_site.url("/hold/twice"))
        app = make_app(Settings.from_env({"EVIDENCE_BROKER_URL": redis_server.url}), sender=True)
        app.send_task(CAPTURE_TASK, queue="evidence", kwargs={
            "url": t["url"], "case": "SAMR-F-3", "operator": None, "note": None, "options": {},
            "key": t["key"], "queue": "evidence", "net_tries": 0})
        # The page answers once both deliveries are loading it: both captures are in flight.
        wait_for(lambda: counting_site.count("/hold/twice") >= 2, "both workers loading the page")
        counting_site.release.set()
        logs = lambda: w1.text() + w2.text()  # noqa: E731
        wait_for(lambda: "sealed as record" in logs() and "this capture was dropped" in logs(), "one seal and one refusal")
    finally:
        w1.stop()
        w2.stop()
    ex = exhibits(home)
    assert [e["url"] for e in ex] == [counting_site.url("/hold/twice")]
    assert keys_sealed(home) == {t["key"]: ex[0]["index"]}
    p = cli(home, redis_server.url, "audit")
    assert p.returncode == 0, p.stdout + p.stderr


def test_per_host_rate_limit_across_workers(tmp_path, redis_server, counting_site):
    home = init_home(tmp_path / "home")
    env = {"EVIDENCE_HOST_RATE": "2/m"}
    port = counting_site.srv.server_address[1]
    w1 = Worker(home, redis_server.url, log=tmp_path / "w1.log", **env)
    w2 = Worker(home, redis_server.url, log=tmp_path / "w2.log", **env)
    try:
        w1.ready()
        w2.ready()
        limited = [counting_site.url(f"/limited/{i}") for i in range(4)]
        enqueue(home, redis_server.url, "--case", "SAMR-F-4", *limited)
        # Another host (the same server by another name): its own window, not held back.
        other = [f"http://localhost:{port}/other/{i}" for i in range(2)]
        enqueue(home, redis_server.url, "--case", "SAMR-F-4", *other)
        wait_for(lambda: counting_site.count("/other/") >= 2 and counting_site.count("/limited/") >= 2, "the allowed loads")
        logs = lambda: w1.text() + w2.text()  # noqa: E731
        wait_for(lambda: logs().count("over its rate limit") >= 2, "the two loads over the limit postponed")
        # Postponed, not failed: the other two load once the first minute is over.
        wait_for(lambda: logs().count("sealed as record") >= 6, "all 6 exhibits", 300)
        with counting_site.lock:
            loads = sorted(t for p, ts in counting_site.times.items() if p.startswith("/limited/") for t in ts)
        assert len(loads) == 4, counting_site.hits
        # Two loads in the host's first minute. A load counts when a worker starts it, a few seconds
        # before its request reaches the server (the browser starts first): 45 s leaves that slack.
        assert len([t for t in loads if t - loads[0] < 45]) == 2, [round(t - loads[0], 1) for t in loads]
    finally:
        w1.stop()
        w2.stop()
    assert redis_server.client.zcard("evidence:rate:127.0.0.1") <= 2


def test_network_errors_retried_with_backoff_loaded_pages_not(tmp_path, redis_server):
    home = init_home(tmp_path / "home")
    port = free_port()
    w = Worker(home, redis_server.url, log=tmp_path / "w.log", EVIDENCE_FLEET_RETRY_SECONDS="2")
    site = None
    try:
        w.ready()
        (down,) = enqueue(home, redis_server.url, "--case", "SAMR-F-5", f"http://127.0.0.1:{port}/item/late")
        wait_for(lambda: "retry 2 of 5" in w.text(), "two refused attempts, each sent again")
        site = CountingSite(port)  # the server comes up
        (loaded,) = enqueue(home, redis_server.url, "--case", "SAMR-F-5", f"http://127.0.0.1:{port}/item/loaded",
                            "--expect", "text this page never shows")
        wait_for(lambda: f"{down['key']}: http://127.0.0.1:{port}/item/late sealed as record" in w.text(), "the late page sealed")
        wait_for(lambda: f"task {loaded['key']}: failed" in w.text(), "the page without its text failed")
        # Control for the no-retry: another task after it runs, and the failed page was loaded once.
        (after,) = enqueue(home, redis_server.url, "--case", "SAMR-F-5", f"http://127.0.0.1:{port}/item/after")
        wait_for(lambda: f"{after['key']}: http://127.0.0.1:{port}/item/after sealed as record" in w.text(), "the next task")
        assert site.count("/item/loaded") == 1 and site.count("/item/late") == 1
        assert w.text().count(f"task {loaded['key']}") == 2  # capturing, failed: nothing more
    finally:
        w.stop()
        if site is not None:
            site.stop()
    assert sorted(e["url"] for e in exhibits(home)) == [f"http://127.0.0.1:{port}/item/after", f"http://127.0.0.1:{port}/item/late"]


def test_routing_a_worker_takes_only_its_queues(tmp_path, redis_server, counting_site):
    home = init_home(tmp_path / "home")
    wa = Worker(home, redis_server.url, "--queues", "region-a", log=tmp_path / "wa.log")
    try:
        wa.ready()
        (tb,) = enqueue(home, redis_server.url, "--case", "SAMR-F-6", "--queue", "region-b", counting_site.url("/b/1"))
        (ta,) = enqueue(home, redis_server.url, "--case", "SAMR-F-6", "--queue", "region-a", counting_site.url("/a/1"))
        wait_for(lambda: f"{ta['key']}: " in wa.text() and "sealed as record" in wa.text(), "the region-a task")
        (ta2,) = enqueue(home, redis_server.url, "--case", "SAMR-F-6", "--queue", "region-a", counting_site.url("/a/2"))
        wait_for(lambda: wa.text().count("sealed as record") >= 2, "a second region-a task, after the region-b one was queued")
        assert counting_site.count("/b/") == 0 and tb["key"] not in wa.text()
    finally:
        wa.stop()
    wb = Worker(home, redis_server.url, "--queues", "region-b,region-c", log=tmp_path / "wb.log")
    try:
        wb.ready()
        wait_for(lambda: f"{tb['key']}: " in wb.text() and "sealed as record" in wb.text(), "the region-b task on its worker")
    finally:
        wb.stop()
    assert counting_site.count("/b/1") == 1
    assert sorted(keys_sealed(home)) == sorted([ta["key"], ta2["key"], tb["key"]])


def test_watch_run_celery_sends_probes_a_worker_records(tmp_path, redis_server, counting_site):
    home = init_home(tmp_path / "home")
    p = cli(home, redis_server.url, "watch", "add", counting_site.url("/listing/1"), "--case", "SAMR-F-7", "--every", "5s",
            "--field", "title=h1")
    assert p.returncode == 0, p.stderr
    w = Worker(home, redis_server.url, "--queues", "probes", log=tmp_path / "w.log")
    try:
        w.ready()
        p = cli(home, redis_server.url, "watch", "run", "--engine", "celery", "--queue", "probes", "--for", "12s", "--json",
                timeout=240)
        assert p.returncode == 0, p.stderr
        info = json.loads(p.stdout)
        assert info["engine"] == "celery" and info["sent"] >= 2
        wait_for(lambda: w.text().count("probe record") >= info["sent"], "every probe task recorded")
    finally:
        w.stop()
    with Ledger.open(home) as led:
        probes = [r for r in led.records() if r.kind == "probe"]
        ex = [r for r in led.records() if r.kind == "exhibit"]
    assert len(probes) == info["sent"]
    assert probes[0].payload["events"][0]["kind"] == "first-seen" and probes[0].payload["fields"]["title"] == "listing/1"
    assert all(not r.payload["events"] for r in probes[1:])  # nothing changed: probes, no further exhibits
    assert len(ex) == 1  # the first sight's full capture
    p = cli(home, redis_server.url, "watch", "history", "1", "--json")
    assert p.returncode == 0 and json.loads(p.stdout)["probes"] == info["sent"]


def test_probe_task_delivered_twice_is_recorded_once(tmp_path, redis_server, counting_site):
    """A probe task is keyed by its watch and due time: the same task twice is one probe
    record; control: the same watch at another due time is a second probe record."""
    home = init_home(tmp_path / "home")
    p = cli(home, redis_server.url, "watch", "add", counting_site.url("/listing/2"), "--case", "SAMR-F-8",
            "--every", "1h", "--field", "title=h1")
    assert p.returncode == 0, p.stderr
    w = Worker(home, redis_server.url, "--queues", "probes", log=tmp_path / "w.log")
    app = make_app(Settings.from_env({"EVIDENCE_BROKER_URL": redis_server.url}), sender=True)
    send = lambda due: app.send_task(PROBE_TASK, queue="probes", kwargs={"watch": 1, "queue": "probes", "due": due})  # noqa: E731
    try:
        w.ready()
        send(1000.0)
        wait_for(lambda: w.text().count("probe record") >= 1, "the first probe recorded")
        send(1000.0)
        wait_for(lambda: "already recorded as record" in w.text(), "the second delivery refused")
        send(2000.0)
        wait_for(lambda: w.text().count("probe record") >= 2, "the control probe recorded")
    finally:
        w.stop()
    with Ledger.open(home) as led:
        probes = [r for r in led.records() if r.kind == "probe"]
    assert len(probes) == 2
    assert w.text().count("already recorded as record") == 1
