"""The API's bearer token: made on first start, kept in a 0600 file, shown once."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path


def ensure_token(path: Path) -> tuple[str, bool]:
    """The token in ``path``, creating it if missing; True when it was just made."""
    try:
        token = path.read_text().strip()
        if token:
            os.chmod(path, 0o600)
            return token, False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    # O_EXCL: two services starting at once must not hand out different tokens.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return ensure_token(path)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token, True


def token_matches(expected: str, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(expected.encode(), presented.encode())


def read_cookie_value(token: str) -> str:
    """The sign-in cookie's value: grants reads only, and does not reveal the token."""
    return hmac.new(token.encode(), b"vmshadow read cookie", hashlib.sha256).hexdigest()
