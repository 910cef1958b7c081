"""Capture pages and seal them as exhibits in the ledger.

    from capture import capture_page
    ex = capture_page("https://shop.example/item/123", case="SAMR-2026-017", operator="Li Wei")
    ex.index, ex.manifest_sha256

Each page is captured into a private temporary directory first; only a
finished capture is handed to the ledger, which stores the artifacts and
appends the ``exhibit`` record last. An error or a kill at any point before
that leaves nothing in the ledger and nothing under a digest path in the
store. What can make sealing fail (the signing key and its passphrase, the
key's registration, the case id, a writable store) is checked before the
browser starts, so a bad setting costs no capture.

The temporary directories (``evidence-capture-*``, ``evidence-batch-*``,
``evidence-interactive-*``) are removed on every exit Python sees; one left by
a killed process is swept by the next capture: each holds a lock file that
its owner keeps locked while it lives.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ledger.errors import CaptureError, EvidenceError, ExpectationFailed, StoreError, UsageError
from ledger.exhibit import Exhibit

from .browser import Browser
from .options import CaptureOptions, check_url
from .session import PageCapture, capture_into

if TYPE_CHECKING:
    from ledger.log import AtCapture

T = TypeVar("T")
WORKDIR_PREFIXES = ("evidence-capture-", "evidence-batch-", "evidence-interactive-")
LOCK_NAME = ".owner.lock"
#: a work directory without a lock file (made by an older version) counts as stale after this
UNLOCKED_STALE_AFTER = 24 * 3600
#: progress(done, total, url, error): called after each URL of a batch
Progress = Callable[[int, int, str, str | None], None]
#: on_capture(position, capture): a batch hands each capture over as it is made
OnCapture = Callable[[int, PageCapture], Awaitable[None]]


@dataclass
class BatchResult:
    """What a batch produced: exhibits in URL order, and the URLs that failed."""

    exhibits: list[Exhibit] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    #: why the batch stopped early (a page lacked its expected text: the login lapsed)
    stopped: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failures


async def _drained(coro: Coroutine[Any, Any, T]) -> T:
    """``coro``, then every task it left behind cancelled and its outcome collected.

    An interrupted capture (SIGTERM, Ctrl-C) leaves handlers for dialogs,
    downloads and DevTools events that fail once the browser is gone.
    ``asyncio.run`` would print each such failure with a traceback at
    shutdown; collected here, the user sees only the one-line error.
    """
    asyncio.get_running_loop().set_exception_handler(_quiet_when_cancelled)
    try:
        return await coro
    finally:
        try:
            me = asyncio.current_task()
            rounds = 5  # a few: an event arriving while tasks are cancelled can start another
        except RuntimeError:
            rounds = 0  # closed outside its loop, as the process ends: nothing is left to collect
        for _ in range(rounds):
            rest = [t for t in asyncio.all_tasks() if t is not me]  # the unfinished ones
            if not rest:
                break
            for t in rest:
                t.cancel()
            await asyncio.gather(*rest, return_exceptions=True)


def _quiet_when_cancelled(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The loop's exception handler: everything but what an interruption leaves behind goes to the default.

    A gather whose tasks ``_drained`` cancelled one by one holds their
    CancelledError, unread, and says so with a traceback when collected; a
    task a KeyboardInterrupt went through holds that; a run interrupted
    before ``_drained`` could collect leaves tasks pending. All are the
    interruption the user already sees as one line.
    """
    if isinstance(context.get("exception"), asyncio.CancelledError | KeyboardInterrupt):
        return
    if str(context.get("message", "")).startswith("Task was destroyed but it is pending"):
        return  # only an interrupted run ends with tasks pending: _drained collects all the others
    loop.default_exception_handler(context)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_drained(coro))
    # Called from inside an event loop (a notebook, an async app): Playwright
    # needs a loop of its own, so run there in a worker thread.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _drained(coro)).result()


def _check_case(case: str) -> str:
    if not isinstance(case, str) or not case.strip():
        raise UsageError("a capture needs a case id (--case)")
    return case.strip()


