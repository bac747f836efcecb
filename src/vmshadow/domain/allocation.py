"""What a VM is given: vCPUs, memory and an optional IOPS cap.

The IOPS cap is libvirt's ``<iotune>``: a rate (``iops``, ``total_iops_sec``)
and optionally a burst rate (``iops_burst``, ``total_iops_sec_max``) that may
last ``iops_burst_s`` seconds (``total_iops_sec_max_length``) before I/O is
held to the rate again.

Allocations are validated on construction so that a bad size never reaches a
hypervisor: the error names the field and the reason.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from vmshadow.domain.errors import ConfigError

MEMORY_STEP_MIB = 256
MAX_VCPUS = 256
MAX_MEMORY_MIB = 4 * 1024 * 1024
MAX_IOPS = 10_000_000
MAX_BURST_S = 3600  # QEMU takes more; a burst of over an hour is not a burst


@dataclass(frozen=True)
class Allocation:
    vcpus: int
    memory_mib: int
    iops: int | None = None  # total read+write IOPS cap on the VM's disk; None = no cap
    iops_burst: int | None = None  # IOPS allowed in a burst; None = no burst rate
    iops_burst_s: int | None = None  # how long a burst may last; None = QEMU's 1 s

    def __post_init__(self) -> None:
        if not 1 <= self.vcpus <= MAX_VCPUS:
            raise ConfigError("vcpus", f"must be between 1 and {MAX_VCPUS}, got {self.vcpus}")
        if not 128 <= self.memory_mib <= MAX_MEMORY_MIB:
            raise ConfigError(
                "memory_mib", f"must be between 128 and {MAX_MEMORY_MIB}, got {self.memory_mib}"
            )
        if self.iops is not None and not 1 <= self.iops <= MAX_IOPS:
            raise ConfigError("iops", f"must be between 1 and {MAX_IOPS}, got {self.iops}")
        # What QEMU's throttle_is_valid() and libvirt refuse, said here first.
        if self.iops_burst is not None:
            if self.iops is None:
                raise ConfigError("iops_burst", "needs an IOPS cap (iops) to burst above")
            if not self.iops <= self.iops_burst <= MAX_IOPS:
                raise ConfigError(
                    "iops_burst",
                    f"must be between iops ({self.iops}) and {MAX_IOPS}, got {self.iops_burst}",
                )
        if self.iops_burst_s is not None:
            if self.iops_burst is None:
                raise ConfigError("iops_burst_s", "needs a burst rate (iops_burst)")
            if not 1 <= self.iops_burst_s <= MAX_BURST_S:
                raise ConfigError(
                    "iops_burst_s",
                    f"must be between 1 and {MAX_BURST_S} seconds, got {self.iops_burst_s}",
                )

    def as_dict(self) -> dict[str, int | None]:
        """The burst keys only when a burst is set, so that allocations without
        one read as they always have."""
        out = {"vcpus": self.vcpus, "memory_mib": self.memory_mib, "iops": self.iops}
        if self.iops_burst is not None:
            out["iops_burst"] = self.iops_burst
            out["iops_burst_s"] = self.iops_burst_s
        return out

    def covers(self, other: Allocation) -> bool:
        """True when this allocation is at least ``other`` in every resource (for
        IOPS, the rate: a burst lends I/O ahead, it adds none over time)."""
        iops_ok = self.iops is None or (other.iops is not None and self.iops >= other.iops)
        return self.vcpus >= other.vcpus and self.memory_mib >= other.memory_mib and iops_ok


def with_burst(a: Allocation, shape: object) -> Allocation:
    """``a`` with the burst a prediction recommended (``{"rate", "burst",
    "burst_s"}``, see ``predict.tokenbucket``), scaled to ``a``'s own IOPS cap:
    an override of the rate keeps the workload's burstiness, its burst in the
    same proportion to the rate. Unchanged when ``a`` has no cap or there is
    no burst to apply."""
    if a.iops is None or not isinstance(shape, dict):
        return a
    rate, burst, burst_s = shape.get("rate"), shape.get("burst"), shape.get("burst_s")
    if not all(isinstance(v, int | float) and v > 0 for v in (rate, burst, burst_s)):
        return a
    assert isinstance(rate, int | float) and isinstance(burst, int | float)
    assert isinstance(burst_s, int | float)
    scaled = min(MAX_IOPS, max(a.iops, math.ceil(a.iops * burst / rate)))
    return dataclasses.replace(
        a, iops_burst=scaled, iops_burst_s=min(MAX_BURST_S, max(1, round(burst_s)))
    )
