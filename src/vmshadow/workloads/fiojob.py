"""User fio job files (INI) for a profile's I/O phase, checked against an allow-list.

fio job files are more than settings: ``exec_prerun``/``exec_postrun`` and
``trigger-cmd`` run commands, ``ioengine=exec`` or ``external:`` loads or runs
programs, ``directory``/``filename``/``write_*_log`` touch any file, ``include``
pulls in other files and ``$VAR``/``$(( ))`` expand the environment and
arithmetic. So the file never reaches fio: it is parsed (``fioformat``: the
sections, their options and line numbers, refusing the dangerous ones), every
option is checked here against a short allow-list, and the result is the same
closed ``FioParams`` the built-in profiles produce (the agent builds fio's argv
from that, with the scratch disk as the only file).

One job per file (plus ``[global]`` sections before it): the ramp drives one
fio phase per step; ``numjobs`` gives parallel copies of it. ``runtime`` and
``time_based`` are accepted for convenience but the ramp step's duration
replaces them, and the rate comes from the profile's ``per_unit.iops``.

Errors are ``ConfigError`` whose field is ``<file>:<line>: <option>``.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vmshadow.agent.errors import ProtocolError
from vmshadow.agent.phasespec import (
    FIO_BS_KIB,
    FIO_ENGINES,
    FIO_RW,
    FSYNC_RANGE,
    IODEPTH_RANGE,
    MIXED_RW,
    NUMJOBS_RANGE,
    RWMIX_RANGE,
    SIZE_MIB_RANGE,
    FioParams,
)
from vmshadow.domain.errors import ConfigError
from vmshadow.domain.shadow import ShadowSize
from vmshadow.workloads.fioformat import (
    ALIASES,
    MAX_JOB_BYTES,
    Where,
    job_options,
    option_error,
    sections,
)

SCRATCH_DEVICE = "/dev/vdb"  # the shadow's scratch disk, as the guest sees it
DEFAULT_SIZE_MIB = 256  # region of the scratch disk a job covers unless it says `size`

_SIZE_RE = re.compile(r"(\d{1,12})\s*([kmgt]?)(i?b)?", re.IGNORECASE)
_TIME_RE = re.compile(r"(\d{1,9})(us|ms|s|m|h|d)?", re.IGNORECASE)

_ENGINE_DANGER = ("exec", "external")


@dataclass(frozen=True)
class FioJob:
    """A checked job: the parameters of the profile's I/O phase, without its rate."""

    params: FioParams
    name: str
    notes: tuple[str, ...] = ()  # what was accepted but does not apply, said once


# -- the values ------------------------------------------------------------------------------
def _size_bytes(value: str) -> int | None:
    """fio sizes: bytes, or k/m/g/t (fio's default kb_base is 1024, also for 'kB')."""
    m = _SIZE_RE.fullmatch(value)
    if m is None:
        return None
    scale = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}[m.group(2).lower()]
    return int(m.group(1)) * scale


def _int_in(value: str | None, lo: int, hi: int) -> int | None:
    if value is None or not value.isdigit() or len(value) > 12:
        return None
    n = int(value)
    return n if lo <= n <= hi else None


def _bool(value: str | None) -> bool | None:
    if value is None:  # a bare boolean option means "on", as in fio
        return True
    return {"0": False, "1": True}.get(value)


@dataclass
class _Draft:
    rw: str = "read"  # fio's default
    bs_kib: int = 4
    iodepth: int = 1
    size_mib: int = DEFAULT_SIZE_MIB
    direct: bool = False
    fsync: int = 0
    ioengine: str = "psync"
    numjobs: int = 1
    rwmixread: int | None = None
    notes: list[str] = field(default_factory=list)


def _rw(d: _Draft, v: str | None) -> str | None:
    if v not in FIO_RW:
        return f"must be one of {', '.join(FIO_RW)}"
    d.rw = v
    return None


def _bs(d: _Draft, v: str | None) -> str | None:
    size = _size_bytes(v or "")
    if size is None or size % 1024 or size // 1024 not in FIO_BS_KIB:
        return f"must be one of {', '.join(f'{b}k' for b in FIO_BS_KIB)}"
    d.bs_kib = size // 1024
    return None


def _iodepth(d: _Draft, v: str | None) -> str | None:
    n = _int_in(v, *IODEPTH_RANGE)
    if n is None:
        return "must be an integer in {}..{}".format(*IODEPTH_RANGE)
    d.iodepth = n
    return None


def _size(d: _Draft, v: str | None) -> str | None:
    size = _size_bytes(v or "")
    # The region must fit the scratch disk a default shadow gets.
    lo, hi = SIZE_MIB_RANGE[0], min(SIZE_MIB_RANGE[1], ShadowSize().scratch_mib)
    if size is None or size % 2**20 or not lo <= size // 2**20 <= hi:
        return f"must be whole MiB from {lo}m to {hi}m of the scratch disk (e.g. 256m, 1g)"
    d.size_mib = size // 2**20
    return None


def _direct(d: _Draft, v: str | None) -> str | None:
    b = _bool(v)
    if b is None:
        return "must be 0 or 1"
    d.direct = b
    return None


def _buffered(d: _Draft, v: str | None) -> str | None:
    b = _bool(v)
    if b is None:
        return "must be 0 or 1"
    d.direct = not b
    return None


def _fsync(d: _Draft, v: str | None) -> str | None:
    n = _int_in(v, *FSYNC_RANGE)
    if n is None:
        return "must be an integer in {}..{}".format(*FSYNC_RANGE)
    d.fsync = n
    return None