def _open_ledger(ledger: Any, home: Path | str | None) -> tuple[Any, bool]:
    if ledger is not None:
        led, owned = ledger, False
    else:
        from ledger.log import Ledger

        led, owned = Ledger.open(home), True
    try:
        preflight(led)
    except BaseException:
        if owned:
            led.close()
        raise
    return led, owned


def preflight(led: Any) -> None:
    """Fail now, not after the browser ran, if an exhibit could not be sealed.

    Loads the signing key (a wrong passphrase is found here), checks that the
    ledger lists it, and that the artifact store's directory takes files.
    """
    led.check_registered(led.key)
    root = getattr(led.artifacts, "root", None)
    if isinstance(root, Path) and not os.access(root, os.W_OK | os.X_OK):
        raise StoreError(f"cannot write to artifact store {root}: permission denied")
    # An object store is reached over the network: a dead endpoint or a missing
    # bucket is found before the page is loaded, not at the first upload.
    connect = getattr(led.artifacts, "connect", None)
    if callable(connect):
        connect()


def sweep_workdirs(base: Path | None = None) -> int:
    """Remove work directories of captures whose process is gone; return how many."""
    base = Path(base or tempfile.gettempdir())
    n = 0
    try:
        entries = list(base.iterdir())
    except OSError:
        return 0
    for d in entries:
        if not d.name.startswith(WORKDIR_PREFIXES):
            continue
        try:
            st = d.lstat()
            if not d.is_dir() or d.is_symlink() or st.st_uid != os.getuid():
                continue
            lock = d / LOCK_NAME
            if lock.exists():
                with open(lock, "rb") as f:
                    try:
                        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        continue  # its owner is alive
            elif time.time() - st.st_mtime < UNLOCKED_STALE_AFTER:
                continue  # maybe made a moment ago, its lock not yet taken
            shutil.rmtree(d, ignore_errors=True)
            n += 1
        except OSError:
            continue
    return n


@contextlib.contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    """A private temporary directory, locked while this process uses it, removed after."""
    sweep_workdirs()
    path = Path(tempfile.mkdtemp(prefix=prefix))
    lock = open(path / LOCK_NAME, "wb")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield path
    finally:
        lock.close()
        shutil.rmtree(path, ignore_errors=True)


def latest_anchor(ledger: Any) -> dict[str, Any] | None:
    """The ledger's latest RFC 3161 anchor: the TSA's genTime and our clock's time on its record."""
    from ledger.record import parse_record

    rows = [r for r in ledger.store.anchor_rows() if r["type"] == "rfc3161" and r.get("time")]
    if not rows:
        return None
    row = max(rows, key=lambda r: r["record_idx"])
    stored = ledger.store.record(row["record_idx"])
    if stored is None:
        return None
    rec = parse_record(stored.body, expect_index=row["record_idx"])
    return {
        "gen_time": row["time"],
        "record_time": rec.time,
        "record_index": row["record_idx"],
        "tsa": row["service"],
        "checkpoint_size": row["checkpoint_size"],
    }


def capture_to_dir(
    url: str,
    workdir: Path | str,
    *,
    case: str | None = None,
    operator: str | None = None,
    note: str | None = None,
    **options: Any,
) -> PageCapture:
    """Capture ``url`` into ``workdir`` without touching any ledger."""
    url = check_url(url)
    opts = CaptureOptions.from_kwargs(options)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)

    async def go() -> PageCapture:
        async with Browser(proxy=opts.proxy) as browser:
            return await capture_into(
                browser, url, workdir, options=opts, case=case, operator=operator, note=note
            )

    return _run(go())


