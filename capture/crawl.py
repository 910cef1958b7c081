"""Crawl a shop: the start page and every in-scope page it leads to, one exhibit each.

    from capture.crawl import crawl, resume
    res = crawl("https://shop.example/", case="SAMR-2026-017", ledger=led, max_pages=200, delay=1.0)
    res.crawl_id, res.record_index, res.exhibits
    res = resume(res.crawl_id, ledger=led)            # after a kill or a pause

Breadth first, with one browser (the batch path of ``capture_many``): each
page is sealed as soon as it is captured, and in the same transaction the
crawl state (``ledger.crawls``) marks it done and queues the in-scope links
read from the sealed DOM. A kill at any point loses at most the page being
captured, which a resume captures again; no page is sealed twice. At the end
a signed ``crawl`` record lists every page with its exhibit index and the
link graph, out-of-scope links included (listed, never followed).
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

from ledger.crawls import Crawl, Crawls
from ledger.errors import CaptureError, EvidenceError, ExpectationFailed, UsageError
from ledger.record import Draft, utc_now

from .options import CaptureOptions, check_url
from .page import BatchResult, _batch, _check_case, _run, latest_anchor, preflight, workdir
from .session import PageCapture

KIND = "crawl"
SCOPE_KINDS = ("host", "prefix", "regex")
DEFAULT_MAX_PAGES = 100
DEFAULT_DELAY = 1.0
#: the crawl record lists every page with its links: these keep it far below what a verifier reads (16 MiB)
MAX_PAGES = 10_000
MAX_LINKS_PER_PAGE = 2_000
#: progress(done, known, url, error): after each page; ``known`` grows as links are found
CrawlProgress = Callable[[int, int, str, str | None], None]
#: page_options({"session": NAME, "device": NAME, "expect": [TEXT]}) -> CaptureOptions keyword arguments
PageOptions = Callable[[dict[str, Any]], dict[str, Any]]


class CrawlPaused(EvidenceError):
    """The crawl stopped before its end and can be resumed (``evidence crawl --resume ID``)."""

    exit_code = 1


# -- scope -------------------------------------------------------------------


def _origin(url: str) -> tuple[str, str]:
    p = urlsplit(url)
    return p.scheme, p.netloc


def normalise(url: str, base: str | None = None) -> str | None:
    """The URL a link leads to, as the crawl keys it; None if it is not a web page.

    Fragment dropped, scheme and host lower-cased, default port dropped, an
    empty path written as ``/``; the query is kept as it is (it names pages).
    """
    try:
        full = urljoin(base, url.strip()) if base else url.strip()
        p = urlsplit(full)
        port = p.port
    except ValueError:
        return None
    scheme = p.scheme.lower()
    if scheme not in ("http", "https") or not p.hostname:
        return None
    host = p.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != {"http": 80, "https": 443}[scheme]:
        host = f"{host}:{port}"
    if p.username or p.password:
        return None  # credentials in a link: not a page to visit
    if any(c.isspace() for c in full):
        return None
    return urlunsplit((scheme, host, p.path or "/", p.query, ""))


def _compile(pattern: str, flag: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as e:
        raise UsageError(f"{flag} {pattern!r} is not a valid regular expression: {e}") from None


@dataclass(frozen=True)
class Scope:
    """Which links the crawl follows: the scope, narrowed by include and exclude patterns."""

    kind: str  # "host", "prefix" or "regex"
    value: str
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    @classmethod
    def make(cls, start: str, scope: str | None, include: list[str] | tuple[str, ...] = (),
             exclude: list[str] | tuple[str, ...] = ()) -> Scope:
        """``scope``: None or "host" (the start URL's host), an http(s) URL prefix, or a regex."""
        if scope is None or scope == "host":
            s = cls("host", urlsplit(start).netloc, tuple(include), tuple(exclude))
        elif re.match(r"(?i)https?://", scope):
            prefix = normalise(scope)
            if prefix is None:
                raise UsageError(f"--scope {scope!r} is not a usable URL prefix")
            # normalise() writes an empty path as "/": a prefix typed without one means the whole host.
            s = cls("prefix", prefix if urlsplit(scope).path else prefix.rstrip("/"), tuple(include), tuple(exclude))
        else:
            s = cls("regex", scope, tuple(include), tuple(exclude))
        s._patterns()  # a pattern that does not compile is refused now
        if not s.allows(start):
            raise UsageError(f"the start URL {start} is outside the crawl's own scope ({s.describe()})")
        return s

    def _patterns(self) -> tuple[re.Pattern[str] | None, list[re.Pattern[str]], list[re.Pattern[str]]]:
        main = _compile(self.value, "--scope") if self.kind == "regex" else None
        return (main, [_compile(p, "--include") for p in self.include], [_compile(p, "--exclude") for p in self.exclude])

    def matcher(self) -> Callable[[str], bool]:
        main, inc, exc = self._patterns()

        def allows(url: str) -> bool:
            if self.kind == "host":
                ok = urlsplit(url).netloc == self.value
            elif self.kind == "prefix":
                ok = url.startswith(self.value)
            else:
                ok = main is not None and main.search(url) is not None
            return ok and (not inc or any(p.search(url) for p in inc)) and not any(p.search(url) for p in exc)

        return allows

    def allows(self, url: str) -> bool:
        return self.matcher()(url)

    def describe(self) -> str:
        s = {"host": "host {}", "prefix": "prefix {}", "regex": "regex {}"}[self.kind].format(self.value)
        if self.include:
            s += "; include " + ", ".join(self.include)
        if self.exclude:
            s += "; exclude " + ", ".join(self.exclude)
        return s

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self.value, "include": list(self.include), "exclude": list(self.exclude)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Scope:
        return cls(str(d["kind"]), str(d["value"]), tuple(d.get("include") or ()), tuple(d.get("exclude") or ()))


# -- links from the captured DOM -----------------------------------------------


class _Links(HTMLParser):
    """``href`` of every ``<a>`` and ``<area>``, resolved against ``<base href>`` when there is one."""

    def __init__(self, base: str):
        super().__init__(convert_charrefs=True)
        self.base = base
        self.hrefs: list[str] = []
        self._based = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "base" and not self._based:
            href = dict(attrs).get("href")
            if href:
                self.base, self._based = urljoin(self.base, href.strip()), True
        elif tag in ("a", "area"):
            href = dict(attrs).get("href")
            if href is not None:
                self.hrefs.append(href)

    handle_startendtag = handle_starttag


def _html_links(path: Path, base: str) -> list[str]:
    p = _Links(base)
    # Read in slices: a huge DOM is never held whole.
    with open(path, encoding="utf-8", errors="replace") as f:
        while chunk := f.read(1 << 16):
            p.feed(chunk)
    p.close()
    found = (normalise(h, p.base) for h in p.hrefs)
    return [u for u in found if u is not None]


def _dom_documents(pc: PageCapture) -> Iterator[tuple[Path, str]]:
    """The sealed DOM snapshots of a capture, main document first, with the URL each was taken of."""
    final = str(pc.info.get("final_url") or pc.url)
    # about:blank and srcdoc frames have no URL of their own to resolve against: their page's.
    frames = {str(f["artifact"]): str(f["url"]) for f in pc.info.get("frames") or []
              if isinstance(f, dict) and f.get("artifact") and re.match(r"(?i)https?://", str(f.get("url") or ""))}
    main = [a for a in pc.artifacts if a.role == "dom"]
    rest = [a for a in pc.artifacts if a.role != "dom" and "dom" in a.role and a.media_type.startswith("text/html")]
    for a in [*main, *rest]:
        yield a.path, frames.get(a.name, final)


def page_links(pc: PageCapture) -> list[str]:
    """Every page the captured DOM (frames included) links to, normalised, each once, in document order."""
    seen: dict[str, None] = {}
    for path, base in _dom_documents(pc):
        for u in _html_links(path, base):
            seen.setdefault(u, None)
    return list(seen)


# -- the crawl -----------------------------------------------------------------


@dataclass
class CrawlResult:
    crawl_id: int
    case: str
    state: str  # "done" or "paused"
    record_index: int | None = None
    exhibits: list[int] = field(default_factory=list)  # sealed by this run
    failures: list[tuple[str, str]] = field(default_factory=list)  # by this run
    pages: int = 0  # sealed in the whole crawl
    failed: int = 0
    out_of_scope: int = 0
    not_visited: int = 0
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "crawl": self.crawl_id, "case": self.case, "state": self.state, "record": self.record_index,
            "exhibits": self.exhibits, "failures": [{"url": u, "error": e} for u, e in self.failures],
            "pages": self.pages, "failed": self.failed, "out_of_scope_links": self.out_of_scope,
            "not_visited": self.not_visited, "reason": self.reason,
        }


