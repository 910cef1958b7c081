"""The capture fleet on Celery: workers on many machines take capture and probe tasks
from a broker (Redis, or RabbitMQ by the same URL form) and seal into one ledger.

    settings = Settings.from_env()                     # EVIDENCE_BROKER_URL, EVIDENCE_HOST_RATE, ...
    sent = enqueue(led, settings, ["https://shop.example/item/1"], case="SAMR-2026-017", queue="south")
    run_worker(settings, queues=["south"], concurrency=2)     # `evidence worker --engine celery`
    run_scheduler(led, settings, duration=3600)               # `evidence watch run --engine celery`

What the database queue guarantees (``ledger.queue``) holds here too:

- A URL queued once is sealed once. Tasks are acknowledged late (after they
  ran) and given back when their worker dies, so a worker killed mid-capture
  leaves its task to another worker; each queued URL carries an idempotency
  key that is checked under the tree lock, in the transaction that appends
  the exhibit (``Store.append_many(seal_key=...)``), so a task delivered
  twice (a worker died after sealing but before acknowledging, or a Redis
  visibility timeout ran out during a long capture) seals nothing twice.
- At most N page loads per minute per host across all workers
  (``EVIDENCE_HOST_RATE``): a sliding window in Redis, one Lua script timed by
  the Redis server's clock. A task over the limit is sent again for later.
- Network errors (nothing loaded: refused, unreachable, timed out) are
  retried with exponential backoff; a page that loaded is never retried (a
  missing ``--expect`` text fails at once, as in ``evidence worker``).
- Tasks go to named queues; a worker takes only the queues it serves.

Probes: ``watch run --engine celery`` claims due watches on the same schedule
table as the embedded scheduler (``evidence.watch.find_due``) and sends one
probe task each; a worker probes with ``run_probe`` and records with
``handle_outcome``, exactly as the embedded scheduler does. A probe is not
retried: the watch's next interval is its retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select

from capture.browser import Browser
from capture.network import UNREACHABLE
from capture.options import CaptureOptions, check_url
from capture.page import _check_case, capture_to_dir, preflight
from ledger.display import printable
from ledger.errors import (
    CaptureError,
    ConfigError,
    EnvironmentProblem,
    EvidenceError,
    ExpectationFailed,
    KeyFileError,
    StoreError,
    UsageError,
)
from ledger.log import Ledger
from ledger.sessions import LoginSession, SessionStore
from ledger.store import AlreadySealed, Store, seal_keys
from ledger.watches import Watch, WatchStore

from .watch import (
    _options_for,
    capture_settings,
    deliver_due,
    find_due,
    handle_outcome,
    percentile,
    run_probe,
)

ENV_BROKER = "EVIDENCE_BROKER_URL"
ENV_RATE = "EVIDENCE_HOST_RATE"
ENV_RATE_URL = "EVIDENCE_RATE_URL"
ENV_VISIBILITY = "EVIDENCE_BROKER_VISIBILITY_TIMEOUT"
ENV_RETRY = "EVIDENCE_FLEET_RETRY_SECONDS"
ENV_MAX_RETRIES = "EVIDENCE_FLEET_MAX_RETRIES"
#: a platform answers a few loads a second from one office without noticing; sixty a minute per host
DEFAULT_RATE = "60/m"
DEFAULT_QUEUE = "evidence"
CAPTURE_TASK = "evidence.capture"
PROBE_TASK = "evidence.probe"
#: seconds to reach the broker before `enqueue` / `watch run` say it is unreachable
BROKER_TIMEOUT = 5.0
#: Redis gives an unacknowledged task to another worker after this long: longer than any capture
DEFAULT_VISIBILITY = 3600.0
RETRY_CAP = 600.0
_QUEUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_RATE = re.compile(r"(\d{1,7})/(\d{0,5})([smh])")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_SCHEMES = ("redis", "rediss", "amqp", "amqps", "pyamqp")

Log = Callable[[str], None]


@dataclass(frozen=True)
class Rate:
    """At most ``limit`` page loads per ``per`` seconds per host."""

    limit: int
    per: float

    @classmethod
    def parse(cls, value: str) -> Rate | None:
        """``60/m``, ``2/10s``, ``1000/h``; ``off`` (or ``0``) for none."""
        v = value.strip().lower()
        if v in ("off", "0", "none"):
            return None
        m = _RATE.fullmatch(v)
        if not m or int(m.group(1)) < 1:
            raise UsageError(f"{ENV_RATE} must be loads per time such as 60/m, 2/10s or 1000/h (or off), not {value!r}")
        return cls(int(m.group(1)), float(m.group(2) or 1) * _UNITS[m.group(3)])


@dataclass(frozen=True)
class Settings:
    broker: str
    rate: Rate | None
    rate_url: str | None  # the Redis that keeps the rate windows
    visibility: float
    retry_base: float
    max_retries: int
    signer: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        broker = (env.get(ENV_BROKER) or "").strip()
        if not broker:
            raise UsageError(f"--engine celery needs the broker: set {ENV_BROKER} (redis://host:6379/0 or amqp://host//)")
        scheme = urlsplit(broker).scheme.lower()
        if scheme not in _SCHEMES:
            raise UsageError(f"{ENV_BROKER} must be a redis:// or amqp:// URL, not {safe_url(broker)!r}")
        rate = Rate.parse(env.get(ENV_RATE) or DEFAULT_RATE)
        rate_url = (env.get(ENV_RATE_URL) or "").strip() or (broker if scheme.startswith("redis") else None)
        if rate is not None and rate_url is None:
            raise UsageError(f"the per-host rate limit is kept in Redis: set {ENV_RATE_URL}=redis://... "
                             f"(the broker is {scheme}), or {ENV_RATE}=off")
        return cls(broker, rate, rate_url, _number(env, ENV_VISIBILITY, DEFAULT_VISIBILITY, 5),
                   _number(env, ENV_RETRY, 10.0, 0.1), int(_number(env, ENV_MAX_RETRIES, 5, 0)))


def _number(env: Mapping[str, str], name: str, default: float, low: float) -> float:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        v = float(raw)
    except ValueError:
        v = float("nan")
    if not v >= low:  # also NaN
        raise UsageError(f"{name} must be a number of at least {low:g}, not {raw!r}")
    return v


def safe_url(url: str) -> str:
    """The broker URL without its password, for messages."""
    from kombu.utils.url import maybe_sanitize_url

    return str(maybe_sanitize_url(url))


def check_queue(name: str) -> str:
    if not isinstance(name, str) or not _QUEUE.fullmatch(name):
        raise UsageError(f"a queue name is 1 to 64 letters, digits, '.', '_' or '-', not {name!r}")
    return name


def make_app(settings: Settings, *, sender: bool) -> Any:
    """The Celery app of the fleet. ``sender``: fail fast when the broker is away
    (enqueue, scheduler); a worker keeps reconnecting once it has started."""
    from celery import Celery

    app = Celery("evidence", broker=settings.broker, set_as_current=False)
    transport: dict[str, Any] = {"visibility_timeout": settings.visibility, "socket_connect_timeout": BROKER_TIMEOUT}
    if sender:
        # A broker that accepts the connection and then says nothing must not hang `enqueue`.
        transport["socket_timeout"] = BROKER_TIMEOUT
        transport["max_retries"] = 0
    app.conf.update(
        task_acks_late=True,  # acknowledged after the task ran, not when it was received
        task_reject_on_worker_lost=True,  # a task whose worker process died goes back to the queue
        worker_prefetch_multiplier=1,  # a worker holds no more tasks than it runs
        task_default_queue=DEFAULT_QUEUE,
        task_create_missing_queues=True,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,  # outcomes are in the ledger (records, seal keys) and the worker's log
        broker_transport_options=transport,
        broker_connection_timeout=BROKER_TIMEOUT,
        broker_connection_retry=not sender,
        broker_connection_retry_on_startup=False,
        broker_connection_max_retries=None if not sender else 0,
        worker_redirect_stdouts=False,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        enable_utc=True,
    )
    return app


def _connect(app: Any, settings: Settings) -> Any:
    """An open broker connection, or EnvironmentProblem naming the broker (exit 3)."""
    conn = app.connection_for_write()
    try:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=BROKER_TIMEOUT)
        # Redis accepts a connection before it answers: one round trip proves it is a broker.
        _ = conn.default_channel
    except Exception as e:  # noqa: BLE001 - kombu, redis-py and amqp each raise their own
        conn.release()
        raise EnvironmentProblem(f"cannot reach the broker {safe_url(settings.broker)}: {_why(e)}; nothing was queued") from None
    return conn


def _why(e: BaseException) -> str:
    s = str(e).strip().splitlines()
    return s[0].rstrip(".") if s else type(e).__name__


# -- sending work ---------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    url: str
    key: str
    task: str
    queue: str

    def to_json(self) -> dict[str, str]:
        return {"url": self.url, "key": self.key, "task": self.task, "queue": self.queue}


def check_jobs(led: Ledger, urls: list[str], case: str, options: dict[str, Any]) -> tuple[str, list[str], dict[str, Any]]:
    """What `evidence enqueue` checks before queuing, on the broker as in the database."""
    case = _check_case(case)
    checked = [check_url(u) for u in urls]
    if not checked:
        raise UsageError("nothing to enqueue: give a URL or --urls FILE")
    if isinstance(options.get("session"), str):
        # Unlocked now, so a missing session or wrong passphrase is found before anything is queued.
        options = {**options, "session": SessionStore.of_home(led.home.root).load(options["session"])}
    CaptureOptions.from_kwargs(options)
    opts = {k: list(v) if k == "expect" else v for k, v in options.items()}
    if isinstance(opts.get("session"), LoginSession):
        opts["session"] = opts["session"].name  # a task names its session; the worker's home holds it
    return case, checked, opts


def enqueue(
    led: Ledger, settings: Settings, urls: list[str], *, case: str, operator: str | None = None,
    note: str | None = None, queue: str = DEFAULT_QUEUE, options: dict[str, Any] | None = None,
) -> list[Sent]:
    """Check, then send one capture task per URL, each with its own idempotency key."""
    queue = check_queue(queue)
    case, checked, opts = check_jobs(led, urls, case, dict(options or {}))
    app = make_app(settings, sender=True)
    sent: list[Sent] = []
    conn = _connect(app, settings)
    try:
        with app.producer_or_acquire() as producer:
            for u in checked:
                key = uuid.uuid4().hex
                kw = {"url": u, "case": case, "operator": operator, "note": note, "options": opts,
                      "key": key, "queue": queue, "net_tries": 0}
                try:
                    r = app.send_task(CAPTURE_TASK, kwargs=kw, queue=queue, producer=producer, retry=False)
                except Exception as e:  # noqa: BLE001 - the broker went away mid-way
                    # Not sent again: a publish that reached the broker would queue twice.
                    done = f"{len(sent)} of {len(checked)} queued ({', '.join(s.key for s in sent)})" if sent else "nothing was queued"
                    raise EnvironmentProblem(f"lost the broker {safe_url(settings.broker)}: {_why(e)}; {done}") from None
                sent.append(Sent(u, key, r.id, queue))
    finally:
        conn.release()
    return sent


def sealed_index(store: Store, key: str) -> int | None:
    """The record a seal key was sealed as, or None."""
    with store.engine.connect() as conn:
        r = conn.execute(select(seal_keys.c.record_idx).where(seal_keys.c.key == key)).scalar()
    return None if r is None else int(r)


# -- the per-host rate limit ---------------------------------------------------

# Sliding window log per host: the loads of the last window as a sorted set, timed
# by the Redis server (the workers' clocks may disagree). Returns 0 if this load
# may go now (and counts it), else the milliseconds until the oldest one leaves.
_WINDOW_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now)
"""


