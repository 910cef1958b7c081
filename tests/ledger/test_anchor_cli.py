"""`evidence anchor` and `evidence audit` re-checking anchors, as a user runs them."""

import json
import os
import sqlite3
import subprocess
import sys


def run(home, *args, check=None):
    env = dict(os.environ, EVIDENCE_HOME=str(home), COLUMNS="200")
    env.pop("EVIDENCE_TSA_ROOTS", None)
    p = subprocess.run([sys.executable, "-m", "evidence.cli", *args], capture_output=True, text=True, env=env, timeout=120)
    assert "Traceback" not in p.stderr
    if check is not None:
        assert p.returncode == check, (p.returncode, p.stdout, p.stderr)
    return p


def test_anchor_then_audit(home, tsa):
    h = home.home.root
    home.append("custody", {"note": "x"}, case="C1")
    res = json.loads(run(h, "anchor", "--tsa", tsa.url, "--tsa-root", str(tsa.root_pem), "--json", check=0).stdout)
    assert res["anchored"] and res["results"][0]["type"] == "rfc3161"
    idx = res["results"][0]["record_index"]
    rows = home.store.anchor_rows()
    assert [r["record_idx"] for r in rows] == [idx] and rows[0]["type"] == "rfc3161"
    # nothing new: cron mode does nothing
    again = json.loads(run(h, "anchor", "--tsa", tsa.url, "--tsa-root", str(tsa.root_pem), "--only-if-grown", "--json", check=0).stdout)
    assert again["anchored"] is False
    audit = json.loads(run(h, "audit", "--tsa-root", str(tsa.root_pem), "--json", check=0).stdout)
    assert next(c for c in audit["checks"] if c["name"] == "anchors")["ok"]
    # a token replaced in the store is caught by the audit, naming the anchor record
    token = rows[0]["blob_sha256"]
    path = home.artifacts.path_for(token)
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[-5] ^= 1
    path.write_bytes(bytes(data))
    bad = run(h, "audit", "--tsa-root", str(tsa.root_pem), "--json", check=1)
    assert json.loads(bad.stdout)["first_bad_index"] == idx


def test_anchor_errors_are_one_line(home, tsa):
    h = home.home.root
    p = run(h, "anchor", check=2)
    assert p.stderr.strip().startswith("error:") and len(p.stderr.strip().splitlines()) == 1
    p = run(h, "anchor", "--tsa", tsa.url, check=2)
    assert "root" in p.stderr
    p = run(h, "anchor", "--tsa", "http://127.0.0.1:9/tsr", "--tsa-root", str(tsa.root_pem), "--deadline", "2", check=3)
    assert len(p.stderr.strip().splitlines()) == 1
    p = run(h, "anchor", "--tsa", tsa.url, "--tsa-root", str(tsa.rogue_root_pem), check=1)
    assert len(p.stderr.strip().splitlines()) == 1 and "roots" in p.stderr
    assert home.store.anchor_rows() == []
    con = sqlite3.connect(h / "ledger.db")
    assert con.execute("SELECT count(*) FROM records WHERE kind = 'anchor'").fetchone()[0] == 0
