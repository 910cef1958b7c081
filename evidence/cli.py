"""The `evidence` command: a thin layer over the library API.

Every command takes ``--json`` (one JSON object on stdout) and reports
failures as one line on stderr with the exit codes of DESIGN.md:
0 ok/valid, 1 verification failed, 2 unusable input, 3 environment problem.
A traceback is shown only with ``--debug``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from ledger.display import json_safe, shown, text
from ledger.errors import EvidenceError, UsageError
from ledger.version import __version__


def as_ctrl_c(_sig: int, _frame: Any) -> None:
    """A SIGTERM handler that makes the signal a Ctrl-C.

    Raised as KeyboardInterrupt from the handler, it lands in whatever runs
    at that instant, a task of the capture's event loop included, which then
    dies holding the exception and is printed at exit as "Task exception was
    never retrieved" with a traceback. As SIGINT, the running ``asyncio.run``
    cancels its main task (every step unwinds as on Ctrl-C) and raises
    KeyboardInterrupt once that is done; outside an event loop, SIGINT's
    default handler raises it at once, as before. Where SIGINT is ignored (a
    background job of a non-interactive shell), SIGTERM raises it itself.
    """
    if signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.SIG_DFL, None):
        raise KeyboardInterrupt
    signal.raise_signal(signal.SIGINT)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Preserve online evidence in a signed, hash-chained, Merkle-tree ledger.",
    pretty_exceptions_enable=False,
)
key_app = typer.Typer(no_args_is_help=True, help="Signing keys of this evidence home.")
app.add_typer(key_app, name="key")

# What we print is data (names, URLs, page titles): ":name:" must stay text,
# and every string from outside goes through display.shown or display.text.
out = Console(emoji=False)
err = Console(stderr=True, emoji=False)
_state: dict[str, Any] = {"debug": False}

JsonOpt = typer.Option(False, "--json", help="Print one JSON object on stdout.")
#: ledger indexes are 64-bit signed integers in SQLite and PostgreSQL
MAX_INDEX = 2**63 - 1


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json_safe(json.dumps(obj, ensure_ascii=False, indent=2)) + "\n")


def fail(message: str, code: int) -> NoReturn:
    """One line on stderr and exit ``code``; ``message`` is plain text, never markup."""
    err.print(f"[bold red]error:[/] {shown(message)}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


def _bounded(param: Any, value: int | None, low: int) -> int | None:
    # Raised as our UsageError, not the parser's, so it is one line and never
    # an OverflowError deep in SQL.
    if value is not None and not low <= value <= MAX_INDEX:
        name = param.opts[0] if param.opts[0].startswith("-") else str(param.name).upper()
        raise UsageError(f"{name} must be a whole number from {low} to {MAX_INDEX}, not {value}")
    return value


def _index(param: typer.CallbackParam, value: int | None) -> int | None:
    """Typer callback for a ledger index."""
    return _bounded(param, value, 0)


def _count(param: typer.CallbackParam, value: int | None) -> int | None:
    """Typer callback for a number of records (at least one)."""
    return _bounded(param, value, 1)


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
    continues: Path | None = typer.Option(None, "--continues", help="Signed checkpoint note of an older log this one continues (its latest-checkpoint.note); recorded in the log-init record."),
    as_json: bool = JsonOpt,
) -> None:
    """Create the evidence home: signing key, ledger database, artifact store."""
    from ledger.log import Ledger

    note = None
    if continues is not None:
        try:
            note = continues.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"cannot read --continues {continues}: {getattr(e, 'strerror', None) or e}") from None
    led = Ledger.init(unencrypted=no_passphrase, origin=origin, db_url=db_url, artifacts=artifacts, continues=note)
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
    out.print(Text.assemble("Evidence home created at ", text(info["home"], "bold")))
    out.print(f"  log origin   {shown(info['origin'])}")
    out.print(f"  signing key  {shown(info['key_id'])} ({'encrypted' if not no_passphrase else 'UNENCRYPTED'})")
    out.print(f"  verifier key {shown(info['vkey'])}")
    out.print(f"  database     {shown(info['database'])}")


@key_app.command("show")
def key_show(as_json: bool = JsonOpt) -> None:
    """Print the log's current verifier key(s), retired keys with their lifetimes, and registered signers."""
    from ledger.keys import key_id_for
    from ledger.log import key_add_facts, verify_key_add
    from ledger.trust import RetiredVerifier

    led = _open()
    try:
        trust = led.trust()
        retired = [
            {"key_id": key_id_for(v.public_raw), "vkey": v.vkey, "last_valid_size": v.last_valid_size,
             "retired_by_record": v.retired_by_record, "successor_key_id": v.successor_key_id}
            for v in trust.verifiers if isinstance(v, RetiredVerifier)
        ]
        signers = []
        for r in led.records_of_kind("key-add"):
            try:
                kid, _raw, name, role = verify_key_add(r.payload)
                problem = None
            except EvidenceError as e:
                kid, name, role, problem = str(r.payload.get("key_id")), str(r.payload.get("name")), str(r.payload.get("role")), str(e)
            signers.append({"index": r.index, "key_id": kid, "name": name, "role": role, **key_add_facts(r.payload),
                            **({"problem": problem} if problem else {})})
        info = {"origin": led.origin, "current_key_id": led.config.key_id,
                "vkeys": [v.vkey for v in trust.current()], "retired": retired, "signers": signers}
    finally:
        led.close()
    if as_json:
        emit(info)
        return
    for v in info["vkeys"]:
        out.print(text(v), highlight=False)
    for r in retired:
        out.print(text(f"retired: {r['vkey']}  (key {r['key_id']}: records 0..{r['last_valid_size'] - 1}, "
                       f"checkpoints of size <= {r['last_valid_size']}; retired by record {r['retired_by_record']})"),
                  highlight=False)
    for sg in signers:
        facts = "".join(f", {k} {sg[k]}" for k in ("badge", "unit") if k in sg)
        bad = f"  NOT VERIFIED: {sg['problem']}" if "problem" in sg else ""
        out.print(text(f"{sg['role']}: {sg['name']}{facts}  (key {sg['key_id']}, record {sg['index']}){bad}"), highlight=False)


