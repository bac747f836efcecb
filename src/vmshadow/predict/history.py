"""History records: a run on a small VM (the shadow) paired with the same workload's
observed requirement on a larger VM (the full VM).

Imported from runs laid out as ``<vm_type>/<framework>_<job>_<input>[_<run>]/``
with ``sar.csv`` and ``report.json`` (the Lumos layout), or from sysstat's own
files listed in a manifest (:mod:`vmshadow.predict.sysstat`). Each job+input's
runs on a family's smallest type play the shadow; every one of them is paired
with every run of the same job+input on each larger type of the family.
Families and sizes come from the catalogue, never from type names. The job key
is ``<framework>_<job>`` without the input size, so that evaluation folds keep a
job, at any input size, on one side.

Every import is one *source*, named by the data set's identity: the operator's
``--source NAME``, else its kind, resolved path and a short digest of what was
read (``lumos:/data/runs/1 second@3f2a9c1e``), so that two folders of the same
name never take each other's place in the store.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmshadow.domain.allocation import Allocation
from vmshadow.domain.errors import ConfigError
from vmshadow.domain.history import HistoryRecord, ShadowRun, Size, json_float
from vmshadow.domain.prediction import Requirement, requirement_of
from vmshadow.domain.samples import UsagePoint
from vmshadow.predict.features import series_from_points, shadow_features
from vmshadow.predict.resample import resample
from vmshadow.predict.sar import SarError, UsageSeries, read_sar, run_completed
from vmshadow.predict.vmtypes import Catalog, VmType

# The records live in ``domain.history`` (the store reads and writes them);
# named here too, where imports build them.
__all__ = ["HistoryRecord", "ShadowRun", "Size"]

SOURCE_MAX = 255  # width of history.source
DIGEST_SHOWN = 8  # hex digits of the content digest in a derived source name


def shadow_summary(points: list[UsagePoint], shadow: Allocation) -> dict[str, Any]:
    """What a history row's ``shadow`` must hold for a model to learn from it: the
    shadow's size, its own measured requirement and its features. For the
    controller, when it records a launched VM's history."""
    series = series_from_points(points, shadow.vcpus)
    feats = shadow_features(series, shadow.memory_mib)
    return {
        "vcpus": shadow.vcpus,
        "memory_mib": shadow.memory_mib,
        "need": requirement_of(points).as_dict(),
        "features": {k: json_float(v) for k, v in feats.items()},
        "interval_s": json_float(series.interval_s),
    }


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
class Run:
    name: str  # <vm_type>/<dir>, or what the manifest calls it
    series: UsageSeries
    need: Requirement


RunKey = tuple[str, str, str]  # (vm type, job, input)


@dataclass(frozen=True)
class SourceId:
    """Which data set an import read: the name its records are stored under, and
    what tells a re-import of it from another data set."""

    name: str
    kind: str  # lumos | sysstat
    location: str  # resolved path of the folder or manifest
    digest: str  # sha256 of the files read and the catalogue's types


def content_digest(root: Path, files: Iterable[Path], catalog: Catalog) -> str:
    """sha256 over the files' paths relative to ``root`` and contents, in order,
    and the catalogue's types (the same runs paired by another catalogue are
    other history)."""
    h = hashlib.sha256()
    for f in sorted(set(files)):
        h.update(str(f.relative_to(root) if f.is_relative_to(root) else f).encode() + b"\0")
        try:
            h.update(f.read_bytes())
        except OSError:
            h.update(b"unreadable")  # counted in the import's unreadable runs
        h.update(b"\0")
    for t in sorted(catalog.types.values(), key=lambda t: t.name):
        h.update(repr((t.name, t.family, t.vcpus, t.memory_mib, t.iops)).encode())
    return h.hexdigest()


def source_id(kind: str, location: Path, digest: str, name: str | None = None) -> SourceId:
    """``name`` when the operator gave one, else ``<kind>:<resolved path>@<digest>``
    (the path's tail when it is too long for the column)."""
    where = str(location.resolve())
    if name is not None:
        name = name.strip()
        if not name or len(name) > SOURCE_MAX:
            raise ConfigError("--source", f"must be 1 to {SOURCE_MAX} characters")
        return SourceId(name, kind, where, digest)
    tail = f"@{digest[:DIGEST_SHOWN]}"
    room = SOURCE_MAX - len(kind) - 1 - len(tail)
    path = where if len(where) <= room else "..." + where[-(room - 3) :]
    return SourceId(f"{kind}:{path}{tail}", kind, where, digest)


