"""verify needs only the case file and the library: no database layer is loaded, or needed.

Each check runs in a fresh interpreter, so a module some earlier test imported
cannot hide an import of SQLAlchemy.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from case_fixtures import build_case  # noqa: E402

from evidence.case import export_case  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
LOADED = "import sys, {mods}; assert 'sqlalchemy' not in sys.modules, 'sqlalchemy was imported'"
# Makes SQLAlchemy unimportable, as on a machine that has only the verifier,
# then runs the given module as __main__ with the remaining arguments.
NO_SQLALCHEMY = """
import runpy, sys

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name == "sqlalchemy" or name.startswith("sqlalchemy."):
            raise ImportError(f"{name} is not installed here")
        return None

sys.meta_path.insert(0, Refuse())
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def python(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


def test_importing_the_verifier_loads_no_database_layer():
    p = python("-c", LOADED.format(mods="verify.case, verify.report"))
    assert p.returncode == 0, p.stderr


def test_control_the_ledger_log_does_load_it():
    # Without this the check above could pass by never seeing SQLAlchemy at all.
    p = python("-c", LOADED.format(mods="ledger.log"))
    assert p.returncode != 0 and "sqlalchemy was imported" in p.stderr, p.stderr


def test_control_the_refusal_works():
    p = python("-c", NO_SQLALCHEMY, "ledger.log")
    assert p.returncode != 0 and "sqlalchemy is not installed here" in p.stderr, p.stderr


def test_evidence_verify_works_without_sqlalchemy(home, tmp_path):
    build_case(home, tmp_path / "work", "C-LAYER", exhibits=1)
    case = tmp_path / "case.wacz"
    export_case(home, "C-LAYER", case)
    vkey = tmp_path / "log.vkey"
    vkey.write_text(home.config.trusted_vkeys[0] + "\n", "utf-8")
    report = tmp_path / "report.html"
    # No evidence home either: the verifier must not look for one.
    env = {"PATH": "/usr/bin:/bin", "EVIDENCE_HOME": str(tmp_path / "no-home")}
    p = python("-c", NO_SQLALCHEMY, "evidence.cli", "verify", str(case), "--trust", str(vkey),
               "--report", str(report), "--json", env=env)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr
    assert json.loads(p.stdout)["ok"] is True
    assert report.exists()
