"""Facts about the capturing machine that a court may ask about.

Tool and browser versions, operating system, time zone and clock source,
proxy settings in effect, and the fonts available (a page in Chinese shown
with no CJK font renders as empty boxes, so the font list is part of what
the screenshot means).
"""

from __future__ import annotations

import datetime as dt
import functools
import http.client
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ledger.errors import UsageError
from ledger.version import __version__

TOOL = "evidence-chain"
#: Variables a browser or HTTP client on this machine may take a proxy from
#: (SOCKS_SERVER is Chromium's own on Linux); any other ``*_proxy`` is recorded too.
PROXY_VARS = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "FTP_PROXY",
    "NO_PROXY",
    "SOCKS_SERVER",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "ftp_proxy",
    "no_proxy",
)
PROXY_SCHEMES = ("http", "https", "socks4", "socks5")
REDACTED = "***"


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def rfc3339(t: dt.datetime | float) -> str:
    if isinstance(t, (int, float)):
        t = dt.datetime.fromtimestamp(t, dt.UTC)
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def tool_version() -> str:
    return f"{TOOL} {__version__}"


@functools.lru_cache(maxsize=1)
def fonts() -> dict[str, Any]:
    """Font families fontconfig offers, and those that cover Chinese."""
    fc = shutil.which("fc-list")
    if fc is None:
        return {"fontconfig": False, "families": [], "chinese": []}

    def families(*args: str) -> list[str]:
        try:
            out = subprocess.run([fc, *args, "family"], capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.SubprocessError):
            return []
        return sorted({line.split(",")[0].strip() for line in out.splitlines() if line.strip()})

    return {"fontconfig": True, "families": families(":"), "chinese": families(":lang=zh-cn")}


@functools.lru_cache(maxsize=1)
def _os_release() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return ""


def _timezone() -> dict[str, Any]:
    name = os.environ.get("TZ") or ""
    if not name:
        try:
            link = os.readlink("/etc/localtime")
            name = link.split("zoneinfo/", 1)[1] if "zoneinfo/" in link else link
        except OSError:
            try:
                name = Path("/etc/timezone").read_text().strip()
            except OSError:
                name = ""
    offset = dt.datetime.now().astimezone().utcoffset() or dt.timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    return {
        "name": name or time.tzname[0],
        "utc_offset": f"{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}",
    }


def _clock() -> dict[str, Any]:
    d: dict[str, Any] = {
        "source": "system clock",
        "statement": (
            "capture times are read from this machine's system clock (CLOCK_REALTIME) and are "
            "not checked against an external time source by the capture; trusted time comes "
            "from the ledger's RFC 3161 anchors"
        ),
    }
    # Whether the OS says its clock is synchronised, when it can tell us.
    if (tdc := _timedated()) is not None and (synced := _ntp_synchronized(tdc)) is not None:
        d["ntp_synchronized"] = synced
    return d


