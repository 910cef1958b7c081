"""The `evidence` command: a thin layer over the library API.

Every command takes ``--json`` (one JSON object on stdout) and reports
failures as one line on stderr with the exit codes of DESIGN.md:
0 ok/valid, 1 verification failed, 2 unusable input, 3 environment problem.
A traceback is shown only with ``--debug``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from . import __version__
from .errors import EvidenceError, UsageError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Preserve online evidence in a signed, hash-chained, Merkle-tree ledger.",
    pretty_exceptions_enable=False,
)
key_app = typer.Typer(no_args_is_help=True, help="Signing keys of this evidence home.")
app.add_typer(key_app, name="key")

out = Console()
err = Console(stderr=True)
_state: dict[str, Any] = {"debug": False}

JsonOpt = typer.Option(False, "--json", help="Print one JSON object on stdout.")


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def fail(message: str, code: int) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


@app.callback()
def _root(
    home: Path | None = typer.Option(None, "--home", help="Evidence home (default: EVIDENCE_HOME or ~/.evidence)."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True),
) -> None:
    if version:
        out.print(f"evidence-chain {__version__}")
        raise typer.Exit(0)
    if home is not None:
        os.environ["EVIDENCE_HOME"] = str(home)
    _state["debug"] = debug


def _open() -> Any:
    from ledger.log import Ledger

    return Ledger.open()


# -- init / key ---------------------------------------------------------------


@app.command()
def init(
    no_passphrase: bool = typer.Option(False, "--no-passphrase", help="Store the signing key unencrypted."),
    origin: str | None = typer.Option(None, help="Log name in checkpoints (default: HOST/evidence-chain/KEYID)."),
    db_url: str | None = typer.Option(None, "--db-url", help="SQLAlchemy URL (default: EVIDENCE_DB_URL or SQLite in the home)."),
    artifacts: str | None = typer.Option(None, "--artifacts", help="Artifact store directory, e.g. a shared mount (default: store/ in the home; also EVIDENCE_ARTIFACTS)."),
    as_json: bool = JsonOpt,
) -> None:
    """Create the evidence home: signing key, ledger database, artifact store."""
    from ledger.log import Ledger

    led = Ledger.init(unencrypted=no_passphrase, origin=origin, db_url=db_url, artifacts=artifacts)
    info = {
        "home": str(led.home.root),
        "origin": led.origin,
        "key_id": led.key.key_id,
        "vkey": led.config.trusted_vkeys[-1],
        "database": led.store.engine.url.render_as_string(hide_password=True),
        "encrypted_key": not no_passphrase,
    }
    led.close()
    if as_json:
        emit(info)
        return
    out.print(f"Evidence home created at [bold]{info['home']}[/]")
    out.print(f"  log origin   {info['origin']}")
    out.print(f"  signing key  {info['key_id']} ({'encrypted' if not no_passphrase else 'UNENCRYPTED'})")
    out.print(f"  verifier key {info['vkey']}")
    out.print(f"  database     {info['database']}")


@key_app.command("show")
def key_show(as_json: bool = JsonOpt) -> None:
    """Print the verifier keys (C2SP vkey) pinned in this home."""
    led = _open()
    info = {"origin": led.origin, "current_key_id": led.config.key_id, "vkeys": led.config.trusted_vkeys}
    led.close()
    if as_json:
        emit(info)
    else:
        for v in info["vkeys"]:
            out.print(v, highlight=False)


@key_app.command("rotate")
def key_rotate(as_json: bool = JsonOpt) -> None:
    """Replace the signing key; the rotation is recorded, signed by old and new key."""
    led = _open()
    rec = led.rotate_key()
    info = {"index": rec.index, "old_key_id": rec.payload["old_key_id"], "new_key_id": rec.payload["new_key_id"], "vkey": led.config.trusted_vkeys[-1]}
    led.close()
    if as_json:
        emit(info)
    else:
        out.print(f"Key rotated at record {info['index']}: {info['old_key_id']} -> {info['new_key_id']}")


@key_app.command("add")
def key_add(
    officer: str = typer.Option(..., "--officer", help="Name of the officer (or worker) the key belongs to."),
    role: str = typer.Option("officer", "--role", help="officer (may only attest) or writer (may append)."),
    as_json: bool = JsonOpt,
) -> None:
    """Create and register another signer's key, recorded in the ledger."""
    led = _open()
    rec = led.add_key(officer, role)
    info = {"index": rec.index, "name": officer, "role": role, "key_id": rec.payload["key_id"]}
    led.close()
    if as_json:
        emit(info)
    else:
        out.print(f"Key {info['key_id']} registered for {officer} ({role}) at record {rec.index}")


