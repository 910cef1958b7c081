"""An officer's badge number (执法证号) and unit are registration facts: signed into
the key-add statement, so both the officer key's proof of possession and the
record signature cover them, and verified wherever key-add records are."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evidence.case import export_case
from ledger import Ledger, key_add_facts, verify_key_add
from ledger.errors import SignatureError, UsageError
from ledger.keys import SigningKey
from ledger.log import _key_statement
from ledger.record import Draft
from verify.case import verify_case
from verify.ledger import audit_store

ORIGIN = "badge.example/log"


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, EVIDENCE_HOME=str(home), COLUMNS="300")
    env.setdefault("EVIDENCE_OFFICER_PASSPHRASE", "officer-pw")  # officers' keys are under their own passphrase
    env.pop("EVIDENCE_KEY_PASSPHRASE", None)
    p = subprocess.run([sys.executable, "-m", "evidence.cli", *args], capture_output=True, text=True, env=env, timeout=120)
    assert "Traceback" not in p.stderr, p.stderr
    return p


def test_cli_records_and_shows_badge_and_unit(tmp_path):
    home = tmp_path / "home"
    Ledger.init(home, unencrypted=True, origin=ORIGIN).close()
    p = cli(home, "key", "add", "--officer", "王芳 Wang Fang", "--badge", "31010012345", "--unit", "上海市市场监管局 执法总队", "--json")
    assert p.returncode == 0, p.stderr
    added = json.loads(p.stdout)
    assert added["badge"] == "31010012345" and added["unit"] == "上海市市场监管局 执法总队"
    with Ledger.open(home) as led:
        rec = next(led.records_of_kind("key-add"))
        assert rec.index == added["index"]
        assert rec.payload["badge"] == "31010012345" and rec.payload["unit"] == "上海市市场监管局 执法总队"
        verify_key_add(rec.payload)
        assert audit_store(led.store, led.trust()).ok
    shown = json.loads(cli(home, "key", "show", "--json").stdout)["signers"]
    assert shown == [{"index": added["index"], "key_id": added["key_id"], "name": "王芳 Wang Fang", "role": "officer",
                      "badge": "31010012345", "unit": "上海市市场监管局 执法总队"}]
    assert "badge 31010012345" in cli(home, "key", "show").stdout


def test_officer_without_badge_is_a_usage_error(tmp_path):
    home = tmp_path / "home"
    Ledger.init(home, unencrypted=True, origin=ORIGIN).close()
    p = cli(home, "key", "add", "--officer", "Wang Fang")
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2 and len(lines) == 1 and "--badge" in lines[0], p.stderr
    with Ledger.open(home) as led:
        assert led.size() == 1  # nothing recorded
    # Control: a writer needs no badge; an officer with one is registered.
    assert cli(home, "key", "add", "--officer", "worker-3", "--role", "writer").returncode == 0
    assert cli(home, "key", "add", "--officer", "Wang Fang", "--badge", "A-1").returncode == 0
    assert cli(home, "key", "add", "--officer", "Li", "--badge", "two\nlines").returncode == 2


def _key_add(led: Ledger, mutate) -> tuple[SigningKey, dict]:  # type: ignore[no-untyped-def]
    """A key-add payload made the honest way, then changed by ``mutate`` (the log key re-signs the record)."""
    officer = SigningKey.generate()
    payload = _key_statement(officer, ORIGIN, "Wang Fang", "officer", {"badge": "31010012345", "unit": "执法总队"})
    mutate(payload)
    led.store.append_many([Draft("key-add", payload)], key=led.key, origin=ORIGIN,
                          on_locked=lambda c, recs: led.store.add_key(officer.key_id, officer.public_raw, "Wang Fang", recs[0].index, c))
    return officer, payload


MUTATIONS = {
    "unchanged": lambda p: None,
    "badge changed": lambda p: p.update(badge="31010099999"),
    "badge removed": lambda p: p.pop("badge"),
    "unit changed": lambda p: p.update(unit="另一个单位"),
    "fact added": lambda p: p.update(rank="chief"),
}


@pytest.mark.parametrize("kind", sorted(MUTATIONS))
def test_tampered_badge_breaks_audit_and_case(tmp_path, kind):
    led = Ledger.init(tmp_path / "home", unencrypted=True, origin=ORIGIN)
    led.append("custody", {"note": "x"}, case="C-1")
    _officer, payload = _key_add(led, MUTATIONS[kind])
    res = audit_store(led.store, led.trust())
    out = tmp_path / "c.wacz"
    export_case(led, "C-1", out)
    case = verify_case(out, trust=led.config.trusted_vkeys)
    if kind == "unchanged":
        assert res.ok, res.problems
        assert case.ok, case.first_failure
        assert key_add_facts(payload) == {"badge": "31010012345", "unit": "执法总队"}
        assert any("badge 31010012345" in c.detail for c in case.checks if c.name == "record-signature")
        return
    assert not res.ok and res.first_problem.index == 2, res.problems
    assert "key-add" in res.first_problem.what
    assert not case.ok and case.first_failure.where == "evidence/record-2.json", case.first_failure
    with pytest.raises(SignatureError):
        verify_key_add(payload)


def test_library_checks_facts(tmp_path):
    with Ledger.init(tmp_path / "home", unencrypted=True, origin=ORIGIN) as led:
        with pytest.raises(UsageError):
            led.add_key("Wang Fang", "officer", badge="")
        rec = led.add_key("Wang Fang", "officer", badge="31010012345")
        assert rec.payload["badge"] == "31010012345" and "unit" not in rec.payload
        verify_key_add(rec.payload)