@key_app.command("rotate")
def key_rotate(
    delete_old: bool = typer.Option(False, "--delete-old", help="Delete the retired private key instead of moving it to keys-retired/."),
    as_json: bool = JsonOpt,
) -> None:
    """Replace the signing key; the rotation is recorded, signed by old and new key.

    The old key is retired: valid for records up to the rotation record and
    checkpoints up to the tree that ends with it (keys/retired/ says so).
    """
    led = _open()
    try:
        rec = led.rotate_key(delete_old=delete_old)
        old = rec.payload["old_key_id"]
        info = {"index": rec.index, "old_key_id": old, "new_key_id": rec.payload["new_key_id"],
                "vkey": led.config.trusted_vkeys[-1], "last_valid_size": rec.index + 1,
                "retired_private_key": None if delete_old else str(led.home.retired_keys_dir / f"{old}.key")}
    finally:
        led.close()
    if as_json:
        emit(info)
    else:
        out.print(f"Key rotated at record {info['index']}: {shown(info['old_key_id'])} -> {shown(info['new_key_id'])}", highlight=False)
        out.print(f"  retired key {shown(old)} signs nothing after record {rec.index} (checkpoints of size <= {rec.index + 1})", highlight=False, soft_wrap=True)
        out.print(f"  its private key: {shown(info['retired_private_key'] or 'deleted')}", highlight=False, soft_wrap=True)
        out.print(text(f"  new verifier key {info['vkey']}"), highlight=False, soft_wrap=True)


@key_app.command("add")
def key_add(
    officer: str = typer.Option(..., "--officer", help="Name of the officer (or worker) the key belongs to."),
    badge: str | None = typer.Option(None, "--badge", help="The officer's badge number (执法证号); required for officers, signed into the key-add record."),
    unit: str | None = typer.Option(None, "--unit", help="The officer's unit, signed into the key-add record."),
    role: str = typer.Option("officer", "--role", help="officer (may only attest) or writer (may append)."),
    as_json: bool = JsonOpt,
) -> None:
    """Create and register another signer's key, recorded in the ledger.

    An officer's key is encrypted with the officer's own passphrase (asked on
    the terminal, hidden and twice; or EVIDENCE_OFFICER_PASSPHRASE, or
    EVIDENCE_OFFICER_PASSPHRASE_FILE); a writer's with the home's.
    """
    from evidence.officers import officer_passphrase
    from ledger.errors import ConfigError

    if role == "officer" and badge is None:
        raise UsageError("an officer's key needs --badge NUMBER (执法证号), which the key-add record states")
    led = _open()
    try:
        signers = led.config.extra.get("signers")
        if isinstance(signers, dict) and officer in signers:
            raise ConfigError(f"a key named {officer!r} is already registered")
        pp = officer_passphrase(officer, confirm=True) if role == "officer" else None
        rec = led.add_key(officer, role, pp, badge=badge, unit=unit)
    finally:
        led.close()
    info = {"index": rec.index, "name": officer, "role": role, "key_id": rec.payload["key_id"],
            **{k: rec.payload[k] for k in ("badge", "unit") if k in rec.payload}}
    if as_json:
        emit(info)
    else:
        out.print(f"Key {shown(info['key_id'])} registered for {shown(officer)} ({shown(role)}) at record {rec.index}", highlight=False)


