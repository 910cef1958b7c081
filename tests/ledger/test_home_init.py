"""The package face of the ledger, and `init` where nothing can be written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ledger import Ledger
from ledger.errors import ConfigError

# Each in a fresh interpreter, so an import cycle cannot hide behind a module
# some earlier test already loaded.
IMPORT_ORDERS = [
    "from ledger import Ledger, Trust, Store, StoredCheckpoint; import ledger; "
    "assert all(hasattr(ledger, n) for n in ledger.__all__) and Ledger.__module__ == 'ledger.log'",
    "import ledger.merkle, ledger.note; from ledger import Ledger",
    "import evidence.case, evidence.extraction; from ledger import Ledger",
    "import verify; from ledger import Ledger",
    "import evidence.cli; import ledger",
]


@pytest.mark.parametrize("code", IMPORT_ORDERS)
def test_package_imports_without_cycles(code):
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, EVIDENCE_HOME=str(home), COLUMNS="300")
    env.pop("EVIDENCE_KEY_PASSPHRASE", None)
    # root ignores permission bits; without CAP_DAC_OVERRIDE the owner bits apply to it too.
    pre = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"] if os.geteuid() == 0 else []
    p = subprocess.run([*pre, sys.executable, "-m", "evidence.cli", *args], capture_output=True, text=True, env=env, timeout=120)
    assert "Traceback" not in p.stderr, p.stderr
    return p


def _tree(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


@pytest.mark.parametrize("where", ["under-read-only-dir", "read-only-home"])
def test_init_where_nothing_can_be_written(tmp_path, where):
    ro = tmp_path / "ro"
    ro.mkdir()
    home = ro / "home" if where == "under-read-only-dir" else ro
    ro.chmod(0o555)
    try:
        p = cli(home, "init", "--no-passphrase")
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        assert p.returncode == 3, (p.returncode, p.stderr)
        assert len(lines) == 1 and lines[0].startswith("error: cannot create the evidence home"), p.stderr
        assert "ermission denied" in lines[0]
        assert _tree(ro) == []  # nothing half-created
    finally:
        ro.chmod(0o755)
    # Control: the same command once the directory is writable.
    assert cli(home, "init", "--no-passphrase").returncode == 0
    assert (home / "config.json").exists()


def test_init_on_a_used_database_leaves_nothing(tmp_path):
    Ledger.init(tmp_path / "a", unencrypted=True, origin="a.example/log").close()
    with pytest.raises(ConfigError, match="already holds a ledger"):
        Ledger.init(tmp_path / "b", unencrypted=True, origin="b.example/log", db_url=f"sqlite:///{tmp_path / 'a' / 'ledger.db'}")
    assert not (tmp_path / "b").exists()
    with Ledger.open(tmp_path / "a") as led:
        assert led.size() == 1