@app.command()
def attest(
    index: int = typer.Argument(..., help="Ledger index of the exhibit record."),
    officer: str = typer.Option(..., "--officer", help="The attesting officer (their registered key signs)."),
    statement: str | None = typer.Option(None, "--statement", help="What the officer attests."),
    as_json: bool = JsonOpt,
) -> None:
    """A second officer attests an exhibit record with their own key."""
    led = _open()
    rec = led.attest(index, officer, statement)
    led.close()
    info = {"index": rec.index, "exhibit_index": index, "officer": officer, "key_id": rec.key_id}
    if as_json:
        emit(info)
    else:
        out.print(f"Exhibit {index} attested by {officer} (key {rec.key_id[:8]}) at record {rec.index}")


@app.command()
def record(
    index: int = typer.Argument(..., help="Ledger index of the exhibit record."),
    fmt: str = typer.Option("docx", "--format", help="docx, pdf or html."),
    output: Path = typer.Option(..., "-o", "--output", help="File to write."),
    place: str | None = typer.Option(None, "--place", help="Where the extraction took place (default: 'office' in the home's config.json)."),
    as_json: bool = JsonOpt,
) -> None:
    """Write the extraction record (电子数据提取笔录) of an exhibit, in Chinese and English."""
    from evidence.extraction import FORMATS, build_record, write_record

    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    led = _open()
    try:
        rec = build_record(led, index, place=place)
    finally:
        led.close()
    path = write_record(rec, fmt, output)
    info = {
        "path": str(path), "format": fmt, "exhibit_index": index, "case": rec.case,
        "artifacts": len(rec.artifacts), "attesting_officers": rec.officers,
        "unverified_attestations": [a.index for a in rec.attestations if not a.verified],
    }
    if as_json:
        emit(info)
        return
    out.print(f"Extraction record of exhibit {index} (case {rec.case}, {len(rec.artifacts)} artifacts) -> {path}")
    for a in rec.attestations:
        if not a.verified:
            err.print(f"[yellow]warning:[/] attestation record {a.index} by {a.officer} is not verified: {a.problem}", highlight=False)


# -- log / checkpoint / audit -------------------------------------------------


def _summary(payload: dict[str, Any]) -> str:
    for k in ("url", "note", "tool", "new_key_id"):
        if k in payload:
            return str(payload[k])
    if "manifest" in payload:
        return "manifest " + str(payload["manifest"].get("sha256", ""))[:16]
    return ", ".join(sorted(payload))[:60]


@app.command()
def log(
    case: str | None = typer.Option(None, "--case", help="Only records of this case."),
    tail: int | None = typer.Option(None, "--tail", min=1, help="Only the last N records."),
    as_json: bool = JsonOpt,
) -> None:
    """List ledger records, newest last."""
    led = _open()
    start = 0
    if tail is not None and case is None:
        start = max(0, led.size() - tail)
    recs = list(led.records(case=case, start=start))
    if tail is not None:
        recs = recs[-tail:]
    led.close()
    if as_json:
        emit({"records": [{**r.to_json(), "leaf": r.leaf.hex()} for r in recs]})
        return
    table = Table(title=f"{len(recs)} record(s)" + (f" of case {case}" if case else ""))
    for col in ("index", "time (system clock, UTC)", "kind", "case", "key", "summary", "leaf"):
        table.add_column(col, overflow="fold")
    for r in recs:
        table.add_row(str(r.index), r.time, r.kind, r.case or "", r.key_id[:8], _summary(r.payload), r.leaf.hex()[:16])
    out.print(table)


