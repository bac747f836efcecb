"""Workload profiles: an application as *work units* with a CPU, memory and I/O cost.

A profile is declarative YAML (built-ins ship in ``workloads/builtin``; users
bring their own, validated against the JSON schema ``vmshadow profile
schema`` prints). At a load of L units/s a profile becomes three phases the
agent runs one after the other: a rate-limited CPU phase (stress-ng
``--cpu-load``), a memory phase holding the working set (stress-ng vm with
``vm_keep``), and a rate-limited fio phase (``rate_iops`` with Poisson
arrivals). The shadow runs a *ramp* of loads; the measured cost per unit and
how it scales come from those steps (see ``ramp.py``).

Synthetic load is an approximation (stress-ng says so itself): the profiles'
costs are a starting point that history from real launches corrects. A user
profile may instead run the application itself (``app:``, see ``app.py``):
each ramp step is then one phase, the user's own command at the step's load.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from vmshadow.agent.phasespec import RATE_IOPS_RANGE, FioParams, PhaseSpec, StressNgParams
from vmshadow.domain.errors import ConfigError
from vmshadow.workloads import yamlsafe
from vmshadow.workloads.app import AppCommand
from vmshadow.workloads.fioformat import MAX_JOB_BYTES, Where
from vmshadow.workloads.fiojob import ALLOWED_OPTIONS, FioJob, parse_fio_job, read_fio_job

IO_SIZE_MIB = 256  # region of the scratch disk an I/O phase covers


# Every number a profile gives is finite and bounded: ``ramp: [.inf, 1e308]`` was
# accepted and overflowed later, where the error no longer named the file.
_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)
MAX_LOAD = 1e6  # units/s; with the per-unit bounds this keeps every phase's numbers finite


class UnitCost(BaseModel):
    model_config = _STRICT

    cpu_percent: float = Field(..., ge=0, le=6400, description="% of one vCPU per unit of load")
    memory_mib: float = Field(..., ge=0, le=65536, description="resident MiB per unit of load")
    iops: float = Field(..., ge=0, le=1e6, description="disk operations/s per unit of load")


class IoPattern(BaseModel):
    model_config = _STRICT

    rw: Literal["read", "write", "randread", "randwrite", "randrw"] = Field(
        "randrw", description="fio access pattern"
    )
    bs_kib: Literal[4, 8, 16, 64, 128, 1024] = Field(4, description="block size, KiB")
    iodepth: int = Field(1, ge=1, le=64, description="queue depth (libaio when above 1)")
    fsync: int = Field(0, ge=0, le=1024, description="fsync after this many writes; 0 = never")


def _no_cost() -> UnitCost:
    return UnitCost(cpu_percent=0, memory_mib=0, iops=0)


class Profile(BaseModel):
    """One workload profile."""

    model_config = _STRICT

    name: str = Field(..., pattern=r"^[a-z][a-z0-9_-]{0,31}$", description="profile name")
    description: str = Field("", max_length=500, description="what application it mimics")
    unit: str = Field(..., min_length=1, max_length=40, description="load unit, e.g. requests/s")
    per_unit: UnitCost = Field(
        default_factory=_no_cost,
        description="cost of one unit of load; required unless `app` is given, where it is "
        "an optional estimate that only decides which ramp steps fit the shadow's memory",
    )
    base_memory_mib: float = Field(
        64, ge=0, le=65536, description="resident working set at zero load, MiB"
    )
    io: IoPattern = Field(default_factory=IoPattern, description="shape of the disk I/O")
    fio_job: str | None = Field(
        None,
        max_length=MAX_JOB_BYTES,
        description="an fio job file (INI text, e.g. a YAML block `fio_job: |`) shaping the "
        "disk I/O instead of `io`; options are checked against an allow-list, the only file "
        "is the scratch disk /dev/vdb, and the rate still comes from per_unit.iops",
    )
    fio_job_file: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}\.fio$",
        description="an fio job file next to the profile file (a name, no folders), "
        "instead of `io` or `fio_job`",
    )
    ramp: list[Annotated[float, Field(gt=0, le=MAX_LOAD)]] = Field(
        ...,
        min_length=2,
        max_length=8,
        description="loads the shadow tries in order, stopping when it saturates",
    )
    app: AppCommand | None = Field(
        None,
        description="the application itself as the workload: a command in the VM's image "
        "that each ramp step runs at its load (only in a shadow of a store image); "
        "replaces the synthetic stress-ng and fio phases",
    )
    _fio: FioJob | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _check_fio_job(self, info: ValidationInfo) -> Profile:
        """Parse the fio job (inline or from its file) with the caller's line mapping.

        Raises ``ConfigError`` (not ``ValueError``) so pydantic lets it through with
        the job file's own line and option in it.
        """
        given = [k for k in ("io", "fio_job", "fio_job_file") if k in self.model_fields_set]
        if len(given) > 1:
            raise ValueError(f"give one of io, fio_job and fio_job_file, not {' and '.join(given)}")
        ctx = info.context if isinstance(info.context, dict) else {}
        if self.app is not None and given:
            # They shape fio phases, and an app profile runs none: keeping them
            # would let a reader believe they count.
            raise _locate(ctx, (given[0],), "an app profile runs its application, not fio")
        if self.app is None and "per_unit" not in self.model_fields_set:
            raise _locate(
                ctx, ("per_unit",), "required, unless the profile runs its application (app)"
            )
        if self.fio_job is not None:
            where: Where | None = ctx.get("fio_job_where")
            self._fio = parse_fio_job(self.fio_job, "fio_job", where=where)
        elif self.fio_job_file is not None:
            self._fio = _read_job_file(self.fio_job_file, ctx.get("base_dir"))
        return self

    @property
    def fio(self) -> FioJob | None:
        """The checked fio job, when the profile brings one."""
        return self._fio

    def io_params(self, iops: int) -> FioParams:
        """The I/O phase at ``iops`` operations/s in total; a ConfigError when
        fio cannot be asked for that rate (``per_unit.iops`` times a load past
        what the agent accepts, which would otherwise fail the phase itself)."""
        numjobs = self._fio.params.numjobs if self._fio is not None else 1
        per_job = max(1, math.ceil(iops / numjobs))
        if per_job > RATE_IOPS_RANGE[1]:
            raise ConfigError(
                "per_unit.iops",
                f"this load asks {iops:,} IOPS, past the {RATE_IOPS_RANGE[1]:,} per fio job "
                "the agent runs: lower per_unit.iops or the ramp's loads",
            )
        if self._fio is not None:
            # fio's rate_iops holds per job: share the total among the copies.
            return dataclasses.replace(self._fio.params, rate_iops=per_job)
        return FioParams(
            rw=self.io.rw,
            bs_kib=self.io.bs_kib,
            iodepth=self.io.iodepth,
            size_mib=IO_SIZE_MIB,
            rate_iops=iops,
            direct=True,
            fsync=self.io.fsync,
            ioengine="libaio" if self.io.iodepth > 1 else "psync",
        )

    def phases(
        self, load: float, *, duration_s: int, step: int = 0, vcpus: int = 1
    ) -> list[PhaseSpec]:
        """The three phases that exercise ``load`` units/s on ``vcpus`` vCPUs (the
        shadow has one; a full VM running the profile at full load has more).
        The CPU demand is spread over as few stress-ng workers as can carry it,
        each rate-limited; beyond ``vcpus`` x 100 % it cannot be met, which is
        what a too-small VM shows."""
        if self.app is not None:
            # The application is the whole step: its CPU, memory and I/O are what
            # the shadow measures during it (``domain.ramp`` reads the "-app" phase).
            return [
                PhaseSpec(
                    phase_id=f"s{step}-app",
                    kind="app",
                    duration_s=duration_s,
                    params=self.app.params(load),
                )
            ]
        cost = self.per_unit
        total = max(1.0, load * cost.cpu_percent)
        workers = max(1, min(vcpus, math.ceil(total / 100.0)))
        cpu = min(100.0, total / workers)
        mem = max(1, math.ceil(self.base_memory_mib + load * cost.memory_mib))
        iops = max(1, round(load * cost.iops))
        return [
            PhaseSpec(
                phase_id=f"s{step}-cpu",
                kind="stress-ng",
                duration_s=duration_s,
                params=StressNgParams(stressor="cpu", workers=workers, cpu_load=round(cpu)),
            ),
            PhaseSpec(
                phase_id=f"s{step}-memory",
                kind="stress-ng",
                duration_s=duration_s,
                params=StressNgParams(stressor="vm", workers=1, vm_bytes_mib=mem, vm_keep=True),
            ),
            PhaseSpec(
                phase_id=f"s{step}-io",
                kind="fio",
                duration_s=duration_s,
                params=self.io_params(iops),
            ),
        ]

    def demand(self, load: float) -> dict[str, float]:
        """What the profile's own costs say ``load`` needs (before measuring)."""
        return {
            "vcpus": load * self.per_unit.cpu_percent / 100,
            "memory_mib": self.base_memory_mib + load * self.per_unit.memory_mib,
            "iops": load * self.per_unit.iops,
        }


