"""Find and launch the Chromium that makes captures.

Debian's ``chromium`` package is driven through Playwright with an explicit
executable (``playwright install`` is not used). ``/usr/lib/chromium/chromium``
is preferred over the ``/usr/bin/chromium`` wrapper script, which adds flags
of its own that we would not see or record.
"""

from __future__ import annotations

import concurrent.futures
import difflib
import functools
import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.errors import EnvironmentProblem, UsageError

CANDIDATES = (Path("/usr/lib/chromium/chromium"), Path("/usr/bin/chromium"))

#: Flags for a quiet, reproducible browser. Background services would add
#: traffic that is not the page's; QUIC is off so every exchange is TCP+TLS
#: with certificates and status lines we can record; site isolation is off so
#: cross-site iframes load in the page's own process, where our DevTools
#: session sees (and records) their traffic.
FLAGS = (
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-site-isolation-trials",
    "--disable-domain-reliability",
    "--disable-breakpad",
    "--metrics-recording-only",
    "--hide-scrollbars",
    "--font-render-hinting=none",
)


def find_chromium() -> Path:
    """The browser executable: EVIDENCE_CHROMIUM, else Debian's Chromium."""
    env = os.environ.get("EVIDENCE_CHROMIUM")
    if env:
        p = Path(env)
        if not (p.is_file() and os.access(p, os.X_OK)):
            raise EnvironmentProblem(f"EVIDENCE_CHROMIUM={env} is not an executable file")
        return p
    for p in CANDIDATES:
        if p.is_file() and os.access(p, os.X_OK):
            return p
    raise EnvironmentProblem(
        "no Chromium found (looked in /usr/lib/chromium/chromium, /usr/bin/chromium): "
        "install the Debian package 'chromium' or set EVIDENCE_CHROMIUM"
    )


def chromium_available() -> bool:
    try:
        find_chromium()
    except EnvironmentProblem:
        return False
    return True


def want_sandbox() -> bool:
    # Chromium refuses to start as root with its sandbox on; containers and CI run as root.
    return not (hasattr(os, "geteuid") and os.geteuid() == 0)


@dataclass
class BrowserFacts:
    """What a court may ask about the browser that made the capture."""

    name: str
    version: str
    product: str
    user_agent: str
    executable: str
    command_line: list[str] = field(default_factory=list)
    protocol_version: str = ""
    headless: bool = True
    sandbox: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "product": self.product,
            "user_agent": self.user_agent,
            "executable": self.executable,
            "command_line": self.command_line,
            "devtools_protocol": self.protocol_version,
            "headless": self.headless,
            "sandbox": self.sandbox,
            "driver": f"playwright {_playwright_version()}",
        }


class Browser:
    """One running Chromium; each capture gets a fresh context from it.

    Use as ``async with Browser(proxy=...) as b:``. Launch failures become
    EnvironmentProblem so the CLI can print one line and exit 3.
    """

    def __init__(self, proxy: str | None = None, *, headless: bool = True, display: str | None = None):
        self.proxy = proxy
        self.headless = headless
        #: X display for a headed browser (e.g. a private Xvfb); None keeps ours
        self.display = display
        self.executable = find_chromium()
        self._pw: Any = None
        self.browser: Any = None
        self.facts: BrowserFacts | None = None

    async def __aenter__(self) -> Browser:
        try:
            from playwright.async_api import Error as PlaywrightError
            from playwright.async_api import async_playwright
        except ImportError as e:
            raise EnvironmentProblem("the 'playwright' Python package is not installed") from e
        self._pw = await _start_driver(async_playwright)
        sandbox = want_sandbox()
        try:
            try:
                self.browser = await self._launch(sandbox)
            except PlaywrightError as e:
                # Without unprivileged user namespaces the sandbox cannot start;
                # run without it rather than not at all, and record that we did.
                if not sandbox or "sandbox" not in str(e).lower():
                    raise
                sandbox = False
                self.browser = await self._launch(sandbox)
            self.facts = await self._read_facts()
            self.facts.sandbox = sandbox
            self.facts.headless = self.headless
        except PlaywrightError as e:
            await self._pw.stop()
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise EnvironmentProblem(f"cannot start Chromium at {self.executable}: {first}") from e
        return self

    async def _launch(self, sandbox: bool) -> Any:
        return await self._pw.chromium.launch(
            executable_path=str(self.executable),
            args=list(FLAGS),
            headless=self.headless,
            chromium_sandbox=sandbox,
            proxy={"server": self.proxy} if self.proxy else None,
            env={**os.environ, "DISPLAY": self.display} if self.display else None,
        )

    async def _read_facts(self) -> BrowserFacts:
        cdp = await self.browser.new_browser_cdp_session()
        try:
            ver = await cdp.send("Browser.getVersion")
        finally:
            await cdp.detach()
        product = ver.get("product", "")
        version = product.partition("/")[2] or self.browser.version
        # DevTools calls every Chromium build "Chrome"; say what we launched.
        name = (
            "Chromium"
            if "chromium" in self.executable.name.lower()
            else (product.partition("/")[0] or "Chromium")
        )
        return BrowserFacts(
            name=name,
            version=version,
            product=product,
            user_agent=ver.get("userAgent", ""),
            executable=str(self.executable),
            command_line=await self._command_line(),
            protocol_version=ver.get("protocolVersion", ""),
        )

    async def _command_line(self) -> list[str]:
        # DevTools only reveals the command line with --enable-automation, which
        # also tells pages they are automated. Read it from /proc (exact argv),
        # else from chrome://version.
        argv = _proc_command_line(self.executable)
        if argv:
            return argv
        ctx = await self.browser.new_context()
        try:
            page = await ctx.new_page()
            await page.goto("chrome://version", timeout=10000)
            text = await page.inner_text("#command_line", timeout=5000)
            return shlex.split(text)
        except Exception:
            return []
        finally:
            await ctx.close()

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self.browser is not None:
                await self.browser.close()
        finally:
            if self._pw is not None:
                await self._pw.stop()


