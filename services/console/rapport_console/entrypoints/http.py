"""The console's pages (server-rendered HTML) and live updates (server-sent events).

Thin: who may open what is the access policy's (../access.yaml, enforced before every route,
with the session cookie as the credential: session.py); reads go to the views, actions become
commands on the bus (carried to the owning service with the clinician's token). URLs carry only
opaque episode and alert ids; no page is cached (``Cache-Control: no-store``).
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from uuid import UUID

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from rapport_shared.contracts.outcomes import AlertAction
from rapport_shared.errors import DomainError, Forbidden, Invalid, NotFound
from rapport_shared.http.access import Grant, current_grant
from rapport_shared.http.errors import error_body, status_for

from ..adapters.oidc import SignInFailed, challenge, new_verifier
from ..adapters.repository import CaseloadRepository
from ..domain import model
from ..domain.commands import AcknowledgeAlert, ResolveAlert
from ..service_layer import views
from . import session

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
STATIC = Path(__file__).resolve().parent.parent / "static"

pages = APIRouter(include_in_schema=False)
routers = [pages]

SIGN_IN_ROLES = ("clinician", "admin")
ACTION_TEXT_MAX = 500


# ---- rendering ------------------------------------------------------------------------------

def _when(t: datetime | None, with_time: bool = True) -> str:
    if t is None:
        return "—"
    t = t.astimezone(timezone.utc)
    return t.strftime("%d %b %Y %H:%M UTC") if with_time else t.strftime("%d %b %Y")


def _words(code: str | None) -> str:
    return (code or "—").replace("_", " ")


def _num(v: float | None, signed: bool = False) -> str:
    if v is None:
        return "—"
    s = f"{v:+g}" if signed else f"{v:g}"
    return s.replace("-", "−")


def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "svg"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(when=_when, words=_words, num=_num, date=lambda t: _when(t, False))
    env.globals.update(instrument_name=views.instrument_name, ACTIONS=[a.value for a in AlertAction])
    return env


def _settings(request: Request):
    return request.app.state.runtime.settings


def _now(request: Request) -> datetime:
    return request.app.state.runtime.clock.now()


def _csrf(request: Request) -> str | None:
    token = getattr(request.state, "session_token", None)
    return request.app.state.session_keys.csrf(token) if token else None


def render(request: Request, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    principal = getattr(request.state, "principal", None)
    html = request.app.state.templates.get_template(template).render(
        request=request, principal=principal, csrf=_csrf(request), live_id=request.app.state.changes.event_id(), **ctx)
    return HTMLResponse(html, status_code=status)


async def _form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (the only kind the pages send)."""
    raw = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}


async def _checked_form(request: Request) -> dict[str, str]:
    form = await _form(request)
    expected = _csrf(request)
    if expected is None or not session.SessionKeys.matches(expected, form.get("csrf_token")):
        raise Forbidden("the form's CSRF token is missing or does not match this session: reload the page",
                        field="csrf_token")
    return form


def _repo(request: Request, conn) -> CaseloadRepository:
    return CaseloadRepository(conn, _settings(request).db_schema)


# ---- sign-in --------------------------------------------------------------------------------

@pages.get("/")
async def home(request: Request) -> RedirectResponse:
    return RedirectResponse("/caseload", status_code=303)


def _sign_in_page(request: Request, status: int = 200, error: str | None = None) -> HTMLResponse:
    pre = secrets.token_urlsafe(24)
    response = render(request, "sign_in.html", status=status, error=error, mode=_settings(request).sign_in,
                      pre_csrf=request.app.state.session_keys.pre_csrf(pre))
    session.set_pre_session(response, _settings(request), pre)
    return response


@pages.get("/sign-in")
async def sign_in_form(request: Request) -> HTMLResponse:
    return _sign_in_page(request)


