"""What one phase runs: a validated, closed description of a stress-ng, fio, idle or app run.

The host validates a ``PhaseSpec`` before sending it and the guest validates
it again before running it, with this same code. Every value is checked
against an allow-list or a range, because the guest turns it into a command
line: nothing from the wire reaches argv unless it passed these checks.
Paths are never part of a spec; fio always targets the agent's ``--scratch``.
An ``app`` phase (the user's own program, ``appspec.AppParams``) is the one
exception to the allow-lists: its argv is the user's, checked for shape
(bounded, no NUL, two placeholders, a plain program name) rather than content.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from vmshadow.agent.appspec import AppParams
from vmshadow.agent.fields import as_bool, as_choice, as_int, as_object, as_str, bad, check_keys

Kind: TypeAlias = Literal["stress-ng", "fio", "idle", "app"]
KINDS: tuple[Kind, ...] = ("stress-ng", "fio", "idle", "app")

PHASE_ID_RE = re.compile(r"[a-z0-9_-]{1,32}")
DURATION_RANGE = (1, 600)

STRESSORS = ("cpu", "vm", "matrix", "memcpy", "hash")
WORKERS_RANGE = (1, 64)
CPU_LOAD_RANGE = (1, 100)
VM_BYTES_MIB_RANGE = (1, 65536)

FIO_RW = ("read", "write", "randread", "randwrite", "randrw")
FIO_BS_KIB = (4, 8, 16, 64, 128, 1024)
FIO_ENGINES = ("psync", "sync", "libaio")
SYNC_ENGINES = ("psync", "sync")  # one I/O in flight per job, whatever iodepth says
IODEPTH_RANGE = (1, 64)
NUMJOBS_RANGE = (1, 16)
RWMIX_RANGE = (0, 100)
MIXED_RW = ("randrw",)
SIZE_MIB_RANGE = (1, 4096)
RATE_IOPS_RANGE = (1, 1_000_000)
FSYNC_RANGE = (0, 1024)


@dataclass(frozen=True)
class StressNgParams:
    stressor: str
    workers: int
    cpu_load: int | None = None  # percent per worker; only for "cpu"
    vm_bytes_mib: int | None = None  # per worker; required for "vm", invalid otherwise
    vm_keep: bool = False  # "vm" only: keep the memory mapped, so it stays resident

    def __post_init__(self) -> None:
        as_choice(self.stressor, "params.stressor", STRESSORS)
        as_int(self.workers, "params.workers", *WORKERS_RANGE)
        if self.cpu_load is not None:
            if self.stressor != "cpu":
                raise bad("params.cpu_load", "only valid with stressor 'cpu'")
            as_int(self.cpu_load, "params.cpu_load", *CPU_LOAD_RANGE)
        if self.stressor == "vm":
            if self.vm_bytes_mib is None:
                raise bad("params.vm_bytes_mib", "required with stressor 'vm'")
            as_int(self.vm_bytes_mib, "params.vm_bytes_mib", *VM_BYTES_MIB_RANGE)
            as_bool(self.vm_keep, "params.vm_keep")
        else:
            if self.vm_bytes_mib is not None:
                raise bad("params.vm_bytes_mib", "only valid with stressor 'vm'")
            if self.vm_keep is not False:
                raise bad("params.vm_keep", "only valid with stressor 'vm'")

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> StressNgParams:
        check_keys(d, "params", ("stressor", "workers"), ("cpu_load", "vm_bytes_mib", "vm_keep"))
        stressor = as_choice(d["stressor"], "params.stressor", STRESSORS)
        if stressor != "vm":
            # Reject even a harmless vm_keep=false: a stray key means a confused caller.
            for key in ("vm_bytes_mib", "vm_keep"):
                if key in d:
                    raise bad(f"params.{key}", "only valid with stressor 'vm'")
        load = d.get("cpu_load")
        vm_bytes = d.get("vm_bytes_mib")
        return cls(
            stressor=stressor,
            workers=as_int(d["workers"], "params.workers", *WORKERS_RANGE),
            cpu_load=None if load is None else as_int(load, "params.cpu_load", *CPU_LOAD_RANGE),
            vm_bytes_mib=(
                None
                if vm_bytes is None
                else as_int(vm_bytes, "params.vm_bytes_mib", *VM_BYTES_MIB_RANGE)
            ),
            vm_keep=as_bool(d.get("vm_keep", False), "params.vm_keep"),
        )

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"stressor": self.stressor, "workers": self.workers}
        if self.cpu_load is not None:
            out["cpu_load"] = self.cpu_load
        if self.stressor == "vm":
            out["vm_bytes_mib"] = self.vm_bytes_mib
            out["vm_keep"] = self.vm_keep
        return out


@dataclass(frozen=True)
class FioParams:
    """One fio job; defaults (direct off, psync, no fsync) are fio's own defaults."""

    rw: str
    bs_kib: int
    iodepth: int
    size_mib: int  # the region of the scratch device the job covers
    rate_iops: int | None = None  # cap, with Poisson arrivals (a more realistic load)
    direct: bool = False
    fsync: int = 0  # fsync after this many writes; 0 = never
    ioengine: str = "psync"
    numjobs: int = 1  # parallel copies of the job (user fio job files); reported as one group
    rwmixread: int | None = None  # % reads of a mixed job; None = fio's default (50)

    def __post_init__(self) -> None:
        as_choice(self.rw, "params.rw", FIO_RW)
        as_choice(self.bs_kib, "params.bs_kib", FIO_BS_KIB)
        as_int(self.iodepth, "params.iodepth", *IODEPTH_RANGE)
        as_int(self.size_mib, "params.size_mib", *SIZE_MIB_RANGE)
        if self.rate_iops is not None:
            as_int(self.rate_iops, "params.rate_iops", *RATE_IOPS_RANGE)
        as_bool(self.direct, "params.direct")
        as_int(self.fsync, "params.fsync", *FSYNC_RANGE)
        as_choice(self.ioengine, "params.ioengine", FIO_ENGINES)
        if self.ioengine in SYNC_ENGINES and self.iodepth != 1:
            # fio silently caps a synchronous engine at depth 1; refuse instead of
            # letting the caller believe it measured a deeper queue.
            raise bad(
                "params.iodepth",
                f"must be 1 with ioengine {self.ioengine!r} (use 'libaio' for depth)",
            )
        as_int(self.numjobs, "params.numjobs", *NUMJOBS_RANGE)
        if self.rwmixread is not None:
            if self.rw not in MIXED_RW:
                raise bad("params.rwmixread", f"only valid with rw in {MIXED_RW}")
            as_int(self.rwmixread, "params.rwmixread", *RWMIX_RANGE)

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> FioParams:
        check_keys(
            d,
            "params",
            ("rw", "bs_kib", "iodepth", "size_mib"),
            ("rate_iops", "direct", "fsync", "ioengine", "numjobs", "rwmixread"),
        )
        rate = d.get("rate_iops")
        mix = d.get("rwmixread")
        return cls(
            rw=as_choice(d["rw"], "params.rw", FIO_RW),
            bs_kib=as_choice(d["bs_kib"], "params.bs_kib", FIO_BS_KIB),
            iodepth=as_int(d["iodepth"], "params.iodepth", *IODEPTH_RANGE),
            size_mib=as_int(d["size_mib"], "params.size_mib", *SIZE_MIB_RANGE),
            rate_iops=None if rate is None else as_int(rate, "params.rate_iops", *RATE_IOPS_RANGE),
            direct=as_bool(d.get("direct", False), "params.direct"),
            fsync=as_int(d.get("fsync", 0), "params.fsync", *FSYNC_RANGE),
            ioengine=as_choice(d.get("ioengine", "psync"), "params.ioengine", FIO_ENGINES),
            numjobs=as_int(d.get("numjobs", 1), "params.numjobs", *NUMJOBS_RANGE),
            rwmixread=None if mix is None else as_int(mix, "params.rwmixread", *RWMIX_RANGE),
        )

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "rw": self.rw,
            "bs_kib": self.bs_kib,
            "iodepth": self.iodepth,
            "size_mib": self.size_mib,
            "direct": self.direct,
            "fsync": self.fsync,
            "ioengine": self.ioengine,
        }
        if self.rate_iops is not None:
            out["rate_iops"] = self.rate_iops
        # Only when set, so the built-in profiles' messages stay as they were.
        if self.numjobs != 1:
            out["numjobs"] = self.numjobs
        if self.rwmixread is not None:
            out["rwmixread"] = self.rwmixread
        return out


