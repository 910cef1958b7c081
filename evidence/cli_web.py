"""`evidence user ...` and `evidence serve`: the web app's accounts and its server.

Registered on the main app by ``evidence.cli`` through ``register``, like
``cli_case``; same conventions (``--json``, one-line errors, exit codes).
"""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path
from typing import Any

import typer

from ledger.display import shown
from ledger.errors import UsageError

from .users import Users

user_app = typer.Typer(no_args_is_help=True, help="Accounts of the web app (evidence serve).")
_cli: Any = None  # the running evidence.cli module (set by register)


def register(cli_module: Any) -> None:
    global _cli
    _cli = cli_module
    cli_module.app.add_typer(user_app, name="user")
    cli_module.app.command("serve")(serve)


def _users() -> Users:
    led = _cli._open()
    try:
        return Users(led.home.root)
    finally:
        led.close()


@user_app.command("add")
def user_add(
    name: str = typer.Argument(..., help="User name for the login form."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from standard input (one line)."),
    officer: str | None = typer.Option(None, "--officer", help="Registered officer this user acts as (attests with that officer's key and passphrase)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Add a web user; the password is stored as an Argon2id hash."""
    if not password_stdin:
        raise UsageError("give the password on standard input with --password-stdin (it is never a command-line argument)")
    password = sys.stdin.readline().rstrip("\r\n")
    led = _cli._open()
    try:
        if officer is not None:
            entry = led.signer_entry(officer)  # unknown officer: one line, nothing written
            if entry.get("role") != "officer":
                raise UsageError(f"{officer!r} holds a {entry.get('role')} key, not an officer's")
        user = Users(led.home.root).add(name, password, officer)
    finally:
        led.close()
    if as_json:
        _cli.emit(user.to_json())
    else:
        bound = f", acting as officer {shown(officer)}" if officer else ""
        _cli.out.print(f"User {shown(user.name)} added{bound}", highlight=False)


@user_app.command("list")
def user_list(as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout.")) -> None:
    """List the web users."""
    users = _users().list()
    if as_json:
        _cli.emit({"users": [u.to_json() for u in users]})
        return
    for u in users:
        _cli.out.print(f"{shown(u.name)}  officer={shown(u.officer or '-')}  added {shown(u.created)}", highlight=False)


@user_app.command("remove")
def user_remove(name: str = typer.Argument(..., help="User to remove.")) -> None:
    """Remove a web user (their sessions end when the server restarts)."""
    _users().remove(name)
    _cli.out.print(f"User {shown(name)} removed", highlight=False)


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (default: this machine only)."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port to listen on."),
    cert: Path | None = typer.Option(None, "--cert", help="TLS certificate (PEM): serve HTTPS."),
    key: Path | None = typer.Option(None, "--key", help="TLS private key (PEM) of --cert."),
    upload_limit: int = typer.Option(4 << 30, "--upload-limit", min=1, help="Largest case file /verify accepts, in bytes."),
) -> None:
    """Serve the web app: cases, exhibits, capture, attest, records, export and verification."""
    # Loaded here, not with the CLI: every other command would pay for the web stack's imports.
    import uvicorn

    from .web import Settings, create_app

    if (cert is None) != (key is None):
        raise UsageError("give both --cert and --key, or neither")
    for p in (cert, key):
        if p is not None and not p.is_file():
            raise UsageError(f"{p} is not a file")
    try:
        public = not ipaddress.ip_address(host).is_loopback
    except ValueError:
        public = host != "localhost"
    led = _cli._open()  # a missing or broken home is said now, not at the first request
    led.close()
    if not Users(led.home.root).list():
        _cli.err.print("[yellow]warning:[/] no web users yet: add one with `evidence user add NAME --password-stdin`", highlight=False)
    if public and cert is None:
        _cli.err.print("[yellow]warning:[/] serving beyond this machine without HTTPS: passwords and cookies cross the network in clear (give --cert/--key)", highlight=False)
    settings = Settings(home=led.home.root, secure=cert is not None, upload_limit=upload_limit)
    scheme = "https" if cert else "http"
    _cli.err.print(f"Serving on {scheme}://{shown(host)}:{port}/ (Ctrl-C to stop)", highlight=False)
    uvicorn.run(create_app(settings), host=host, port=port, ssl_certfile=str(cert) if cert else None,
                ssl_keyfile=str(key) if key else None, log_level="warning", access_log=False)
