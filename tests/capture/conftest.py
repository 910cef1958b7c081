"""Capture fixtures: the suspect-shop server with hostile routes, one shared browser.

Tests that need Chromium are skipped only when it is missing and ``CI`` is
not set; in CI a missing browser fails them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from capture_fixtures import ROUTES, STOP, BrowserThread, load_serve  # noqa: E402

from capture.browser import chromium_available  # noqa: E402


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if chromium_available() or os.environ.get("CI"):
        return
    skip = pytest.mark.skip(
        reason="Chromium not installed (apt-get install chromium); required when CI is set"
    )
    here = Path(__file__).resolve().parent
    for item in items:
        if "browser" in item.keywords and here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def serve() -> Any:
    return load_serve()


@pytest.fixture(scope="session")
def shop(serve: Any) -> Iterator[Any]:
    STOP.clear()
    server = serve.ShopServer(routes=ROUTES).start()
    yield server
    STOP.set()
    server.stop()


@pytest.fixture(scope="session")
def self_signed_shop(serve: Any) -> Iterator[Any]:
    server = serve.ShopServer(self_signed=True).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[BrowserThread]:
    bt = BrowserThread()
    yield bt
    bt.close()


@pytest.fixture
def closed_port() -> int:
    """A local port with nothing listening (bound, then released)."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