@app.command(context_settings={"ignore_unknown_options": True})
def attest(
    index: int = typer.Argument(..., help="Ledger index of the exhibit record.", callback=_index),
    officer: str = typer.Option(..., "--officer", help="The attesting officer (their registered key signs)."),
    statement: str | None = typer.Option(None, "--statement", help="What the officer attests."),
    witness: str | None = typer.Option(None, "--witness", help="Name of the 见证人 (a non-official third party), signed into the attestation."),
    witness_id: str | None = typer.Option(None, "--witness-id", help="The witness's ID as TYPE:NUMBER, e.g. 居民身份证:110101199001011234."),
    witness_contact: str | None = typer.Option(None, "--witness-contact", help="How to reach the witness."),
    holder_note: str | None = typer.Option(None, "--holder-note", help="Why the party/holder did not sign (or what they said)."),
    as_json: bool = JsonOpt,
) -> None:
    """A second officer attests an exhibit record with their own key (and own passphrase)."""
    from evidence.app import acts
    from evidence.officers import officer_passphrase
    from ledger.log import declared_facts

    facts = declared_facts(witness=witness, witness_id=witness_id, witness_contact=witness_contact, holder_note=holder_note)
    led = _open()
    try:
        entry = led.signer_entry(officer)
        led.exhibit_record(index)  # an unknown officer or a wrong index is said before any passphrase is asked
        # Keys made before officers had their own passphrases are under the home's.
        unlock = acts.OfficerUnlock(officer, officer_passphrase(officer) if entry.get("own_passphrase") else None)
        rec = acts.attest(led, index, unlock, statement, witness=facts.get("witness"), holder_note=facts.get("holder_note"))
    finally:
        led.close()
    info = {"index": rec.index, "exhibit_index": index, "officer": officer, "key_id": rec.key_id}
    if as_json:
        emit(info)
    else:
        out.print(f"Exhibit {index} attested by {shown(officer)} (key {shown(rec.key_id[:8])}) at record {rec.index}", highlight=False)