@dataclass(frozen=True)
class IdleParams:
    """An idle phase has no parameters: it samples the quiet guest as a baseline."""

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> IdleParams:
        check_keys(d, "params", ())
        return cls()

    def to_dict(self) -> dict[str, object]:
        return {}


Params: TypeAlias = StressNgParams | FioParams | IdleParams | AppParams
_PARAMS_FOR: dict[
    str, type[StressNgParams] | type[FioParams] | type[IdleParams] | type[AppParams]
] = {
    "stress-ng": StressNgParams,
    "fio": FioParams,
    "idle": IdleParams,
    "app": AppParams,
}


@dataclass(frozen=True)
class PhaseSpec:
    """One phase; construct it directly or with ``from_dict`` (both validate)."""

    phase_id: str
    kind: Kind
    duration_s: int
    params: Params = field(default_factory=IdleParams)

    def __post_init__(self) -> None:
        as_str(self.phase_id, "phase_id", 32, PHASE_ID_RE)
        as_choice(self.kind, "kind", KINDS)
        as_int(self.duration_s, "duration_s", *DURATION_RANGE)
        if not isinstance(self.params, _PARAMS_FOR[self.kind]):
            raise bad("params", f"{type(self.params).__name__} does not fit kind {self.kind!r}")

    @classmethod
    def from_dict(cls, data: object) -> PhaseSpec:
        """Validate an untrusted JSON value; raises ``ProtocolError`` naming the bad field."""
        d = as_object(data, "phase")
        # params may be left out only where there are none to give.
        required = ("phase_id", "kind", "duration_s")
        check_keys(d, "", required, ("params",))
        phase_id = as_str(d["phase_id"], "phase_id", 32, PHASE_ID_RE)
        kind = as_choice(d["kind"], "kind", KINDS)
        duration = as_int(d["duration_s"], "duration_s", *DURATION_RANGE)
        if "params" not in d and kind != "idle":
            raise bad("params", f"missing field (required for kind {kind!r})")
        params = _PARAMS_FOR[kind].from_dict(as_object(d.get("params", {}), "params"))
        return cls(phase_id=phase_id, kind=_kind(kind), duration_s=duration, params=params)

    def to_dict(self) -> dict[str, object]:
        return {
            "phase_id": self.phase_id,
            "kind": self.kind,
            "duration_s": self.duration_s,
            "params": self.params.to_dict(),
        }


def _kind(value: str) -> Kind:
    # Narrow a checked str to the Literal without a cast.
    for kind in KINDS:
        if kind == value:
            return kind
    raise bad("kind", f"must be one of {KINDS}, got {value!r}")