def _proc_command_line(executable: Path) -> list[str]:
    """argv of the browser we launched: a descendant of ours running ``executable``."""
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    parents: dict[int, int] = {}
    for d in proc.iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
                parents[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    ours = {os.getpid()}
    changed = True
    while changed:  # all descendants: the driver, then the browser under it
        changed = False
        for pid, ppid in parents.items():
            if ppid in ours and pid not in ours:
                ours.add(pid)
                changed = True
    found = []
    for pid in ours - {os.getpid()}:
        try:
            argv = (proc / str(pid) / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode("utf-8", "replace") for a in argv if a]
        if args and Path(args[0]).name == executable.name and not any(a.startswith("--type=") for a in args):
            found.append((pid, args))
    # With several browsers launched by this process, the newest is ours.
    return max(found)[1] if found else []


# -- device descriptors ------------------------------------------------------------


def _read_devices() -> dict[str, dict[str, Any]]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        raise EnvironmentProblem("the 'playwright' Python package is not installed") from e
    with sync_playwright() as p:
        return {name: dict(d) for name, d in p.devices.items()}


@functools.lru_cache(maxsize=1)
def devices() -> dict[str, dict[str, Any]]:
    """Playwright's device descriptors (``playwright.devices``), by name.

    They are only handed out by a running driver; it is started in a thread of
    its own so that this works inside an event loop too (the sync API refuses one).
    """
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(_read_devices).result()


def device_descriptor(name: str) -> dict[str, Any]:
    """The descriptor of device ``name``, or UsageError with the nearest names."""
    known = devices()
    if isinstance(name, str) and name in known:
        return dict(known[name])
    near = difflib.get_close_matches(str(name), list(known), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(repr(n) for n in near)}? " if near else ""
    raise UsageError(f"unknown device {name!r}: {hint}`evidence devices` lists the {len(known)} names")


def _playwright_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("playwright")
    except PackageNotFoundError:
        return "unknown"


# -- the video encoder ----------------------------------------------------------
#
# Playwright records a context's video by piping screencast frames into an
# ffmpeg it looks up in its own download registry (``playwright install
# ffmpeg``). We install nothing from Playwright's CDN: when that ffmpeg is
# missing, the driver is pointed at a private registry whose ffmpeg entry is
# the system's (Debian's ffmpeg has the libvpx-vp9 encoder Playwright asks
# for). Chromium itself never comes from the registry (executable_path).


def _registry_ffmpeg_revision() -> str | None:
    try:
        import playwright

        browsers = Path(playwright.__file__).parent / "driver" / "package" / "browsers.json"
        for b in json.loads(browsers.read_text("utf-8"))["browsers"]:
            if b.get("name") == "ffmpeg":
                return str(b["revision"])
    except (ImportError, OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _registry_dir() -> Path:
    env = os.environ.get("PLAYWRIGHT_BROWSERS_PATH")
    if env and env != "0":
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ms-playwright"


@functools.lru_cache(maxsize=1)
def video_encoder() -> dict[str, Any]:
    """The ffmpeg that encodes process videos, and the registry that makes Playwright use it."""
    rev = _registry_ffmpeg_revision()
    if rev is None or not sys.platform.startswith("linux"):
        return {"ffmpeg": None, "registry": None, "statement": "Playwright's own ffmpeg lookup is used"}
    own = _registry_dir() / f"ffmpeg-{rev}" / "ffmpeg-linux"
    if own.is_file():
        return {"ffmpeg": str(own), "version": _ffmpeg_version(own), "registry": None, "source": "playwright"}
    system = shutil.which("ffmpeg")
    if system is None:
        return {"ffmpeg": None, "registry": None, "statement": "no ffmpeg: process videos cannot be recorded"}
    shim = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "evidence-chain" / "playwright"
    link = shim / f"ffmpeg-{rev}" / "ffmpeg-linux"
    try:
        link.parent.mkdir(parents=True, exist_ok=True)
        if not (link.is_symlink() and os.readlink(link) == system):
            tmp = link.with_name(f".ffmpeg-linux.{os.getpid()}")
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(system)
            os.replace(tmp, link)
    except OSError as e:
        return {"ffmpeg": None, "registry": None, "statement": f"cannot prepare the video encoder: {e}"}
    return {"ffmpeg": system, "version": _ffmpeg_version(Path(system)), "registry": str(shim), "source": "system"}


def _ffmpeg_version(path: Path) -> str:
    try:
        out = subprocess.run([str(path), "-version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.splitlines()[0] if out else ""


async def _start_driver(async_playwright: Any) -> Any:
    registry = video_encoder().get("registry")
    if not registry:
        return await async_playwright().start()
    # The driver reads its registry location once, from the environment it starts with.
    before = os.environ.get("PLAYWRIGHT_BROWSERS_PATH")
    os.environ["PLAYWRIGHT_BROWSERS_PATH"] = registry
    try:
        return await async_playwright().start()
    finally:
        if before is None:
            os.environ.pop("PLAYWRIGHT_BROWSERS_PATH", None)
        else:
            os.environ["PLAYWRIGHT_BROWSERS_PATH"] = before