@app.command()
def capture(
    url: str | None = typer.Argument(None, help="Page to capture (or use --urls)."),
    case: str = typer.Option(..., "--case", help="Case id the exhibit belongs to."),
    operator: str | None = typer.Option(None, "--operator", help="Who captures (recorded in the exhibit)."),
    note: str | None = typer.Option(None, "--note", help="Free text recorded with the exhibit."),
    urls: Path | None = typer.Option(None, "--urls", help="File of URLs, one a line: one browser, one batch."),
    load_timeout: float = typer.Option(30.0, "--load-timeout", help="Seconds to wait for the load event."),
    settle_timeout: float = typer.Option(5.0, "--settle-timeout", help="Seconds to wait for requests to settle."),
    max_scroll: int = typer.Option(30, "--max-scroll", help="Scroll steps for lazy loading (bounds infinite scroll)."),
    viewport: str = typer.Option("1366x768", "--viewport", help="Viewport WIDTHxHEIGHT."),
    mobile: bool = typer.Option(False, "--mobile", help="Emulate a mobile device."),
    proxy: str | None = typer.Option(None, "--proxy", help="Proxy server for the browser (recorded)."),
    trust_root: list[Path] = typer.Option([], "--trust-root", help="Extra trusted root CA (PEM) for the certificate check."),
    no_mhtml: bool = typer.Option(False, "--no-mhtml", help="Skip the MHTML snapshot."),
    record_process: bool | None = typer.Option(None, "--record-process/--no-record-process", help="Record the browser session as a WebM video artifact (default: on with --interactive)."),
    interactive: bool = typer.Option(False, "--interactive", help="Open a visible browser; press Enter here to seal what you visited."),
    time_source: str | None = typer.Option(None, "--time-source", help="HTTP(S) URL whose Date header the clock is checked against (config: time_source; default: the latest RFC 3161 anchor)."),
    max_clock_offset: float | None = typer.Option(None, "--max-clock-offset", help="Seconds of clock offset before the exhibit warns (config: max_clock_offset; default 2)."),
    ip_echo: str | None = typer.Option(None, "--ip-echo", help="Endpoint answering with our public IP, recorded in the exhibit (config: ip_echo)."),
    as_json: bool = JsonOpt,
) -> None:
    """Capture a web page (traffic, screenshots, DOM, TLS, environment) as a signed exhibit."""
    from capture import capture_many, capture_page

    if (url is None) == (urls is None):
        raise UsageError("give either a URL or --urls FILE")
    if interactive and urls is not None:
        raise UsageError("--interactive captures one URL, not --urls")
    try:
        w, h = (int(x) for x in viewport.lower().split("x"))
    except ValueError:
        raise UsageError(f"--viewport must look like 1366x768, not {viewport!r}") from None
    opts = dict(
        load_timeout=load_timeout, settle_timeout=settle_timeout, max_scroll_steps=max_scroll,
        viewport_width=w, viewport_height=h, is_mobile=mobile, proxy=proxy,
        trust_roots=tuple(trust_root), mhtml=not no_mhtml,
        record_process=interactive if record_process is None else record_process,
    )
    led = _open()
    try:
        opts.update(_check_settings(led, time_source, max_clock_offset, ip_echo))
        if urls is not None:
            try:
                lines = [ln.strip() for ln in urls.read_text("utf-8").splitlines()]
            except (OSError, UnicodeDecodeError) as e:
                raise UsageError(f"cannot read {urls}: {getattr(e, 'strerror', None) or e}") from None
            todo = [ln for ln in lines if ln and not ln.startswith("#")]
            if not todo:
                raise UsageError(f"{urls} holds no URL")
            quiet = as_json or not err.is_terminal
            with _progress("capturing") as bar:
                task = bar.add_task("capture", total=len(todo), visible=not quiet)

                def progress(done: int, total: int, u: str, error: str | None) -> None:
                    bar.update(task, completed=done)
                    if error and not as_json:
                        err.print(f"[yellow]failed:[/] {error}", highlight=False)

                batch = capture_many(todo, case=case, operator=operator, note=note, ledger=led, progress=progress, **opts)
            exhibits, failures = batch.exhibits, batch.failures
        elif interactive:
            exhibits, failures = [_interactive(str(url), case, operator, note, led, opts)], []
        else:
            exhibits, failures = [capture_page(url, case=case, operator=operator, note=note, ledger=led, **opts)], []
    finally:
        led.close()
    rows = [_exhibit_summary(ex) for ex in exhibits]
    if as_json:
        emit({"exhibits": rows, "failures": [{"url": u, "error": e} for u, e in failures]})
    else:
        for r in rows:
            out.print(f"[green]exhibit[/] record {r['index']}  {r['url']} -> {r['final_url']} (HTTP {r['status']})")
            out.print(f"  manifest sha256:{r['manifest_sha256']}  {r['artifacts']} artifacts", highlight=False)
            for w_ in r["warnings"]:
                err.print(f"  [yellow]warning:[/] {w_}", highlight=False)
    if failures:
        raise typer.Exit(3)


