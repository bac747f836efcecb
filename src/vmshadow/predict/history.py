"""History from runs laid out as ``<vm_type>/<framework>_<job>_<input>_<run>/``.

Each job+input's runs on a family's smallest type play the shadow; its runs
on the family's larger types are the full VMs whose needs are predicted.
Families and sizes come from the catalogue file, never from type names.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from vmshadow.domain.errors import ConfigError
from vmshadow.predict.sar import RunUsage, read_sar, run_completed


def split_run_name(name: str) -> tuple[str, str] | None:
    """``<framework>_<job>_<input>[_<run>]`` -> (framework_job, input); the run
    index is absent when a job ran once."""
    parts = name.split("_")
    if parts and parts[-1].isdigit():
        parts = parts[:-1]
    if len(parts) < 2:
        return None
    return "_".join(parts[:-1]), parts[-1]


@dataclass(frozen=True)
class VmType:
    name: str
    family: str
    vcpus: int
    memory_mib: int


@dataclass(frozen=True)
class Pair:
    """One full-VM run and the mean usage of the same job+input on the shadow type."""

    job: str  # framework_job: the grouping key (any input size)
    input: str
    family: str
    shadow: VmType
    target: VmType
    shadow_runs: tuple[RunUsage, ...]
    observed: RunUsage


@dataclass
class ImportResult:
    pairs: list[Pair] = field(default_factory=list)
    runs: int = 0
    skipped_incomplete: int = 0
    unreadable: dict[str, str] = field(default_factory=dict)


def read_catalog(path: Path) -> dict[str, VmType]:
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise ConfigError("--catalog", f"cannot read {path}: {exc.strerror}") from exc
    out = {}
    for r in rows:
        try:
            mem = float(r.get("memory_gib") or 0) * 1024 or float(r.get("memory_mib") or 0)
            out[r["vm_type"]] = VmType(r["vm_type"], r["family"], int(r["vcpus"]), int(mem))
        except (KeyError, ValueError) as exc:
            raise ConfigError(
                "--catalog", f"{path}: need vm_type,family,vcpus,memory_gib columns ({exc})"
            ) from exc
    if not out:
        raise ConfigError("--catalog", f"{path} lists no VM types")
    return out


def import_runs(root: Path, catalog: dict[str, VmType]) -> ImportResult:
    if not root.is_dir():
        raise ConfigError("--history", f"{root} is not a directory")
    res = ImportResult()
    usage: dict[tuple[str, str, str], list[RunUsage]] = defaultdict(list)  # (type, job, input)
    for type_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        vm = catalog.get(type_dir.name)
        if vm is None:
            continue
        for run_dir in sorted(p for p in type_dir.iterdir() if p.is_dir()):
            named = split_run_name(run_dir.name)
            if named is None:
                res.unreadable[str(run_dir)] = "name is not <job>_<input>[_<run>]"
                continue
            job, inp = named
            res.runs += 1
            if not run_completed(run_dir / "report.json"):
                res.skipped_incomplete += 1
                continue
            try:
                u = read_sar(run_dir / "sar.csv", vm.vcpus)
            except (ConfigError, OSError) as exc:
                res.unreadable[str(run_dir)] = str(exc)
                continue
            usage[(vm.name, job, inp)].append(u)
    families: dict[str, list[VmType]] = defaultdict(list)
    for vm in catalog.values():
        families[vm.family].append(vm)
    for fam, types in families.items():
        types.sort(key=lambda t: (t.vcpus, t.memory_mib))
        small = types[0]
        for target in types[1:]:
            for (tname, job, inp), runs in sorted(usage.items()):
                if tname != target.name:
                    continue
                shadow_runs = usage.get((small.name, job, inp))
                if not shadow_runs:
                    continue
                for obs in runs:
                    res.pairs.append(Pair(job, inp, fam, small, target, tuple(shadow_runs), obs))
    if not res.pairs:
        raise ConfigError("--history", f"no usable shadow/full-VM pairs under {root}")
    return res