@app.command(context_settings={"ignore_unknown_options": True})
def record(
    index: int = typer.Argument(..., help="Ledger index of the exhibit record.", callback=_index),
    fmt: str = typer.Option("docx", "--format", help="docx, pdf or html."),
    output: Path = typer.Option(..., "-o", "--output", help="File to write."),
    place: str | None = typer.Option(None, "--place", help="Where the extraction took place (default: the case's `case set --place`, else 'office' in the home's config.json)."),
    tz: str | None = typer.Option(None, "--tz", help="Time zone of the times shown (IANA name; default EVIDENCE_TZ, else Asia/Shanghai)."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1, writing nothing, if a hard requirement is missing (two officers, 案由, 当事人, 证明对象)."),
    as_json: bool = JsonOpt,
) -> None:
    """Write the extraction record (电子数据提取笔录) of an exhibit, in Chinese and English."""
    from evidence.app import acts
    from evidence.extraction import FORMATS, disclosures

    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    led = _open()
    try:
        result = acts.extraction_record(led, index, fmt, output, strict=strict, tz=tz, place=place,
                                           tsa_roots=_tsa_roots([]))
    finally:
        led.close()
    rec, path, lacking = result.record, result.path, result.missing
    if path is None:
        # One line per missing requirement and nothing else, so scripts can count them; no file is written.
        for line in lacking:
            err.print(f"[bold red]missing:[/] {shown(line)}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    info = {
        "path": str(path), "format": fmt, "exhibit_index": index, "case": rec.case,
        "artifacts": len(rec.artifacts), "attesting_officers": rec.officers,
        "unverified_attestations": [a.index for a in rec.attestations if not a.verified],
        "tz": rec.tz.key, "missing": lacking, "disclosures": [d.code for d in disclosures(rec)],
    }
    if as_json:
        emit(info)
        return
    out.print(f"Extraction record of exhibit {index} (case {shown(rec.case)}, {len(rec.artifacts)} artifacts) -> {shown(path)}", highlight=False)
    for a in rec.attestations:
        if not a.verified:
            err.print(f"[yellow]warning:[/] attestation record {a.index} by {shown(a.officer)} is not verified: {shown(a.problem)}", highlight=False)


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
    tail: int | None = typer.Option(None, "--tail", help="Only the last N records.", callback=_count),
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
    table = Table(title=text(f"{len(recs)} record(s)" + (f" of case {case}" if case else "")))
    for col in ("index", "time (system clock, UTC)", "kind", "case", "key", "summary", "leaf"):
        table.add_column(col, overflow="fold")
    for r in recs:
        row = (str(r.index), r.time, r.kind, r.case or "", r.key_id[:8], _summary(r.payload), r.leaf.hex()[:16])
        table.add_row(*(text(c) for c in row))
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
    post_load_wait: float = typer.Option(1.0, "--post-load-wait", help="Seconds after the load event, on the page's own clock, that its timers are waited for before the snapshots count (0: off, with a warning)."),
    max_scroll: int = typer.Option(30, "--max-scroll", help="Scroll steps for lazy loading (bounds infinite scroll)."),
    viewport: str | None = typer.Option(None, "--viewport", help="Viewport WIDTHxHEIGHT (default 1366x768; not with --device)."),
    mobile: bool = typer.Option(False, "--mobile", help="Emulate a mobile device (not with --device)."),
    device: str | None = typer.Option(None, "--device", help="Emulate a device by its Playwright name, e.g. \"iPhone 13\" (`evidence devices` lists them): user agent, viewport, scale factor, touch, mobile."),
    session: str | None = typer.Option(None, "--session", help="Start from a saved login (`evidence session login`); the exhibit records which."),
    expect: list[str] = typer.Option([], "--expect", help="Text the final page must show (repeat); without it the capture is refused, exit 1, nothing appended."),
    proxy: str | None = typer.Option(None, "--proxy", help="Proxy server for the browser (recorded)."),
    trust_root: list[Path] = typer.Option([], "--trust-root", help="Extra trusted root CA (PEM) for the certificate check."),
    no_mhtml: bool = typer.Option(False, "--no-mhtml", help="Skip the MHTML snapshot."),
    record_process: bool | None = typer.Option(None, "--record-process/--no-record-process", help="Record the browser session as a WebM video artifact (default: on with --interactive)."),
    interactive: bool = typer.Option(False, "--interactive", help="Open a visible browser; press Enter here to seal what you visited."),
    time_source: str | None = typer.Option(None, "--time-source", help="HTTP(S) URL whose Date header the clock is checked against (config: time_source; default: the latest RFC 3161 anchor)."),
    max_clock_offset: float | None = typer.Option(None, "--max-clock-offset", help="Seconds of clock offset before the exhibit warns (config: max_clock_offset; default 2)."),
    ip_echo: str | None = typer.Option(None, "--ip-echo", help="Endpoint answering with our public IP, recorded in the exhibit (config: ip_echo)."),
    deadline: float | None = typer.Option(None, "--deadline", help="Seconds one page's capture may take in all (default: load timeout + settle timeout + 60); what was obtained by then is sealed, with a warning."),
    officer: list[str] = typer.Option([], "--officer", help="Registered officer who performs the extraction (repeat): their key, unlocked with their own passphrase, co-signs each exhibit at capture."),
    proves: str | None = typer.Option(None, "--proves", help="What the exhibit is offered to prove (证明对象)."),
    witness: str | None = typer.Option(None, "--witness", help="Name of the 见证人 (a non-official third party); needs --witness-id."),
    witness_id: str | None = typer.Option(None, "--witness-id", help="The witness's ID as TYPE:NUMBER, e.g. 居民身份证:110101199001011234."),
    witness_contact: str | None = typer.Option(None, "--witness-contact", help="How to reach the witness."),
    no_witness_reason: str | None = typer.Option(None, "--no-witness-reason", help="Why there is no witness (then record the process: --record-process)."),
    holder_note: str | None = typer.Option(None, "--holder-note", help="Why the party/holder did not sign (or what they said)."),
    as_json: bool = JsonOpt,
) -> None:
    """Capture a web page (traffic, screenshots, DOM, TLS, environment) as a signed exhibit."""
    from evidence.officers import unlock_officers
    from ledger.log import AtCapture, declared_facts

    facts = declared_facts(proves=proves, witness=witness, witness_id=witness_id, witness_contact=witness_contact,
                           no_witness_reason=no_witness_reason, holder_note=holder_note)
    if officer and operator is None:
        operator = officer[0]
    from capture import capture_many, capture_page
    from capture.environment import check_proxy

    if (url is None) == (urls is None):
        raise UsageError("give either a URL or --urls FILE")
    if interactive and urls is not None:
        raise UsageError("--interactive captures one URL, not --urls")
    if device is not None and (viewport is not None or mobile):
        # A device is one consistent set (user agent, size, scale, touch): mixing in parts is refused.
        raise UsageError("--device sets the viewport and mobile emulation itself: drop --viewport/--mobile, or --device")
    try:
        w, h = (int(x) for x in (viewport or "1366x768").lower().split("x"))
    except ValueError:
        raise UsageError(f"--viewport must look like 1366x768, not {viewport!r}") from None
    check_proxy(proxy)  # before the ledger opens and any browser starts
    opts = dict(
        load_timeout=load_timeout, settle_timeout=settle_timeout, post_load_wait=post_load_wait,
        max_scroll_steps=max_scroll, viewport_width=w, viewport_height=h, is_mobile=mobile, proxy=proxy,
        trust_roots=tuple(trust_root), mhtml=not no_mhtml,
        record_process=interactive if record_process is None else record_process,
        capture_deadline=deadline,
    )
    stopped: str | None = None
    led = _open()
    # As Ctrl-C: the browser closes and the capture's temporary files go.
    before = signal.signal(signal.SIGTERM, as_ctrl_c)
    try:
        opts.update(_check_settings(led, time_source, max_clock_offset, ip_echo))
        opts.update(page_options(led, session=session, device=device, expect=expect))
        if officer or facts:  # officers' keys unlocked now, before any browser starts
            opts["at_capture"] = AtCapture(unlock_officers(led, officer), facts)
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
                        err.print(f"[yellow]failed:[/] {shown(error)}", highlight=False)

                batch = capture_many(todo, case=case, operator=operator, note=note, ledger=led, progress=progress, **opts)
            exhibits, failures = batch.exhibits, batch.failures
            stopped = batch.stopped
            if stopped and not as_json:
                err.print(f"[red]stopped:[/] {shown(stopped)}", highlight=False)
        elif interactive:
            exhibits, failures = [_interactive(str(url), case, operator, note, led, opts)], []
        else:
            exhibits, failures = [capture_page(url, case=case, operator=operator, note=note, ledger=led, **opts)], []
    finally:
        led.close()
        signal.signal(signal.SIGTERM, before)
    rows = [_exhibit_summary(ex) for ex in exhibits]
    if as_json:
        emit({"exhibits": rows, "failures": [{"url": u, "error": e} for u, e in failures], **({"stopped": stopped} if stopped else {})})
    else:
        for r in rows:
            out.print(f"[green]exhibit[/] record {r['index']}  {shown(r['url'])} -> {shown(r['final_url'])} (HTTP {shown(r['status'])})", highlight=False)
            out.print(f"  manifest sha256:{shown(r['manifest_sha256'])}  {r['artifacts']} artifacts", highlight=False)
            for w_ in r["warnings"]:
                err.print(f"  [yellow]warning:[/] {shown(w_)}", highlight=False)
    if failures:
        # A page that lacked its expected text (a lapsed login) is a failed check, not a broken machine.
        raise typer.Exit(1 if stopped else 3)