def _ntp_synchronized(tdc: str) -> bool | None:
    try:
        out = subprocess.run(
            [tdc, "show", "-p", "NTPSynchronized", "--value"], capture_output=True, text=True, timeout=3
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode == 0 and out.stdout.strip():
        return out.stdout.strip() == "yes"
    return None


@functools.lru_cache(maxsize=1)
def _timedated() -> str | None:
    """timedatectl, if it answers on this machine; asked once per process.

    A machine without systemd-timedated (a container) has the command but never
    an answer: asking again at every capture would only cost its start-up. Where
    it answers, the state is read anew for every capture (it can change).
    """
    tdc = shutil.which("timedatectl")
    return tdc if tdc is not None and _ntp_synchronized(tdc) is not None else None


_SCHEME = re.compile(r"\s*[A-Za-z][A-Za-z0-9+.-]*://")
_AT = re.compile(r"@|%40", re.IGNORECASE)


def redact_proxy(value: str | None) -> str | None:
    """``value`` with any credentials replaced by ``***``: a proxy URL with or
    without a scheme, a NO_PROXY list, Chromium's ``--proxy-server`` rules.

    Everything between the scheme (if any) and the last ``@`` goes: a password
    may itself hold ``@``, ``:``, ``,`` or ``%40``, so no parse of it can be
    trusted to find where it ends, and a list loses the entries before the
    credentials rather than risk keeping a piece of them.
    """
    if value is None:
        return None
    value = str(value)
    ats = list(_AT.finditer(value))
    if not ats:
        return value
    scheme = _SCHEME.match(value)
    return f"{scheme.group(0) if scheme else ''}{REDACTED}@{value[ats[-1].end() :]}"


def redact_argv(argv: list[str]) -> list[str]:
    """A browser's command line with the credentials in ``--proxy-server`` redacted."""
    out: list[str] = []
    for i, a in enumerate(argv):
        if a.startswith("--proxy-server="):
            a = "--proxy-server=" + (redact_proxy(a.split("=", 1)[1]) or "")
        elif i and argv[i - 1] == "--proxy-server":
            a = redact_proxy(a) or ""
        out.append(a)
    return out


def check_proxy(value: str | None) -> str | None:
    """``value`` if a browser can be given it as its proxy, else a UsageError.

    Called before any browser starts: by CaptureOptions (so by capture_page,
    capture_many, capture_to_dir and the interactive capture) and by the
    ``evidence capture`` command. The message never repeats the credentials.
    """
    if value is None:
        return None
    shape = "a proxy must look like http://host:port or socks5://host:port"
    if not isinstance(value, str):
        raise UsageError(f"{shape}, not {type(value).__name__}")
    seen = redact_proxy(value)
    if not value or any(c.isspace() or not c.isprintable() for c in value):
        raise UsageError(f"{shape}, not {seen!r}")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        # urllib's message quotes the port text, which may be a piece of a password.
        raise UsageError(f"{shape}, not {seen!r} (its host or port cannot be read)") from None
    if parts.scheme not in PROXY_SCHEMES:
        why = (
            "no scheme"
            if "://" not in value
            else f"scheme {parts.scheme!r} is not one of {', '.join(PROXY_SCHEMES)}"
        )
        raise UsageError(f"{shape}, not {seen!r} ({why})")
    if not parts.hostname:
        raise UsageError(f"{shape}, not {seen!r} (no host)")
    if port == 0:
        raise UsageError(f"{shape}, not {seen!r} (port 0)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise UsageError(f"{shape}, not {seen!r} (a proxy URL has no path, query or fragment)")
    return value


def proxy_environment(environ: Any = None) -> dict[str, str]:
    """The proxy variables set in ``environ`` (default: this process's), credentials redacted."""
    environ = os.environ if environ is None else environ
    names = set(PROXY_VARS) | {k for k in environ if k.lower().endswith("_proxy")}
    return {k: redact_proxy(environ[k]) or "" for k in sorted(names) if environ.get(k)}


def proxies(launch_proxy: str | None) -> dict[str, Any]:
    shown = redact_proxy(launch_proxy)
    return {
        "browser_proxy": shown,
        "environment": proxy_environment(),
        "statement": (
            f"the browser was launched with proxy {shown}"
            if launch_proxy
            else "no proxy was given to the browser; on Linux without desktop proxy settings "
            "Chromium uses the proxy environment variables listed here (none if empty)"
        ),
    }


@functools.lru_cache(maxsize=1)
def _libraries() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("playwright", "warcio", "cryptography"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def environment(browser: dict[str, Any], launch_proxy: str | None, profile: dict[str, Any]) -> dict[str, Any]:
    return {
        "tool": {"name": TOOL, "version": __version__},
        "python": sys.version.split()[0],
        "libraries": dict(_libraries()),
        "browser": {**browser, "command_line": redact_argv(browser["command_line"])}
        if isinstance(browser.get("command_line"), list)
        else browser,
        "os": {
            "system": platform.system(),
            "release": platform.release(),
            "distribution": _os_release(),
            "machine": platform.machine(),
            "hostname": socket.gethostname(),
        },
        "user": _user(),
        "timezone": _timezone(),
        "clock": _clock(),
        "proxy": proxies(launch_proxy),
        "profile": profile,
        "fonts": fonts(),
    }


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError, AttributeError):
        return os.environ.get("USER", "")


# -- the clean-environment check made before each capture ------------------------
#
# Everything here lands in the exhibit manifest, which is canonical JSON and
# has no floats: durations and offsets are whole milliseconds.

CHECK_TIMEOUT = 5.0
#: an echo endpoint's answer is read up to this size; an IP address is short
ECHO_LIMIT = 4096


def _opener(proxy: str | None) -> tuple[Any, str]:
    import urllib.request

    if proxy and urlsplit(proxy).scheme in ("http", "https"):
        handler = urllib.request.ProxyHandler({"http": proxy, "https": proxy})
        return urllib.request.build_opener(handler), f"through the browser's proxy {redact_proxy(proxy)}"
    # The browser's route is what matters; environment proxies would be a
    # different route than the one the browser was given.
    route = "direct"
    if proxy:
        route = f"direct (the browser's proxy {redact_proxy(proxy)} is not an HTTP proxy this check can use)"
    return urllib.request.build_opener(urllib.request.ProxyHandler({})), route


def _fetch(url: str, proxy: str | None, timeout: float, limit: int) -> tuple[Any, bytes, float, float, str]:
    """GET ``url``; return (headers, first ``limit`` bytes, wall time sent, wall time answered, route)."""
    import urllib.request

    opener, route = _opener(proxy)
    req = urllib.request.Request(url, headers={"User-Agent": tool_version(), "Cache-Control": "no-cache"})
    sent = time.time()
    with opener.open(req, timeout=timeout) as resp:
        answered = time.time()
        body = resp.read(limit)
        return resp.headers, body, sent, answered, route


def _failure(e: BaseException) -> str:
    reason = getattr(e, "reason", None)
    if reason is not None and not isinstance(e, TimeoutError):
        return str(reason)
    return str(e) or type(e).__name__


def http_date_clock(url: str, *, proxy: str | None = None, timeout: float = CHECK_TIMEOUT) -> dict[str, Any]:
    """This machine's clock against the ``Date`` header of an HTTP server.

    An HTTP-date is truncated to the second, so the server's time lies in
    [Date, Date + 1 s); the offset is taken from the middle of that second to
    the middle of our request, and the uncertainty is half a second plus half
    the round trip.
    """
    import email.utils
    import urllib.error

    out: dict[str, Any] = {"source": "http-date", "url": url}
    sent = time.time()
    try:
        headers, _, sent, answered, route = _fetch(url, proxy, timeout, 0)
    except urllib.error.HTTPError as e:
        # An error status still carries the server's Date.
        headers, answered, route = e.headers, time.time(), _opener(proxy)[1]
    except (OSError, ValueError, http.client.HTTPException) as e:
        return {**out, "reachable": False, "error": _failure(e)}
    out["route"] = route
    date = headers.get("Date") if headers is not None else None
    try:
        server = email.utils.parsedate_to_datetime(date).timestamp() if date else None
    except (TypeError, ValueError):
        server = None
    if server is None:
        return {**out, "reachable": True, "error": f"no usable Date header (got {date!r})"}
    local = (sent + answered) / 2
    return {
        **out,
        "reachable": True,
        "server_date": date,
        "local_time": rfc3339(local),
        "offset_ms": round((server + 0.5 - local) * 1000),
        "uncertainty_ms": round((0.5 + (answered - sent) / 2) * 1000),
        "round_trip_ms": round((answered - sent) * 1000),
    }


def anchor_clock(anchor: dict[str, Any], *, now: dt.datetime | None = None) -> dict[str, Any]:
    """This machine's clock against the latest RFC 3161 anchor in the ledger.

    ``anchor`` holds the TSA's genTime (``gen_time``) and the time this
    machine wrote on the anchor record (``record_time``) moments later. Their
    difference is the clock's offset when the anchor was made (the TSA round
    trip included); a clock now earlier than genTime has been set back since.
    """
    gen = _parse_time(anchor["gen_time"])
    written = _parse_time(anchor["record_time"])
    now = now or now_utc()
    offset = round((gen - written).total_seconds() * 1000)
    return {
        "source": "rfc3161-anchor",
        "tsa": anchor.get("tsa"),
        "anchor_record": anchor.get("record_index"),
        "checkpoint_size": anchor.get("checkpoint_size"),
        "gen_time": anchor["gen_time"],
        "record_time": anchor["record_time"],
        "offset_ms": offset,
        # genTime is usually whole seconds, and the record is written after the reply.
        "uncertainty_ms": 1000,
        "measured_ago_s": int((now - written).total_seconds()),
        "clock_after_gen_time": now >= gen,
    }


def _parse_time(value: str) -> dt.datetime:
    t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def clock_check(
    *,
    time_source: str | None,
    anchor: dict[str, Any] | None,
    max_offset: float,
    proxy: str | None = None,
    timeout: float = CHECK_TIMEOUT,
) -> tuple[dict[str, Any], list[str]]:
    """The clock's offset from the configured HTTP-date source, else from the latest anchor.

    Returns the facts and the warnings to put into the exhibit.
    """
    limit_ms = round(max_offset * 1000)
    warnings: list[str] = []
    if time_source:
        ref = http_date_clock(time_source, proxy=proxy, timeout=timeout)
    elif anchor:
        ref = anchor_clock(anchor)
    else:
        ref = {
            "source": None,
            "reachable": False,
            "error": "no time source configured and no RFC 3161 anchor in the ledger",
        }
    ref["max_offset_ms"] = limit_ms
    offset = ref.get("offset_ms")
    if offset is None:
        ref["within_limit"] = None
        # Nothing to check against is a fact for the record; a source that
        # was asked for and failed is worth a warning.
        if time_source:
            warnings.append(f"system clock not checked: {time_source}: {ref.get('error')}")
    else:
        ref["within_limit"] = abs(offset) <= limit_ms
        where = ref.get("url") or f"the RFC 3161 anchor of {ref.get('gen_time')}"
        if not ref["within_limit"]:
            warnings.append(
                f"system clock is {abs(offset) / 1000:.1f} s {'behind' if offset > 0 else 'ahead of'} "
                f"{where} (limit {max_offset:g} s): the capture times in this exhibit are off by that much"
            )
        if ref.get("clock_after_gen_time") is False:
            warnings.append(f"system clock is earlier than the last RFC 3161 anchor ({ref['gen_time']})")
    return ref, warnings


def outbound_ip(
    url: str | None, *, proxy: str | None = None, timeout: float = CHECK_TIMEOUT
) -> dict[str, Any]:
    """The public address the capture's traffic leaves from, as an echo endpoint sees it.

    The endpoint may answer with the bare address or with JSON carrying it
    under ``ip``, ``origin`` or ``address``.
    """
    import ipaddress
    import json

    if not url:
        return {"checked": False, "reason": "no IP echo endpoint configured"}
    out: dict[str, Any] = {"checked": True, "endpoint": url}
    try:
        _, body, _, _, route = _fetch(url, proxy, timeout, ECHO_LIMIT)
    except (OSError, ValueError, http.client.HTTPException) as e:
        return {**out, "reachable": False, "error": _failure(e)}
    out.update(reachable=True, route=route)
    text = body.decode("utf-8", "replace").strip()
    candidate = text
    try:
        obj = json.loads(text)
        if isinstance(obj, dict):
            candidate = str(next((obj[k] for k in ("ip", "origin", "address") if k in obj), ""))
    except ValueError:
        pass
    # httpbin-style "origin" lists every hop; the last is the one the server saw.
    candidate = candidate.split(",")[-1].strip()
    try:
        out["ip"] = str(ipaddress.ip_address(candidate))
    except ValueError:
        out["error"] = f"the endpoint did not answer with an IP address: {text[:100]!r}"
    return out


def extensions_check(command_line: list[str]) -> dict[str, Any]:
    """Whether the browser could have had extensions: judged from its exact argv."""
    loaded = [a for a in command_line if a.startswith(("--load-extension", "--disable-extensions-except"))]
    disabled = "--disable-extensions" in command_line
    return {
        "disabled_by_flag": disabled,
        "loaded_by_flag": loaded,
        "none": disabled and not loaded,
        "command_line_known": bool(command_line),
    }


def user_data_dir(command_line: list[str]) -> str | None:
    for a in command_line:
        if a.startswith("--user-data-dir="):
            return a.split("=", 1)[1]
    return None


def profile_check(
    state: dict[str, Any], pages: int, user_data_dir: str | None, session: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The clean-environment check of a new browser context, before the page loads.

    ``state`` is the context's storage state as the browser reports it; with a
    saved login (``session``: its facts), the context must hold that session's
    cookies and storage and nothing else, and the check says so.
    """
    cookies = state.get("cookies", [])
    origins = state.get("origins", [])
    profile: dict[str, Any] = {
        "fresh_context": True,
        "persistent_profile": False,
        "cookies_before": len(cookies),
        "origins_with_storage_before": len(origins),
        "pages_before": pages,
        "service_workers": "blocked",
        "browser_user_data_dir": user_data_dir,
    }
    if session is None:
        profile["profile"] = "fresh profile"
        profile["statement"] = (
            "each capture runs in a new, empty browser context (in-memory profile: no cookies, "
            "storage, cache or history from earlier browsing); the browser itself was started "
            "with a temporary profile directory"
        )
        profile["clean"] = not cookies and not origins and pages == 0
        return profile
    want = sorted((c["name"], c["domain"], c["path"]) for c in session.get("cookies", []))
    have = sorted((c.get("name"), c.get("domain"), c.get("path")) for c in cookies)
    profile["profile"] = f"logged-in session {session['name']}"
    profile["logged_in_session"] = session["name"]
    profile["statement"] = (
        f"each capture runs in a new browser context started from logged-in session {session['name']} "
        f"(made {session.get('made_at')} by {session.get('made_by') or 'unknown'}): its "
        f"{len(want)} cookie(s) and the local storage of {len(session.get('origins_with_storage', []))} "
        "origin(s), no cache or history; cookies the page sets during the capture are not saved back "
        "to the session; the browser itself was started with a temporary profile directory"
    )
    profile["clean"] = have == want and len(origins) <= len(session.get("origins_with_storage", [])) and pages == 0
    return profile
