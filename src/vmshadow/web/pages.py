"""The web UI: server-rendered pages over the same service as the REST API.

Pages are Jinja2 templates (autoescaped); the browser's scripts
(``static/*.js``) call the REST API for every change, with the bearer token
the operator pasted on ``/login`` kept in the tab's ``sessionStorage``. So the
UI has no authority of its own: a page that is not signed in can read, as the
API's GETs can, and every mutation it tries is refused by the API with 401.
Off loopback, reads need the token too: signing in also sets an HttpOnly,
SameSite=Strict cookie that grants reads only (page loads and ``EventSource``
cannot send a header), and a page load without it goes to ``/login``.

Live parts of a transition page are re-rendered by the server
(``/ui/t/{id}/parts``) when the stream says something changed, so the
wording lives in one place; charts draw the stream's samples with uPlot,
bundled in ``static/vendor`` so that nothing is loaded from outside the host.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from vmshadow import __version__
from vmshadow.api.errors import error_response
from vmshadow.api.guards import READ_COOKIE
from vmshadow.api.listing import MAX_OFFSET, list_page
from vmshadow.controller.policy import prediction_of
from vmshadow.controller.realized import BOOT_S, MAX_SAMPLES, MIN_SAMPLES, realized
from vmshadow.controller.service import TransitionService
from vmshadow.controller.steps import lead_s
from vmshadow.domain.confidence import confidence_of
from vmshadow.domain.errors import NotFoundError, VmshadowError
from vmshadow.domain.placement import placement_text
from vmshadow.domain.transition import TransitionState
from vmshadow.domain.vm import VM_NAME_RE
from vmshadow.image.userstore import list_user_images
from vmshadow.web import views
from vmshadow.workloads.catalog import SMOKE
from vmshadow.workloads.profiles import builtin_profiles
from vmshadow.workloads.smoke import smoke_phases

HERE = Path(__file__).parent
# Everything the pages load comes from this host: the policy makes a stray
# external URL fail loudly in the browser instead of leaking a request.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
# A page of the list; ``?limit=`` asks for another size, up to PAGE_MAX.
LIST_LIMIT = 50
PAGE_MAX = 200
STATES = [s.value for s in TransitionState]


def safe_next(raw: str) -> str:
    """``raw`` when it is a path on this host, else ``/``: the sign-in page's only target.

    Browsers read a backslash as ``/`` and drop tabs and newlines from URLs, so
    ``/\\evil.example`` and ``/<tab>/evil.example`` leave the host although they
    start with a single ``/``; the checks run on the percent-decoded text too,
    since the target may be decoded once more on its way to ``location``.
    """
    decoded = unquote(raw)
    for candidate in (raw, decoded):
        if not candidate.startswith("/") or candidate.startswith("//"):
            return "/"
        if "\\" in candidate or any(ord(c) < 0x20 or ord(c) == 0x7F for c in candidate):
            return "/"
        if urlsplit(candidate).scheme or urlsplit(candidate).netloc:
            return "/"
    return raw


def _hosts(service: TransitionService) -> list[dict[str, Any]]:
    """The hosts as ``GET /api/v1/hosts`` lists them; none when libvirt cannot say."""
    try:
        return service.hosts()
    except VmshadowError:
        return []


def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(
        placement_text=placement_text,
        size_text=views.size_text,
        amount=views.amount,
        utc_text=views.utc_text,
        lead_text=views.lead_text,
        version=__version__,
    )
    return env


def mount_ui(
    app: FastAPI,
    service: TransitionService,
    require_token: Callable[..., None],
    *,
    read_cookie: str,
    secure_cookie: bool,
) -> None:
    """Add the pages, their fragments and the static files to ``app``."""
    app.include_router(_router(service, require_token, read_cookie, secure_cookie))
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")


def _router(
    service: TransitionService,
    require_token: Callable[..., None],
    read_cookie: str,
    secure_cookie: bool,
) -> APIRouter:
    env = _env()
    router = APIRouter(include_in_schema=False)

    def page(name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        html = env.get_template(name).render(**ctx)
        return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)

    def not_found(what: str) -> HTMLResponse:
        return page("error.html", 404, title="Not found", message=what)

    def rows_ctx(state: str, name: str, offset: int, limit: int) -> dict[str, Any]:
        now = datetime.now(UTC)
        chosen = TransitionState(state) if state in STATES else None
        limit = min(max(limit, 1), PAGE_MAX)
        offset = min(max(offset, 0), MAX_OFFSET)
        listed = list_page(service.store, state=chosen, name=name[:63], offset=offset, limit=limit)
        docs = [service.view(r) for r in listed.rows]
        # The filters as a query string: the pager's links and the refresh keep them.
        keep = {k: v for k, v in (("state", state if chosen else ""), ("name", name[:63])) if v}
        if limit != LIST_LIMIT:
            keep["limit"] = str(limit)
        return {
            "rows": [
                {
                    "t": v,
                    "age": views.age(v["created_at"], now),
                    "changes": views.changes(v["requested"], v["recommended"]),
                    "waiting": v["state"] == views.WAITING_FOR_USER.value,
                }
                for v in docs
            ],
            "states": STATES,
            "state": state if chosen else "",
            "name_filter": name[:63],
            "filtered": bool(chosen or name.strip()),
            "query": urlencode({**keep, "offset": offset}),
            "newer": urlencode({**keep, "offset": max(offset - limit, 0)}) if offset else None,
            "older": urlencode({**keep, "offset": offset + limit}) if listed.more else None,
            "first": offset + 1,
            "last": offset + len(docs),
        }

    phase_s = service.settings.controller.phase_s

    def progress(tid: str, view: dict[str, Any]) -> str:
        """Where the shadow's run is and the time left, by the CLI's own clock."""
        if view["state"] != TransitionState.PROFILING.value:
            return ""
        # The profile's plan as GET /api/v1/profiles describes it (api/routes/catalogue.py).
        name = view["profile"]
        plan: dict[str, Any] = {}
        if name == SMOKE:
            plan = {"phases": [{"duration_s": p.duration_s} for p in smoke_phases(phase_s)]}
        elif (prof := builtin_profiles().get(name)) is not None:
            plan = {"ramp": prof.ramp}
        rows = service.store.samples(tid, target="shadow", limit=MAX_SAMPLES)
        last = max((r.run for r in rows), default=0)
        return views.progress_text(
            plan, [(r.point.phase_id, r.point.t) for r in rows if r.run == last]
        )

    def parts_ctx(tid: str) -> dict[str, Any]:
        view = service.view(service.store.get(tid), with_events=True)
        pred = service.store.latest_prediction(tid)
        state = TransitionState(view["state"])
        # Only a confirmed transition has a VM whose usage can be compared.
        real = realized(service.store, tid) if view["final"] else None
        # The API's view carries the confidence once the service adds it; a
        # stored prediction gives the same figures (``domain.confidence``).
        conf = (view.get("prediction") or {}).get("confidence")
        if conf is None and pred is not None:
            conf = confidence_of(prediction_of(pred), load=view.get("load")).as_dict()
        return {
            "t": view,
            "state": state,
            "steps": views.lifecycle(view),
            "progress": progress(tid, view),
            "shadow_start": views.shadow_start(
                view, lead_s(service.store, service.settings.controller), datetime.now(UTC)
            ),
            "card": views.prediction_card(view, pred.detail if pred else None, conf),
            "changes": views.changes(view["requested"], view["recommended"]),
            "realized": views.realized_rows(view, real),
            "real": real,
            "boot_s": BOOT_S,
            "min_samples": MIN_SAMPLES,
            "prediction_id": pred.id if pred else None,
        }

    # -- pages -----------------------------------------------------------------------------
    @router.get("/", response_class=HTMLResponse)
    def list_transitions_page(
        state: str = "", name: str = "", offset: int = 0, limit: int = LIST_LIMIT
    ) -> HTMLResponse:
        return page("list.html", title="Transitions", **rows_ctx(state, name, offset, limit))

    @router.get("/new", response_class=HTMLResponse)
    def new_page(kind: str = "launch", vm: str = "") -> HTMLResponse:
        profiles: list[dict[str, Any]] = [
            {"name": SMOKE, "unit": None, "description": "fixed check, no load", "load": ""}
        ]
        # A profile's default load is the top of its ramp: the highest load the
        # shadow measures, so the prediction is not extrapolated by default.
        profiles += [
            {"name": n, "unit": p.unit, "description": p.description, "load": f"{max(p.ramp):g}"}
            for n, p in sorted(builtin_profiles().items())
        ]
        return page(
            "new.html",
            title="New launch or resize",
            profiles=profiles,
            default_load=next((p["load"] for p in profiles if p["name"] == "web"), ""),
            kind="resize" if kind == "resize" else "launch",
            vm=vm[:63],
            limits=views.size_limits(service.settings.quotas, _hosts(service)),
            name_pattern=VM_NAME_RE.pattern,
            # Names only (no qemu-img): suggestions for the image field, which
            # the service checks in full when the transition is created.
            store_images=list_user_images(service.settings.user_images_dir),
        )

    @router.get("/login", response_class=HTMLResponse)
    def login_page(next: str = "/") -> HTMLResponse:
        return page(
            "login.html",
            title="Sign in",
            token_file=str(service.settings.token_file),
            next=safe_next(next),
        )

    @router.get("/t/{tid}", response_class=HTMLResponse)
    def transition_page(tid: str) -> HTMLResponse:
        try:
            ctx = parts_ctx(tid)
        except NotFoundError:
            return not_found(f"There is no transition {tid}.")
        return page("transition.html", title=f"{ctx['t']['vm_name']} ({tid})", **ctx)

    # -- fragments the scripts fetch ---------------------------------------------------------
    @router.get("/ui/rows", response_class=HTMLResponse)
    def rows_fragment(
        state: str = "", name: str = "", offset: int = 0, limit: int = LIST_LIMIT
    ) -> HTMLResponse:
        return page("_rows.html", **rows_ctx(state, name, offset, limit))

    @router.get("/ui/t/{tid}/parts")
    def parts(tid: str) -> JSONResponse:
        try:
            ctx = parts_ctx(tid)
        except NotFoundError:
            return error_response(404, f"there is no transition {tid}", "tid", "not found")
        names = ("header", "steps", "prediction", "decide", "realized", "timeline")
        view = ctx["t"]
        return JSONResponse(
            {
                "state": view["state"],
                "terminal": view["terminal"],
                # The decision panel holds what the user is typing: the page
                # replaces it only when this key changes.
                "decide_key": f"{view['state']}/{ctx['prediction_id']}/{view['fast_launch']}",
                "refs": {
                    "need": (view["prediction"] or {}).get("need"),
                    "final": view["final"],
                },
                "parts": {n: env.get_template(f"_{n}.html").render(**ctx) for n in names},
            },
            headers={"Cache-Control": "no-store"},
        )

    @router.get("/ui/auth-check", dependencies=[Depends(require_token)])
    def auth_check() -> Response:
        """Lets the sign-in page tell a wrong token at once, without changing anything.

        It also hands the browser the read cookie: off loopback, page loads and
        the ``EventSource`` streams (which cannot send a header) need it.
        """
        resp = Response(status_code=204)
        resp.set_cookie(
            READ_COOKIE, read_cookie, httponly=True, samesite="strict", secure=secure_cookie
        )
        return resp

    @router.get("/ui/sign-out")
    def sign_out() -> Response:
        """Drops the read cookie (the script cannot: it is HttpOnly); changes nothing else."""
        resp = Response(status_code=204)
        resp.delete_cookie(READ_COOKIE, httponly=True, samesite="strict", secure=secure_cookie)
        return resp

    @router.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status_code=204)

    return router