def page_options(led: Any, *, session: str | None, device: str | None, expect: list[str]) -> dict[str, Any]:
    """CaptureOptions arguments for --session, --device and --expect (``evidence.app.options``)."""
    from evidence.app.options import page_options as options

    return options(led, session=session, device=device, expect=expect)


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
        "officers": [o for o in info.get("officers") or [] if isinstance(o, dict)],
    }


@app.command()
def livestream(
    url: str | None = typer.Argument(None, help="The stream (.m3u8, .mpd, .flv, .mp4, .webm) or a page that plays it."),
    case: str = typer.Option(..., "--case", help="Case id the windows belong to."),
    duration: float = typer.Option(..., "--duration", help="Seconds to record (the capture may end earlier)."),
    frame_interval: float = typer.Option(1.0, "--frame-interval", help="Seconds between frames (screenshots, decoded frames)."),
    window: float = typer.Option(10.0, "--window", help="Seconds per sealed window (a crash loses at most one)."),
    max_bytes: int | None = typer.Option(None, "--max-bytes", help="Stop after this many bytes of traffic."),
    max_frames: int | None = typer.Option(None, "--max-frames", help="Stop after this many stored frames."),
    dedupe: bool = typer.Option(False, "--dedupe", help="Count identical consecutive frames instead of storing them."),
    mode: str = typer.Option("auto", "--mode", help="auto, hls, dash, progressive, page, flv or resolve."),
    urls: Path | None = typer.Option(None, "--urls", help="A file of room URLs, one a line: record them all at once."),
    concurrency: int | None = typer.Option(None, "--concurrency", help="With --urls: rooms recorded at the same time (default: all)."),
    wait_live: float | None = typer.Option(None, "--wait-live", help="Wait up to this many seconds for the stream to go live."),
    operator: str | None = typer.Option(None, "--operator", help="Who captures (recorded in every window)."),
    note: str | None = typer.Option(None, "--note", help="Free text recorded with every window."),
    session: str | None = typer.Option(None, "--session", help="Saved login (`evidence session`) the page-mode browser or the resolver starts from (with --mode page or resolve)."),
    no_screen_record: bool = typer.Option(False, "--no-screen-record", help="Page mode: no screen video (录屏) of the viewport and its sound."),
    as_json: bool = JsonOpt,
) -> None:
    """Record a live stream (or several rooms with --urls) into sealed windows of evidence; Ctrl-C ends it cleanly."""
    from capture.livestream import capture_livestream, capture_rooms, read_rooms

    if (url is None) == (urls is None):
        fail("give either a stream URL or --urls FILE", 2)
    if session is not None and mode not in ("page", "resolve"):
        raise UsageError("--session is used by the browser of page mode and the resolver: give --mode page or resolve")
    common = dict(
        case=case, duration=duration, frame_interval=frame_interval, window=window, max_bytes=max_bytes,
        max_frames=max_frames, dedupe=dedupe, operator=operator, note=note, mode=mode, wait_live=wait_live,
        screen_record=not no_screen_record,
    )  # fmt: skip
    if urls is not None:
        rooms = read_rooms(urls)
        led = _open()
        try:
            if session is not None:
                common["login"] = page_options(led, session=session, device=None, expect=[])["session"]
            r = capture_rooms(rooms, concurrency=concurrency, ledger=led, **common)
        finally:
            led.close()
        if as_json:
            emit(r.to_json())
        else:
            for s in r.sessions:
                out.print(f"[green]room[/] {shown(s.url)} ({shown(s.mode)}): {len(s.windows)} window(s), end record {s.end_index}, ended: {shown(s.end_reason)}; {s.segments} segment(s), {s.frames} frame(s)", highlight=False, soft_wrap=True)
            for u, e in r.failed:
                err.print(f"  [yellow]room not recorded:[/] {shown(u)}: {shown(e)}", highlight=False, soft_wrap=True)
        if not any(s.segments or s.frames for s in r.sessions):
            fail(f"nothing was recorded from {len(rooms)} room(s)" + (f": {r.failed[0][1]}" if r.failed else ""), 3)
        return
    assert url is not None
    led = _open()
    quiet = as_json or not err.is_terminal
    try:
        if session is not None:  # unlocked before any browser starts
            common["login"] = page_options(led, session=session, device=None, expect=[])["session"]
        with Progress(
            TextColumn("recording"), BarColumn(), TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(), console=err, transient=True, disable=quiet,
        ) as bar:  # fmt: skip
            task = bar.add_task("livestream", total=max(duration, 1), status="starting")

            def progress(e: dict[str, Any]) -> None:
                if e.get("event") in ("tick", "window"):
                    mb = e["total_bytes"] / 1e6
                    bar.update(task, completed=e["elapsed"], status=f"{e['windows']} window(s) sealed, {e['total_frames']} frames, {mb:.1f} MB")

            s = capture_livestream(url, ledger=led, progress=progress, **common)
    finally:
        led.close()
    if as_json:
        emit(s.to_json())
    else:
        records = f" as records {s.windows[0]}..{s.windows[-1]}" if s.windows else ""
        out.print(f"[green]livestream[/] {shown(s.url)} ({shown(s.mode)}): {len(s.windows)} window(s) sealed{records}, end record {s.end_index}", highlight=False, soft_wrap=True)
        dups = f" (+{s.duplicates} duplicate(s) counted)" if s.duplicates else ""
        out.print(f"  ended: {shown(s.end_reason)}; {s.segments} segment(s), {s.frames} frame(s){dups}, {s.bytes} bytes", highlight=False, soft_wrap=True)
        for e in s.errors[:10]:
            err.print(f"  [yellow]warning:[/] {shown(e)}", highlight=False)
    if not (s.segments or s.frames):
        why = s.errors[0] if s.errors else s.end_reason
        fail(f"nothing was recorded from {s.url}: {why} (end record {s.end_index})", 3)