@pages.post("/sign-in")
async def sign_in(request: Request) -> Response:
    settings = _settings(request)
    form = await _form(request)
    pre = session.cookies(request.scope).get(settings.cookie_name + session.PRE_COOKIE_SUFFIX, "")
    if not pre or not session.SessionKeys.matches(request.app.state.session_keys.pre_csrf(pre), form.get("csrf_token")):
        return _sign_in_page(request, 403, "The sign-in form expired. Please try again.")
    if settings.sign_in != "token":
        return _sign_in_page(request, 403, "Sign in with your organisation's account.")
    token = form.get("token", "").strip()
    try:
        principal = request.app.state.token_verifier.verify(token)
    except Exception:
        # Never echo the token, nor the verifier's reason beyond "not valid".
        return _sign_in_page(request, 401, "That token is not valid (expired, for another audience, or not signed by "
                                           "the issuer).")
    if not set(SIGN_IN_ROLES) & set(principal.roles):
        return _sign_in_page(request, 403, "That token holds no clinician role.")
    response = RedirectResponse("/caseload" if "clinician" in principal.roles else "/cohort", status_code=303)
    session.set_session(response, settings, token, datetime.now(timezone.utc))
    response.delete_cookie(settings.cookie_name + session.PRE_COOKIE_SUFFIX, path="/sign-in")
    return response


@pages.get("/sign-in/oidc")
async def oidc_start(request: Request) -> Response:
    """Production sign-in, step 1: to the provider with a fresh state, nonce and PKCE challenge."""
    settings, oidc = _settings(request), request.app.state.oidc
    if oidc is None:
        raise NotFound("sign-in with an identity provider is not configured here", field="sign_in")
    flow = {"state": secrets.token_urlsafe(24), "nonce": secrets.token_urlsafe(24), "verifier": new_verifier()}
    try:
        url = await oidc.authorization_url(state=flow["state"], nonce=flow["nonce"],
                                           code_challenge=challenge(flow["verifier"]))
    except SignInFailed as exc:
        return _sign_in_page(request, 502, exc.message)
    response = RedirectResponse(url, status_code=303)
    session.set_oidc_state(response, settings, request.app.state.session_keys.seal(flow))
    return response


@pages.get("/sign-in/callback")
async def oidc_callback(request: Request, code: str | None = None, state: str | None = None,
                        error: str | None = None) -> Response:
    """Production sign-in, step 2: the code for tokens (with the PKCE verifier); the ID token
    checked against this sign-in's nonce; the access token verified like any bearer token."""
    settings, oidc = _settings(request), request.app.state.oidc
    if oidc is None:
        raise NotFound("sign-in with an identity provider is not configured here", field="sign_in")
    flow = request.app.state.session_keys.unseal(
        session.cookies(request.scope).get(settings.cookie_name + session.OIDC_COOKIE_SUFFIX))
    if error or not code or flow is None or not session.SessionKeys.matches(flow["state"], state):
        return _sign_in_page(request, 400, "The sign-in did not complete (expired, refused or interrupted). Please "
                                           "try again.")
    try:
        tokens = await oidc.exchange(code, flow["verifier"])
        await oidc.verify_id_token(tokens["id_token"], flow["nonce"])
        principal = request.app.state.token_verifier.verify(tokens["access_token"])
    except SignInFailed as exc:
        return _sign_in_page(request, 401, exc.message)
    except Exception:
        return _sign_in_page(request, 401, "The access token from the identity provider does not verify here "
                                           "(audience, issuer or keys: docs/console.md).")
    if not set(SIGN_IN_ROLES) & set(principal.roles):
        return _sign_in_page(request, 403, "Your account holds no clinician role.")
    # A Strict cookie set during a cross-site redirect chain is not sent on its next request: this
    # page continues to the console itself (a same-site navigation), with the cookie.
    target = "/caseload" if "clinician" in principal.roles else "/cohort"
    response = render(request, "signed_in.html", target=target)
    session.set_session(response, settings, tokens["access_token"], datetime.now(timezone.utc))
    response.delete_cookie(settings.cookie_name + session.OIDC_COOKIE_SUFFIX, path="/sign-in/callback")
    return response


