"""Watches end to end: real Chromium on a local listing site the test changes between probes,
real webhook receivers, signed probe records in an exported, verified case file."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "verify"))

from case_fixtures import Forger  # noqa: E402
from watch_site import Hook, Site, closed_port, item  # noqa: E402

from capture.browser import Browser  # noqa: E402
from evidence.case import export_case  # noqa: E402
from evidence.watch import (  # noqa: E402
    PROBE_OPTIONS,
    WEBHOOK_ATTEMPTS,
    WatchSpec,
    add_watches,
    deliver_due,
    evaluate,
    find_due,
    handle_outcome,
    observe,
    record_probe,
    run_probe,
    run_scheduler,
)
from ledger.canonical import canonical_json, loads  # noqa: E402
from ledger.log import Ledger  # noqa: E402
from ledger.watches import WatchStore  # noqa: E402
from verify.case import verify_case  # noqa: E402

pytestmark = pytest.mark.browser


@pytest.fixture
def site():
    s = Site()
    s.set("/item", item())
    yield s
    s.stop()


@pytest.fixture
def led(tmp_path):
    led = Ledger.init(tmp_path / "home", unencrypted=True, origin="test.example/log")
    yield led
    led.close()


def cli(home: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, EVIDENCE_HOME=str(home), COLUMNS="250")
    p = subprocess.run([sys.executable, "-m", "evidence.cli", *args], capture_output=True, text=True, env=env, timeout=timeout)
    assert "Traceback" not in p.stderr, p.stderr
    return p


@pytest.fixture
def incli(capsys, monkeypatch):
    """`evidence ...` in this process (its own entry point, exit codes and one-line errors), for speed."""
    from evidence import cli as cli_module

    def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
        capsys.readouterr()
        monkeypatch.setenv("EVIDENCE_HOME", str(home))
        monkeypatch.setenv("COLUMNS", "250")
        monkeypatch.setattr(sys, "argv", ["evidence", *args])
        with pytest.raises(SystemExit) as e:
            cli_module.main()
        got = capsys.readouterr()
        assert "Traceback" not in got.err, got.err
        return subprocess.CompletedProcess(args, int(e.value.code or 0), got.out, got.err)

    return run


def one_line_error(p: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), p.stderr
    for w in words:
        assert w in lines[0], lines[0]


class Turns:
    """One scheduler turn at a time, through the functions `watch run` calls."""

    def __init__(self, led: Ledger, browser: Browser):
        self.led, self.b, self.ws = led, browser, WatchStore(led.store)
        self.clock = time.time()

    async def turn(self, **kw):
        # Claim as if the interval had passed: the watch's next due time moves on each time.
        self.clock += 10 * 86400
        (w,) = find_due(self.ws, self.clock, 1)
        return await handle_outcome(self.led, self.ws, self.b, w, await run_probe(self.b, w, PROBE_OPTIONS), **kw)


async def _drain(ws: WatchStore, rounds: int = 200) -> None:
    for _ in range(rounds):
        await deliver_due(ws, now=time.time() + 1e6, backoff=0.001)
        if not any(e.delivery == "pending" for e in ws.events()):
            return
        await asyncio.sleep(0.01)


@pytest.mark.slow
def test_listing_lifecycle_events_exhibits_alerts_history_and_case_file(led, site, tmp_path):
    hook = Hook()
    try:
        spec = WatchSpec.build(site.url("/item"), "C-W", "1h", fields={"title": ".t", "price": ".price"},
                               keywords=["假一赔十"], price_field="price", price_below="50", webhook=hook.url("/alert"))
        (wid,) = add_watches(led, [spec])

        async def go():
            async with Browser() as b:
                t = Turns(led, b)
                outs = [await t.turn()]                      # first sight
                outs.append(await t.turn())                  # nothing changed
                site.set("/item", item(price="¥45.00"))
                outs.append(await t.turn())                  # price changed, and below the bound
                site.set("/item", item(price="¥45.00", extra="<p>假一赔十</p>"))
                outs.append(await t.turn())                  # keyword appeared
                site.set("/item", "<html><body>not here</body></html>", status=404)
                outs.append(await t.turn())                  # taken down
                await _drain(t.ws)
                return outs

        outs = asyncio.run(go())
    finally:
        hook.stop()
    kinds = [[e["kind"] for e in o.events] for o in outs]
    assert kinds[0] == ["first-seen"] and kinds[1] == [] and kinds[4] == ["removal"]
    assert kinds[2] == ["change", "rule-hit"] and "rule-hit" in kinds[3]
    change = outs[2].events[0]
    assert change["changes"] == [{"field": "price", "old": "¥99.00", "new": "¥45.00"}]
    assert outs[2].events[1] == {"kind": "rule-hit", "rule": "price-below", "field": "price", "price": "45.00",
                                 "bound": "50", "old": "99.00"}
    assert {"kind": "rule-hit", "rule": "keyword", "keyword": "假一赔十"} in outs[3].events
    assert outs[4].events[0]["reason"] == "HTTP 404"
    # Every probe is a signed record, events or not; only events have an exhibit.
    probes = list(led.records_of_kind("probe"))
    assert [p.index for p in probes] == [o.probe.index for o in outs]
    assert outs[1].exhibit_index is None and all(o.exhibit_index is not None for o in outs if o.events)
    assert probes[1].payload["events"] == [] and probes[1].payload["fields"]["price"] == "¥99.00"
    assert probes[1].payload["previous_probe"] == probes[0].index and "text" not in probes[1].payload
    ex = led.exhibit_record(outs[2].exhibit_index)
    with led.artifacts.open(ex.payload["manifest"]["sha256"]) as f:
        info = loads(f.read())["info"]
    assert info["watch"]["id"] == wid and info["watch"]["probe_index"] == outs[2].probe.index
    assert info["watch"]["probe_leaf"] == outs[2].probe.leaf.hex() and info["watch"]["events"] == outs[2].events
    # One alert per event, each naming its probe and exhibit.
    sent = [(b["kind"], b["probe_index"], b["exhibit_index"]) for b in hook.received]
    want = [(e["kind"], o.probe.index, o.exhibit_index) for o in outs for e in o.events]
    assert sorted(sent) == sorted(want)
    assert {e.delivery for e in WatchStore(led.store).events()} == {"delivered"}

    home = led.home.root
    h = json.loads(cli(home, "watch", "history", str(wid), "--json").stdout)
    assert [e["kind"] for e in h["timeline"]] == [k for ks in kinds for k in ks]
    assert h["probes"] == 5 and h["last_status"] == 404 and h["unverified"] == []
    assert [e["exhibit_index"] for e in h["timeline"]][:1] == [outs[0].exhibit_index]
    by_url = json.loads(cli(home, "watch", "history", site.url("/item"), "--json").stdout)
    assert by_url["timeline"] == h["timeline"]
    recent = json.loads(cli(home, "watch", "events", "--since", "1h", "--json").stdout)["events"]
    assert len(recent) == len(want)
    future = json.loads(cli(home, "watch", "events", "--since", "2099-01-01T00:00:00Z", "--json").stdout)["events"]
    assert future == []  # control: --since does filter

    # The case file carries the probe records, and the verifier checks them like any record.
    out = tmp_path / "case.wacz"
    export_case(led, "C-W", out)
    trust = list(led.config.trusted_vkeys)
    res = verify_case(out, trust=trust)
    assert res.ok and res.complete and res.verdict().startswith("VALID"), res.first_failure
    in_case = {i for i in Forger(out).records() if Forger(out).record(i)["kind"] == "probe"}
    assert in_case == {p.index for p in probes}

    def record_failures(path, idx):
        return [c for c in verify_case(path, trust=trust).checks if not c.ok and f"record-{idx}." in f"{c.where} {c.detail}"
                or not c.ok and f"record {idx}" in f"{c.where} {c.detail}"]

    same = tmp_path / "same.wacz"
    Forger(out).write(same)  # control: the forger's re-serialisation alone fails no check of that record
    assert record_failures(same, probes[2].index) == []

    forged = tmp_path / "forged.wacz"
    f = Forger(out)
    rec = f.record(probes[2].index)
    rec["payload"]["fields"]["price"] = "¥99.00"  # "the price never dropped"
    rec["payload"]["events"] = []
    f.put(f"evidence/record-{probes[2].index}.json", canonical_json(rec))  # as a careful forger writes it
    f.write(forged)
    bad = verify_case(forged, trust=trust)
    assert not bad.ok and bad.exit_code() == 1
    assert "record-signature" in {c.name for c in record_failures(forged, probes[2].index)}, [c for c in bad.checks if not c.ok]


def test_redirect_to_a_takedown_page_is_a_removal_and_a_plain_redirect_is_not(led, site):
    site.set("/offline", "<html><body><div>很抱歉，该商品已下架</div></body></html>")
    site.set("/other", item(title="好货 A"))
    site.redirect("/a", "/offline")
    site.redirect("/b", "/other")
    site.set("/c", "<html><body>店铺休息中 SOLD-OUT-FOREVER</body></html>")
    specs = [WatchSpec.build(site.url(p), "C-R", "1h", fields={"title": ".t"}, removed_markers=m)
             for p, m in (("/a", ()), ("/b", ()), ("/c", ("SOLD-OUT-FOREVER",)), ("/item", ("SOLD-OUT-FOREVER",)))]
    add_watches(led, specs)
    ws = WatchStore(led.store)
    watches = ws.all()

    async def go():
        async with Browser() as b:
            return [await run_probe(b, w, PROBE_OPTIONS) for w in watches]

    results = asyncio.run(go())
    seen = [observe(w, r) for w, r in zip(watches, results)]
    assert seen[0]["removed"].startswith("marker '商品已下架' after a redirect to") and seen[0]["status"] == 200
    assert seen[1]["removed"] is None and results[1].redirects == [site.url("/b")]  # control: a redirect alone
    assert seen[2]["removed"] == "marker 'SOLD-OUT-FOREVER'"
    assert seen[3]["removed"] is None  # control: the custom marker is not on the live page
    # Removed, then removed again: one removal event, not one per probe.
    assert [e["kind"] for e in evaluate(watches[2], seen[2], {**seen[2], "removed": None})] == ["removal"]
    assert evaluate(watches[2], seen[2], seen[2]) == []


def test_webhook_retried_with_backoff_and_given_up_when_dead(led, site):
    flaky, good = Hook(fail_first=2), Hook()
    dead = f"http://127.0.0.1:{closed_port()}/alert"
    try:
        specs = [WatchSpec.build(site.url("/item"), "C-H", "1h", webhook=u) for u in (flaky.url("/a"), good.url("/a"), dead)]
        add_watches(led, specs)
        ws = WatchStore(led.store)
        logged: list[str] = []

        async def go():
            async with Browser() as b:
                for w in ws.all():
                    rec, events, _ = record_probe(led, ws, w, await run_probe(b, w, PROBE_OPTIONS))
                    assert [e["kind"] for e in events] == ["first-seen"]
                    assert [e.delivery for e in ws.events(watch_id=w.id)] == ["waiting"]  # not before its capture
                    ws.captured_in(None, rec.index, None, now=time.time(), error="no exhibit: test")
            for _ in range(400):
                await deliver_due(ws, now=time.time() + 1e6, backoff=0.001, log=logged.append)
                if not any(e.delivery == "pending" for e in ws.events()):
                    break
                await asyncio.sleep(0.005)

        asyncio.run(go())
    finally:
        flaky.stop()
        good.stop()
    ev = {e.webhook: e for e in ws.events()}
    assert ev[flaky.url("/a")].delivery == "delivered" and ev[flaky.url("/a")].attempts == 3
    assert [b["event"] for b in flaky.received] == [ev[flaky.url("/a")].id] * 3  # the same alert, again
    assert ev[good.url("/a")].attempts == 1 and len(good.received) == 1  # control
    assert ev[dead].delivery == "failed" and ev[dead].attempts == WEBHOOK_ATTEMPTS
    assert "Connection refused" in ev[dead].error or "refused" in ev[dead].error
    assert sum("giving up" in m for m in logged) == 1 and sum("HTTP 500" in m for m in logged) == 2


@pytest.mark.slow
def test_a_webhook_that_never_answers_does_not_hold_up_probing(led, site):
    hook = Hook(hold=True)
    try:
        add_watches(led, [WatchSpec.build(site.url("/item"), "C-B", "5s", webhook=hook.url("/a"))])
        outcomes, log = [], []
        stop = asyncio.Event()

        def seen(o):
            outcomes.append((o, len(hook.received)))
            if len(outcomes) >= 3:
                stop.set()

        stats = asyncio.run(run_scheduler(led, duration=90, concurrency=1, log=log.append, stop=stop, on_outcome=seen))
    finally:
        hook.stop()
    assert stats.probes >= 3 and [e["kind"] for e in outcomes[0][0].events] == ["first-seen"]
    # The alert was on its way (the receiver held it, unanswered) while later probes went on.
    assert outcomes[-1][1] >= 1
    (ev,) = WatchStore(led.store).events()
    assert ev.delivery == "pending" and ev.exhibit_idx is not None


def test_watch_cli_rejects_bad_input_in_one_line_and_adds_nothing(led, tmp_path, incli):
    cli = incli
    home = led.home.root
    url = "http://127.0.0.1:9/item"
    cases = [
        (["ftp://shop.example/1", "--case", "C", "--every", "10m"], "http:// or https://"),
        ([url, "--case", "C", "--every", "10 minutes"], "--every"),
        ([url, "--case", "C", "--every", "0s"], "--every"),
        ([url, "--case", "C", "--every", "10m", "--field", "price"], "NAME=CSS"),
        ([url, "--case", "C", "--every", "10m", "--field", "p=div[["], "not a valid CSS selector"),
        ([url, "--case", "C", "--every", "10m", "--field", "p=.p", "--price-field", "p"], "go together"),
        ([url, "--case", "C", "--every", "10m", "--field", "p=.p", "--price-field", "q", "--price-below", "5"], "not one of"),
        ([url, "--case", "C", "--every", "10m", "--field", "p=.p", "--price-field", "p", "--price-below", "cheap"], "positive number"),
        ([url, "--case", "C", "--every", "10m", "--webhook", "file:///etc/passwd"], "--webhook"),
        ([url, "--case", "C", "--every", "10m", "--device", "Nokia 3310 Imaginary"], "unknown device"),
    ]
    for args, words in cases:
        one_line_error(cli(home, "watch", "add", *args), 2, words)
    assert json.loads(cli(home, "watch", "list", "--json").stdout)["watches"] == []
    one_line_error(cli(home, "watch", "remove", "7"), 2, "no watch 7")
    one_line_error(cli(home, "watch", "run", "--for", "soon"), 2, "--for")
    one_line_error(cli(home, "watch", "events", "--since", "yesterday-ish"), 2, "--since")
    ok = cli(home, "watch", "add", url, "--case", "C", "--every", "10m", "--field", "p=div.price > span:first-child", "--json")
    assert ok.returncode == 0, ok.stderr  # control: the same command, well formed
    assert [w["url"] for w in json.loads(cli(home, "watch", "list", "--json").stdout)["watches"]] == [url]


@pytest.mark.slow
def test_import_thousands_of_rows_all_or_nothing(led, tmp_path, incli):
    cli = incli
    home = led.home.root
    rows = ["url,case,every,fields,keywords,price_field,price_below"]
    rows += [f"https://shop.example/item/{i},C-I,10m,title=h1;price=.price,假货;高仿,price,50" for i in range(3000)]
    good = tmp_path / "watches.csv"
    good.write_text("\n".join(rows) + "\n", "utf-8")
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(rows[:2001] + ["https://shop.example/x,C-I,ten minutes,title=h1,,,"] + rows[2001:]) + "\n", "utf-8")
    one_line_error(cli(home, "watch", "import", str(bad)), 2, "line 2002", "--every")
    bad_sel = tmp_path / "bad-sel.jsonl"
    lines = [json.dumps({"url": f"https://shop.example/j/{i}", "case": "C-J", "every": "1h", "fields": {"t": "h1"}}) for i in range(500)]
    lines[321] = json.dumps({"url": "https://shop.example/j/x", "case": "C-J", "every": "1h", "fields": {"t": "h1 >>> ["}})
    bad_sel.write_text("\n".join(lines) + "\n", "utf-8")
    one_line_error(cli(home, "watch", "import", str(bad_sel)), 2, "line 322", "not a valid CSS selector")
    not_http = tmp_path / "not-http.jsonl"
    not_http.write_text(json.dumps({"url": "javascript:alert(1)", "case": "C", "every": "1h"}) + "\n", "utf-8")
    one_line_error(cli(home, "watch", "import", str(not_http)), 2, "line 1", "http://")
    assert WatchStore(led.store).count() == 0  # nothing from any bad file
    p = cli(home, "watch", "import", str(good), "--json")
    assert p.returncode == 0, p.stderr  # control: the same rows without the bad one
    assert json.loads(p.stdout)["imported"] == 3000
    ws = WatchStore(led.store).all()
    assert len(ws) == 3000 and ws[7].settings["fields"] == {"title": "h1", "price": ".price"}
    assert ws[7].settings["keywords"] == ["假货", "高仿"] and ws[7].settings["price_below"] == "50"
    # First probes spread over part of the interval, not all at one instant.
    assert len({round(w.next_due, 3) for w in ws}) > 2900
    p = cli(home, "watch", "import", str(good), "--json")
    assert WatchStore(led.store).count() == 6000  # an import adds; it does not dedupe silently


@pytest.mark.slow
def test_scheduler_survives_kill_and_restart(led, site):
    home = led.home.root
    site.set("/other", item(title="好货 B"))
    for path in ("/item", "/other"):
        assert cli(home, "watch", "add", site.url(path), "--case", "C-K", "--every", "1h", "--field", "t=.t").returncode == 0
    env = dict(os.environ, EVIDENCE_HOME=str(home))
    proc = subprocess.Popen([sys.executable, "-m", "evidence.cli", "watch", "run"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            with _open(home) as l2:
                if sum(1 for _r in l2.records_of_kind("exhibit")) >= 2:
                    break
            time.sleep(0.2)
        else:
            pytest.fail("the scheduler sealed no first-sight exhibits")
    finally:
        proc.kill()  # SIGKILL: no clean shutdown
        proc.wait(30)
    before = time.time()
    listed = json.loads(cli(home, "watch", "list", "--json").stdout)["watches"]
    assert all(w["next_due"] > before + 3000 for w in listed)  # the next probe is an hour on, in the database
    size = led.size()
    again = json.loads(cli(home, "watch", "run", "--for", "6s", "--json").stdout)
    assert again["probes"] == 0 and led.size() == size  # nothing due: nothing probed twice after the restart
    assert cli(home, "watch", "resume", "1").returncode == 0
    assert cli(home, "watch", "resume", "2").returncode == 0
    assert cli(home, "watch", "pause", "2").returncode == 0
    ran = json.loads(cli(home, "watch", "run", "--for", "15s", "--json").stdout)
    assert ran["probes"] == 1 and ran["events"] == 0  # control: due again, probed; its last state survived
    newest = list(led.records_of_kind("probe"))[-1]
    assert newest.payload["watch"] == 1 and newest.payload["events"] == []


class _open:
    def __init__(self, home):
        self.led = Ledger.open(home)

    def __enter__(self):
        return self.led

    def __exit__(self, *a):
        self.led.close()


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_two_schedulers_never_claim_the_same_watch(tmp_path, db, request):
    import threading

    url = f"sqlite:///{tmp_path / 'l.db'}" if db == "sqlite" else request.getfixturevalue("pg_url")
    led = Ledger.init(tmp_path / "h", unencrypted=True, db_url=url)
    try:
        add_watches(led, [WatchSpec.build(f"https://shop.example/{i}", "C", "1h") for i in range(400)])
        ws = WatchStore(led.store)
        got: list[list[int]] = [[], []]

        def claim(k):
            while True:
                batch = find_due(ws, time.time(), 7)
                if not batch:
                    return
                got[k].extend(w.id for w in batch)

        ts = [threading.Thread(target=claim, args=(k,)) for k in (0, 1)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert not set(got[0]) & set(got[1]) and len(got[0]) + len(got[1]) == 400
        assert find_due(ws, time.time(), 10) == []  # control: all moved an interval on
        assert len(find_due(ws, time.time() + 4000, 1000)) == 400
    finally:
        led.close()


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_watch_tables_match_their_migration(tmp_path, db, request):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from ledger import migrations
    from ledger.store import metadata

    url = f"sqlite:///{tmp_path / 'l.db'}" if db == "sqlite" else request.getfixturevalue("pg_url")
    led = Ledger.init(tmp_path / "h", unencrypted=True, db_url=url)
    try:
        with led.store.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
            assert migrations.read_status(conn).current == migrations.HEAD >= "0004"
        ours = [d for d in diff if "watch" in repr(d)]
        assert ours == []
        assert {"watches", "watch_events"} <= set(metadata.tables)  # control: they are in the models compared
    finally:
        led.close()