class HostLimiter:
    def __init__(self, rate: Rate | None, url: str | None):
        self.rate = rate
        self._script: Any = None
        if rate is not None and url is not None:
            import redis

            client = redis.Redis.from_url(url, socket_connect_timeout=BROKER_TIMEOUT, socket_timeout=BROKER_TIMEOUT)
            self._script = client.register_script(_WINDOW_LUA)

    def take(self, url: str) -> float:
        """0 if a page of ``url``'s host may load now (counted), else seconds to wait."""
        if self.rate is None or self._script is None:
            return 0.0
        host = (urlsplit(url).hostname or "").lower()
        try:
            ms = self._script(keys=[f"evidence:rate:{host}"],
                              args=[self.rate.limit, int(self.rate.per * 1000), uuid.uuid4().hex])
        except Exception as e:  # noqa: BLE001 - redis-py's errors; the limit must hold, so wait
            raise EnvironmentProblem(f"the rate limit store is unreachable: {_why(e)}") from None
        return float(ms) / 1000.0


# -- the worker side ---------------------------------------------------------------


def is_network_error(e: BaseException) -> bool:
    """A capture error meaning nothing loaded (refused, unreachable, timed out): worth a retry."""
    if not isinstance(e, CaptureError):
        return False
    msg = str(e)
    if "nothing was recorded" in msg or "did not finish within" in msg:
        return True
    if any(code in msg for code in UNREACHABLE):
        return True
    cause = e.__cause__
    return isinstance(cause, (TimeoutError, ConnectionError))


