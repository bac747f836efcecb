"""An application phase's parameters: the user's own command, run in the shadow.

A profile may name a program that exists in its image (``pgbench``,
``redis-benchmark``, ``ab``...) to run at each ramp step, optionally beside a
server the step starts on loopback. The host builds ``AppParams`` from the
profile and the guest validates them again with this code before anything
reaches ``execve``:

- argv is a list, never a shell string; at most ``MAX_ARGS`` arguments of at
  most ``MAX_ARG_BYTES`` UTF-8 bytes each (``MAX_ARGV_BYTES`` in all), and no
  NUL (``execve`` cannot pass one; Python would raise in the middle of a run);
- the only placeholders are ``{rate}`` (the step's load, units/s) and
  ``{duration}`` (its seconds); ``{{`` and ``}}`` are literal braces. Nothing
  is formatted with ``str.format``, which would also evaluate ``{rate.real}``
  or ``{0}``: any other brace is refused;
- the program (argv[0]) is a plain name looked up on the guest's PATH or an
  absolute path without ``.``/``..`` components, and holds no placeholder;
- ``achieved`` is a regular expression with exactly one group that reads the
  achieved units/s from the command's stdout.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from vmshadow.agent.fields import as_int, as_num, as_str, bad, check_keys, json_type

MAX_ARGS = 64
MAX_ARG_BYTES = 4096
# Per argv. Two of them, escaped as JSON (ensure_ascii: up to 3x a UTF-8 byte),
# stay well inside the protocol's 64 KiB line.
MAX_ARGV_BYTES = 8192
MAX_PATTERN = 256
PORT_RANGE = (1, 65535)
READY_TIMEOUT_RANGE = (1, 300)
DEFAULT_READY_TIMEOUT_S = 30
UNIT_SCALE_MAX = 1e9
RATE_MAX = 1e6  # the profile's largest load (workloads.profiles.MAX_LOAD)
DEFAULT_USER = "nobody"

# A placeholder-free argument is any text; braces only as {{, }}, {rate}, {duration}.
_ARG_RE = re.compile(r"(?:[^{}]|\{\{|\}\}|\{rate\}|\{duration\})*", re.DOTALL)
_TOKEN_RE = re.compile(r"\{\{|\}\}|\{rate\}|\{duration\}")
PROGRAM_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,63}")
_PATH_PART_RE = re.compile(r"[A-Za-z0-9_.+-]{1,255}")
MAX_PROGRAM_PATH = 255
# A login name as useradd accepts it (Debian's default NAME_REGEX), never root.
USER_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


def check_program(value: str, path: str) -> str:
    """A plain name (looked up on PATH) or an absolute path with no ``.``/``..`` parts."""
    if not value.startswith("/"):
        if not PROGRAM_NAME_RE.fullmatch(value):
            raise bad(
                path,
                f"the program must be a plain name ({PROGRAM_NAME_RE.pattern}) or an "
                f"absolute path, got {value[:80]!r}",
            )
        return value
    if len(value) > MAX_PROGRAM_PATH:
        raise bad(path, f"the program's path must be at most {MAX_PROGRAM_PATH} characters")
    for part in value[1:].split("/"):
        # An empty part is "//" or a trailing "/"; "." and ".." walk the tree.
        if part in ("", ".", "..") or not _PATH_PART_RE.fullmatch(part):
            raise bad(
                path,
                f"the program's path must be absolute with plain parts (no '.', '..', "
                f"'//' or trailing '/'), got {value[:80]!r}",
            )
    return value


def check_argv(value: object, path: str) -> tuple[str, ...]:
    """An untrusted argv (JSON array of strings) checked as the module docstring says."""
    if not isinstance(value, list | tuple):
        raise bad(path, f"must be an array of strings, got {json_type(value)}")
    if not 1 <= len(value) <= MAX_ARGS:
        raise bad(path, f"must have 1..{MAX_ARGS} arguments, got {len(value)}")
    total = 0
    for i, arg in enumerate(value):
        where = f"{path}[{i}]"
        if not isinstance(arg, str):
            raise bad(where, f"must be a string, got {json_type(arg)}")
        if "\x00" in arg:
            raise bad(where, "contains a NUL character, which no program can receive")
        try:
            size = len(arg.encode("utf-8"))
        except UnicodeEncodeError:  # a lone surrogate: not text a program can get
            raise bad(where, "is not valid Unicode text") from None
        if size > MAX_ARG_BYTES:
            raise bad(where, f"must be at most {MAX_ARG_BYTES} bytes, got {size}")
        total += size
        if not _ARG_RE.fullmatch(arg):
            raise bad(
                where,
                "the only placeholders are {rate} and {duration} (write {{ and }} for a "
                f"literal brace), got {arg[:80]!r}",
            )
    if total > MAX_ARGV_BYTES:
        raise bad(path, f"must be at most {MAX_ARGV_BYTES} bytes in all, got {total}")
    program = value[0]
    if "{" in program or "}" in program:
        raise bad(f"{path}[0]", "the program may not hold a placeholder or a brace")
    check_program(program, f"{path}[0]")
    return tuple(value)


def compile_pattern(value: object, path: str) -> re.Pattern[str]:
    """``achieved``: a regular expression with exactly one group."""
    text = as_str(value, path, MAX_PATTERN)
    if not text or "\x00" in text:
        raise bad(path, "must be a non-empty regular expression without NUL")
    try:
        pattern = re.compile(text)
    except re.error as exc:
        raise bad(path, f"is not a regular expression ({exc}): {text!r}") from None
    except (RecursionError, OverflowError) as exc:  # absurd nesting or repeat counts
        raise bad(path, f"is not a usable regular expression ({type(exc).__name__})") from None
    if pattern.groups != 1:
        raise bad(
            path,
            f"must have exactly one group, the number to read, got {pattern.groups}: "
            f"{text!r} (write (?:...) for a group that only groups)",
        )
    return pattern


def format_rate(rate: float) -> str:
    """``{rate}`` as a program reads it: no exponent, no trailing zeros (100, 12.5)."""
    if rate == int(rate):
        return str(int(rate))
    return f"{rate:.6f}".rstrip("0").rstrip(".")


def render(argv: Sequence[str], rate: float, duration_s: int) -> list[str]:
    """``argv`` with its placeholders filled in (checked by ``check_argv`` first)."""
    values = {
        "{{": "{",
        "}}": "}",
        "{rate}": format_rate(rate),
        "{duration}": str(duration_s),
    }
    return [_TOKEN_RE.sub(lambda m: values[m.group(0)], arg) for arg in argv]


@dataclass(frozen=True)
class AppParams:
    """The application a ramp step runs, at ``rate`` units/s."""

    command: tuple[str, ...]
    achieved: str
    rate: float
    unit_scale: float = 1.0
    server: tuple[str, ...] | None = None
    ready_port: int | None = None
    ready_timeout_s: int = DEFAULT_READY_TIMEOUT_S
    user: str = DEFAULT_USER

    def __post_init__(self) -> None:
        check_argv(self.command, "params.command")
        compile_pattern(self.achieved, "params.achieved")
        _check_rate(self.rate)
        _check_scale(self.unit_scale)
        if self.server is not None:
            check_argv(self.server, "params.server")
        if self.ready_port is not None:
            as_int(self.ready_port, "params.ready_port", *PORT_RANGE)
        as_int(self.ready_timeout_s, "params.ready_timeout_s", *READY_TIMEOUT_RANGE)
        check_user(self.user, "params.user")

    @property
    def pattern(self) -> re.Pattern[str]:
        return re.compile(self.achieved)  # cached by the re module

    def argv(self, duration_s: int) -> list[str]:
        return render(self.command, self.rate, duration_s)

    def server_argv(self, duration_s: int) -> list[str] | None:
        return None if self.server is None else render(self.server, self.rate, duration_s)

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> AppParams:
        check_keys(
            d,
            "params",
            ("command", "achieved", "rate"),
            ("unit_scale", "server", "ready_port", "ready_timeout_s", "user"),
        )
        server = d.get("server")
        port = d.get("ready_port")
        return cls(
            command=check_argv(d["command"], "params.command"),
            achieved=compile_pattern(d["achieved"], "params.achieved").pattern,
            rate=_check_rate(d["rate"]),
            unit_scale=_check_scale(d.get("unit_scale", 1.0)),
            server=None if server is None else check_argv(server, "params.server"),
            ready_port=None if port is None else as_int(port, "params.ready_port", *PORT_RANGE),
            ready_timeout_s=as_int(
                d.get("ready_timeout_s", DEFAULT_READY_TIMEOUT_S),
                "params.ready_timeout_s",
                *READY_TIMEOUT_RANGE,
            ),
            user=check_user(d.get("user", DEFAULT_USER), "params.user"),
        )

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "command": list(self.command),
            "achieved": self.achieved,
            "rate": self.rate,
            "unit_scale": self.unit_scale,
            "ready_timeout_s": self.ready_timeout_s,
            "user": self.user,
        }
        if self.server is not None:
            out["server"] = list(self.server)
        if self.ready_port is not None:
            out["ready_port"] = self.ready_port
        return out


def check_user(value: object, path: str) -> str:
    name = as_str(value, path, 32, USER_RE)
    if name == "root":
        # The application is the user's code in a guest we measure: it gets no
        # more power over the guest than an ordinary account.
        raise bad(path, "the application may not run as root")
    return name


def _check_rate(value: object) -> float:
    rate = as_num(value, "params.rate", 0.0, RATE_MAX)
    if rate <= 0:
        raise bad("params.rate", f"must be above 0, got {value!r}")
    return rate


def _check_scale(value: object) -> float:
    scale = as_num(value, "params.unit_scale", 0.0, UNIT_SCALE_MAX)
    if scale <= 0 or not math.isfinite(scale):
        raise bad("params.unit_scale", f"must be above 0, got {value!r}")
    return scale