def capture_page(
    url: str,
    *,
    case: str,
    operator: str | None = None,
    note: str | None = None,
    home: Path | str | None = None,
    ledger: Any = None,
    at_capture: AtCapture | None = None,
    **options: Any,
) -> Exhibit:
    """Capture one page and seal it as an exhibit of ``case``.

    ``at_capture``: the officers who co-sign at capture (keys unlocked before
    the browser starts) and the facts they declare.

    Raises UsageError (bad URL, case or option), EnvironmentProblem (no
    browser), CaptureError (host unreachable); nothing is appended then.
    """
    url = check_url(url)
    case = _check_case(case)
    opts = CaptureOptions.from_kwargs(options)
    led, owned = _open_ledger(ledger, home)
    try:
        with workdir("evidence-capture-") as tmp:
            anchor = latest_anchor(led)

            async def go() -> PageCapture:
                async with Browser(proxy=opts.proxy) as browser:
                    return await capture_into(
                        browser, url, tmp / "page", options=opts, case=case, operator=operator, note=note,
                        anchor=anchor,
                    )

            pc = _run(go())
            return led.seal_exhibit(case, pc.artifacts, pc.info, at_capture=at_capture)
    finally:
        if owned:
            led.close()


def capture_many(
    urls: Iterable[str],
    *,
    case: str,
    operator: str | None = None,
    note: str | None = None,
    home: Path | str | None = None,
    ledger: Any = None,
    progress: Progress | None = None,
    at_capture: AtCapture | None = None,
    **options: Any,
) -> BatchResult:
    """Capture many pages with one browser (a fresh context each), seal them in one batch.

    A URL that cannot be captured is reported in ``failures`` and does not
    stop the batch. The exhibits are appended together, after the last capture.
    """
    urls = [u.strip() if isinstance(u, str) else u for u in urls]
    case = _check_case(case)
    opts = CaptureOptions.from_kwargs(options)
    led, owned = _open_ledger(ledger, home)
    result = BatchResult()
    try:
        with workdir("evidence-batch-") as tmp:
            anchor = latest_anchor(led)
            captures = _run(_batch(urls, tmp, opts, case, operator, note, progress, result, anchor))
            if captures:
                result.exhibits = led.seal_exhibits(
                    [(case, pc.artifacts, pc.info) for pc in captures], at_capture=at_capture
                )
    finally:
        if owned:
            led.close()
    return result


async def _batch(
    urls: list[str],
    tmp: Path,
    opts: CaptureOptions,
    case: str,
    operator: str | None,
    note: str | None,
    progress: Progress | None,
    result: BatchResult,
    anchor: dict[str, Any] | None = None,
    on_capture: OnCapture | None = None,
) -> list[PageCapture]:
    """Capture ``urls`` in order with one browser.

    With ``on_capture(i, capture)`` each capture is handed over as it is made
    (a crawl seals it at once and may append to ``urls``), not returned.
    """
    captures: list[PageCapture] = []
    browser: Browser | None = None
    try:
        for i, url in enumerate(urls):
            error: str | None = None
            pc: PageCapture | None = None
            try:
                url = check_url(url)
                if browser is None or not browser.browser.is_connected():
                    if browser is not None:  # it crashed: start a new one and go on
                        await browser.__aexit__(None, None, None)
                    browser = await Browser(proxy=opts.proxy).__aenter__()
                into = tmp / f"{i:06d}"
                into.mkdir()
                pc = await capture_into(
                    browser, url, into, options=opts, case=case, operator=operator, note=note,
                    anchor=anchor,
                )
                if on_capture is None:
                    captures.append(pc)
            except (CaptureError, UsageError) as e:
                error = str(e)
            except ExpectationFailed as e:
                # A lapsed login: every later page would be the login page too, so stop here.
                left = [str(u) for u in urls[i + 1:]]
                result.failures.append((str(url), str(e)))
                result.failures += [(u, "not captured: the batch stopped (expected text not found; session expired?)") for u in left]
                result.stopped = f"{e}; the remaining {len(left)} URL(s) were not captured"
                if progress is not None:
                    progress(i + 1, len(urls), str(url), str(e))
                break
            except EvidenceError:
                raise  # no browser at all: the rest would fail the same way
            except Exception as e:  # one hostile page must not end the batch
                error = (
                    f"cannot capture {url}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                )
            if error is not None:
                result.failures.append((str(url), error))
            elif on_capture is not None and pc is not None:
                await on_capture(i, pc)
            if progress is not None:
                progress(i + 1, len(urls), str(url), error)
    finally:
        if browser is not None:
            await browser.__aexit__(None, None, None)
    return captures