def backoff(tries: int, base: float) -> float:
    """Seconds before network retry ``tries`` (1, 2, ...): base doubling, capped, jittered."""
    return min(RETRY_CAP, base * 2 ** (tries - 1)) * random.uniform(0.8, 1.2)


def say(message: str) -> None:
    # One line per event on the worker's stderr (UTC time, process), outside strings escaped.
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    sys.stderr.write(f"{stamp} [{os.getpid()}] {printable(message)}\n")
    sys.stderr.flush()


@dataclass
class _Runtime:
    """What one worker process keeps between tasks: its ledger, and for probes a browser
    on its own event loop (opened after the fork, in the process that uses them)."""

    settings: Settings
    pid: int = -1
    led: Ledger | None = None
    limiter: HostLimiter | None = None
    loop: asyncio.AbstractEventLoop | None = None
    browser: Browser | None = None
    defaults: dict[str, Any] = field(default_factory=dict)
    opts_of: Any = None

    def ledger(self) -> Ledger:
        if self.pid != os.getpid() or self.led is None:
            self.pid = os.getpid()
            self.led = Ledger.open()
            if self.settings.signer:
                self.led.use_signer(self.settings.signer)
            self.limiter = HostLimiter(self.settings.rate, self.settings.rate_url)
            self.defaults = capture_settings(self.led)
            self.opts_of = _options_for(self.led, self.defaults)
            self.loop, self.browser = asyncio.new_event_loop(), None
        return self.led

    def close(self) -> None:
        """At the worker process's exit: its browser (and Chromium with it), its ledger."""
        if self.pid != os.getpid():
            return  # inherited through the fork: the parent's to close
        with contextlib.suppress(Exception):
            if self.browser is not None and self.loop is not None:
                self.loop.run_until_complete(self.browser.__aexit__(None, None, None))
        self.browser = None
        if self.led is not None:
            self.led.close()
            self.led = None

    async def page_browser(self) -> Browser:
        if self.browser is None or not self.browser.browser.is_connected():
            if self.browser is not None:
                await self.browser.__aexit__(None, None, None)
            self.browser = await Browser().__aenter__()
        return self.browser


