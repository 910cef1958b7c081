"""`evidence session ...` (saved logins) and `evidence devices` (device descriptors).

Registered on the main app by ``evidence.cli`` through ``register``, like
``cli_case``; same conventions (``--json``, one-line errors, exit codes of
DESIGN.md). A session's cookie values are never printed.
"""

from __future__ import annotations

import getpass
import socket
from pathlib import Path
from typing import Any

import typer

from ledger.config import Home, default_home
from ledger.display import shown
from ledger.errors import UsageError
from ledger.keys import load_key
from ledger.sessions import LoginSession, SessionStore, check_name, read_storage_state

session_app = typer.Typer(no_args_is_help=True, help="Saved logins (browser storage state), encrypted in the home.")
_cli: Any = None  # the running evidence.cli module (set by register)


def register(cli_module: Any) -> None:
    global _cli
    _cli = cli_module
    cli_module.app.add_typer(session_app, name="session")
    cli_module.app.command("devices")(devices_command)


def open_store() -> SessionStore:
    """The home's sessions, unlocked with the home passphrase (checked against the signing key)."""
    home = Home(default_home())
    cfg = home.load_config()
    store = SessionStore.of_home(home.root)
    store.check_unlocked()
    # A passphrase that is not the home's would lock sessions away under a key nobody knows.
    load_key(home.keys_dir / f"{cfg.key_id}.key", store.passphrase)
    return store


def _made_by(operator: str | None) -> str:
    if operator is not None:
        if not operator.strip():
            raise UsageError("--operator must not be empty")
        return operator.strip()
    return f"{getpass.getuser()}@{socket.gethostname()}"


def _saved(s: LoginSession, as_json: bool) -> None:
    if as_json:
        _cli.emit({"saved": s.facts()})
        return
    _cli.out.print(
        f"session {shown(s.name)} saved: {len(s.storage_state['cookies'])} cookie(s), "
        f"made {shown(s.made_at)} by {shown(s.made_by)}", highlight=False,
    )


@session_app.command("login")
def session_login(
    name: str = typer.Argument(..., help="Name to save the session under."),
    url: str = typer.Argument(..., help="Login page to open."),
    marker: str | None = typer.Option(None, "--marker", help="Text a logged-in page shows (e.g. the account name); a capture with this session whose page lacks it is refused."),
    operator: str | None = typer.Option(None, "--operator", help="Who logs in (recorded with the session; default: the system user)."),
    proxy: str | None = typer.Option(None, "--proxy", help="Proxy server for the browser."),
    replace: bool = typer.Option(False, "--replace", help="Overwrite a session of the same name."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Open a visible browser at URL; log in there, then press Enter here to save the session."""
    # The browser layer is loaded by the commands that start one (as in evidence.cli): every
    # other command starts without Playwright.
    from capture.environment import check_proxy
    from capture.interactive import until_enter
    from capture.login import login_state
    from capture.options import check_url

    check_name(name)
    url = check_url(url)
    check_proxy(proxy)
    made_by = _made_by(operator)
    store = open_store()
    if store.exists(name) and not replace:
        raise UsageError(f"session {name} already exists: delete it first, or pass --replace")
    if marker is not None and not marker.strip():
        raise UsageError("--marker must not be empty")

    def prompt() -> None:
        _cli.err.print(
            "[bold]The browser is open.[/] Log in there, then press [bold]Enter[/] here to save the session.",
            highlight=False,
        )

    state = login_state(url, done=until_enter(prompt=prompt), proxy=proxy)
    session = LoginSession.new(name, state, made_by=made_by, marker=marker, source="login", url=url)
    store.save(session, replace=replace)
    _saved(session, as_json)


@session_app.command("import")
def session_import(
    name: str = typer.Argument(..., help="Name to save the session under."),
    file: Path = typer.Argument(..., help="Playwright storage-state JSON (context.storage_state())."),
    marker: str | None = typer.Option(None, "--marker", help="Text a logged-in page shows; a capture whose page lacks it is refused."),
    operator: str | None = typer.Option(None, "--operator", help="Who made the session (default: the system user)."),
    replace: bool = typer.Option(False, "--replace", help="Overwrite a session of the same name."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Save a Playwright storage-state file as a session (encrypted; the file itself is left alone)."""
    check_name(name)
    state = read_storage_state(file)
    if marker is not None and not marker.strip():
        raise UsageError("--marker must not be empty")
    made_by = _made_by(operator)
    store = open_store()
    session = LoginSession.new(name, state, made_by=made_by, marker=marker, source="import")
    store.save(session, replace=replace)
    _saved(session, as_json)


@session_app.command("list")
def session_list(as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout.")) -> None:
    """The saved sessions: name, who made them and when, how many cookies."""
    store = open_store()
    rows = []
    for n in store.names():
        s = store.load(n)
        f = s.facts()
        rows.append({k: f[k] for k in ("name", "made_at", "made_by", "source", "marker")} | {"cookies": len(f["cookies"])})
    if as_json:
        _cli.emit({"sessions": rows})
        return
    if not rows:
        _cli.out.print("no sessions saved (`evidence session login NAME URL` or `session import NAME FILE`)")
    for r in rows:
        _cli.out.print(
            f"{shown(r['name'])}  made {shown(r['made_at'])} by {shown(r['made_by'])} ({r['source']}), "
            f"{r['cookies']} cookie(s)" + (f", marker {shown(r['marker'])!s}" if r["marker"] else ""),
            highlight=False,
        )


@session_app.command("show")
def session_show(
    name: str = typer.Argument(..., help="Session name."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Cookie names, domains and expiry of a session (never their values)."""
    f = open_store().load(check_name(name)).facts()
    if as_json:
        _cli.emit(f)
        return
    _cli.out.print(f"session {shown(f['name'])}: made {shown(f['made_at'])} by {shown(f['made_by'])} ({f['source']})", highlight=False)
    if f["url"]:
        _cli.out.print(f"  login page  {shown(f['url'])}", highlight=False)
    if f["marker"]:
        _cli.out.print(f"  marker      {shown(f['marker'])}", highlight=False)
    for c in f["cookies"]:
        _cli.out.print(f"  cookie {shown(c['name'])}  domain {shown(c['domain'])}  path {shown(c['path'])}  "
                       f"expires {shown(c['expires'] or 'end of session')}", highlight=False)
    for o in f["origins_with_storage"]:
        _cli.out.print(f"  local storage {shown(o['origin'])}: {o['local_storage_keys']} key(s)", highlight=False)


@session_app.command("delete")
def session_delete(
    name: str = typer.Argument(..., help="Session name."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Delete a saved session."""
    SessionStore.of_home().delete(check_name(name))
    if as_json:
        _cli.emit({"deleted": name})
    else:
        _cli.out.print(f"session {shown(name)} deleted", highlight=False)


def devices_command(as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout.")) -> None:
    """Device names for `capture --device` (Playwright's device descriptors)."""
    from capture.browser import devices

    known = devices()
    if as_json:
        _cli.emit({"devices": [
            {"name": n, "viewport": d["viewport"], "device_scale_factor": d["device_scale_factor"],
             "is_mobile": d["is_mobile"], "has_touch": d["has_touch"], "user_agent": d["user_agent"]}
            for n, d in known.items()
        ]})
        return
    for n, d in known.items():
        vp = d["viewport"]
        _cli.out.print(f"{shown(n)}  {vp['width']}x{vp['height']} x{d['device_scale_factor']}"
                       + ("  mobile" if d["is_mobile"] else ""), highlight=False)