@pages.post("/sign-out")
async def sign_out(request: Request) -> RedirectResponse:
    await _checked_form(request)
    response = RedirectResponse("/sign-in", status_code=303)
    session.clear_session(response, _settings(request))
    return response


# ---- caseload, episode, cohort ----------------------------------------------------------------

@pages.get("/caseload")
async def caseload_page(request: Request, grant: Grant = Depends(current_grant)) -> HTMLResponse:
    async with request.app.state.runtime.pool.acquire() as conn:
        rows = await views.caseload(_repo(request, conn), grant.list_filter(), _now(request))
    return render(request, "caseload.html", rows=rows, now=_now(request), instruments=model.CASELOAD_INSTRUMENTS)


@pages.get("/episodes/{episode_id}")
async def episode_page(episode_id: UUID, request: Request, notice: str | None = None) -> HTMLResponse:
    return await _episode(request, episode_id, notice=notice)


async def _episode(request: Request, episode_id: UUID, status: int = 200, notice: str | None = None,
                   error: str | None = None) -> HTMLResponse:
    async with request.app.state.runtime.pool.acquire() as conn:
        view = await views.episode(_repo(request, conn), episode_id, _now(request))
    if view is None:  # the access check found it a moment ago: it cannot vanish, but answer alike
        raise NotFound(f"no episode {episode_id}", field="episode_id")
    notices = {"acknowledged": "Alert acknowledged: its escalation to on call is stopped.",
               "resolved": "Resolution recorded; the alert closes when outcomes announces it."}
    return render(request, "episode.html", status=status, v=view, now=_now(request), notice=notices.get(notice or ""),
                  error=error)


@pages.post("/episodes/{episode_id}/alerts/{alert_id}/acknowledge")
async def acknowledge(episode_id: UUID, alert_id: UUID, request: Request,
                      grant: Grant = Depends(current_grant)) -> Response:
    await _checked_form(request)
    cmd = AcknowledgeAlert(episode_id=episode_id, alert_id=alert_id, actor=grant.principal.sub,
                           token=request.state.session_token)
    return await _act(request, cmd, episode_id, "acknowledged")


@pages.post("/episodes/{episode_id}/alerts/{alert_id}/resolve")
async def resolve(episode_id: UUID, alert_id: UUID, request: Request, grant: Grant = Depends(current_grant)) -> Response:
    form = await _checked_form(request)
    try:
        action = AlertAction(form.get("action", ""))
    except ValueError:
        return await _episode(request, episode_id, 422, error="Choose what was done about the alert.")
    text = (form.get("action_text") or "").strip() or None
    if text and len(text) > ACTION_TEXT_MAX:
        return await _episode(request, episode_id, 422, error=f"The note is longer than {ACTION_TEXT_MAX} characters.")
    cmd = ResolveAlert(episode_id=episode_id, alert_id=alert_id, actor=grant.principal.sub, action=action,
                       action_text=text, token=request.state.session_token)
    return await _act(request, cmd, episode_id, "resolved")


async def _act(request: Request, cmd, episode_id: UUID, done: str) -> Response:
    try:
        await request.app.state.runtime.bus.handle(cmd)
    except DomainError as exc:
        return await _episode(request, episode_id, status_for(exc), error=exc.message)
    return RedirectResponse(f"/episodes/{episode_id}?notice={done}#alerts", status_code=303)


def _period(value: str | None, field: str) -> datetime | None:
    if not value:
        return None
    try:
        day = datetime.strptime(value, "%Y-%m-%d")
    except ValueError:
        raise Invalid("a date as YYYY-MM-DD", field=field) from None
    return day.replace(tzinfo=timezone.utc)


@pages.get("/cohort")
async def cohort_page(request: Request, grant: Grant = Depends(current_grant), since: str | None = None,
                      until: str | None = None) -> HTMLResponse:
    start, end = _period(since, "since"), _period(until, "until")
    async with request.app.state.runtime.pool.acquire() as conn:
        report = await views.cohort_report(_repo(request, conn), grant.list_filter(), start,
                                           end + timedelta(days=1) if end else None)
    return render(request, "cohort.html", report=report, since=since or "", until=until or "")