def _again(task: Any, kw: dict[str, Any], countdown: float) -> None:
    """Send the task again for later (same key, same queue); this delivery is then acknowledged."""
    task.app.send_task(task.name, kwargs=kw, queue=kw.get("queue") or DEFAULT_QUEUE, countdown=max(0.0, countdown))


def capture_task(rt: _Runtime, task: Any, kw: dict[str, Any]) -> dict[str, Any]:
    """Capture one queued URL and seal it once (the body of the Celery task)."""
    led = rt.ledger()
    url, key, tries = kw["url"], kw["key"], int(kw.get("net_tries") or 0)
    worker = task.request.hostname or socket.gethostname()
    redelivered = bool((task.request.delivery_info or {}).get("redelivered"))
    # A cheap look first: a task sealed before it was delivered again loads nothing.
    done = sealed_index(led.store, key)
    if done is not None:
        say(f"task {key}: {url} already sealed as record {done}")
        return {"state": "already-sealed", "record": done, "key": key}
    assert rt.limiter is not None
    try:
        wait = rt.limiter.take(url)
    except EnvironmentProblem as e:
        # Loading without the limit could break it for every worker: later, not now.
        _again(task, kw, backoff(1, rt.settings.retry_base))
        say(f"task {key}: {e}; sent again for later")
        return {"state": "retry", "key": key}
    if wait > 0:
        _again(task, kw, wait + random.uniform(0, 0.5))
        say(f"task {key}: {url}: host over its rate limit, again in {wait:.1f} s")
        return {"state": "rate-limited", "key": key, "wait": wait}
    say(f"task {key}: capturing {url}" + (" (delivered again)" if redelivered else ""))
    try:
        with tempfile.TemporaryDirectory(prefix="evidence-fleet-") as tmp:
            options = {**rt.defaults, **(kw.get("options") or {})}
            if isinstance(options.get("session"), str):
                options["session"] = SessionStore.of_home(led.home.root).load(options["session"])
            pc = capture_to_dir(url, Path(tmp), case=kw["case"], operator=kw.get("operator"), note=kw.get("note"), **options)
            info = dict(pc.info)
            info["fleet_task"] = {"key": key, "task": task.request.id, "worker": worker, "queue": kw.get("queue"),
                                  "network_retries": tries, "redelivered": redelivered}
            ex = led.seal_exhibit(kw["case"], pc.artifacts, info, seal_key=key)
    except AlreadySealed as e:
        # Another delivery of this task sealed first, under the same lock: nothing appended.
        say(f"task {key}: {url} already sealed as record {e.index}; this capture was dropped")
        return {"state": "already-sealed", "record": e.index, "key": key}
    except CaptureError as e:
        if is_network_error(e) and tries < rt.settings.max_retries:
            wait = backoff(tries + 1, rt.settings.retry_base)
            _again(task, {**kw, "net_tries": tries + 1}, wait)
            say(f"task {key}: {e}; retry {tries + 1} of {rt.settings.max_retries} in {wait:.1f} s")
            return {"state": "retry", "key": key, "wait": wait}
        say(f"task {key}: failed: {e}")
        return {"state": "failed", "key": key, "error": str(e)}
    except StoreError as e:
        # The ledger is away: the key makes sending it again safe.
        wait = backoff(tries + 1, rt.settings.retry_base)
        _again(task, {**kw, "net_tries": tries}, wait)
        say(f"task {key}: not sealed: {e}; again in {wait:.1f} s")
        return {"state": "retry", "key": key, "wait": wait}
    except (UsageError, ExpectationFailed, ConfigError, KeyFileError, EvidenceError) as e:
        # The page loaded (or the task is unusable): loading it again would give the same.
        say(f"task {key}: failed: {e}")
        return {"state": "failed", "key": key, "error": str(e)}
    say(f"task {key}: {url} sealed as record {ex.index}")
    return {"state": "sealed", "record": ex.index, "key": key}


