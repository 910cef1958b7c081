"""The `evidence` command as a user runs it: exit codes, --json, one-line errors."""

import json
import os
import subprocess
import sys

import pytest


def run(home, *args, env=None, check=None):
    e = dict(os.environ, EVIDENCE_HOME=str(home), COLUMNS="200")
    e.pop("EVIDENCE_KEY_PASSPHRASE", None)
    e.update(env or {})
    p = subprocess.run([sys.executable, "-m", "evidence.cli", *args], capture_output=True, text=True, env=e, timeout=120)
    if check is not None:
        assert p.returncode == check, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr
    return p


def one_line_error(p):
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), p.stderr
    return lines[0]


@pytest.fixture
def cli_home(tmp_path):
    home = tmp_path / "home"
    run(home, "init", env={"EVIDENCE_KEY_PASSPHRASE": "pw"}, check=0)
    return home


PW = {"EVIDENCE_KEY_PASSPHRASE": "pw"}


def test_init_log_checkpoint_audit(cli_home):
    p = run(cli_home, "log", "--json", check=0)
    recs = json.loads(p.stdout)["records"]
    assert [r["kind"] for r in recs] == ["log-init"]
    cp = json.loads(run(cli_home, "checkpoint", "--json", env=PW, check=0).stdout)
    assert cp["size"] == 1 and "\u2014 " in cp["note"]
    res = json.loads(run(cli_home, "audit", "--json", check=0).stdout)
    assert res["ok"] and res["size"] == 1
    assert "Ledger audit passed" in run(cli_home, "audit", check=0).stdout
    keys = json.loads(run(cli_home, "key", "show", "--json", check=0).stdout)
    assert len(keys["vkeys"]) == 1
    # trust given explicitly: a directory of vkeys, a vkey string, a file
    run(cli_home, "audit", "--trust", str(cli_home / "keys"), check=0)
    run(cli_home, "audit", "--trust", keys["vkeys"][0], check=0)


def test_errors_are_one_line(cli_home, tmp_path):
    assert "already" in one_line_error(run(cli_home, "init", "--no-passphrase", check=2))
    assert "EVIDENCE_KEY_PASSPHRASE" in one_line_error(run(tmp_path / "new", "init", check=2))
    assert "evidence init" in one_line_error(run(tmp_path / "none", "log", check=2))
    assert "encrypted" in one_line_error(run(cli_home, "checkpoint", check=2))
    assert "wrong passphrase" in one_line_error(run(cli_home, "checkpoint", env={"EVIDENCE_KEY_PASSPHRASE": "bad"}, check=2))
    assert "trust" in one_line_error(run(cli_home, "audit", "--trust", str(tmp_path / "nope"), check=2))
    assert run(cli_home, "log", "--tail", "0").returncode == 2  # usage error from the parser


def test_audit_fails_with_exit_1_naming_index(cli_home):
    import sqlite3

    run(cli_home, "key", "rotate", env=PW, check=0)
    db = sqlite3.connect(cli_home / "ledger.db")
    db.execute("UPDATE records SET body = replace(body, 'rotation', 'rotatioN') WHERE idx = 1")
    db.commit()
    db.close()
    p = run(cli_home, "audit", check=1)
    assert "first bad index 1" in p.stderr
    res = json.loads(run(cli_home, "audit", "--json", check=1).stdout)
    assert res["first_bad_index"] == 1


def test_rollback_refused(cli_home):
    import sqlite3

    run(cli_home, "checkpoint", env=PW, check=0)
    db = sqlite3.connect(cli_home / "ledger.db")
    db.execute("DELETE FROM records")
    db.execute("UPDATE tree_state SET size = 0")
    db.commit()
    db.close()
    assert "rolled back" in one_line_error(run(cli_home, "log", check=1))