def _bounds(max_pages: int, max_depth: int | None, delay: float) -> None:
    if not isinstance(max_pages, int) or isinstance(max_pages, bool) or not 1 <= max_pages <= MAX_PAGES:
        raise UsageError(f"--max-pages must be a whole number from 1 to {MAX_PAGES}, not {max_pages!r}")
    if max_depth is not None and (not isinstance(max_depth, int) or not 0 <= max_depth <= 1000):
        raise UsageError(f"--max-depth must be a whole number from 0 to 1000, not {max_depth!r}")
    if not isinstance(delay, (int, float)) or isinstance(delay, bool) or not 0 <= delay <= 3600:
        raise UsageError(f"--delay must be between 0 and 3600 seconds, not {delay!r}")


def _stored_options(options: dict[str, Any]) -> dict[str, Any]:
    out = dict(options)
    if "trust_roots" in out:
        out["trust_roots"] = [str(p) for p in out["trust_roots"]]
    return out


@dataclass(frozen=True)
class Prepared:
    """A stored crawl with its capture options resolved: ready for ``run``."""

    crawl: Crawl
    options: CaptureOptions


def crawl(url: str, *, case: str, ledger: Any, progress: CrawlProgress | None = None, **kwargs: Any) -> CrawlResult:
    """Start a crawl of ``url`` for ``case`` (arguments of ``start``) and run it to its end (or a pause)."""
    return run(ledger, start(url, case=case, ledger=ledger, **kwargs), progress)