def probe_task(rt: _Runtime, task: Any, kw: dict[str, Any]) -> dict[str, Any]:
    """Probe one watch and record it as the embedded scheduler does."""
    led = rt.ledger()
    ws = WatchStore(led.store)
    wid = int(kw["watch"])
    w = ws.get(wid)
    if w is None or w.state != "active":
        say(f"watch {wid}: {'removed' if w is None else w.state}; probe skipped")
        return {"state": "skipped", "watch": wid}
    assert rt.limiter is not None and rt.loop is not None
    wait = rt.limiter.take(w.url)
    if wait > 0:
        _again(task, kw, wait + random.uniform(0, 0.5))
        say(f"watch {wid}: host over its rate limit, probe again in {wait:.1f} s")
        return {"state": "rate-limited", "watch": wid, "wait": wait}
    webhook = led.config.extra.get("watch_webhook")

    async def go(watch: Watch) -> Any:
        popts, full = rt.opts_of(watch)
        browser = await rt.page_browser()
        result = await run_probe(browser, watch, popts)
        return await handle_outcome(led, ws, browser, watch, result, capture_options=full, webhook=webhook,
                                    seal_key=key)

    # One probe per watch and due time: a task delivered twice is recorded once.
    key = f"probe:{wid}:{kw['due']!r}" if kw.get("due") is not None else None
    try:
        out = rt.loop.run_until_complete(go(w))
    except AlreadySealed as e:
        say(f"watch {wid}: this probe was already recorded as record {e.index}")
        return {"state": "already-sealed", "watch": wid, "probe": e.index}
    except (CaptureError, UsageError, ConfigError, KeyFileError) as e:
        ws.note_error(wid, str(e))
        say(f"watch {wid}: {e}")
        return {"state": "failed", "watch": wid, "error": str(e)}
    kinds = ", ".join(e["kind"] for e in out.events)
    say(f"watch {wid}: probe record {out.probe.index}" + (f" ({kinds})" if kinds else "")
        + (f", exhibit record {out.exhibit_index}" if out.exhibit_index is not None else ""))
    return {"state": "probed", "watch": wid, "probe": out.probe.index, "exhibit": out.exhibit_index}


