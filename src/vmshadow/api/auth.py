"""The bearer token every mutating route asks for (and reads off loopback, via ``guards.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Header

from vmshadow.api.token import token_matches


class Unauthorized(Exception):
    """No token or the wrong one; ``errors.install_domain_handlers`` answers it with 401."""


def token_dependency(token: str) -> Callable[..., None]:
    """A FastAPI dependency that accepts ``Authorization: Bearer <token>`` and nothing else."""

    def require_token(authorization: Annotated[str | None, Header()] = None) -> None:
        presented = None
        if authorization and authorization.lower().startswith("bearer "):
            presented = authorization[7:].strip()
        if not token_matches(token, presented):
            raise Unauthorized()

    return require_token