def resume(crawl_id: int, *, ledger: Any, progress: CrawlProgress | None = None,
           page_options: PageOptions | None = None) -> CrawlResult:
    """Go on with a crawl that was killed or paused, from where its state says it stopped."""
    return run(ledger, reopen(crawl_id, ledger=ledger, page_options=page_options), progress)


def start(
    url: str,
    *,
    case: str,
    ledger: Any,
    operator: str | None = None,
    note: str | None = None,
    scope: str | None = None,
    include: list[str] | tuple[str, ...] = (),
    exclude: list[str] | tuple[str, ...] = (),
    max_pages: int = DEFAULT_MAX_PAGES,
    max_depth: int | None = None,
    delay: float = DEFAULT_DELAY,
    page: dict[str, Any] | None = None,
    page_options: PageOptions | None = None,
    **options: Any,
) -> Prepared:
    """Check everything, then store a new crawl of ``url`` with its start page queued.

    ``page``: the session, device and expected texts by name (stored with the
    crawl, so a resume starts from the same login); ``page_options(page)``
    turns them into capture options, now and at every resume.

    Everything that can be refused (URL, scope and patterns, bounds, capture
    options, session and device, the signing key) is checked before the crawl
    is stored or any browser starts.
    """
    first = normalise(check_url(url))
    if first is None:
        raise UsageError(f"cannot crawl {url!r}")
    case = _check_case(case)
    sc = Scope.make(first, scope, include, exclude)
    _bounds(max_pages, max_depth, delay)
    page = {k: v for k, v in (page or {}).items() if v}
    opts = _options(options, page, page_options)
    preflight(ledger)
    settings = {
        "scope": sc.to_json(), "max_pages": max_pages, "max_depth": max_depth, "delay_ms": round(delay * 1000),
        "note": note, "capture": _stored_options(options), "page": page,
    }
    return Prepared(Crawls(ledger.store).create(case, first, operator=operator, options=settings), opts)