def _check_settings(led: Any, time_source: str | None, max_offset: float | None, ip_echo: str | None) -> dict[str, Any]:
    """Environment-check settings: flags, then the home's config.json, then defaults."""
    cfg = led.config.extra
    out: dict[str, Any] = {}
    for key, flag in (("time_source", time_source), ("max_clock_offset", max_offset), ("ip_echo", ip_echo)):
        value = flag if flag is not None else cfg.get(key)
        if value is not None:
            out[key] = value
    return out


def _interactive(url: str, case: str, operator: str | None, note: str | None, led: Any, opts: dict[str, Any]) -> Any:
    from capture.interactive import capture_interactive, until_enter

    def prompt() -> None:
        err.print(
            "[bold]The browser is open.[/] Log in, search and navigate to what must be preserved; "
            "every page you load is recorded. Press [bold]Enter[/] here to seal the capture.",
            highlight=False,
        )

    return capture_interactive(
        url, case=case, operator=operator, note=note, ledger=led, done=until_enter(prompt=prompt), **opts
    )


def _exhibit_summary(ex: Any) -> dict[str, Any]:
    info = ex.manifest.get("info", {})
    return {
        "index": ex.index,
        "case": ex.case,
        "url": info.get("url"),
        "final_url": info.get("final_url"),
        "status": info.get("status"),
        "title": info.get("title"),
        "manifest_sha256": ex.manifest_sha256,
        "artifacts": len(ex.artifacts),
        "warnings": list(info.get("warnings") or []),
        "pages_visited": len(info.get("visits") or []),
        "process_video": next((a.sha256 for a in ex.artifacts if a.role == "process-video"), None),
        "clock_offset_ms": (info.get("environment_check") or {}).get("clock", {}).get("offset_ms"),
    }


@app.command()
def livestream(
    url: str = typer.Argument(..., help="The stream (.m3u8, .mp4, .webm) or a page that plays it."),
    case: str = typer.Option(..., "--case", help="Case id the windows belong to."),
    duration: float = typer.Option(..., "--duration", help="Seconds to record (the capture may end earlier)."),
    frame_interval: float = typer.Option(1.0, "--frame-interval", help="Seconds between frames (screenshots, decoded frames)."),
    window: float = typer.Option(10.0, "--window", help="Seconds per sealed window (a crash loses at most one)."),
    max_bytes: int | None = typer.Option(None, "--max-bytes", help="Stop after this many bytes of traffic."),
    max_frames: int | None = typer.Option(None, "--max-frames", help="Stop after this many stored frames."),
    dedupe: bool = typer.Option(False, "--dedupe", help="Count identical consecutive frames instead of storing them."),
    mode: str = typer.Option("auto", "--mode", help="auto, hls, progressive or page."),
    operator: str | None = typer.Option(None, "--operator", help="Who captures (recorded in every window)."),
    note: str | None = typer.Option(None, "--note", help="Free text recorded with every window."),
    as_json: bool = JsonOpt,
) -> None:
    """Record a live stream into sealed windows of evidence; Ctrl-C ends it cleanly."""
    from capture.livestream import capture_livestream

    led = _open()
    quiet = as_json or not err.is_terminal
    try:
        with Progress(
            TextColumn("recording"), BarColumn(), TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(), console=err, transient=True, disable=quiet,
        ) as bar:  # fmt: skip
            task = bar.add_task("livestream", total=max(duration, 1), status="starting")

            def progress(e: dict[str, Any]) -> None:
                if e.get("event") in ("tick", "window"):
                    mb = e["total_bytes"] / 1e6
                    bar.update(task, completed=e["elapsed"], status=f"{e['windows']} window(s) sealed, {e['total_frames']} frames, {mb:.1f} MB")

            s = capture_livestream(
                url, case=case, duration=duration, frame_interval=frame_interval, window=window,
                max_bytes=max_bytes, max_frames=max_frames, dedupe=dedupe, operator=operator, note=note,
                ledger=led, progress=progress, mode=mode,
            )  # fmt: skip
    finally:
        led.close()
    if as_json:
        emit(s.to_json())
    else:
        records = f" as records {s.windows[0]}..{s.windows[-1]}" if s.windows else ""
        out.print(f"[green]livestream[/] {s.url} ({s.mode}): {len(s.windows)} window(s) sealed{records}, end record {s.end_index}", highlight=False, soft_wrap=True)
        dups = f" (+{s.duplicates} duplicate(s) counted)" if s.duplicates else ""
        out.print(f"  ended: {s.end_reason}; {s.segments} segment(s), {s.frames} frame(s){dups}, {s.bytes} bytes", highlight=False, soft_wrap=True)
        for e in s.errors[:10]:
            err.print(f"  [yellow]warning:[/] {e}", highlight=False)
    if not (s.segments or s.frames):
        why = s.errors[0] if s.errors else s.end_reason
        fail(f"nothing was recorded from {s.url}: {why} (end record {s.end_index})", 3)


