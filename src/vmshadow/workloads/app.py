"""A profile's ``app:``: the application itself as the workload of each ramp step.

Instead of synthetic per-unit costs, a profile may name a program that exists
in the VM's image (a benchmark client such as ``pgbench``,
``redis-benchmark`` or ``ab``, or the application's own load driver) and,
optionally, a server the step starts on loopback first. At each ramp step the
shadow runs it with ``{rate}`` = the step's load and ``{duration}`` = its
seconds, and reads the rate it *achieved* from its stdout; the ramp then fits
the shadow's measurements against the achieved load, so a step that fell
short of its rate is not taken for a cheap one.

The checks are the agent's own (``agent.appspec``), run here on the host
when the profile is read and again in the guest before anything runs; this
module only adds the YAML shape and says where in the file a value is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator

from vmshadow.agent import appspec
from vmshadow.agent.appproc import SERVER_GRACE_S
from vmshadow.agent.appspec import AppParams
from vmshadow.agent.errors import ProtocolError

_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)
_FIELD_PATH = re.compile(r"([a-z_]+)(?:\[(\d+)\])?")
ARGV_HELP = (
    "an argv list (never a shell string): the program, a plain name on the image's PATH "
    "or an absolute path, then its arguments; {rate} (the step's load, units/s) and "
    "{duration} (the step's seconds) are filled in, {{ and }} are literal braces; at most "
    f"{appspec.MAX_ARGS} arguments, {appspec.MAX_ARG_BYTES} bytes each, no NUL"
)

# Fails a check at the YAML path (under ``app``) it names; returns the error to raise.
Locate = Callable[[tuple[str | int, ...], str], Exception]


class AppCommand(BaseModel):
    """``app:`` in a profile file."""

    model_config = _STRICT

    command: list[str] = Field(
        ...,
        min_length=1,
        max_length=appspec.MAX_ARGS,
        description=f"the command each ramp step runs: {ARGV_HELP}",
    )
    server: list[str] | None = Field(
        None,
        min_length=1,
        max_length=appspec.MAX_ARGS,
        description="a server started before the command and stopped after it (SIGTERM, "
        f"then SIGKILL after {SERVER_GRACE_S:g} s); it must stay in the "
        f"foreground: {ARGV_HELP}",
    )
    ready_port: int | None = Field(
        None,
        ge=appspec.PORT_RANGE[0],
        le=appspec.PORT_RANGE[1],
        description="wait until 127.0.0.1:PORT accepts connections before the command runs",
    )
    ready_timeout_s: int = Field(
        appspec.DEFAULT_READY_TIMEOUT_S,
        ge=appspec.READY_TIMEOUT_RANGE[0],
        le=appspec.READY_TIMEOUT_RANGE[1],
        description="how long to wait for ready_port, seconds (within the phase's own limit)",
    )
    achieved: str = Field(
        ...,
        min_length=1,
        max_length=appspec.MAX_PATTERN,
        description="a regular expression with exactly one group that reads the achieved "
        "rate from the command's stdout, e.g. 'tps = ([0-9.]+)'; the last matching line counts",
    )
    unit_scale: float = Field(
        1.0,
        gt=0,
        le=appspec.UNIT_SCALE_MAX,
        description="multiplies what achieved reads into the profile's unit "
        "(e.g. 0.001 from operations/s to thousand ops/s)",
    )
    user: str = Field(
        appspec.DEFAULT_USER,
        pattern=appspec.USER_RE.pattern,
        description="the guest account the application runs as; never root",
    )

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> AppCommand:
        """The agent's own checks, with the failing value's line in the file."""
        ctx = info.context if isinstance(info.context, dict) else {}
        locate: Locate | None = ctx.get("locate")
        try:
            appspec.check_argv(self.command, "command")
            if self.server is not None:
                appspec.check_argv(self.server, "server")
            appspec.compile_pattern(self.achieved, "achieved")
            appspec.check_user(self.user, "user")
        except ProtocolError as exc:
            loc = _loc(exc.field or "")
            reason = exc.message.split(": ", 1)[-1]
            if locate is None:
                raise ValueError(f"{exc.field}: {reason}") from None
            raise locate(("app", *loc), reason) from None
        return self

    def params(self, rate: float) -> AppParams:
        """The phase parameters at ``rate`` units/s (the step's load)."""
        return AppParams(
            command=tuple(self.command),
            achieved=self.achieved,
            rate=rate,
            unit_scale=self.unit_scale,
            server=None if self.server is None else tuple(self.server),
            ready_port=self.ready_port,
            ready_timeout_s=self.ready_timeout_s,
            user=self.user,
        )

    def summary(self) -> dict[str, Any]:
        """What ``vmshadow profile check`` and a prediction's detail show."""
        out: dict[str, Any] = {"command": self.command, "achieved": self.achieved}
        if self.server is not None:
            out["server"] = self.server
        if self.ready_port is not None:
            out["ready_port"] = self.ready_port
        if self.unit_scale != 1.0:
            out["unit_scale"] = self.unit_scale
        out["user"] = self.user
        return out


def _loc(field: str) -> tuple[str | int, ...]:
    """``command[1]`` -> ("command", 1): the YAML path of the agent's field name."""
    m = _FIELD_PATH.fullmatch(field)
    if m is None:
        return (field,) if field else ()
    name, index = m.groups()
    return (name,) if index is None else (name, int(index))
