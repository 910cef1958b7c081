"""`evidence case ...`: the facts of a case, kept as signed records.

Registered on the main app by ``evidence.cli`` through ``register``, like
``cli_ops``; same conventions (``--json``, one-line errors, exit codes of
DESIGN.md).
"""

from __future__ import annotations

from typing import Any

import typer

from ledger.casefacts import set_case_info
from ledger.display import shown

case_app = typer.Typer(no_args_is_help=True, help="Facts of a case (案由, 当事人), recorded in the ledger.")
_cli: Any = None  # the running evidence.cli module (set by register)


def register(cli_module: Any) -> None:
    global _cli
    _cli = cli_module
    cli_module.app.add_typer(case_app, name="case")


@case_app.command("set")
def case_set(
    case: str = typer.Argument(..., help="Case id."),
    cause: str = typer.Option(..., "--cause", help="案由: what the case is about."),
    party: str = typer.Option(..., "--party", help="当事人/对象: shop, platform, account, operator entity."),
    unit: str | None = typer.Option(None, "--unit", help="执法单位: the enforcement unit."),
    place: str | None = typer.Option(None, "--place", help="地点: where the extraction takes place."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Record the case facts as a signed case-info record (a later one supersedes it)."""
    led = _cli._open()
    try:
        rec = set_case_info(led, case, cause=cause, party=party, unit=unit, place=place)
    finally:
        led.close()
    info = {"index": rec.index, "case": rec.case, "kind": rec.kind, **rec.payload}
    if as_json:
        _cli.emit(info)
    else:
        _cli.out.print(f"Case facts of {shown(rec.case)} recorded at record {rec.index}", highlight=False)