@app.command()
def export(
    case: str = typer.Argument(..., help="Case id to export."),
    output: Path = typer.Option(..., "-o", "--output", help="The case file to write (.wacz)."),
    mode: str = typer.Option("0644", "--mode", help="Permission bits of the case file, octal (0644: a web server can serve it for replay)."),
    as_json: bool = JsonOpt,
) -> None:
    """Write one case as a WACZ case file with records, proofs, checkpoints, anchors and keys."""
    from evidence.case import export_case

    if not (len(mode) in (3, 4) and all(c in "01234567" for c in mode) and (len(mode) == 3 or mode[0] == "0")):
        raise UsageError(f"--mode must be octal permission bits such as 0644 or 0600, not {shown(mode)}")
    led = _open()
    try:
        s = export_case(led, case, output, mode=int(mode, 8),
                        progress=None if as_json else (lambda m: err.print(f"  {shown(m)}", highlight=False)))
    finally:
        led.close()
    info = {"path": str(s.path), "case": s.case, "exhibits": s.exhibits, "records": s.records, "files": s.files, "bytes": s.bytes, "checkpoint_size": s.checkpoint_size}
    if as_json:
        emit(info)
    else:
        out.print(f"Case {shown(case)}: {s.exhibits} exhibit(s), {s.records} record(s), {s.files} files -> {shown(s.path)}", highlight=False)


