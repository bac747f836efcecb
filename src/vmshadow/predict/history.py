"""History records: a run on a small VM (the shadow) paired with the same workload's
observed requirement on a larger VM (the full VM).

Imported from runs laid out as ``<vm_type>/<framework>_<job>_<input>[_<run>]/``
with ``sar.csv`` and ``report.json`` (the Lumos layout). Each job+input's runs
on a family's smallest type play the shadow; every one of them is paired with
every run of the same job+input on each larger type of the family. Families
and sizes come from the catalogue, never from type names. The job key is
``<framework>_<job>`` without the input size, so that evaluation folds keep a
job, at any input size, on one side.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from vmshadow.domain.allocation import Allocation
from vmshadow.domain.errors import ConfigError
from vmshadow.domain.prediction import RESOURCES, Requirement, requirement_of
from vmshadow.domain.samples import UsagePoint
from vmshadow.predict.features import series_from_points, shadow_features
from vmshadow.predict.sar import SarError, UsageSeries, read_sar, run_completed
from vmshadow.predict.vmtypes import Catalog, VmType
from vmshadow.store.models import HistoryRow

SOURCE_MAX = 32  # width of history.source


@dataclass(frozen=True)
class Size:
    vcpus: int
    memory_mib: int
    type: str | None = None
    family: str | None = None
    iops: float | None = None  # provisioned IOPS, when the catalogue says


@dataclass(frozen=True)
class ShadowRun:
    size: Size
    need: Requirement  # the shadow's own measured requirement
    features: dict[str, float]
    run: str | None = None  # where it came from, e.g. c5.large/hadoop_join_small_1


@dataclass(frozen=True)
class HistoryRecord:
    source: str
    job: str
    shadow: ShadowRun
    target: Size
    observed: Requirement  # requirement observed on the target
    observed_s: float
    input: str | None = None
    target_run: str | None = None

    def to_row(self, created_at: datetime) -> HistoryRow:
        return HistoryRow(
            transition_id=None,
            created_at=created_at,
            source=self.source,
            job=self.job,
            profile=None,
            load=None,
            shadow={
                "vcpus": self.shadow.size.vcpus,
                "memory_mib": self.shadow.size.memory_mib,
                "type": self.shadow.size.type,
                "need": self.shadow.need.as_dict(),
                "features": {k: _json_float(v) for k, v in self.shadow.features.items()},
                "run": self.shadow.run,
                "input": self.input,
            },
            target={
                "vcpus": self.target.vcpus,
                "memory_mib": self.target.memory_mib,
                "type": self.target.type,
                "family": self.target.family,
                "iops": self.target.iops,
                "run": self.target_run,
            },
            observed=self.observed.as_dict(),
            observed_s=self.observed_s,
        )


def _json_float(v: float) -> float | None:
    return None if math.isnan(v) else round(v, 6)


def _requirement(d: Any) -> Requirement | None:
    if not isinstance(d, dict):
        return None
    try:
        return Requirement(*(float(d[r]) for r in RESOURCES))
    except (KeyError, TypeError, ValueError):
        return None


def shadow_summary(points: list[UsagePoint], shadow: Allocation) -> dict[str, Any]:
    """What a history row's ``shadow`` must hold for a model to learn from it: the
    shadow's size, its own measured requirement and its features. For the
    controller, when it records a launched VM's history."""
    feats = shadow_features(series_from_points(points, shadow.vcpus), shadow.memory_mib)
    return {
        "vcpus": shadow.vcpus,
        "memory_mib": shadow.memory_mib,
        "need": requirement_of(points).as_dict(),
        "features": {k: _json_float(v) for k, v in feats.items()},
    }


def record_from_row(row: HistoryRow) -> HistoryRecord | None:
    """A stored row as a record, or None when it lacks what a model learns from
    (the shadow's measured need, the target's size or the observed requirement)."""
    sh, tg = row.shadow or {}, row.target or {}
    need, observed = _requirement(sh.get("need")), _requirement(row.observed)
    try:
        shadow_size = Size(int(sh["vcpus"]), int(sh["memory_mib"]), sh.get("type"))
        iops = tg.get("iops")
        target = Size(
            int(tg["vcpus"]),
            int(tg["memory_mib"]),
            tg.get("type"),
            tg.get("family"),
            None if iops is None else float(iops),
        )
    except (KeyError, TypeError, ValueError):
        return None
    if need is None or observed is None:
        return None
    feats = sh.get("features") or {}
    return HistoryRecord(
        source=row.source,
        job=row.job,
        shadow=ShadowRun(
            size=shadow_size,
            need=need,
            features={k: math.nan if v is None else float(v) for k, v in feats.items()},
            run=sh.get("run"),
        ),
        target=target,
        observed=observed,
        observed_s=row.observed_s,
        input=sh.get("input"),
        target_run=tg.get("run"),
    )