@app.command()
def export(
    case: str = typer.Argument(..., help="Case id to export."),
    output: Path = typer.Option(..., "-o", "--output", help="The case file to write (.wacz)."),
    as_json: bool = JsonOpt,
) -> None:
    """Write one case as a WACZ case file with records, proofs, checkpoints, anchors and keys."""
    from evidence.case import export_case

    led = _open()
    try:
        s = export_case(led, case, output, progress=None if as_json else (lambda m: err.print(f"  {m}", highlight=False)))
    finally:
        led.close()
    info = {"path": str(s.path), "case": s.case, "exhibits": s.exhibits, "records": s.records, "files": s.files, "bytes": s.bytes, "checkpoint_size": s.checkpoint_size}
    if as_json:
        emit(info)
    else:
        out.print(f"Case {case}: {s.exhibits} exhibit(s), {s.records} record(s), {s.files} files -> {s.path}")


@app.command()
def verify(
    case_file: Path = typer.Argument(..., help="Case file (.wacz) to verify."),
    trust: list[str] = typer.Option([], "--trust", help="Log verifier key (vkey, file or directory) to pin."),
    tsa_root: list[Path] = typer.Option([], "--tsa-root", help="TSA root certificate (PEM) to verify timestamps (also EVIDENCE_TSA_ROOTS)."),
    witness: list[str] = typer.Option([], "--witness", help="Witness cosignature vkey to trust."),
    min_witnesses: int = typer.Option(0, "--min-witnesses", help="Require this many trusted witness cosignatures."),
    require_trust: bool = typer.Option(False, "--require-trust", help="Fail unless keys are pinned with --trust."),
    report: Path | None = typer.Option(None, "--report", help="Write a bilingual HTML report here."),
    as_json: bool = JsonOpt,
) -> None:
    """Verify a case file offline: digests, signatures, proofs, checkpoints, anchors."""
    from verify.case import verify_case
    from verify.report import write_report

    res = verify_case(
        case_file, trust=_read_trust(trust) if trust else (), tsa_roots=_tsa_roots(tsa_root),
        witnesses=witness, min_witnesses=min_witnesses,
    )
    if report is not None:
        write_report(res, case_file, report)
    if as_json:
        emit(res.to_json())
    else:
        failed = [c for c in res.checks if not c.ok]
        if failed:
            table = Table(title=f"Case {res.case}: {len(failed)} of {len(res.checks)} checks FAILED")
            for col in ("check", "where", "why"):
                table.add_column(col, overflow="fold")
            for c in failed[:60]:
                table.add_row(c.name, c.where or "", c.detail)
        else:
            # One line per kind of check: the report and --json list every single one.
            table = Table(title=f"Case {res.case}: all {len(res.checks)} checks passed")
            for col in ("check", "passed", "for example"):
                table.add_column(col, overflow="fold")
            kinds: dict[str, list[Any]] = {}
            for c in res.checks:
                kinds.setdefault(c.name, []).append(c)
            for name, cs in kinds.items():
                table.add_row(name, f"[green]{len(cs)}[/]", f"{cs[0].where or ''}: {cs[0].detail}"[:160])
        out.print(table)
        for w_ in res.warnings:
            err.print(f"[yellow]warning:[/] {w_}", highlight=False)
        for ex in res.exhibits:
            out.print(f"exhibit {ex['index']}: {ex['url']} captured {ex.get('started')} by {ex.get('operator')}", highlight=False)
        if report is not None:
            out.print(f"Report: {report}")
    first = res.first_failure
    if first is not None:
        fail(f"case file is INVALID: {first.where}: {first.detail}", 1)
    if require_trust and not res.trusted:
        fail("no keys pinned (--trust): the bundle's keys are self-declared", 1)
    if not as_json:
        if res.trusted:
            out.print("[green]Case file is valid (keys pinned).[/]")
        else:
            out.print("[yellow]Case file is intact, but its keys are self-declared: pin the log key with --trust.[/]")


