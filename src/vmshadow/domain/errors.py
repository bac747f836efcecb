"""Errors vmshadow raises, one root so callers can catch them all.

    VmshadowError
    ├── ConfigError          bad configuration or user input (names the field)
    │   └── InputErrors      several at once: the first's field and reason, all in ``problems``
    ├── ImageError           the shadow base image cannot be built or found
    ├── HypervisorError      libvirt or QEMU refused or failed
    │   └── ShadowBootError  a shadow did not reach its agent in time
    ├── AgentError           the in-guest agent failed a request or went silent
    │   ├── AgentTimeout     (agent.host.adapter) no answer in time
    │   └── AgentRefused     (agent.host.adapter) the agent reported an error, with its code
    ├── ShadowAborted        a shadow run was cancelled (Ctrl-C, timeout)
    ├── StoreError           the database refused or failed
    ├── NotFoundError        no such transition (or VM, profile, ...)
    ├── ConflictError        the request does not fit the current state
    │   └── RiskNotAcknowledged  an override below the need, without acknowledgement
    └── IllegalTransition    (domain.transition) a lifecycle edge that does not exist

Library errors are translated where they happen (``raise X(...) from exc``), so
only these cross module boundaries. Programming errors stay ordinary Python
exceptions (``TypeError``, ``AssertionError``): they are bugs, not outcomes.
"""

from __future__ import annotations


class VmshadowError(Exception):
    """Root of every error vmshadow raises on purpose."""


class ConfigError(VmshadowError):
    """Configuration or input is invalid; the message names the field and the reason."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class InputErrors(ConfigError):
    """Several input errors at once (a form marks every field): the first's field
    and reason, with all of them in ``problems``."""

    def __init__(self, problems: list[ConfigError]) -> None:
        super().__init__(problems[0].field, problems[0].reason)
        self.problems = problems


class ImageError(VmshadowError):
    """The shadow base image cannot be built, found or used."""


class HypervisorError(VmshadowError):
    """libvirt or QEMU refused an operation or failed."""


class ShadowBootError(HypervisorError):
    """A shadow domain started but its agent never said hello."""


class AgentError(VmshadowError):
    """The in-guest agent reported an error or stopped answering."""


class ShadowAborted(VmshadowError):
    """A shadow run was stopped before it finished (interrupt or deadline)."""


class StoreError(VmshadowError):
    """The database refused or failed an operation (locked, read-only, unreachable,
    schema missing); the message names the operation and the database's reason."""


class NotFoundError(VmshadowError):
    """The thing asked for does not exist."""


class ConflictError(VmshadowError):
    """The request is valid but does not fit the current state (e.g. confirm twice)."""


class RiskNotAcknowledged(ConflictError):
    """An override below the predicted need was sent without acknowledging the risk."""

    def __init__(self, warnings: list[str]) -> None:
        super().__init__(
            "the override is below the predicted need; resend it with "
            "acknowledge_risk=true to accept: " + "; ".join(warnings)
        )
        self.warnings = warnings
