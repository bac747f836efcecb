"""The bearer token every mutating route asks for (and reads off loopback, via ``guards.py``).

It is declared as OpenAPI's HTTP bearer security scheme (FastAPI's
``HTTPBearer``), so generated clients send it and ``/docs`` has "Authorize".
A missing or wrong token is answered 401 in the one error shape, never with
FastAPI's own 403.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from vmshadow.api.token import token_matches

BEARER = HTTPBearer(
    scheme_name="token",
    description="The API token: `vmshadow token show`, or the file `<data_dir>/api-token`.",
    auto_error=False,  # our own 401 in the documented shape
)


class Unauthorized(Exception):
    """No token or the wrong one; ``errors.install_domain_handlers`` answers it with 401."""


def token_dependency(token: str) -> Callable[..., None]:
    """A FastAPI dependency that accepts ``Authorization: Bearer <token>`` and nothing else."""

    def require_token(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
    ) -> None:
        presented = credentials.credentials.strip() if credentials is not None else None
        if not token_matches(token, presented):
            raise Unauthorized()

    return require_token
