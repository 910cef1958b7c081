"""`evidence crawl URL --case ID` and `evidence crawl --resume ID`: a shop, one exhibit per page.

Registered on the main app by ``evidence.cli`` through ``register``, like
``cli_case``; same conventions (``--json``, one-line errors, exit codes of
DESIGN.md). The crawl itself is ``capture.crawl``.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import typer

from ledger.display import shown
from ledger.errors import UsageError

_cli: Any = None  # the running evidence.cli module (set by register)


def register(cli_module: Any) -> None:
    global _cli
    _cli = cli_module
    cli_module.app.command("crawl")(crawl_command)


def crawl_command(
    url: str | None = typer.Argument(None, help="Start page (or --resume ID)."),
    case: str | None = typer.Option(None, "--case", help="Case id the exhibits belong to."),
    resume_id: int | None = typer.Option(None, "--resume", help="Go on with crawl ID after a kill or a pause."),
    scope: str | None = typer.Option(None, "--scope", help="Links followed: 'host' (default: the start URL's host), an http(s) URL prefix, or a regular expression."),
    include: list[str] = typer.Option([], "--include", help="Follow only links matching this regular expression too (repeat)."),
    exclude: list[str] = typer.Option([], "--exclude", help="Never follow links matching this regular expression (repeat)."),
    max_pages: int = typer.Option(100, "--max-pages", help="Pages to visit at most."),
    max_depth: int | None = typer.Option(None, "--max-depth", help="Links away from the start page at most (default: no limit)."),
    delay: float = typer.Option(1.0, "--delay", help="Seconds to wait between pages (politeness)."),
    operator: str | None = typer.Option(None, "--operator", help="Who captures (recorded in each exhibit)."),
    note: str | None = typer.Option(None, "--note", help="Free text recorded with each exhibit."),
    session: str | None = typer.Option(None, "--session", help="Saved login session the browser starts from (evidence session login)."),
    device: str | None = typer.Option(None, "--device", help="Playwright device descriptor, e.g. 'iPhone 13' (evidence devices)."),
    expect: list[str] = typer.Option([], "--expect", help="Text every page must show; a page without it pauses the crawl (session expired?). Repeatable."),
    load_timeout: float = typer.Option(30.0, "--load-timeout", help="Seconds to wait for each page's load event."),
    settle_timeout: float = typer.Option(5.0, "--settle-timeout", help="Seconds to wait for requests to settle."),
    max_scroll: int = typer.Option(30, "--max-scroll", help="Scroll steps for lazy loading (bounds infinite scroll)."),
    deadline: float | None = typer.Option(None, "--deadline", help="Seconds one page's capture may take in all."),
    proxy: str | None = typer.Option(None, "--proxy", help="Proxy server for the browser (recorded)."),
    trust_root: list[Path] = typer.Option([], "--trust-root", help="Extra trusted root CA (PEM) for the certificate check."),
    no_mhtml: bool = typer.Option(False, "--no-mhtml", help="Skip the MHTML snapshots."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Crawl a shop breadth first from URL: one exhibit per in-scope page, then a signed crawl record."""
    from capture.crawl import reopen, run, start

    if resume_id is not None:
        if url is not None or case is not None:
            raise UsageError("--resume ID takes no URL and no --case: the crawl keeps its own")
    elif url is None or case is None:
        raise UsageError("give a start URL and --case ID, or --resume ID")
    err, quiet = _cli.err, as_json or not _cli.err.is_terminal

    led = _cli._open()
    # As Ctrl-C: the browser closes, the crawl state stays, --resume goes on.
    before = signal.signal(signal.SIGTERM, _cli.as_ctrl_c)
    try:
        if resume_id is not None:
            prepared = reopen(resume_id, ledger=led, page_options=lambda names: _page(led, names))
        else:
            opts: dict[str, Any] = dict(
                load_timeout=load_timeout, settle_timeout=settle_timeout, max_scroll_steps=max_scroll,
                capture_deadline=deadline, proxy=proxy, trust_roots=tuple(trust_root), mhtml=not no_mhtml,
            )
            prepared = start(
                str(url), case=str(case), ledger=led, operator=operator, note=note, scope=scope,
                include=include, exclude=exclude, max_pages=max_pages, max_depth=max_depth, delay=delay,
                page={"session": session, "device": device, "expect": list(expect)},
                page_options=lambda names: _page(led, names), **opts,
            )
            err.print(f"crawl {prepared.crawl.id} started (after a stop: evidence crawl --resume {prepared.crawl.id})",
                      highlight=False)
        with _cli._progress("crawling") as bar:
            task = bar.add_task("crawl", total=None, visible=not quiet)

            def progress(done: int, known: int, u: str, error: str | None) -> None:
                bar.update(task, completed=done, total=max(known, done))
                if error and not as_json:
                    err.print(f"[yellow]failed:[/] {shown(error)}", highlight=False)

            res = run(led, prepared, progress)
    finally:
        led.close()
        signal.signal(signal.SIGTERM, before)
    _report(res, as_json)
    if res.failures:
        raise typer.Exit(3)


def _page(led: Any, names: dict[str, Any]) -> dict[str, Any]:
    """CaptureOptions for the stored session, device and expected texts (the capture command's own)."""
    if not any(names.get(k) for k in ("session", "device", "expect")):
        return {}
    return dict(_cli.page_options(led, session=names.get("session"), device=names.get("device"),
                                  expect=list(names.get("expect") or [])))


def _report(res: Any, as_json: bool) -> None:
    if as_json:
        _cli.emit(res.to_json())
        return
    out = _cli.out
    out.print(
        f"[green]crawl[/] {res.crawl_id} of case {shown(res.case)}: {res.pages} page(s) sealed, {res.failed} failed, "
        f"{res.out_of_scope} out-of-scope link(s) listed, {res.not_visited} in-scope page(s) left unvisited",
        highlight=False,
    )
    if res.exhibits:
        out.print(f"  exhibits {res.exhibits[0]}..{res.exhibits[-1]} this run; crawl record {res.record_index}", highlight=False)