@app.command()
def verify(
    case_file: Path = typer.Argument(..., help="Case file (.wacz) to verify."),
    trust: list[str] = typer.Option([], "--trust", help="Log verifier key (vkey, file or directory) to pin."),
    tsa_root: list[Path] = typer.Option([], "--tsa-root", help="TSA root certificate (PEM) to verify timestamps (also EVIDENCE_TSA_ROOTS)."),
    witness: list[str] = typer.Option([], "--witness", help="Witness cosignature vkey to trust."),
    min_witnesses: int = typer.Option(0, "--min-witnesses", help="Require this many trusted witness cosignatures."),
    require_trust: bool = typer.Option(False, "--require-trust", help="Fail unless keys are pinned with --trust."),
    allow_incomplete: bool = typer.Option(
        False, "--allow-incomplete",
        help="Report what is proven in a bundle that is incomplete (no export record, files missing or unbound): "
             "never VALID; exit 0 only if everything present checks out."),
    report: Path | None = typer.Option(None, "--report", help="Write a bilingual HTML report here."),
    deposit_config: list[Path] = typer.Option([], "--deposit-config", help="JSON config of an HTTP JSON deposit service, to check its receipts offline."),
    as_json: bool = JsonOpt,
) -> None:
    """Verify a case file offline: digests, signatures, proofs, checkpoints, anchors, completeness."""
    from evidence.app import checks

    res = checks.verify(
        case_file, report=report, trust=_read_trust(trust) if trust else (), tsa_roots=_tsa_roots(tsa_root),
        witnesses=witness, min_witnesses=min_witnesses, allow_incomplete=allow_incomplete,
        deposits=_deposit_adapters(deposit_config),
    )
    if as_json:
        emit(res.to_json())
    else:
        failed = [c for c in res.checks if not c.ok]
        if failed:
            table = Table(title=text(f"Case {res.case}: {len(failed)} of {len(res.checks)} checks FAILED"))
            for col in ("check", "where", "why"):
                table.add_column(col, overflow="fold")
            for c in failed[:60]:
                table.add_row(text(c.name), text(c.where or ""), text(c.detail))
        else:
            # One line per kind of check: the report and --json list every single one.
            table = Table(title=text(f"Case {res.case}: all {len(res.checks)} checks passed"))
            for col in ("check", "passed", "for example"):
                table.add_column(col, overflow="fold")
            kinds: dict[str, list[Any]] = {}
            for c in res.checks:
                kinds.setdefault(c.name, []).append(c)
            for name, cs in kinds.items():
                table.add_row(text(name), text(str(len(cs)), "green"), text(f"{cs[0].where or ''}: {cs[0].detail}"[:160]))
        out.print(table)
        for w_ in res.warnings:
            err.print(f"[yellow]warning:[/] {shown(w_)}", highlight=False)
        for ex in res.exhibits:
            state = "" if res.complete else (" [proven]" if ex.get("proven") else " [NOT proven]")
            out.print(f"exhibit {shown(ex['index'])}{state}: {shown(ex['url'])} captured {shown(ex.get('started'))} by {shown(ex.get('operator'))}", highlight=False)
        for ex in res.unproven_exhibits:
            out.print(f"exhibit {shown(ex['index'])} [NOT proven]: {shown(ex['why'])}", highlight=False)
        if res.allow_incomplete:
            for g in res.gaps[:60]:
                err.print(f"[yellow]not proven:[/] {shown(g.where or g.name)}: {shown(g.detail)}", highlight=False)
        if report is not None:
            out.print(f"Report: {shown(report)}", highlight=False)
    if res.first_failure is not None:
        fail(f"case file is {res.verdict()}", 1)
    if require_trust and not res.trusted:
        fail("no keys pinned (--trust): the bundle's keys are self-declared", 1)
    if not res.complete:
        # Only with --allow-incomplete: every present part checked out, so exit 0, but never "valid".
        if not as_json:
            err.print(text(res.verdict(), "yellow"), highlight=False, soft_wrap=True)
        return
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
        # The note's lines are its format; what is inside them (the origin) is data.
        for line in cp.note.rstrip("\n").split("\n"):
            out.print(text(line), highlight=False)


def _progress(label: str) -> Progress:
    return Progress(
        TextColumn(label), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=True,
    )


