"""`evidence capture` as an investigator runs it."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.browser


def run(home, *args, check=None):
    env = dict(os.environ, EVIDENCE_HOME=str(home), COLUMNS="200")
    p = subprocess.run([sys.executable, "-m", "evidence.cli", *args], capture_output=True, text=True, env=env, timeout=300)
    assert "Traceback" not in p.stderr
    if check is not None:
        assert p.returncode == check, (p.returncode, p.stdout, p.stderr)
    return p


def test_capture_and_batch(tmp_path, shop, closed_port):
    home = tmp_path / "home"
    run(home, "init", "--no-passphrase", check=0)
    res = json.loads(run(home, "capture", shop.url("/s/Xy7Kq"), "--case", "SAMR-2026-017", "--operator", "Li Wei", "--json", check=0).stdout)
    ex = res["exhibits"][0]
    assert ex["final_url"].endswith("/item/123") and ex["status"] == 200 and ex["artifacts"] >= 6
    urls = tmp_path / "urls.txt"
    urls.write_text(f"# two good, one refused\n{shop.url('/item/123')}\nhttp://127.0.0.1:{closed_port}/gone\n{shop.url('/s/Xy7Kq')}\n")
    p = run(home, "capture", "--urls", str(urls), "--case", "SAMR-2026-017", "--json", check=3)
    batch = json.loads(p.stdout)
    assert len(batch["exhibits"]) == 2 and len(batch["failures"]) == 1
    log = json.loads(run(home, "log", "--case", "SAMR-2026-017", "--json", check=0).stdout)["records"]
    assert [r["kind"] for r in log] == ["exhibit"] * 3
    run(home, "audit", check=0)
    p = run(home, "capture", "--case", "X", check=2)
    assert p.stderr.startswith("error:")
    p = run(home, "capture", f"http://127.0.0.1:{closed_port}/", "--case", "X", check=3)
    assert "nothing was recorded" in p.stderr
    assert len(json.loads(run(home, "log", "--json", check=0).stdout)["records"]) == 4
