"""Facts about the capturing machine that a court may ask about.

Tool and browser versions, operating system, time zone and clock source,
proxy settings in effect, and the fonts available (a page in Chinese shown
with no CJK font renders as empty boxes, so the font list is part of what
the screenshot means).
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from evidence import __version__

TOOL = "evidence-chain"
PROXY_VARS = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
)


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
    if (tdc := shutil.which("timedatectl")) is not None:
        try:
            out = subprocess.run(
                [tdc, "show", "-p", "NTPSynchronized", "--value"], capture_output=True, text=True, timeout=3
            )
            if out.returncode == 0 and out.stdout.strip():
                d["ntp_synchronized"] = out.stdout.strip() == "yes"
        except (OSError, subprocess.SubprocessError):
            pass
    return d


def _redact(value: str) -> str:
    # Proxy URLs may carry credentials; the record must not.
    try:
        p = urlsplit(value)
    except ValueError:
        return value
    if p.password or p.username:
        host = p.hostname or ""
        netloc = f"***@{host}" + (f":{p.port}" if p.port else "")
        return urlunsplit((p.scheme, netloc, p.path, p.query, p.fragment))
    return value


def proxies(launch_proxy: str | None) -> dict[str, Any]:
    env = {k: _redact(v) for k in PROXY_VARS if (v := os.environ.get(k))}
    return {
        "browser_proxy": _redact(launch_proxy) if launch_proxy else None,
        "environment": env,
        "statement": (
            f"the browser was launched with proxy {_redact(launch_proxy)}"
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
        "browser": browser,
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