def reopen(crawl_id: int, *, ledger: Any, page_options: PageOptions | None = None) -> Prepared:
    """A stored crawl that is not finished, its options resolved again (the session re-read)."""
    c = Crawls(ledger.store).get(crawl_id)
    if c is None:
        raise UsageError(f"there is no crawl {crawl_id} in this ledger")
    if c.state == "done":
        raise UsageError(f"crawl {crawl_id} is finished (crawl record {c.record_idx}): nothing to resume")
    capture_kwargs = dict(c.options.get("capture") or {})
    if "trust_roots" in capture_kwargs:
        capture_kwargs["trust_roots"] = tuple(capture_kwargs["trust_roots"])
    opts = _options(capture_kwargs, dict(c.options.get("page") or {}), page_options)
    preflight(ledger)
    return Prepared(c, opts)


def _options(options: dict[str, Any], page: dict[str, Any], page_options: PageOptions | None) -> CaptureOptions:
    if page and page_options is None:
        raise UsageError(f"this crawl needs {', '.join(sorted(page))} resolved, and no way to do so was given")
    return CaptureOptions.from_kwargs({**options, **(page_options(page) if page else {})})


def run(led: Any, prepared: Prepared, progress: CrawlProgress | None = None) -> CrawlResult:
    """Crawl until the frontier is empty or ``max_pages`` were visited, then append the crawl record.

    Raises CrawlPaused (state kept) when a page lacks its expected text.
    """
    c, opts = prepared.crawl, prepared.options
    state = Crawls(led.store)
    s = c.options
    sc = Scope.from_json(s["scope"])
    allows = sc.matcher()
    max_pages, max_depth, delay = int(s["max_pages"]), s.get("max_depth"), int(s.get("delay_ms") or 0) / 1000
    note = s.get("note")
    if c.state == "paused":
        state.set_state(c.id, "running")
    res = CrawlResult(c.id, c.case, "running")

    counts = state.counts(c.id)
    budget = max_pages - counts["done"] - counts["failed"]
    plan: list[str] = []  # what the batch visits, in order; extended as pages are sealed
    depth: dict[str, int] = {}
    known = sum(counts.values())

    def top_up() -> None:
        nonlocal known
        want = budget - len(plan)
        if want <= 0:
            return
        waiting = len(plan) - visited  # planned, still queued
        for p in state.next_pages(c.id, waiting + want):
            if p.url not in depth and len(plan) < budget:
                plan.append(p.url)
                depth[p.url] = p.depth
        known = sum(state.counts(c.id).values())

    visited = 0
    top_up()

    async def sealed(i: int, pc: PageCapture) -> None:
        nonlocal visited
        url = plan[i]
        d = depth[url]
        links = page_links(pc)
        found = len(links)
        links = links[:MAX_LINKS_PER_PAGE]  # a hostile page's million links must not bloat the record
        inside = [u for u in links if allows(u)]
        outside = [u for u in links if not allows(u)]
        follow = [] if max_depth is not None and d + 1 > max_depth else [(u, d + 1) for u in inside]
        info = {**pc.info, "crawl": {"crawl": c.id, "depth": d, "links_found": found, "links_kept": len(links)}}
        ex = led.seal_exhibit(
            c.case, pc.artifacts, info,
            on_locked=lambda conn, recs: state.page_done_in(
                conn, c.id, url, recs[0].index, links=inside, out_of_scope=outside, found=follow),
        )
        shutil.rmtree(pc.workdir, ignore_errors=True)  # sealed: the store holds it now
        res.exhibits.append(ex.index)
        visited = i + 1
        top_up()

    batch = BatchResult()
    lapsed: list[str] = []

    def step(done: int, _total: int, url: str, error: str | None) -> None:
        nonlocal visited
        if batch.stopped:
            lapsed.append(error or batch.stopped)
            return  # the page lacked its expected text: it stays queued, the crawl pauses
        if error is not None:
            state.page_failed(c.id, plan[done - 1], error)
            res.failures.append((plan[done - 1], error))
            visited = done
            top_up()
        if progress is not None:
            progress(counts["done"] + counts["failed"] + done, min(known, max_pages), url, error)
        if delay and done < len(plan):
            time.sleep(delay)  # politeness: the shop's server, not our clock, sets the pace

    try:
        with workdir("evidence-batch-") as tmp:
            anchor = latest_anchor(led)
            _run(_batch(plan, tmp, opts, c.case, c.operator, note, step, batch, anchor, on_capture=sealed))
        if batch.stopped:
            raise ExpectationFailed(lapsed[0] if lapsed else batch.stopped)
    except ExpectationFailed as e:
        # Most likely the login lapsed: every further page would be the login page. Stop, resumable;
        # the page that failed stays queued and is captured on resume.
        state.set_state(c.id, "paused", str(e))
        raise CrawlPaused(f"crawl {c.id} paused: {e}; log in again and run `evidence crawl --resume {c.id}`") from e
    return _finish(led, state, c, res)


