"""One shape for every error the app answers: ``{"error", "field", "reason"}``.

FastAPI and Starlette answer their own errors (unknown route, wrong method, a
body that is not JSON, an unexpected exception) with ``{"detail"}`` or plain
text; a client that reads ``error`` would then show nothing. The handlers here
translate each of them, so the documented shape holds for every status.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from vmshadow.api.auth import Unauthorized
from vmshadow.domain.errors import (
    ConfigError,
    ConflictError,
    HypervisorError,
    InputErrors,
    NotFoundError,
    RiskNotAcknowledged,
    StoreError,
    VmshadowError,
)

log = logging.getLogger(__name__)

_STATUS_TEXT = {
    400: "bad request",
    401: "unauthorized",
    403: "forbidden",
    404: "not found",
    405: "method not allowed",
    413: "body too large",
    500: "internal error",
}


def error_response(
    status: int,
    message: str,
    field: str | None = None,
    reason: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {"error": message, "field": field, "reason": reason or message, **extra}
    return JSONResponse(body, status_code=status, headers=headers)


def _field_of(loc: tuple[int | str, ...] | list[int | str]) -> str | None:
    # A JSON decode error's location is ("body", <offset>): the field is the body.
    if loc and loc[0] == "body" and (len(loc) == 1 or isinstance(loc[1], int)):
        return "body"
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or None


def install_error_handlers(app: FastAPI) -> None:
    """Translate the framework's own errors into the documented shape."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(_r: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0]
        field = _field_of(first["loc"])
        reason = "not valid JSON" if first.get("type") == "json_invalid" else str(first["msg"])
        return error_response(
            422,
            f"{field}: {reason}" if field else reason,
            field,
            reason,
            errors=[{"field": _field_of(e["loc"]), "reason": str(e["msg"])} for e in errors],
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_r: Request, exc: StarletteHTTPException) -> JSONResponse:
        # FastAPI turns any failure to parse a body into a bare 400; the one a
        # hostile client can cause on purpose is nesting deeper than Python's
        # parser recurses, which is an invalid input like any other.
        if exc.status_code == 400 and isinstance(exc.__cause__, RecursionError):
            return error_response(422, "body: JSON nested too deeply", "body", "nested too deeply")
        text = _STATUS_TEXT.get(exc.status_code, "error")
        detail = exc.detail if isinstance(exc.detail, str) else text
        return error_response(exc.status_code, detail or text, None, text, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        # The cause goes to the log, never to the client: it may name tables or paths.
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal error", None, "internal error; see the service log")


def install_domain_handlers(app: FastAPI) -> None:
    """Answer vmshadow's own exceptions: routes raise them, never HTTP errors.

    ConfigError 422 (naming the field), NotFoundError 404, ConflictError and
    RiskNotAcknowledged 409, HypervisorError and StoreError 503 (the service is
    there, what it depends on is not), any other VmshadowError 400, no or the
    wrong token 401.
    """

    @app.exception_handler(ConfigError)
    async def _config(_r: Request, exc: ConfigError) -> JSONResponse:
        if isinstance(exc, InputErrors):
            listed = [{"field": p.field, "reason": p.reason} for p in exc.problems]
            return error_response(422, str(exc), exc.field, exc.reason, errors=listed)
        return error_response(422, str(exc), exc.field, exc.reason)

    @app.exception_handler(NotFoundError)
    async def _missing(_r: Request, exc: NotFoundError) -> JSONResponse:
        return error_response(404, str(exc))

    @app.exception_handler(RiskNotAcknowledged)
    async def _risk(_r: Request, exc: RiskNotAcknowledged) -> JSONResponse:
        return error_response(409, str(exc), "acknowledge_risk", warnings=exc.warnings)

    @app.exception_handler(ConflictError)
    async def _conflict(_r: Request, exc: ConflictError) -> JSONResponse:
        msg = str(exc)
        field = msg.split(":", 1)[0] if msg.startswith("vm_name:") else None
        return error_response(409, msg, field)

    @app.exception_handler(HypervisorError)
    async def _hypervisor(_r: Request, exc: HypervisorError) -> JSONResponse:
        return error_response(503, f"hypervisor: {exc}")

    @app.exception_handler(StoreError)
    async def _store(_r: Request, exc: StoreError) -> JSONResponse:
        return error_response(503, str(exc))

    @app.exception_handler(VmshadowError)
    async def _other(_r: Request, exc: VmshadowError) -> JSONResponse:
        return error_response(400, str(exc))

    @app.exception_handler(Unauthorized)
    async def _unauth(_r: Request, _exc: Unauthorized) -> JSONResponse:
        resp = error_response(
            401, "missing or wrong bearer token (see the api-token file in the data folder)"
        )
        resp.headers["WWW-Authenticate"] = "Bearer"
        return resp
