"""What the OpenAPI document says beyond the routes: the error shape and the
statuses that carry it, stable operation ids, and the ``/docs`` page.

Every error is ``{"error", "field", "reason"}`` (``errors.py``), with
``errors`` listing every bad field of a 422 and ``warnings`` the risks of a
409 override; the document says so for each status a route may answer.
Operation ids are ``<tag>-<function>`` (``transitions-create``): generated
clients name their methods after them, so they must not change when a route
moves. ``/docs`` is Swagger UI from ``web/static/vendor`` (nothing is loaded
from outside the host) under a CSP that allows no inline script.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field


class FieldError(BaseModel):
    field: str | None = Field(description="the input that is wrong, dotted (requested.vcpus)")
    reason: str


class ErrorBody(BaseModel):
    """The one error shape."""

    error: str = Field(description="one line for a person: the field and the reason")
    field: str | None = Field(description="the input that is wrong, or null")
    reason: str = Field(description="why, without the field's name")
    errors: list[FieldError] | None = Field(
        None, description="422: every bad field at once (the first is also error/field/reason)"
    )
    warnings: list[dict[str, str]] | None = Field(
        None, description="409 on an override: the risks to acknowledge"
    )


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("a Host header the service does not answer to (DNS rebinding guard)"),
    401: _error("no token, or the wrong one (mutations; reads too off loopback)"),
    404: _error("no such transition, image, VM or route"),
    409: _error("valid, but not in the current state (confirm twice, a name taken, ...)"),
    413: _error("the body is larger than api.max_body_bytes"),
    422: _error("invalid input: names the field and the reason; `errors` lists all"),
    503: _error("libvirt or the database is not answering, or too many streams"),
}

STREAM_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "server-sent events: `event` (state changes, notes), `sample` "
        "(measurements as they arrive), then `end`",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}


def operation_id(route: APIRoute) -> str:
    tag = str(route.tags[0]) if route.tags else "vmshadow"
    return f"{tag}-{route.name}".replace("_", "-")


DOCS_CSP = (
    # Swagger UI sets style attributes from its scripts: styles may be inline,
    # scripts never.
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)
DOCS_HTML = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>vmshadow API</title>
  <link rel="stylesheet" href="/static/vendor/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/static/vendor/swagger-ui-bundle.js"></script>
  <script src="/static/apidocs.js"></script>
</body>
</html>
"""


def install_docs(app: FastAPI) -> None:
    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(
            DOCS_HTML,
            headers={
                "Content-Security-Policy": DOCS_CSP,
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
            },
        )