@app.command()
def audit(
    trust: list[str] = typer.Option([], "--trust", help="Verifier key to trust instead of the home's: vkey, file, or directory (DIR/*.vkey current, DIR/retired/ retired keys with lifetimes)."),
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
    vkeys = _read_trust(trust) if trust else led.trust()
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
            table.add_row(text(c.name), "[green]ok[/]" if c.ok else "[red]FAILED[/]", text(c.detail))
        out.print(table)
        for p in res.problems[:20]:
            out.print(f"  [red]✗[/] {shown(p)}", highlight=False)
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
    exhibits: bool = typer.Option(False, "--exhibits", help="Also deposit each exhibit's manifest SHA-256 with every --deposit-config service that does not hold it yet."),
    as_json: bool = JsonOpt,
) -> None:
    """Anchor the latest checkpoint: RFC 3161 timestamps, witness cosignatures, deposits (and exhibits)."""
    from ledger.anchors import (
        Witness,
        anchor_checkpoint,
        needs_anchor,
        parse_interval,
        run_every,
    )

    if tsa_hash not in ("sha256", "sha512"):
        raise UsageError("--tsa-hash must be sha256 or sha512")
    if exhibits and not deposit_config:
        raise UsageError("--exhibits deposits exhibits with the deposit services: give --deposit-config FILE")
    led = _open()
    roots = _tsa_roots(tsa_root)
    witnesses = [Witness.parse(w) for w in witness]
    deposits = _deposit_adapters(deposit_config)

    def once() -> list[Any]:
        results = anchor_checkpoint(
            led, tsa_urls=tsa, roots=roots, hash_alg=tsa_hash, witnesses=witnesses,
            deposits=deposits, timeout=timeout, deadline=deadline, strict=strict, exhibits=exhibits,
        )
        for r in results:
            if as_json:
                continue
            if r.ok:
                t = (r.payload or {}).get("time", "")
                out.print(f"[green]anchored[/] {shown(r.type)} {shown(r.service)} -> record {r.record_index} (checkpoint size {shown((r.payload or {}).get('checkpoint_size'))}) {shown(t)}", highlight=False)
            else:
                err.print(f"[yellow]warning:[/] {shown(r.type)} {shown(r.service)} failed: {shown(r.error)}", highlight=False)
        return results

    if every:
        interval = parse_interval(every)
        out.print(f"Anchoring every {shown(every)} while the tree grows; Ctrl-C stops.", highlight=False)
        run_every(
            interval,
            lambda: needs_anchor(led) and once(),
            on_error=lambda e: err.print(f"[yellow]warning:[/] {shown(e)}", highlight=False),
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


def _deposit_adapters(configs: list[Path]) -> list[Any]:
    """An HTTP JSON deposit adapter per --deposit-config file."""
    from ledger.anchors import HttpJsonDeposit

    deposits = []
    for cfg in configs:
        try:
            deposits.append(HttpJsonDeposit.from_config(json.loads(cfg.read_text("utf-8"))))
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot read deposit config {cfg}: {e}") from None
    return deposits


def _read_trust(items: list[str]) -> Any:
    """Each --trust is a vkey string, a file of vkeys (one a line), or a
    trust directory such as an evidence home's keys/: ``*.vkey`` current keys,
    ``retired/<id>.vkey`` + ``retired/<id>.json`` retired keys with their
    lifetimes (format: ``ledger.trust``)."""
    from ledger.trust import Trust

    return Trust.load(items)


# Team deployment commands (migrate, join, enqueue, worker, jobs, key register).
from . import cli_ops as _cli_ops  # noqa: E402

_cli_ops.register(sys.modules[__name__])
# Case facts (`evidence case set`).
from . import cli_case as _cli_case  # noqa: E402

_cli_case.register(sys.modules[__name__])

# Web app: accounts and `evidence serve`.
from . import cli_web as _cli_web  # noqa: E402

_cli_web.register(sys.modules[__name__])
# Saved logins (`evidence session ...`) and `evidence devices`.
from . import cli_session as _cli_session  # noqa: E402

_cli_session.register(sys.modules[__name__])
# Shop crawls (`evidence crawl`).
from . import cli_crawl as _cli_crawl  # noqa: E402

_cli_crawl.register(sys.modules[__name__])
# Watch lists and the embedded scheduler (`evidence watch`).
from . import cli_watch as _cli_watch  # noqa: E402

_cli_watch.register(sys.modules[__name__])


def _parser_error() -> type[Exception]:
    # typer vendors click since 0.25 and used the click package before: its base error either way.
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def main() -> None:
    """Entry point: run the app, turning every error into one line and an exit code."""
    debug = "--debug" in sys.argv[1:]
    parser_error = _parser_error()
    try:
        # Not standalone: the parser's own errors (bad number, unknown option)
        # come back here, to be one line like every other error.
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except parser_error as e:
        if type(e).__name__ == "NoArgsIsHelpError":
            # The message is the help (rich has printed it already and left it empty).
            if e.format_message().strip():
                err.print(text(e.format_message()), highlight=False)
            sys.exit(2)
        ctx = getattr(e, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        err.print(f"[bold red]error:[/] {shown(e.format_message())}{shown(hint)}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(1)
    except EvidenceError as e:
        if debug:
            raise
        err.print(f"[bold red]error:[/] {shown(e)}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - the last line of defence for users
        if debug:
            raise
        err.print(f"[bold red]internal error:[/] {type(e).__name__}: {shown(e)} (run with --debug for details)", highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