@app.command()
def checkpoint(as_json: bool = JsonOpt) -> None:
    """Sign a checkpoint of the current tree (after proving it extends the last one)."""
    led = _open()
    cp = led.checkpoint()
    led.close()
    info = {"size": cp.size, "root": cp.root.hex(), "created": cp.created, "note": cp.note}
    if as_json:
        emit(info)
    else:
        out.print(f"Checkpoint of size {cp.size}, root {cp.root.hex()}")
        out.print(cp.note, highlight=False, markup=False)


def _progress(label: str) -> Progress:
    return Progress(
        TextColumn(label), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=True,
    )


@app.command()
def audit(
    trust: list[str] = typer.Option([], "--trust", help="Verifier key (vkey string or file) to trust instead of the home's."),
    tsa_root: list[Path] = typer.Option([], "--tsa-root", help="TSA root certificate (PEM) for re-checking timestamps (also EVIDENCE_TSA_ROOTS)."),
    witness: list[str] = typer.Option([], "--witness", help="Witness cosignature vkey to re-check cosignatures with."),
    as_json: bool = JsonOpt,
) -> None:
    """Verify the whole ledger: leaves, links, signatures, Merkle roots, checkpoints, anchors."""
    from ledger.anchors import audit_anchors
    from ledger.note import CosignatureVerifier
    from verify.ledger import audit_store
    from verify.result import Check, Problem

    led = _open()
    vkeys = _read_trust(trust) if trust else led.config.trusted_vkeys
    roots = _tsa_roots(tsa_root)
    witnesses = [CosignatureVerifier.parse(w) for w in witness]
    quiet = as_json or not err.is_terminal
    with _progress("auditing") as bar:
        task = bar.add_task("audit", total=led.size(), visible=not quiet)
        res = audit_store(led.store, vkeys, progress=lambda n, total: bar.update(task, completed=n))
    anchor_checks = audit_anchors(led, roots=roots, witnesses=witnesses)
    led.close()
    for a in anchor_checks:
        if not a.ok:
            idx = int(a.where.split()[1]) if a.where and a.where.startswith("record ") else None
            res.problems.append(Problem(idx, f"{a.name}: {a.detail}"))
    unchecked = sum(1 for a in anchor_checks if a.ok and not a.verified)
    res.checks.append(
        Check(
            "anchors",
            all(a.ok for a in anchor_checks),
            f"{len(anchor_checks)} anchor record(s) re-checked"
            + (f", {unchecked} intact but not verifiable without a root/key" if unchecked else ""),
        )
    )
    if as_json:
        emit(res.to_json())
    else:
        table = Table(title=f"Audit of {res.size} record(s)")
        table.add_column("check")
        table.add_column("result")
        table.add_column("detail", overflow="fold")
        for c in res.checks:
            table.add_row(c.name, "[green]ok[/]" if c.ok else "[red]FAILED[/]", c.detail)
        out.print(table)
        for p in res.problems[:20]:
            out.print(f"  [red]✗[/] {p}", highlight=False)
        if len(res.problems) > 20:
            out.print(f"  ... {len(res.problems) - 20} more problem(s)")
    if not res.ok:
        first = res.first_problem
        fail(f"audit failed: {first}" + (f" (first bad index {first.index})" if first and first.index is not None else ""), 1)
    if not as_json:
        out.print("[green]Ledger audit passed.[/]")


def _tsa_roots(paths: list[Path]) -> list[Any]:
    from ledger.anchors import load_roots, roots_from_env

    return load_roots([str(p) for p in paths]) if paths else roots_from_env()


