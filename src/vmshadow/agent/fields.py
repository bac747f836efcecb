"""Typed field checks shared by message validation and phase specs.

Each check takes an untrusted JSON value and the dotted path of the field it
came from, and either returns the value with a precise type or raises
``ProtocolError("bad_field", ...)`` naming that path. ``bool`` is rejected
wherever a number is expected: in Python ``True`` is an ``int``, in the
protocol it is not.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from typing import TypeVar

from vmshadow.agent.errors import ProtocolError

T = TypeVar("T", str, int)


def json_type(value: object) -> str:
    """The JSON name of a value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def bad(path: str, why: str) -> ProtocolError:
    return ProtocolError("bad_field", f"{path}: {why}", field=path)


def join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def as_int(value: object, path: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(path, f"must be an integer, got {json_type(value)}")
    if not lo <= value <= hi:
        raise bad(path, f"must be in {lo}..{hi}, got {value}")
    return value


def as_num(value: object, path: str, lo: float = 0.0, hi: float = math.inf) -> float:
    """A finite number (integer or float) in lo..hi, returned as float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad(path, f"must be a number, got {json_type(value)}")
    number = float(value)
    if not math.isfinite(number) or not lo <= number <= hi:
        raise bad(path, f"must be a finite number in {lo:g}..{hi:g}, got {value!r}")
    return number


def as_bool(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise bad(path, f"must be a boolean, got {json_type(value)}")
    return value


def as_str(value: object, path: str, max_len: int, pattern: re.Pattern[str] | None = None) -> str:
    if not isinstance(value, str):
        raise bad(path, f"must be a string, got {json_type(value)}")
    if len(value) > max_len:
        raise bad(path, f"must be at most {max_len} characters, got {len(value)}")
    if pattern is not None and not pattern.fullmatch(value):
        raise bad(path, f"must match {pattern.pattern}, got {value!r}")
    return value


def as_choice(value: object, path: str, choices: Collection[T]) -> T:
    """One of ``choices``; the type of the choices (str or int) is enforced first."""
    for choice in choices:
        # Compare with the exact type so that True never passes for 1.
        if type(value) is type(choice) and value == choice:
            return choice
    allowed = ", ".join(repr(c) for c in choices)
    raise bad(path, f"must be one of {allowed}, got {value!r}"[:300])


def as_object(value: object, path: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise bad(path, f"must be an object, got {json_type(value)}")
    return value


def check_keys(
    obj: Mapping[str, object], path: str, required: Collection[str], optional: Collection[str] = ()
) -> None:
    """Every required key present and nothing unknown: both sides run the same code version."""
    for key in required:
        if key not in obj:
            raise bad(join(path, key), "missing field")
    for key in obj:
        if key not in required and key not in optional:
            raise bad(join(path, key[:64]), "unknown field")
