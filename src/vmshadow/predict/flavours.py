"""Rounding a recommendation to a flavour of the user's catalogue.

A flavour catalogue is a CSV with a header: ``name,vcpus,memory_mib`` and
optionally ``price`` and ``iops`` (the flavour's IOPS cap; without it a flavour
does not cap IOPS). The chosen flavour is the cheapest that covers all three
resources; without prices, the smallest (fewest vCPUs, then least memory).

    name,vcpus,memory_mib,price
    small,1,2048,0.02
    medium,2,4096,0.04
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vmshadow.domain.errors import ConfigError
from vmshadow.domain.prediction import Requirement

OPTION = "--flavours"


@dataclass(frozen=True)
class Flavour:
    name: str
    vcpus: int
    memory_mib: int
    price: float | None = None
    iops: int | None = None

    def covers(self, need: Requirement) -> bool:
        return (
            self.vcpus >= need.vcpus
            and self.memory_mib >= need.memory_mib
            and (self.iops is None or self.iops >= need.iops)
        )

    def cost_key(self) -> tuple[float, int, int, str]:
        price = math.inf if self.price is None else self.price
        return (price, self.vcpus, self.memory_mib, self.name)


def read_flavours(path: Path) -> list[Flavour]:
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in reader.fieldnames or []]
            rows = list(reader)
    except OSError as exc:
        raise ConfigError(OPTION, f"cannot read {path}: {exc.strerror or exc}") from exc
    missing = [c for c in ("name", "vcpus", "memory_mib") if c not in header]
    if missing:
        raise ConfigError(OPTION, f"{path}: header lacks {', '.join(missing)}")
    out = []
    for line, raw in enumerate(rows, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
        try:
            fl = Flavour(
                name=row["name"],
                vcpus=int(row["vcpus"]),
                memory_mib=int(row["memory_mib"]),
                price=float(row["price"]) if row.get("price") else None,
                iops=int(row["iops"]) if row.get("iops") else None,
            )
        except ValueError as exc:
            raise ConfigError(OPTION, f"{path} line {line}: {exc}") from exc
        if not fl.name or fl.vcpus < 1 or fl.memory_mib < 1:
            raise ConfigError(OPTION, f"{path} line {line}: needs a name, vcpus and memory_mib")
        out.append(fl)
    if not out:
        raise ConfigError(OPTION, f"{path} lists no flavours")
    priced = sum(f.price is not None for f in out)
    if 0 < priced < len(out):
        raise ConfigError(OPTION, f"{path}: price given for some flavours but not all")
    return out


def cheapest_covering(flavours: Sequence[Flavour], need: Requirement) -> Flavour | None:
    """The cheapest flavour covering every resource of ``need``; None if none does."""
    fitting = [f for f in flavours if f.covers(need)]
    return min(fitting, key=Flavour.cost_key) if fitting else None