@app.command()
def anchor(
    tsa: list[str] = typer.Option([], "--tsa", help="RFC 3161 TSA URL (repeat for redundancy)."),
    tsa_root: list[Path] = typer.Option([], "--tsa-root", help="Trusted TSA root certificate, PEM (also EVIDENCE_TSA_ROOTS)."),
    tsa_hash: str = typer.Option("sha256", "--tsa-hash", help="sha256 or sha512."),
    witness: list[str] = typer.Option([], "--witness", help="Witness as VKEY@URL (C2SP tlog-witness)."),
    deposit_config: list[Path] = typer.Option([], "--deposit-config", help="JSON config of an HTTP JSON deposit service."),
    timeout: float = typer.Option(10.0, help="Seconds per request."),
    deadline: float = typer.Option(30.0, help="Seconds for all retries of one service."),
    strict: bool = typer.Option(False, "--strict", help="Fail if any service fails (default: if all fail)."),
    every: str | None = typer.Option(None, "--every", help="Keep running: anchor every INTERVAL (e.g. 10m) when the tree grew."),
    only_if_grown: bool = typer.Option(False, "--only-if-grown", help="Do nothing when no record was added since the last anchor (for cron)."),
    as_json: bool = JsonOpt,
) -> None:
    """Anchor the latest checkpoint: RFC 3161 timestamps, witness cosignatures, deposits."""
    from ledger.anchors import (
        HttpJsonDeposit,
        Witness,
        anchor_checkpoint,
        needs_anchor,
        parse_interval,
        run_every,
    )

    if tsa_hash not in ("sha256", "sha512"):
        raise UsageError("--tsa-hash must be sha256 or sha512")
    led = _open()
    roots = _tsa_roots(tsa_root)
    witnesses = [Witness.parse(w) for w in witness]
    deposits = []
    for cfg in deposit_config:
        try:
            deposits.append(HttpJsonDeposit.from_config(json.loads(cfg.read_text("utf-8"))))
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot read deposit config {cfg}: {e}") from None

    def once() -> list[Any]:
        results = anchor_checkpoint(
            led, tsa_urls=tsa, roots=roots, hash_alg=tsa_hash, witnesses=witnesses,
            deposits=deposits, timeout=timeout, deadline=deadline, strict=strict,
        )
        for r in results:
            if as_json:
                continue
            if r.ok:
                t = (r.payload or {}).get("time", "")
                out.print(f"[green]anchored[/] {r.type} {r.service} -> record {r.record_index} (checkpoint size {(r.payload or {}).get('checkpoint_size')}) {t}")
            else:
                err.print(f"[yellow]warning:[/] {r.type} {r.service} failed: {r.error}", highlight=False)
        return results

    if every:
        interval = parse_interval(every)
        out.print(f"Anchoring every {every} while the tree grows; Ctrl-C stops.")
        run_every(
            interval,
            lambda: needs_anchor(led) and once(),
            on_error=lambda e: err.print(f"[yellow]warning:[/] {e}", highlight=False),
        )
        led.close()
        return
    if only_if_grown and not needs_anchor(led):
        led.close()
        if as_json:
            emit({"anchored": False, "reason": "nothing new since the last anchor", "results": []})
        else:
            out.print("Nothing new since the last anchor.")
        return
    results = once()
    led.close()
    if as_json:
        emit({"anchored": any(r.ok for r in results), "results": [r.to_json() for r in results]})


def _read_trust(items: list[str]) -> list[str]:
    """Each --trust is a vkey string, a file of vkeys (one a line), or a
    directory of ``*.vkey`` files (such as an evidence home's keys/)."""
    vkeys: list[str] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            files = sorted(p.glob("*.vkey"))
        elif p.exists() or "+" not in item:
            files = [p]
        else:
            vkeys.append(item)
            continue
        for f in files:
            try:
                vkeys.extend(line.strip() for line in f.read_text("utf-8").splitlines() if line.strip())
            except (OSError, UnicodeDecodeError) as e:
                raise UsageError(f"cannot read trust file {f}: {getattr(e, 'strerror', None) or e}") from None
    if not vkeys:
        raise UsageError("no verifier keys found in --trust")
    return vkeys


# Team deployment commands (migrate, join, enqueue, worker, jobs, key register).
from . import cli_ops as _cli_ops  # noqa: E402

_cli_ops.register(sys.modules[__name__])


def main() -> None:
    """Entry point: run the app, turning every error into one line and an exit code."""
    debug = "--debug" in sys.argv[1:]
    try:
        # Standalone mode: the parser reports usage errors itself (exit 2).
        app()
    except EvidenceError as e:
        if debug:
            raise
        err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - the last line of defence for users
        if debug:
            raise
        err.print(f"[bold red]internal error:[/] {type(e).__name__}: {e} (run with --debug for details)", highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