def _ioengine(d: _Draft, v: str | None) -> str | None:
    engine = (v or "").split(":", 1)[0]
    if engine in _ENGINE_DANGER:
        return f"engine {engine!r} runs or loads programs; refused"
    if v not in FIO_ENGINES:
        return f"must be one of {', '.join(FIO_ENGINES)}"
    d.ioengine = v
    return None


def _numjobs(d: _Draft, v: str | None) -> str | None:
    n = _int_in(v, *NUMJOBS_RANGE)
    if n is None:
        return "must be an integer in {}..{}".format(*NUMJOBS_RANGE)
    d.numjobs = n
    return None


def _rwmixread(d: _Draft, v: str | None) -> str | None:
    n = _int_in(v, *RWMIX_RANGE)
    if n is None:
        return "must be an integer in {}..{}".format(*RWMIX_RANGE)
    d.rwmixread = n
    return None


def _rwmixwrite(d: _Draft, v: str | None) -> str | None:
    err = _rwmixread(d, v)
    if err is None and d.rwmixread is not None:
        d.rwmixread = 100 - d.rwmixread
    return err


def _filename(d: _Draft, v: str | None) -> str | None:
    if v != SCRATCH_DEVICE:
        return f"the only file a job may use is the shadow's scratch disk {SCRATCH_DEVICE}"
    return None


def _runtime(d: _Draft, v: str | None) -> str | None:
    if _TIME_RE.fullmatch(v or "") is None:
        return "must be a time such as 30 or 30s"
    d.notes.append("runtime: the ramp step's duration is used instead")
    return None


def _time_based(d: _Draft, v: str | None) -> str | None:
    if _bool(v) is None:
        return "must be 0 or 1 (or bare)"
    d.notes.append("time_based: every phase is time based already")
    return None


def _ignored(d: _Draft, v: str | None) -> str | None:
    return None  # names and reporting options change nothing the shadow measures


ALLOWED: dict[str, Callable[[_Draft, str | None], str | None]] = {
    "rw": _rw,
    "bs": _bs,
    "iodepth": _iodepth,
    "size": _size,
    "direct": _direct,
    "buffered": _buffered,
    "fsync": _fsync,
    "ioengine": _ioengine,
    "numjobs": _numjobs,
    "rwmixread": _rwmixread,
    "rwmixwrite": _rwmixwrite,
    "filename": _filename,
    "runtime": _runtime,
    "time_based": _time_based,
    "name": _ignored,
    "description": _ignored,
    "group_reporting": _ignored,
}
# Options the profile sets itself: a job file that sets them would be silently overridden.
_PROFILE_OWNS = {
    "rate_iops": "the rate comes from the profile's per_unit.iops times the load",
    "rate": "the rate comes from the profile's per_unit.iops times the load",
    "rate_process": "the ramp uses Poisson arrivals",
}
ALLOWED_OPTIONS = frozenset({*ALLOWED, *ALIASES})


def parse_fio_job(text: str, source: str, *, where: Where | None = None) -> FioJob:
    """Check an fio job file and turn it into the I/O phase's parameters.

    ``where(line)`` names a line in errors (default ``source:line``), so a job
    embedded in a profile can point at the profile's own line.

    >>> parse_fio_job("[db]\\nrw=randrw\\nbs=8k\\n", "db.fio").params.bs_kib
    8
    """
    at: Where = where or (lambda n: f"{source}:{n}")
    name, options, header = job_options(sections(text, at), at)
    draft = _Draft()
    for opt in options:
        if opt.name in _PROFILE_OWNS:
            raise option_error(at, opt.line, opt.name, _PROFILE_OWNS[opt.name])
        check = ALLOWED.get(opt.name)
        if check is None:
            raise option_error(
                at,
                opt.line,
                opt.name,
                f"not an allowed option (allowed: {', '.join(sorted(ALLOWED_OPTIONS))})",
            )
        reason = check(draft, opt.value)
        if reason is not None:
            raise option_error(at, opt.line, opt.name, reason)
    if draft.rwmixread is not None and draft.rw not in MIXED_RW:
        line = next(o.line for o in options if o.name in ("rwmixread", "rwmixwrite"))
        raise option_error(at, line, "rwmixread", f"only applies to rw={'/'.join(MIXED_RW)}")
    try:
        params = FioParams(
            rw=draft.rw,
            bs_kib=draft.bs_kib,
            iodepth=draft.iodepth,
            size_mib=draft.size_mib,
            direct=draft.direct,
            fsync=draft.fsync,
            ioengine=draft.ioengine,
            numjobs=draft.numjobs,
            rwmixread=draft.rwmixread,
        )
    except ProtocolError as exc:
        # Combinations the phase spec refuses (e.g. iodepth 8 with psync).
        option = (exc.field or "").removeprefix("params.")
        line = next((o.line for o in options if o.name == option), header)
        raise option_error(at, line, option or f"[{name}]", exc.message.split(": ", 1)[-1]) from exc
    return FioJob(params=params, name=name, notes=tuple(dict.fromkeys(draft.notes)))


def read_fio_job(path: str | Path) -> FioJob:
    """Check the fio job file at ``path`` (what ``vmshadow profile check x.fio`` does)."""
    p = Path(path)
    try:
        # A FIFO or a device (/dev/zero) would block or never end: regular files only,
        # and never more read than the bound, whatever the size said.
        if not stat.S_ISREG(p.stat().st_mode):
            raise ConfigError(str(p), "an fio job file must be a regular file")
        with p.open("rb") as f:
            raw = f.read(MAX_JOB_BYTES + 1)
        if len(raw) > MAX_JOB_BYTES:
            raise ConfigError(str(p), f"an fio job file is at most {MAX_JOB_BYTES} bytes")
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(p), f"cannot read the fio job file: {exc}") from exc
    return parse_fio_job(text, str(p))