def legacy_source(root: Path) -> str:
    """The name imports gave a folder before sources had identities (its folder
    name alone), to point at records that may be the same data."""
    return f"sar:{root.resolve().name}"[:32]


@dataclass
class ImportResult:
    source: SourceId | None = None
    records: list[HistoryRecord] = field(default_factory=list)
    runs: int = 0  # run folders seen under known VM types
    skipped_not_completed: int = 0
    unreadable: dict[str, str] = field(default_factory=dict)  # run -> reason
    unknown_types: list[str] = field(default_factory=list)  # folders not in the catalogue

    @property
    def jobs(self) -> int:
        return len({r.job for r in self.records})


def import_sar_history(
    root: Path,
    catalog: Catalog,
    *,
    option: str = "--history",
    source: str | None = None,
    step_s: float | None = None,
) -> ImportResult:
    """Read every run under ``root`` (the Lumos layout) and pair shadows with full
    VMs; ``source`` names the data set (default: derived, see :func:`source_id`).
    ``step_s`` reads every series as if sampled every ``step_s`` seconds
    (``predict.resample``): another data set, named as such.

    Raises ConfigError naming ``option`` (how the caller got ``root``) when the
    folder is missing or yields no pair at all.
    """
    if not root.is_dir():
        raise ConfigError(option, f"{root} is not a directory")
    res = ImportResult()
    runs: dict[RunKey, list[Run]] = defaultdict(list)
    read: list[Path] = []
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
            read += [run_dir / "report.json", run_dir / "sar.csv"]
            try:
                if not run_completed(run_dir / "report.json"):
                    res.skipped_not_completed += 1
                    continue
                series = read_sar(run_dir / "sar.csv", vm.vcpus)
                if step_s is not None:
                    series = resample(series, step_s)
            except SarError as exc:
                res.unreadable[key] = exc.reason
                continue
            runs[(vm.name, *named)].append(Run(key, series, series.requirement()))
    # Resampled, the same files are other history: not the 1 s import's source.
    kind = "lumos" if step_s is None else f"lumos-resampled-{step_s:g}s"
    res.source = source_id(kind, root, content_digest(root, read, catalog), source)
    pair_runs(res, runs, catalog)
    if not res.records:
        raise ConfigError(
            option,
            f"no usable shadow/full-VM pairs under {root} ({res.runs} runs, "
            f"{res.skipped_not_completed} not completed, {len(res.unreadable)} unreadable)",
        )
    return res


def pair_runs(res: ImportResult, runs: dict[RunKey, list[Run]], catalog: Catalog) -> None:
    """Add to ``res`` every shadow/full-VM pair of ``runs`` (keyed by type, job and
    input), under ``res.source``'s name."""
    name = res.source.name if res.source else "unnamed"
    for family, types in sorted(catalog.families().items()):
        small = types[0]
        for target in types[1:]:
            res.records.extend(_pairs(name, family, small, target, runs))


def _pairs(
    source: str,
    family: str,
    small: VmType,
    target: VmType,
    runs: dict[RunKey, list[Run]],
) -> list[HistoryRecord]:
    out = []
    shadow_size = Size(small.vcpus, small.memory_mib, small.name, family)
    target_size = Size(target.vcpus, target.memory_mib, target.name, family, target.iops)
    for (tname, job, inp), observed in sorted(runs.items()):
        shadows = runs.get((small.name, job, inp)) if tname == target.name else None
        for sh in shadows or []:
            shadow = ShadowRun(
                shadow_size,
                sh.need,
                shadow_features(sh.series, small.memory_mib),
                sh.name,
                sh.series.interval_s,
            )
            for ob in observed:
                out.append(
                    HistoryRecord(
                        source=source,
                        job=job,
                        shadow=shadow,
                        target=target_size,
                        observed=ob.need,
                        observed_s=ob.series.seconds,
                        input=inp,
                        target_run=ob.name,
                    )
                )
    return out
