"""What the fleet tests run against: their own redis-server on a free port, a listing site
that counts its page loads and can hold a page until the test lets it go, and
`evidence worker --engine celery` processes started through the real CLI."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from watch_site import _Server, item

REDIS_SERVER = "/usr/bin/redis-server"
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(cond: Callable[[], object], what: str, timeout: float = 180.0, every: float = 0.2) -> object:
    """Poll ``cond`` until it is truthy; generous bounds, the machine is shared."""
    end = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


class Redis:
    """A private redis-server: no persistence, its own port, stopped with the test."""

    def __init__(self, tmp: Path):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(tmp)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.url = f"redis://127.0.0.1:{self.port}/0"
        import redis

        self.client = redis.Redis(port=self.port)

        def up() -> bool:
            try:
                return bool(self.client.ping())
            except redis.exceptions.ConnectionError:
                return False

        wait_for(up, "redis-server to answer", 30)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Redis]:
    (tmp_path / "redis").mkdir()
    r = Redis(tmp_path / "redis")
    yield r
    r.stop()


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        site: CountingSite = self.server.owner  # type: ignore[attr-defined]
        path = self.path.split("?")[0]
        with site.lock:
            site.hits[path] += 1
            site.times.setdefault(path, []).append(time.monotonic())
        if path.startswith("/hold/"):
            site.held.set()
            site.release.wait(240)
        if path == "/favicon.ico":
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = item(path.strip("/") or "home").encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a: object) -> None:
        pass


class CountingSite(_Server):
    """Pages at any path; counts each path's loads; ``/hold/...`` answers only after ``release``."""

    def __init__(self, port: int = 0):
        self.hits: Counter[str] = Counter()
        self.times: dict[str, list[float]] = {}
        self.lock = threading.Lock()
        self.held = threading.Event()
        self.release = threading.Event()
        super().__init__(_Handler, port)

    def count(self, prefix: str) -> int:
        with self.lock:
            return sum(n for p, n in self.hits.items() if p.startswith(prefix))

    def stop(self) -> None:
        self.release.set()
        super().stop()


@pytest.fixture
def counting_site() -> Iterator[CountingSite]:
    s = CountingSite()
    yield s
    s.stop()


def cli_env(home: Path, broker: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ, EVIDENCE_HOME=str(home), EVIDENCE_BROKER_URL=broker, COLUMNS="250", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def cli(home: Path, broker: str, *args: str, timeout: float = 180, **extra: str) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([sys.executable, "-m", "evidence.cli", *args], capture_output=True, text=True,
                       env=cli_env(home, broker, **extra), timeout=timeout, cwd=ROOT)
    assert "Traceback" not in p.stderr, p.stderr
    return p


class Worker:
    """`evidence worker --engine celery` in its own process group (so SIGKILL takes its children too)."""

    def __init__(self, home: Path, broker: str, *args: str, log: Path, **extra: str):
        self.log_path = log
        self.log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "evidence.cli", "worker", "--engine", "celery", *args],
            stdout=self.log, stderr=subprocess.STDOUT, env=cli_env(home, broker, **extra), cwd=ROOT,
            start_new_session=True,
        )

    def text(self) -> str:
        return self.log_path.read_text("utf-8", "replace")

    def ready(self, timeout: float = 120) -> None:
        wait_for(lambda: "fleet worker" in self.text() or self.proc.poll() is not None, "the worker to start", timeout)
        assert self.proc.poll() is None, self.text()

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(60)

    def stop(self) -> None:
        if self.proc.poll() is None:
            # SIGTERM: Celery's warm shutdown (finishes the task in hand); then make sure.
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)
        self.log.close()