def _finish(led: Any, state: Crawls, c: Crawl, res: CrawlResult) -> CrawlResult:
    pages: list[dict[str, Any]] = []
    not_visited: list[str] = []
    for p in state.pages(c.id):
        if p.state == "queued":
            not_visited.append(p.url)
            continue
        entry: dict[str, Any] = {"url": p.url, "depth": p.depth, "exhibit_index": p.record_idx}
        if p.state == "done":
            entry["links"] = p.links
            entry["out_of_scope"] = p.out_of_scope
        else:
            entry["error"] = p.error
        pages.append(entry)
    res.pages = sum(1 for p in pages if p["exhibit_index"] is not None)
    res.failed = len(pages) - res.pages
    res.out_of_scope = len({u for p in pages for u in p.get("out_of_scope", ())})
    res.not_visited = len(not_visited)
    if res.pages == 0:
        # Nothing sealed: a crawl record would speak for work that did not happen.
        reason = pages[0]["error"] if pages and pages[0].get("error") else "no page could be captured"
        state.set_state(c.id, "paused", reason)
        res.state, res.reason = "paused", reason
        raise CaptureError(f"crawl {c.id}: no page could be captured ({reason}); "
                           f"`evidence crawl --resume {c.id}` tries again")
    s = c.options
    payload = {
        "crawl": c.id,
        "start_url": c.start_url,
        "scope": s["scope"],
        "max_pages": s["max_pages"],
        "max_depth": s.get("max_depth"),
        "delay_ms": s.get("delay_ms"),
        "operator": c.operator,
        "started": c.created,
        "ended": utc_now(),
        "pages": pages,
        "not_visited": not_visited,
        "statement": (
            "pages were visited breadth first from start_url; each page's links were read from its sealed "
            "DOM; links outside the scope are listed under out_of_scope and were not followed; "
            "not_visited lists in-scope pages left when max_pages was reached"
        ),
    }
    rec = led.append_many([Draft(KIND, payload, c.case)], on_locked=lambda conn, recs: state.finish_in(conn, c.id, recs[0].index))[0]
    res.state, res.record_index = "done", rec.index
    return res
