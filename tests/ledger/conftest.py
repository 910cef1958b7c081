"""Anchor fixtures: a local RFC 3161 TSA and a C2SP witness, both on 127.0.0.1.

    def test_x(home, tsa, tsa_roots, witness_server): ...

``tsa`` is one openssl-backed TSA for the whole session, put back into its
normal mode after every test. ``witness_server`` is per test, because every
``home`` is a new log under the same origin and a witness rightly refuses a
second history for an origin it has seen.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tsa_fixture import LocalTSA  # noqa: E402


@pytest.fixture(scope="session")
def tsa_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTSA]:
    server = LocalTSA(tmp_path_factory.mktemp("tsa")).start()
    yield server
    server.stop()


@pytest.fixture
def tsa(tsa_server: LocalTSA) -> Iterator[LocalTSA]:
    tsa_server.mode, tsa_server.delay = "ok", 0.0
    yield tsa_server
    tsa_server.mode, tsa_server.delay = "ok", 0.0


@pytest.fixture(scope="session")
def tsa_roots(tsa_server: LocalTSA) -> list:
    from ledger.anchors import load_roots

    return load_roots([tsa_server.root_pem])


@pytest.fixture
def witness_server(home):  # type: ignore[no-untyped-def]
    """A witness trusting ``home``'s log key; ``.verifier`` is its cosignature key."""
    from ledger.anchors import WitnessServer

    server = WitnessServer(
        "witness.test/w1", Ed25519PrivateKey.generate(), {home.origin: home.verifiers()}
    ).start()
    yield server
    server.stop()
