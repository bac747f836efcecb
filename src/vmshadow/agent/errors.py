"""The one exception class of the wire protocol.

It lives in its own module so that both the message layer (``protocol``) and
the phase specs (``phasespec``) can raise it without importing each other.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """The peer (or a caller building a message) broke the protocol.

    ``code`` is a short stable string a program can branch on (``oversized``,
    ``bad_encoding``, ``malformed_json``, ``not_object``, ``bad_field``,
    ``unknown_type``, ``version_mismatch``, ``out_of_order``, ``closed``,
    ``broken``, ``implausible``: a well-formed sample no guest could have
    taken); ``message`` is for people and names the offending field when
    there is one (also in ``field``).
    """

    def __init__(self, code: str, message: str, *, field: str | None = None) -> None:
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.message = message
        self.field = field
