"""Checks of what a user typed, made before a command contacts the service or
boots anything.

A failed check is bad usage: one line ``error: FLAG: reason`` and exit code 2.
What only the service can judge (its quotas, the host's size, its profiles and
images, names already taken) stays its refusal: exit code 1. The rule is in
docs/cli.md ("Exit codes and errors").
"""

from __future__ import annotations

import math
from datetime import datetime

from vmshadow.domain.errors import ConfigError
from vmshadow.domain.transition import TransitionState

# The API's own bounds (api/schemas.py ``Size``), checked here so that a size
# no host could take is bad usage rather than a round trip to the service.
MAX_VCPUS = 256
MIN_MEMORY_MIB = 128
MAX_MEMORY_MIB = 4 * 1024 * 1024
MAX_IOPS = 10_000_000
MAX_LIST = 1000  # the API's `limit` bound


class BadUsage(ConfigError):
    """What was typed cannot be right on any host: exit code 2, before any work."""


def vcpus(n: int, flag: str = "--cpus") -> int:
    if not 1 <= n <= MAX_VCPUS:
        raise BadUsage(flag, f"{n} is not a number of vCPUs from 1 to {MAX_VCPUS}")
    return n


def parse_memory_mib(text: str, field: str = "--memory") -> int:
    """'4G', '512M', '1.5GiB', '2048' (MiB) -> MiB."""
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    scale = {"G": 1024, "M": 1, "T": 1024 * 1024}.get(t[-1:])
    try:
        value = float(t[:-1] if scale else t) * (scale or 1)
    except ValueError:
        raise BadUsage(field, f"{text!r} is not a size like 4G, 512M or 2048") from None
    if value != value or value <= 0:  # NaN or not positive
        raise BadUsage(field, f"{text!r} is not a positive size")
    return int(value)


def vm_memory(text: str, flag: str = "--memory") -> int:
    """A full VM's memory: a size the API accepts (128 MiB to 4 TiB)."""
    mib = parse_memory_mib(text, flag)
    if not MIN_MEMORY_MIB <= mib <= MAX_MEMORY_MIB:
        raise BadUsage(flag, f"{text!r} is not between {MIN_MEMORY_MIB} MiB and 4T")
    return mib


def iops(n: int | None, flag: str = "--iops") -> int | None:
    if n is not None and not 1 <= n <= MAX_IOPS:
        raise BadUsage(flag, f"{n} is not an IOPS cap from 1 to {MAX_IOPS}")
    return n


def load(x: float | None, flag: str = "--load") -> float | None:
    # A negative load once booted a shadow that ramped to the profile's first step.
    if x is not None and not (math.isfinite(x) and x > 0):
        raise BadUsage(flag, f"{x:g} is not a load: give a positive number in the profile's unit")
    return x


def when(text: str | None, flag: str = "--at") -> str | None:
    if text is None:
        return None
    try:
        datetime.fromisoformat(text)
    except ValueError:
        raise BadUsage(
            flag, f"{text!r} is not a time in ISO 8601, e.g. 2026-12-01T18:00+01:00"
        ) from None
    return text


def vm_name(name: str, flag: str = "NAME") -> str:
    from vmshadow.domain.vm import validate_vm_name

    try:
        return validate_vm_name(name)
    except ConfigError as exc:
        raise BadUsage(flag, exc.reason) from None


def image_name(name: str, flag: str = "--image") -> str:
    from vmshadow.image.userstore import check_image_name

    try:
        return check_image_name(name)
    except ConfigError as exc:
        raise BadUsage(flag, exc.reason) from None


def state(name: str | None, flag: str = "--state") -> str | None:
    known = [s.value for s in TransitionState]
    if name is not None and name not in known:
        raise BadUsage(flag, f"{name!r} is not a state: one of {', '.join(known)}")
    return name


def limit(n: int, flag: str = "--limit") -> int:
    if not 1 <= n <= MAX_LIST:
        raise BadUsage(flag, f"{n} is not from 1 to {MAX_LIST}")
    return n


def positive(x: float, flag: str) -> float:
    if not (math.isfinite(x) and x > 0):
        raise BadUsage(flag, f"{x:g} is not a positive number")
    return x


def emit_format(fmt: str | None) -> str | None:
    """``--emit``: one of the formats ``vmshadow.emit`` knows."""
    from vmshadow.emit import FORMATS

    if fmt is not None and fmt not in FORMATS:
        raise BadUsage("--emit", f"no format {fmt!r}; one of: {', '.join(FORMATS)}")
    return fmt