def profile_schema() -> dict[str, Any]:
    """The published JSON schema of a profile file."""
    schema = Profile.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://vmshadow.dev/schema/profile-1.json"
    # What a job file may say, for editors and people reading the schema.
    for key in ("fio_job", "fio_job_file"):
        schema["properties"][key]["x-fio-allowed-options"] = sorted(ALLOWED_OPTIONS)
    # per_unit has a default only so that an app profile may leave it out.
    schema["anyOf"] = [{"required": ["per_unit"]}, {"required": ["app"]}]
    return schema


# -- loading, with errors that name the line ------------------------------------------------
def _key_lines(
    node: yaml.Node, path: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], int]]:
    """(path, 1-based line) for every key and item of a YAML document."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            here = (*path, str(key.value))
            yield here, key.start_mark.line + 1
            yield from _key_lines(value, here)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield (*path, i), item.start_mark.line + 1
            yield from _key_lines(item, (*path, i))


def _read_job_file(name: str, base_dir: Path | None) -> FioJob:
    if base_dir is None:
        raise ConfigError("fio_job_file", "only a profile read from a file can name a job file")
    path = base_dir / name
    # A link out of the profile's folder would read any file the service can.
    if path.resolve().parent != base_dir.resolve():
        raise ConfigError("fio_job_file", f"{name} must be in the profile's folder")
    return read_fio_job(path)


def _fio_job_where(node: yaml.Node | None, source: str) -> Where:
    """Name line k of an inline ``fio_job`` by the profile file's own line.

    A literal block (``fio_job: |``) starts on the line after its key, line for
    line; any other style (quoted, folded) is named by its key's line and the
    line within the job.
    """
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == "fio_job" and isinstance(value, yaml.ScalarNode):
                if value.style == "|":
                    first = value.start_mark.line + 2
                    return lambda k: f"{source}:{first + k - 1}: fio_job"
                at = key.start_mark.line + 1
                return lambda k: f"{source}:{at}: fio_job line {k}"
    return lambda k: f"{source}: fio_job line {k}"


def _locate(ctx: dict[str, Any], loc: tuple[str | int, ...], reason: str) -> Exception:
    """An error at ``loc`` in the profile: with its file and line when read from one."""
    locate = ctx.get("locate")
    if locate is None:
        return ValueError(f"{'.'.join(map(str, loc)) or '(top level)'}: {reason}")
    error: Exception = locate(loc, reason)
    return error


def _line_of(lines: dict[tuple[str | int, ...], int], loc: tuple[str | int, ...]) -> int | None:
    for n in range(len(loc), 0, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def parse_profile(text: str, source: str, *, base_dir: Path | None = None) -> Profile:
    data, node = yamlsafe.load(text, source)
    if not isinstance(data, dict):
        raise ConfigError(source, "a profile is a YAML mapping (name:, unit:, per_unit:, ...)")
    lines = dict(_key_lines(node)) if node is not None else {}

    def locate(loc: tuple[str | int, ...], reason: str) -> ConfigError:
        # ConfigError passes through pydantic untouched, with the line in it.
        line = _line_of(lines, loc)
        option = ".".join(str(p) for p in loc)  # as pydantic's errors name it: app.command.1
        where = f"{source}:{line}" if line else source
        return ConfigError(f"{where}: {option or '(top level)'}", reason)

    context = {
        "fio_job_where": _fio_job_where(node, source),
        "base_dir": base_dir,
        "locate": locate,
    }
    try:
        return Profile.model_validate(data, context=context)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        option = ".".join(str(p) for p in loc) or "(top level)"
        line = _line_of(lines, loc)
        where = f"{source}:{line}" if line else source
        raise ConfigError(f"{where}: {option}", err["msg"]) from exc


def builtin_profiles() -> dict[str, Profile]:
    """The profiles shipped in the package, by name (a new dict each call)."""
    return dict(_builtin_profiles())


@functools.cache
def _builtin_profiles() -> dict[str, Profile]:
    # Package files do not change while the process runs; parsing and
    # validating them on every create was a tenth of the service's CPU at
    # 1,000 concurrent requests (bench/scale.py under py-spy).
    out = {}
    for entry in sorted(
        resources.files("vmshadow.workloads").joinpath("builtin").iterdir(), key=str
    ):
        if entry.name.endswith(".yaml"):
            p = parse_profile(entry.read_text(), f"builtin/{entry.name}")
            out[p.name] = p
    return out


def load_profile(name_or_path: str) -> Profile:
    """A built-in profile by name, or a user profile from a YAML file."""
    builtins = builtin_profiles()
    if name_or_path in builtins:
        return builtins[name_or_path]
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError("profile", f"{name_or_path}: no such file")
        return parse_profile(yamlsafe.read(str(path)), str(path), base_dir=path.parent)
    raise ConfigError(
        "profile", f"unknown profile {name_or_path!r}; built-in: {sorted(builtins)} or a .yaml file"
    )
