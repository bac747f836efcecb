"""What a VM is given: vCPUs, memory and an optional IOPS cap.

Allocations are validated on construction so that a bad size never reaches a
hypervisor: the error names the field and the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from vmshadow.domain.errors import ConfigError

MEMORY_STEP_MIB = 256
MAX_VCPUS = 256
MAX_MEMORY_MIB = 4 * 1024 * 1024


@dataclass(frozen=True)
class Allocation:
    vcpus: int
    memory_mib: int
    iops: int | None = None  # total read+write IOPS cap on the VM's disk; None = no cap

    def __post_init__(self) -> None:
        if not 1 <= self.vcpus <= MAX_VCPUS:
            raise ConfigError("vcpus", f"must be between 1 and {MAX_VCPUS}, got {self.vcpus}")
        if not 128 <= self.memory_mib <= MAX_MEMORY_MIB:
            raise ConfigError(
                "memory_mib", f"must be between 128 and {MAX_MEMORY_MIB}, got {self.memory_mib}"
            )
        if self.iops is not None and not 1 <= self.iops <= 10_000_000:
            raise ConfigError("iops", f"must be between 1 and 10000000, got {self.iops}")

    def as_dict(self) -> dict[str, int | None]:
        return {"vcpus": self.vcpus, "memory_mib": self.memory_mib, "iops": self.iops}

    def covers(self, other: Allocation) -> bool:
        """True when this allocation is at least ``other`` in every resource."""
        iops_ok = self.iops is None or (other.iops is not None and self.iops >= other.iops)
        return self.vcpus >= other.vcpus and self.memory_mib >= other.memory_mib and iops_ok
