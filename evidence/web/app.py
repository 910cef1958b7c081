"""`evidence serve`: the web face of the application layer (``evidence.app``).

Server-rendered pages (Jinja2, autoescaped: every string from a page, a URL
or a case is data), a little plain JavaScript served from here (no CDN: it
works offline), and these rules for every request:

- anonymous requests go to ``/login`` (``/api/...`` answers 401); only the
  login page and ``/static/`` are public;
- every POST carries the session's CSRF token (a form field, or ``?csrf=``
  for uploads, checked before the body is read); without it: 403;
- failed logins are limited per user name and per client address;
- an officer's signature needs that officer's passphrase, typed in the form
  for that one act; a user acts only as the officer their account is bound to.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from evidence.app import acts, cases, checks, options, watches
from evidence.app import livestream as live
from evidence.extraction import resolve_tz, short, when
from evidence.users import User, Users
from ledger.config import default_home
from ledger.display import printable
from ledger.errors import EvidenceError, UsageError
from ledger.log import Ledger
from ledger.trust import Trust

from . import replay
from .auth import COOKIE, LoginLimiter, Sessions, WebSession

HERE = Path(__file__).parent
LOGIN_COOKIE = "evidence_login"
DEFAULT_UPLOAD_LIMIT = 4 << 30
MAX_FORM = 1 << 20
#: seconds a stopping server waits for its livestream captures to seal their last windows
SHUTDOWN_WAIT = 60.0
PAGE_POLICY = ("default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; "
               "frame-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'")


class Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Job:
    id: str
    user: str
    url: str
    case: str
    state: str = "queued"  # queued, running, done, failed
    started: float = field(default_factory=time.time)
    messages: list[str] = field(default_factory=list)
    exhibit: int | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "state": self.state, "url": self.url, "case": self.case,
                "elapsed": round(time.time() - self.started, 1), "messages": self.messages[-50:],
                "exhibit": self.exhibit, "error": self.error}


@dataclass
class Settings:
    home: Path | None = None
    secure: bool = False  # cookies Secure (served over HTTPS)
    upload_limit: int = DEFAULT_UPLOAD_LIMIT
    capture_options: dict[str, Any] = field(default_factory=dict)


class WebApp:
    """State of one server: sessions, login limits, capture jobs, verification reports."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.sessions = Sessions()
        self.limiter = LoginLimiter()
        self.jobs: dict[str, Job] = {}
        self.live: dict[str, live.LiveRun] = {}
        self._capture_lock = threading.Lock()
        self.reports: dict[str, tuple[Path, float]] = {}
        self.indexes = replay.WarcIndexes()
        self.tmp = Path(tempfile.mkdtemp(prefix="evidence-serve-"))
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True))
        self.env.filters["printable"] = lambda v: printable(str(v)) if v is not None else ""
        self.env.globals["replay_path"] = replay.replay_path
        self.env.globals["quote"] = lambda v: quote(str(v), safe="")

    # -- plumbing ------------------------------------------------------------

    def ledger(self) -> Ledger:
        return Ledger.open(self.settings.home)

    def users(self) -> Users:
        # The accounts file sits in the home: no need to open the ledger database for a login.
        return Users(Path(self.settings.home) if self.settings.home else default_home())

    def render(self, request: Request, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        session: WebSession | None = getattr(request.state, "session", None)
        tz = resolve_tz(os.environ.get("EVIDENCE_TZ"))
        ctx.update(session=session, user=session.user if session else None, csrf=session.csrf if session else "",
                   tz=tz, when=lambda v: when(v, tz, original=False), short=lambda v: short(v, tz),
                   short_ts=lambda t: datetime.fromtimestamp(t, tz).strftime("%Y-%m-%d %H:%M:%S"))
        html = self.env.get_template(template).render(**ctx)
        return HTMLResponse(html, status_code=status)

    def error_page(self, request: Request, status: int, message: str) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": message}, status_code=status)
        return self.render(request, "error.html", status=status, message=message)

    def cleanup(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def _secure_headers(resp: Response, policy: str = PAGE_POLICY) -> Response:
    resp.headers.setdefault("Content-Security-Policy", policy)
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers.setdefault("X-Frame-Options", "SAMEORIGIN")
    resp.headers.setdefault("Cache-Control", "no-store")
    return resp


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


async def _form(request: Request) -> dict[str, str]:
    """A urlencoded form, bounded, as a dict of strings."""
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("application/x-www-form-urlencoded"):
        raise Refused(415, "this form must be sent as application/x-www-form-urlencoded")
    length = int(request.headers.get("content-length") or 0)
    if length > MAX_FORM:
        raise Refused(413, "form too large")
    form = await request.form(max_files=0, max_fields=200)
    return {k: v for k, v in form.items() if isinstance(v, str)}


def create_app(settings: Settings | None = None) -> Starlette:
    web = WebApp(settings or Settings())

    def page(handler: Callable[[Request], Awaitable[Response]], *, public: bool = False, post: bool = False):
        async def endpoint(request: Request) -> Response:
            try:
                request.state.session = web.sessions.get(request.cookies.get(COOKIE))
                if not public and request.state.session is None:
                    if request.url.path.startswith("/api/"):
                        return _secure_headers(JSONResponse({"error": "log in first"}, status_code=401))
                    nxt = quote(request.url.path, safe="/")
                    return _secure_headers(RedirectResponse(f"/login?next={nxt}", status_code=303))
                resp = await handler(request)
            except Refused as e:
                resp = web.error_page(request, e.status, str(e))
            except EvidenceError as e:
                resp = web.error_page(request, 400 if isinstance(e, UsageError) else 422, str(e))
            except Exception as e:  # noqa: BLE001 - one line on the page, the server goes on
                resp = web.error_page(request, 500, f"internal error: {type(e).__name__}: {e}")
            return _secure_headers(resp)

        return endpoint

    def csrf_form(handler: Callable[[Request, dict[str, str]], Awaitable[Response]]):
        async def checked(request: Request) -> Response:
            form = await _form(request)
            s: WebSession = request.state.session
            if not s.csrf_ok(form.get("csrf")):
                raise Refused(403, "missing or wrong CSRF token: reload the page and try again")
            return await handler(request, form)

        return checked

    # -- login ---------------------------------------------------------------

    async def login_page(request: Request) -> Response:
        token = secrets.token_urlsafe(24)
        resp = web.render(request, "login.html", login_csrf=token, next=_safe_next(request.query_params.get("next")))
        resp.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=web.settings.secure, path="/login")
        return resp

    async def login_post(request: Request) -> Response:
        form = await _form(request)
        cookie = request.cookies.get(LOGIN_COOKIE) or ""
        sent = form.get("csrf") or ""
        if not cookie or not secrets.compare_digest(cookie.encode(), sent.encode()):
            raise Refused(403, "missing or wrong CSRF token: reload the login page")
        name, password = form.get("username", ""), form.get("password", "")
        keys = [f"user:{name}", f"addr:{_client(request)}"]
        wait = web.limiter.retry_after(keys)
        if wait > 0:
            raise Refused(429, f"too many failed logins: try again in {int(wait) + 1} s")
        user = await run_in_threadpool(lambda: web.users().authenticate(name, password))
        if user is None:
            web.limiter.failed(keys)
            token = secrets.token_urlsafe(24)
            resp = web.render(request, "login.html", status=401, login_csrf=token, next=form.get("next", ""),
                              error="wrong user name or password")
            resp.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=web.settings.secure, path="/login")
            return resp
        web.limiter.succeeded(keys[:1])
        s = web.sessions.new(user)
        resp = RedirectResponse(_safe_next(form.get("next")) or "/cases", status_code=303)
        resp.set_cookie(COOKIE, s.token, httponly=True, samesite="strict", secure=web.settings.secure, path="/")
        resp.delete_cookie(LOGIN_COOKIE, path="/login")
        return resp

    async def logout(request: Request, _form: dict[str, str]) -> Response:
        web.sessions.drop(request.cookies.get(COOKIE))
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(COOKIE, path="/")
        return resp

    # -- cases and exhibits -------------------------------------------------

    async def home(request: Request) -> Response:
        return RedirectResponse("/cases", status_code=303)

    async def cases_page(request: Request) -> Response:
        q = request.query_params.get("q", "")

        def load() -> list[cases.CaseSummary]:
            with web.ledger() as led:
                return [c for c in cases.list_cases(led) if c.matches(q)]

        return web.render(request, "cases.html", cases=await run_in_threadpool(load), q=q)

    async def case_page(request: Request) -> Response:
        case = request.path_params["case"]

        def load() -> tuple[cases.CaseView, dict[int, dict[str, Any] | None], list[Any]]:
            with web.ledger() as led:
                view = cases.case_view(led, case)
                thumbs = {}
                for r in view.exhibits:
                    try:
                        ev = cases.exhibit_view(led, r.index)
                        thumbs[r.index] = ev.first("screenshot-viewport") or ev.first("frame") or ev.first("screenshot")
                    except EvidenceError:
                        thumbs[r.index] = None
                return view, thumbs, [e for e in watches.events(led)[1] if e.case == case]

        view, thumbs, alerts = await run_in_threadpool(load)
        exhibit_of = {e.probe_idx: e.exhibit_idx for e in alerts if e.exhibit_idx is not None}
        watch_of = {e.exhibit_idx: e.watch_id for e in alerts if e.exhibit_idx is not None}
        return web.render(request, "case.html", view=view, thumbs=thumbs, alerts=alerts, exhibit_of=exhibit_of,
                          watch_of=watch_of, detail=watches.detail)

    async def exhibit_page(request: Request) -> Response:
        index = _int(request.path_params["index"])

        def load() -> cases.ExhibitView:
            with web.ledger() as led:
                return cases.exhibit_view(led, index)

        ev = await run_in_threadpool(load)
        main_url = ev.info.get("final_url") or ev.info.get("url") or ""
        return web.render(request, "exhibit.html", ev=ev, index=index, main_url=main_url,
                          has_warc=ev.first("warc") is not None, message=request.query_params.get("m"))

    async def artifact(request: Request) -> Response:
        index = _int(request.path_params["index"])
        name = request.path_params["name"]
        led = await run_in_threadpool(web.ledger)
        try:
            a, f = await run_in_threadpool(cases.open_artifact, led, index, name)
        finally:
            led.close()
        image = str(a.get("media_type", "")).startswith("image/")
        headers = {"Content-Security-Policy": "default-src 'none'; sandbox"}
        if not image:
            headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(str(a['name']), safe='')}"
        media = a["media_type"] if image else "application/octet-stream"
        return StreamingResponse(_chunks(f), media_type=media, headers=headers)

    async def replay_view(request: Request) -> Response:
        index = _int(request.path_params["index"])
        url = replay.target_url(request.path_params["rest"], request.url.query)
        if url is None:
            raise Refused(404, "not an archived URL")

        def find() -> tuple[replay.Archived | None, Any]:
            with web.ledger() as led:
                ev = cases.exhibit_view(led, index)
                warcs = [a for a in ev.artifacts if a.get("role") == "warc"]
                for a in warcs:
                    sha = str(a["sha256"])
                    idx = web.indexes.get(sha, lambda sha=sha: led.artifacts.open(sha))
                    hit = idx.get(url) or idx.get(url.rstrip("?"))
                    if hit is not None:
                        return hit, led.artifacts.open(sha)
            return None, None

        hit, f = await run_in_threadpool(find)
        if hit is None:
            return Response("not in the archive of this exhibit", status_code=404, media_type="text/plain",
                            headers={"Content-Security-Policy": replay.POLICY})
        ctype = hit.content_type or "application/octet-stream"
        headers = {"Content-Security-Policy": replay.POLICY + "; sandbox allow-same-origin"}
        if ctype.split(";")[0].strip().lower() in ("text/html", "text/css"):
            def body() -> bytes:
                with f:
                    data = b"".join(replay.read_payload(f, hit.offset))
                return replay.rewrite(data[: replay.MAX_REWRITE], index, url)

            return Response(await run_in_threadpool(body), status_code=200, media_type=ctype, headers=headers)

        def stream() -> Any:
            with f:
                yield from replay.read_payload(f, hit.offset)

        return StreamingResponse(stream(), media_type=ctype, headers=headers)

    async def attest(request: Request, form: dict[str, str]) -> Response:
        index = _int(request.path_params["index"])
        user: User = request.state.session.user
        if not user.officer:
            raise Refused(403, f"user {user.name} is not bound to an officer: ask an administrator (`evidence user add --officer`)")
        if form.get("officer", user.officer) != user.officer:
            raise Refused(403, f"you can attest only as {user.officer}")
        unlock = acts.OfficerUnlock(user.officer, form.get("passphrase", "").encode())

        def act() -> Any:
            with web.ledger() as led:
                _own_key(led, user.officer)
                return acts.attest(led, index, unlock, form.get("statement") or None)

        rec = await run_in_threadpool(act)
        return RedirectResponse(f"/exhibits/{index}?m=attested+at+record+{rec.index}", status_code=303)

    async def record_doc(request: Request) -> Response:
        index = _int(request.path_params["index"])
        fmt = request.query_params.get("format", "docx")
        out = web.tmp / f"record-{uuid.uuid4().hex}.{fmt}"

        def make() -> Path | None:
            with web.ledger() as led:
                return acts.extraction_record(led, index, fmt, out).path

        path = await run_in_threadpool(make)
        if path is None:
            raise Refused(500, "the record was not written")
        media = {"pdf": "application/pdf", "html": "application/octet-stream",
                 "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document"}[fmt]
        return FileResponse(path, media_type=media, filename=f"record-{index}.{fmt}",
                            background=BackgroundTask(path.unlink, missing_ok=True))

    async def export(request: Request, _form: dict[str, str]) -> Response:
        case = request.path_params["case"]
        out = web.tmp / f"export-{uuid.uuid4().hex}.wacz"

        def make() -> Any:
            with web.ledger() as led:
                return acts.export(led, case, out)

        await run_in_threadpool(make)
        return FileResponse(out, media_type="application/wacz", filename=f"{_file_safe(case)}.wacz",
                            background=BackgroundTask(out.unlink, missing_ok=True))

    # -- capture ----------------------------------------------------------------

    async def capture_form(request: Request) -> Response:
        def load() -> tuple[list[str], list[str]]:
            with web.ledger() as led:
                return options.choices(led)

        sessions, devices = await run_in_threadpool(load)
        return web.render(request, "capture.html", case=request.query_params.get("case", ""), sessions=sessions,
                          devices=devices)

    async def capture_post(request: Request, form: dict[str, str]) -> Response:
        user: User = request.state.session.user
        urls = [u.strip() for u in (form.get("urls") or form.get("url") or "").splitlines() if u.strip()]
        case = form.get("case", "").strip()
        if not urls or not case:
            raise Refused(400, "give a URL and a case id")
        expect = [t.strip() for t in (form.get("expect") or "").splitlines() if t.strip()]
        officers: list[acts.OfficerUnlock] = []
        if form.get("passphrase"):
            if not user.officer:
                raise Refused(403, f"user {user.name} is not bound to an officer: capture without a passphrase")
            officers.append(acts.OfficerUnlock(user.officer, form["passphrase"].encode()))

        def check() -> dict[str, Any]:
            # An unknown session or device, or a wrong passphrase, is said now, before any job starts.
            with web.ledger() as led:
                page = options.page_options(led, session=form.get("session") or None,
                                            device=form.get("device") or None, expect=expect)
                if officers:
                    _own_key(led, officers[0].name)
                    acts.unlock(led, officers)
                return page

        page = await run_in_threadpool(check)
        jobs = []
        for url in urls[:100]:
            job = Job(uuid.uuid4().hex, user.name, url, case)
            web.jobs[job.id] = job
            jobs.append(job)
        threading.Thread(target=_run_jobs, args=(web, jobs, officers, form, page), daemon=True).start()
        return RedirectResponse(f"/jobs/{jobs[0].id}", status_code=303)

    async def job_page(request: Request) -> Response:
        job = web.jobs.get(request.path_params["id"])
        if job is None:
            raise Refused(404, "no such capture")
        return web.render(request, "job.html", job=job)

    async def job_api(request: Request) -> Response:
        job = web.jobs.get(request.path_params["id"])
        if job is None:
            raise Refused(404, "no such capture")
        return JSONResponse(job.to_json())

    # -- watches ---------------------------------------------------------------

    async def watches_page(request: Request, status: int = 200, error: str | None = None,
                           form: dict[str, str] | None = None) -> Response:
        since = request.query_params.get("since") or "7d"

        def load() -> tuple[list[watches.WatchRow], str | None, list[Any]]:
            with web.ledger() as led:
                t, evs = watches.events(led, since)
                return watches.list_watches(led), t, evs

        rows, since_utc, evs = await run_in_threadpool(load)
        return web.render(request, "watches.html", status=status, rows=rows, events=list(reversed(evs))[:200],
                          since=since, since_utc=since_utc, error=error, form=form or {},
                          message=request.query_params.get("m"), detail=watches.detail, utc=watches.utc, every=watches.every_text)

    async def watches_post(request: Request, form: dict[str, str]) -> Response:
        def lines(name: str) -> list[str]:
            return [ln.strip() for ln in (form.get(name) or "").splitlines() if ln.strip()]

        def add() -> Any:
            with web.ledger() as led:
                return watches.add(
                    led, (form.get("url") or "").strip(), (form.get("case") or "").strip(),
                    (form.get("every") or "").strip(), fields=lines("fields"), keywords=lines("keywords"),
                    price_field=(form.get("price_field") or "").strip() or None,
                    price_below=(form.get("price_below") or "").strip() or None,
                )

        try:
            w = await run_in_threadpool(add)
        except EvidenceError as e:
            # One line on the form, the typed values kept; nothing was added.
            return await watches_page(request, status=400, error=str(e), form=form)
        return RedirectResponse(f"/watches?m=watch+{w.id}+added", status_code=303)

    async def watch_act(request: Request, _form: dict[str, str]) -> Response:
        wid = _int(request.path_params["id"], "watch")
        act = {"pause": watches.pause, "resume": watches.resume, "remove": watches.remove}.get(request.path_params["act"])
        if act is None:
            raise Refused(404, "no such action")

        def run() -> None:
            with web.ledger() as led:
                act(led, wid)

        await run_in_threadpool(run)
        verb = {"pause": "paused", "resume": "resumed", "remove": "removed"}[request.path_params["act"]]
        return RedirectResponse(f"/watches?m=watch+{wid}+{verb}", status_code=303)

    async def watch_page(request: Request) -> Response:
        wid = _int(request.path_params["id"], "watch")

        def load() -> tuple[Any, dict[str, Any], list[Any], Any]:
            with web.ledger() as led:
                try:
                    w = watches.get(led, wid)
                except UsageError:
                    w = None  # removed: its signed history stays
                _, evs = watches.events(led, watch_id=wid)
                h = watches.history(led, str(wid))
                return w, h, evs, watches.last_probe(led, wid, h.get("case"))

        w, hist, evs, last = await run_in_threadpool(load)
        return web.render(request, "watch.html", w=w, wid=wid, h=hist, events=evs, last=last,
                          detail=watches.detail, utc=watches.utc, every=watches.every_text)

    # -- livestream -----------------------------------------------------------

    async def livestream_form(request: Request) -> Response:
        runs = sorted(web.live.values(), key=lambda r: r.started, reverse=True)
        return web.render(request, "livestream.html", runs=runs, run=None, case=request.query_params.get("case", ""),
                          modes=live.MODES)

    async def livestream_post(request: Request, form: dict[str, str]) -> Response:
        user: User = request.state.session.user
        req = live.request_from_form(form, user.officer or user.name)
        run = await run_in_threadpool(lambda: live.LiveRun.start(web.ledger, req, user=user.name))
        web.live[run.id] = run
        return RedirectResponse(f"/livestream/{run.id}", status_code=303)

    def live_run(request: Request) -> live.LiveRun:
        run = web.live.get(request.path_params["id"])
        if run is None:
            raise Refused(404, "no such livestream capture")
        return run

    async def livestream_page(request: Request) -> Response:
        return web.render(request, "livestream.html", runs=[], run=live_run(request), case="", modes=live.MODES)

    async def livestream_api(request: Request) -> Response:
        return JSONResponse(live_run(request).status())

    async def livestream_stop(request: Request, _form: dict[str, str]) -> Response:
        run = live_run(request)
        user: User = request.state.session.user
        if not run.may_stop(user.name, user.officer):
            # A colleague's capture runs on: stopping it would end the evidence they are fixing.
            raise Refused(403, f"this capture was started by {run.user}: only they or an officer it names "
                               f"({run.request.operator or 'none'}) may stop it")
        run.stop()
        return RedirectResponse(f"/livestream/{run.id}", status_code=303)

    async def livestream_frame(request: Request) -> Response:
        run = live_run(request)

        def load() -> tuple[str, bytes] | None:
            with web.ledger() as led:
                return run.frame(request.path_params["name"], led)

        got = await run_in_threadpool(load)
        if got is None:
            raise Refused(404, "no such frame in this capture")
        headers = {"Content-Security-Policy": "default-src 'none'; sandbox", "X-Frame-SHA256": got[0]}
        if request.query_params.get("thumb"):
            return Response(await run_in_threadpool(live.thumbnail, got[1]), media_type="image/jpeg", headers=headers)
        return Response(got[1], media_type="image/png", headers={**headers, "ETag": f'"{got[0]}"'})

    # -- verify --------------------------------------------------------------

    async def verify_form(request: Request) -> Response:
        return web.render(request, "verify.html", limit=web.settings.upload_limit)

    async def verify_post(request: Request) -> Response:
        s: WebSession = request.state.session
        # The token comes in the URL so that it is checked before a byte of the upload is read.
        if not s.csrf_ok(request.query_params.get("csrf")):
            raise Refused(403, "missing or wrong CSRF token: reload the page and try again")
        limit = web.settings.upload_limit
        declared = int(request.headers.get("content-length") or 0)
        if declared > limit + MAX_FORM:
            raise Refused(413, f"the upload is larger than the limit of {limit} bytes")
        work = Path(tempfile.mkdtemp(dir=web.tmp, prefix="verify-"))
        try:
            upload = work / "case.wacz"
            fields: dict[str, str] = {}
            name = await _receive_file(request, upload, limit, fields)
            report = work / "report.html"
            try:
                pinned = [ln.strip() for ln in fields.get("trust", "").splitlines() if ln.strip()]
                # Key strings only: a path typed here must never make the server read its own files.
                trust = Trust.of(pinned) if pinned else ()
                res = await run_in_threadpool(lambda: checks.verify(upload, report=report, trust=trust))
            except EvidenceError as e:
                return web.render(request, "verify_result.html", status=400, res=None, name=name, error=str(e))
            token = uuid.uuid4().hex
            kept = web.tmp / f"report-{token}.html"
            shutil.move(report, kept)
            web.reports[token] = (kept, time.time())
            ordered = list(checks.checks_failing_first(res))
            return web.render(request, "verify_result.html", res=res, name=name, checks=ordered, report=token)
        finally:
            shutil.rmtree(work, ignore_errors=True)  # nothing of the upload is kept

    async def verify_report(request: Request) -> Response:
        entry = web.reports.get(request.path_params["token"])
        if entry is None or not entry[0].exists():
            raise Refused(404, "no such report (reports are kept until the server stops)")
        return FileResponse(entry[0], media_type="text/html; charset=utf-8", filename="verification-report.html",
                            headers={"Content-Security-Policy": "default-src 'none'; img-src data:; style-src 'unsafe-inline'; sandbox"})

    routes = [
        Route("/", page(home)),
        Route("/login", page(login_page, public=True), methods=["GET"]),
        Route("/login", page(login_post, public=True), methods=["POST"]),
        Route("/logout", page(csrf_form(logout)), methods=["POST"]),
        Route("/cases", page(cases_page)),
        Route("/cases/{case:path}/export", page(csrf_form(export)), methods=["POST"]),
        Route("/cases/{case:path}", page(case_page)),
        Route("/exhibits/{index}", page(exhibit_page)),
        Route("/exhibits/{index}/artifacts/{name}", page(artifact)),
        Route("/exhibits/{index}/attest", page(csrf_form(attest)), methods=["POST"]),
        Route("/exhibits/{index}/record", page(record_doc)),
        Route("/replay/{index}/{rest:path}", page(replay_view)),
        Route("/capture", page(capture_form), methods=["GET"]),
        Route("/capture", page(csrf_form(capture_post)), methods=["POST"]),
        Route("/jobs/{id}", page(job_page)),
        Route("/api/jobs/{id}", page(job_api)),
        Route("/watches", page(watches_page), methods=["GET"]),
        Route("/watches", page(csrf_form(watches_post)), methods=["POST"]),
        Route("/watches/{id}", page(watch_page)),
        Route("/watches/{id}/{act}", page(csrf_form(watch_act)), methods=["POST"]),
        Route("/livestream", page(livestream_form), methods=["GET"]),
        Route("/livestream", page(csrf_form(livestream_post)), methods=["POST"]),
        Route("/livestream/{id}", page(livestream_page)),
        Route("/livestream/{id}/stop", page(csrf_form(livestream_stop)), methods=["POST"]),
        Route("/livestream/{id}/frames/{name}", page(livestream_frame)),
        Route("/api/livestream/{id}", page(livestream_api)),
        Route("/verify", page(verify_form), methods=["GET"]),
        Route("/verify", page(verify_post), methods=["POST"]),
        Route("/verify/report/{token}", page(verify_report)),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        # A server told to stop (SIGTERM, Ctrl-C) stops its livestream captures as the Stop button
        # does: each seals its open window and appends its end record before the process goes.
        runs = list(web.live.values())
        for run in runs:
            run.stop()
        deadline = time.monotonic() + SHUTDOWN_WAIT
        for run in runs:
            await run_in_threadpool(run.wait, max(0.0, deadline - time.monotonic()))
        web.cleanup()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.web = web
    return app


def _run_jobs(web: WebApp, jobs: list[Job], officers: list[acts.OfficerUnlock], form: dict[str, str],
              page: dict[str, Any]) -> None:
    with web._capture_lock:  # one browser at a time on this machine
        for job in jobs:
            job.state = "running"
            job.messages.append("capturing in Chromium")
            try:
                with web.ledger() as led:
                    ex = acts.capture(
                        led, job.url, job.case, officers=officers, operator=job.user if not officers else None,
                        note=form.get("note") or None, proves=form.get("proves") or None,
                        no_witness_reason=form.get("no_witness_reason") or None,
                        options={**web.settings.capture_options, **page},
                    )
                job.exhibit = ex.index
                job.messages.append(f"sealed as exhibit record {ex.index}")
                job.state = "done"
            except EvidenceError as e:
                job.error = str(e)
                job.state = "failed"
            except Exception as e:  # noqa: BLE001 - a job reports, the server goes on
                job.error = f"internal error: {type(e).__name__}: {e}"
                job.state = "failed"


async def _receive_file(request: Request, dest: Path, limit: int, fields: dict[str, str]) -> str:
    """Stream the one file of a multipart upload to ``dest`` (never into memory); its given name.

    Small text fields of the form go into ``fields`` (at most 64 KiB in all)."""
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or b"boundary" not in params:
        raise Refused(415, "upload the case file with the form (multipart/form-data)")
    state: dict[str, Any] = {"name": None, "header": b"", "headers": {}, "size": 0, "file": None, "files": 0,
                             "field": None, "text": 0}
    out = dest.open("wb")

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["header"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["headers"][state["header"].lower()] = state["headers"].get(state["header"].lower(), b"") + data[start:end]

    def on_header_end() -> None:
        state["header"] = b""

    def on_part_begin() -> None:
        state["headers"] = {}
        state["file"] = None
        state["field"] = None

    def on_headers_finished() -> None:
        disp = state["headers"].get(b"content-disposition", b"")
        _, opts = parse_options_header(disp)
        if opts.get(b"name") == b"case_file" and b"filename" in opts:
            state["files"] += 1
            state["file"] = True
            state["name"] = opts[b"filename"].decode("utf-8", "replace")
        elif b"filename" not in opts and opts.get(b"name"):
            state["field"] = opts[b"name"].decode("utf-8", "replace")
            fields.setdefault(state["field"], "")

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state["file"] and state["files"] == 1:
            state["size"] += end - start
            if state["size"] > limit:
                raise Refused(413, f"the upload is larger than the limit of {limit} bytes")
            out.write(data[start:end])
        elif state["field"] is not None:
            state["text"] += end - start
            if state["text"] > 64 * 1024:
                raise Refused(413, "the form's text fields are too large")
            fields[state["field"]] += data[start:end].decode("utf-8", "replace")

    parser = MultipartParser(params[b"boundary"], {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished, "on_part_data": on_part_data,
    })
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    finally:
        out.close()
    if state["files"] != 1:
        raise Refused(400, "choose one case file to upload")
    return str(state["name"])


def _own_key(led: Ledger, officer: str) -> None:
    """The web signs only with officer keys under the officer's own passphrase (typed in the form)."""
    if not led.signer_entry(officer).get("own_passphrase"):
        raise Refused(403, f"the key of {officer} is under the home's passphrase, not the officer's own: "
                           "give the officer a new key (`evidence key add --officer`) to sign on the web")


def _chunks(f: Any) -> Any:
    with f:
        while chunk := f.read(256 * 1024):
            yield chunk


def _int(value: str, what: str = "exhibit") -> int:
    try:
        n = int(value)
    except ValueError:
        raise Refused(404, f"no such {what}") from None
    if n < 0:
        raise Refused(404, f"no such {what}")
    return n


def _safe_next(value: str | None) -> str:
    """A local path to go to after login; anything else (another site, //host) is dropped."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return ""
    return value


def _file_safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80] or "case"
