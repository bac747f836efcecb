"""VM types of a cloud (or a fleet): name, family, vCPUs, memory. Read from a CSV.

The header names the columns, in any order: ``vm_type`` (or ``name``),
``family``, ``vcpus`` and ``memory_gib`` or ``memory_mib``. An optional ``iops``
column gives the provisioned IOPS of a type, when the cloud caps it.
Families and sizes come from here and never from type names, so that history
from another cloud in the same layout works unchanged.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from vmshadow.domain.errors import ConfigError

OPTION = "--catalog"


@dataclass(frozen=True)
class VmType:
    name: str
    family: str
    vcpus: int
    memory_mib: int
    iops: float | None = None  # provisioned cap, when the catalogue says


@dataclass(frozen=True)
class Catalog:
    types: dict[str, VmType]

    def get(self, name: str) -> VmType | None:
        return self.types.get(name)

    def families(self) -> dict[str, list[VmType]]:
        """Each family's types, smallest first (by vCPUs, then memory)."""
        out: dict[str, list[VmType]] = defaultdict(list)
        for t in self.types.values():
            out[t.family].append(t)
        return {
            f: sorted(ts, key=lambda t: (t.vcpus, t.memory_mib, t.name)) for f, ts in out.items()
        }


def _number(row: dict[str, str], key: str) -> float | None:
    raw = (row.get(key) or "").strip()
    return float(raw) if raw else None


def read_catalog(path: Path) -> Catalog:
    """Read and validate a catalogue; every error names ``--catalog`` and the line."""
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in reader.fieldnames or []]
            rows = list(reader)
    except OSError as exc:
        raise ConfigError(OPTION, f"cannot read {path}: {exc.strerror or exc}") from exc
    name_col = "vm_type" if "vm_type" in header else "name"
    mem_col = "memory_mib" if "memory_mib" in header else "memory_gib"
    missing = [c for c in (name_col, "family", "vcpus", mem_col) if c not in header]
    if missing:
        raise ConfigError(
            OPTION,
            f"{path}: header {','.join(header) or '(none)'} lacks {', '.join(missing)}; "
            "need vm_type (or name), family, vcpus, memory_gib (or memory_mib)",
        )
    types: dict[str, VmType] = {}
    for line, raw in enumerate(rows, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
        try:
            vcpus = _number(row, "vcpus")
            mem = _number(row, mem_col)
            iops = _number(row, "iops")
        except ValueError as exc:
            raise ConfigError(OPTION, f"{path} line {line}: not a number ({exc})") from exc
        name, family = row.get(name_col, ""), row.get("family", "")
        if not name or not family or not vcpus or not mem or vcpus < 1 or mem <= 0:
            raise ConfigError(OPTION, f"{path} line {line}: needs a name, family, vcpus and memory")
        mib = mem if mem_col == "memory_mib" else mem * 1024
        types[name] = VmType(name, family, int(vcpus), int(round(mib)), iops)
    if not types:
        raise ConfigError(OPTION, f"{path} lists no VM types")
    return Catalog(types)
