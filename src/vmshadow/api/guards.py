"""The checks every request passes before a route sees it (plain ASGI middleware).

* ``HostCheck``: the ``Host`` header must name this service (the bound address,
  loopback names, or ``api.allowed_hosts``). Without it a page on
  ``attacker.example`` whose name is re-pointed at 127.0.0.1 (DNS rebinding)
  reads every unauthenticated GET from the victim's browser, as same-origin.
  Starlette's ``TrustedHostMiddleware`` splits on the first ``:`` and so never
  matches ``[::1]:8600``, and answers in plain text; hence this one.
* ``BodyLimit``: a body larger than ``api.max_body_bytes``, or without a length,
  is refused before anything reads it. An image upload (``PUT
  /api/v1/images/{name}`` with ``application/octet-stream``) has its own
  limit, ``UPLOAD_MAX_BYTES``.
* ``ReadGuard``: off loopback, reads need the token too: a bearer header, or the
  read-only cookie the sign-in page gets (browsers send no header on a page
  load or an ``EventSource``). Mutations still need the bearer header, so the
  cookie cannot be used for a cross-site request forgery.

Plain ASGI rather than ``@app.middleware("http")``: that wrapper leaks a
stream when a route raises, and adds a task per request to every SSE stream.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import quote

from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from vmshadow.api.errors import error_response
from vmshadow.api.routes import API
from vmshadow.api.token import token_matches

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
READ_COOKIE = "vmshadow_read"
# What a browser must reach before it has signed in.
OPEN_PATHS = frozenset({"/login", "/favicon.ico", "/ui/auth-check", "/ui/sign-out"})
OPEN_PREFIXES = ("/static/",)
# The one body that is not JSON: a cloud image is hundreds of MiB to a few GiB.
# Only a body declared as an image gets this limit; any other body sent to the
# same path is held to api.max_body_bytes, as everywhere else.
UPLOAD_PATH = re.compile(re.escape(API) + r"/images/[^/]+")
UPLOAD_TYPE = "application/octet-stream"
UPLOAD_MAX_BYTES = 256 * 2**30


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str | None:
    """The name in a ``Host`` header, lower case and without port; None if malformed."""
    header = header.strip().lower()
    if header.startswith("["):  # [v6]:port
        end = header.find("]")
        if end < 0:
            return None
        name, rest = header[1:end], header[end + 1 :]
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return None
        return name or None
    name, _, port = header.partition(":")
    if port and not port.isdigit():
        return None
    name = name.rstrip(".")  # "localhost." is the same name
    return name or None


def allowed_host_names(bind: str, extra: Iterable[str]) -> frozenset[str]:
    names = set(LOOPBACK_NAMES)
    names.add(bind.strip("[]").lower())
    for e in extra:
        name = host_name(e)
        if name:
            names.add(name)
    return frozenset(names)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class HostCheck:
    def __init__(self, app: ASGIApp, *, allowed: frozenset[str]) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            raw = _header(scope, b"host")
            name = host_name(raw) if raw is not None else None
            if name not in self.allowed:
                resp = error_response(
                    400,
                    "Host: not a name of this service",
                    "Host",
                    f"{(raw or '')[:100]!r} is not one of the names the service answers "
                    "(add it to api.allowed_hosts)",
                )
                await resp(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BodyLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH", "DELETE"):
            length = _header(scope, b"content-length")
            limit = UPLOAD_MAX_BYTES if _is_upload(scope) else self.max_bytes
            resp = None
            if length is None and _header(scope, b"transfer-encoding"):
                resp = error_response(
                    411, "send a Content-Length; chunked bodies are not accepted", "body"
                )
            elif length is not None and (not length.isdigit() or int(length) > limit):
                resp = error_response(413, f"body larger than {limit} bytes", "body")
            if resp is not None:
                await resp(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _is_upload(scope: Scope) -> bool:
    ctype = (_header(scope, b"content-type") or "").split(";", 1)[0].strip().lower()
    return (
        scope["method"] == "PUT"
        and ctype == UPLOAD_TYPE
        and bool(UPLOAD_PATH.fullmatch(scope["path"]))
    )


class ReadGuard:
    def __init__(self, app: ASGIApp, *, token: str, cookie: str) -> None:
        self.app = app
        self.token = token
        self.cookie = cookie

    def _signed_in(self, scope: Scope) -> bool:
        authorization = _header(scope, b"authorization") or ""
        if authorization.lower().startswith("bearer "):
            return token_matches(self.token, authorization[7:].strip())
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(_header(scope, b"cookie") or "")
        except Exception:  # a malformed cookie header is no cookie
            return False
        morsel = jar.get(READ_COOKIE)
        return morsel is not None and token_matches(self.cookie, morsel.value)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES) or self._signed_in(scope):
            await self.app(scope, receive, send)
            return
        resp: Any
        if scope["method"] == "GET" and "text/html" in (_header(scope, b"accept") or ""):
            # A page load: the browser goes to the sign-in page and comes back.
            query = scope["query_string"].decode("latin-1")
            target = f"{path}?{query}" if query else path
            resp = RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        else:
            resp = error_response(
                401,
                "missing or wrong bearer token (see the api-token file in the data folder)",
                "Authorization",
                "this service is reachable off loopback: reads need the token too",
                headers={"WWW-Authenticate": "Bearer"},
            )
        await resp(scope, receive, send)