def worker_app(settings: Settings) -> Any:
    app = make_app(settings, sender=False)
    rt = _Runtime(settings)

    @app.task(name=CAPTURE_TASK, bind=True)
    def capture(self: Any, **kw: Any) -> dict[str, Any]:
        return capture_task(rt, self, kw)

    @app.task(name=PROBE_TASK, bind=True)
    def probe(self: Any, **kw: Any) -> dict[str, Any]:
        return probe_task(rt, self, kw)

    from celery.signals import worker_process_shutdown

    worker_process_shutdown.connect(lambda **_: rt.close(), weak=False)
    return app


def run_worker(settings: Settings, *, queues: Iterable[str] = (DEFAULT_QUEUE,), concurrency: int = 1) -> int:
    """Run a Celery worker in the foreground (prefork, ``concurrency`` processes); its exit code."""
    qs = [check_queue(q) for q in queues]
    if not qs:
        raise UsageError("--queues needs at least one queue name")
    if not 1 <= concurrency <= 64:
        raise UsageError(f"--concurrency must be between 1 and 64, not {concurrency}")
    # Fail now (key, registration, store, broker), not in every task.
    led = Ledger.open()
    try:
        if settings.signer:
            led.use_signer(settings.signer)
        preflight(led)
    finally:
        led.close()
    HostLimiter(settings.rate, settings.rate_url)  # a bad EVIDENCE_RATE_URL fails here
    app = worker_app(settings)
    _connect(app, settings).release()
    w = app.Worker(
        queues=qs, concurrency=concurrency, pool="prefork", loglevel="WARNING", quiet=True,
        hostname=f"evidence-{os.getpid()}@{socket.gethostname()}",
        without_mingle=True, without_gossip=True, optimization="fair",
    )
    say(f"fleet worker {w.hostname}: queues {', '.join(qs)}, {concurrency} process(es), broker {safe_url(settings.broker)}")
    w.start()
    return int(w.exitcode or 0)


# -- the scheduler side ----------------------------------------------------------


@dataclass
class SchedulerStats:
    sent: int = 0
    delivered: int = 0
    delivery_failures: int = 0
    lags: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        lags = sorted(self.lags)

        return {"sent": self.sent, "delivered": self.delivered, "delivery_failures": self.delivery_failures,
                "lag_p50_s": percentile(lags, 0.5), "lag_p99_s": percentile(lags, 0.99)}


def run_scheduler(
    led: Ledger, settings: Settings, *, duration: float | None = None, queue: str = DEFAULT_QUEUE,
    batch: int = 200, stop: threading.Event | None = None, log: Log | None = None,
    on_start: Callable[[], None] | None = None,
) -> SchedulerStats:
    """Send a probe task for each due watch (claimed on the schedule table, its next due
    time moved on in the same transaction) until ``duration`` or ``stop``; also sends the
    alerts that are due, as the embedded scheduler does."""
    queue = check_queue(queue)
    ws = WatchStore(led.store)
    app = make_app(settings, sender=True)
    conn = _connect(app, settings)
    if on_start is not None:
        on_start()
    stats = SchedulerStats()
    stop = stop or threading.Event()
    end = time.monotonic() + duration if duration is not None else float("inf")
    note = log or (lambda _m: None)
    try:
        with app.producer_or_acquire() as producer:
            while not stop.is_set() and time.monotonic() < end:
                now = time.time()
                for w in find_due(ws, now, batch):
                    try:
                        app.send_task(PROBE_TASK, kwargs={"watch": w.id, "queue": queue, "due": w.next_due},
                                      queue=queue, producer=producer, retry=False)
                    except Exception as e:  # noqa: BLE001 - kombu's, redis-py's, amqp's errors
                        # Claimed but not sent: the watch waits for its next interval.
                        raise EnvironmentProblem(f"lost the broker {safe_url(settings.broker)}: {_why(e)}; "
                                                 f"watch {w.id} waits for its next interval") from None
                    stats.sent += 1
                    stats.lags.append(max(0.0, now - w.next_due))
                ok, bad = asyncio.run(deliver_due(ws, now=time.time(), log=note))
                stats.delivered += ok
                stats.delivery_failures += bad
                nxt = ws.next_due()
                wait = min(1.0, max(0.05, (nxt - time.time()) if nxt is not None else 1.0), max(0.0, end - time.monotonic()))
                stop.wait(wait)
    finally:
        conn.release()
    return stats