# -- import from sar runs ---------------------------------------------------------------
def split_run_name(name: str) -> tuple[str, str] | None:
    """``<framework>_<job>_<input>[_<run>]`` -> (``<framework>_<job>``, input).
    The run index is absent when a job ran once."""
    parts = name.split("_")
    if len(parts) > 1 and parts[-1].isdigit():
        parts = parts[:-1]
    if len(parts) < 3:
        return None
    return "_".join(parts[:-1]), parts[-1]


@dataclass(frozen=True)
class _Run:
    name: str  # <vm_type>/<dir>
    series: UsageSeries
    need: Requirement


@dataclass
class ImportResult:
    records: list[HistoryRecord] = field(default_factory=list)
    runs: int = 0  # run folders seen under known VM types
    skipped_not_completed: int = 0
    unreadable: dict[str, str] = field(default_factory=dict)  # run -> reason
    unknown_types: list[str] = field(default_factory=list)  # folders not in the catalogue

    @property
    def jobs(self) -> int:
        return len({r.job for r in self.records})


def sar_source(root: Path) -> str:
    return f"sar:{root.resolve().name}"[:SOURCE_MAX]


def import_sar_history(root: Path, catalog: Catalog, *, option: str = "--history") -> ImportResult:
    """Read every run under ``root`` and pair shadows with full VMs.

    Raises ConfigError naming ``option`` (how the caller got ``root``) when the
    folder is missing or yields no pair at all.
    """
    if not root.is_dir():
        raise ConfigError(option, f"{root} is not a directory")
    res = ImportResult()
    runs: dict[tuple[str, str, str], list[_Run]] = defaultdict(list)  # (type, job, input)
    for type_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        vm = catalog.get(type_dir.name)
        if vm is None:
            res.unknown_types.append(type_dir.name)
            continue
        for run_dir in sorted(p for p in type_dir.iterdir() if p.is_dir()):
            key = f"{type_dir.name}/{run_dir.name}"
            named = split_run_name(run_dir.name)
            res.runs += 1
            if named is None:
                res.unreadable[key] = "name is not <framework>_<job>_<input>[_<run>]"
                continue
            try:
                if not run_completed(run_dir / "report.json"):
                    res.skipped_not_completed += 1
                    continue
                series = read_sar(run_dir / "sar.csv", vm.vcpus)
            except SarError as exc:
                res.unreadable[key] = exc.reason
                continue
            runs[(vm.name, *named)].append(_Run(key, series, series.requirement()))
    source = sar_source(root)
    for family, types in sorted(catalog.families().items()):
        small = types[0]
        for target in types[1:]:
            res.records.extend(_pairs(source, family, small, target, runs))
    if not res.records:
        raise ConfigError(
            option,
            f"no usable shadow/full-VM pairs under {root} ({res.runs} runs, "
            f"{res.skipped_not_completed} not completed, {len(res.unreadable)} unreadable)",
        )
    return res


def _pairs(
    source: str,
    family: str,
    small: VmType,
    target: VmType,
    runs: dict[tuple[str, str, str], list[_Run]],
) -> list[HistoryRecord]:
    out = []
    shadow_size = Size(small.vcpus, small.memory_mib, small.name, family)
    target_size = Size(target.vcpus, target.memory_mib, target.name, family, target.iops)
    for (tname, job, inp), observed in sorted(runs.items()):
        shadows = runs.get((small.name, job, inp)) if tname == target.name else None
        for sh in shadows or []:
            shadow = ShadowRun(
                shadow_size, sh.need, shadow_features(sh.series, small.memory_mib), sh.name
            )
            for ob in observed:
                out.append(
                    HistoryRecord(
                        source=source,
                        job=job,
                        shadow=shadow,
                        target=target_size,
                        observed=ob.need,
                        observed_s=float(ob.series.seconds),
                        input=inp,
                        target_run=ob.name,
                    )
                )
    return out
