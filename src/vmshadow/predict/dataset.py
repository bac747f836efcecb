"""History records as arrays: features, per-resource shadow need, observed
requirement and the target's capacity, plus the job of each record (the group
that evaluation folds keep on one side)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from vmshadow.domain.prediction import RESOURCES, Requirement
from vmshadow.predict.features import feature_row
from vmshadow.predict.history import HistoryRecord, Size
from vmshadow.predict.sar import Floats


def capacity(size: Size, resource: str) -> float:
    """What a VM of this size can use at most; ``inf`` where nothing caps it."""
    if resource == "vcpus":
        return float(size.vcpus)
    if resource == "memory_mib":
        return float(size.memory_mib)
    return math.inf if size.iops is None else float(size.iops)


def by_resource(values: Sequence[Requirement]) -> dict[str, Floats]:
    return {
        r: np.asarray([float(getattr(v, r)) for v in values], dtype=np.float64) for r in RESOURCES
    }


@dataclass(frozen=True)
class Dataset:
    records: list[HistoryRecord]
    x: Floats  # (n, len(FEATURES))
    groups: NDArray[np.str_]
    shadow: dict[str, Floats]  # the shadow's own requirement
    observed: dict[str, Floats]  # the requirement observed on the target
    capacity: dict[str, Floats]  # the target's
    vcpu_ratio: Floats  # target vCPUs / shadow vCPUs

    @classmethod
    def of(cls, records: Sequence[HistoryRecord]) -> Dataset:
        recs = list(records)
        x = np.asarray(
            [
                feature_row(
                    r.shadow.features,
                    shadow_vcpus=r.shadow.size.vcpus,
                    shadow_memory_mib=r.shadow.size.memory_mib,
                    target_vcpus=r.target.vcpus,
                    target_memory_mib=r.target.memory_mib,
                )
                for r in recs
            ],
            dtype=np.float64,
        )
        return cls(
            records=recs,
            x=x,
            groups=np.asarray([r.job for r in recs], dtype=np.str_),
            shadow=by_resource([r.shadow.need for r in recs]),
            observed=by_resource([r.observed for r in recs]),
            capacity={
                res: np.asarray([capacity(r.target, res) for r in recs], dtype=np.float64)
                for res in RESOURCES
            },
            vcpu_ratio=np.asarray(
                [r.target.vcpus / r.shadow.size.vcpus for r in recs], dtype=np.float64
            ),
        )

    def __len__(self) -> int:
        return len(self.records)

    @property
    def jobs(self) -> int:
        return len(set(self.groups.tolist()))

    def take(self, idx: NDArray[np.intp]) -> Dataset:
        return Dataset(
            records=[self.records[i] for i in idx],
            x=self.x[idx],
            groups=self.groups[idx],
            shadow={r: v[idx] for r, v in self.shadow.items()},
            observed={r: v[idx] for r, v in self.observed.items()},
            capacity={r: v[idx] for r, v in self.capacity.items()},
            vcpu_ratio=self.vcpu_ratio[idx],
        )

    def largest_targets(self) -> NDArray[np.bool_]:
        """Records whose target is its family's largest (by vCPUs, then memory) among
        these records: the "smallest -> largest" pairs. Records without a family
        are each their own."""
        best: dict[str, tuple[int, int]] = {}
        for r in self.records:
            if r.target.family is not None:
                size = (r.target.vcpus, r.target.memory_mib)
                best[r.target.family] = max(best.get(r.target.family, size), size)
        return np.asarray(
            [
                r.target.family is None
                or (r.target.vcpus, r.target.memory_mib) == best[r.target.family]
                for r in self.records
            ],
            dtype=np.bool_,
        )