# ---- live updates (server-sent events) ----------------------------------------------------------

async def _stream(request: Request, wanted) -> StreamingResponse:
    settings = _settings(request)
    feed = request.app.state.changes
    # The browser's Last-Event-ID on a reconnection; on the first connection the page's own
    # position (``since``: the feed's id when the page was rendered), so nothing in between is lost.
    last_id = request.headers.get("last-event-id") or request.query_params.get("since")

    async def events():
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.sse_stream_s
        with feed.subscribe() as queue:
            # Where this stream starts; on reconnection the browser sends it back as Last-Event-ID.
            yield f"retry: 2000\nid: {feed.event_id()}\n\n"
            missed = feed.missed(last_id)
            if missed is None:
                yield f"event: change\nid: {feed.event_id()}\ndata: reconnected\n\n"
            else:
                for change in missed:
                    if await wanted(change):
                        yield f"event: change\nid: {feed.event_id(change.seq)}\ndata: {change.kind}\n\n"
            while (left := deadline - loop.time()) > 0:
                try:
                    change = await asyncio.wait_for(queue.get(), timeout=min(left, settings.sse_keepalive_s))
                except asyncio.TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if await wanted(change):
                    # Only the kind of change: the page fetches its content again, through the access check.
                    yield f"event: change\nid: {feed.event_id(change.seq)}\ndata: {change.kind}\n\n"

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@pages.get("/episodes/{episode_id}/events")
async def episode_events(episode_id: UUID, request: Request) -> StreamingResponse:
    async def wanted(change) -> bool:
        return change.episode_id == episode_id

    return await _stream(request, wanted)


@pages.get("/caseload/events")
async def caseload_events(request: Request, grant: Grant = Depends(current_grant)) -> StreamingResponse:
    scope = grant.list_filter()

    async def wanted(change) -> bool:
        async with request.app.state.runtime.pool.acquire() as conn:
            return await _repo(request, conn).visible(change.episode_id, scope)

    return await _stream(request, wanted)


# ---- errors as pages ------------------------------------------------------------------------------

def _is_page(request: Request) -> bool:
    path = request.url.path
    return not (path.startswith("/v1/") or path in ("/metrics", "/healthz", "/readyz", "/openapi.json", "/docs"))


def install_page_handlers(app: FastAPI) -> None:
    """Page routes answer errors as pages (the shared JSON answers stay for /v1, /metrics): a
    missing episode and one outside the clinician's relationships get the same page and status."""

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> Response:
        if not _is_page(request):
            return JSONResponse(error_body(exc), status_code=status_for(exc))
        status = status_for(exc)
        title = {404: "Not found", 403: "Not allowed"}.get(status, "Cannot do that")
        return render(request, "error.html", status=status, title=title, message=exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if not _is_page(request):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))
        if exc.status_code == 401:
            if request.method == "GET" and not request.url.path.endswith("/events"):
                return RedirectResponse("/sign-in", status_code=303)
            return render(request, "error.html", status=401, title="Signed out",
                          message="Your session has ended. Sign in again.")
        if exc.status_code == 403:
            return render(request, "error.html", status=403, title="Not allowed",
                          message="Your role does not open this page.")
        return render(request, "error.html", status=exc.status_code, title="Not found" if exc.status_code == 404
                      else "Error", message=str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        if not _is_page(request):
            errors = [{"field": ".".join(str(p) for p in e["loc"] if p != "body"), "reason": e["msg"]} for e in exc.errors()]
            return JSONResponse({"error": "validation_error", "detail": f"{errors[0]['field']}: {errors[0]['reason']}",
                                 "errors": errors}, status_code=422)
        # e.g. a malformed episode id in the address: the same page as any unknown episode
        return render(request, "error.html", status=404, title="Not found", message="No such page.")

    @app.middleware("http")
    async def _headers(request: Request, call_next):
        response = await call_next(request)
        if _is_page(request) and not request.url.path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-store"
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
            " form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response
