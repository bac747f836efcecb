"""The physical extrapolation used when there is too little history to learn from.

Without history nothing says how a workload scales, only what the shadow
could and could not show:

- a resource the shadow did not run out of needs on the full VM what it
  needed on the shadow;
- a resource the shadow ran out of (P95 busy vCPUs at 90 % or more of its
  vCPUs; peak memory at 90 % or more of its memory) is a floor, so it is
  scaled linearly with the size, the most it could need;
- IOPS follow the CPU: a CPU-bound shadow issued I/O only as fast as it could
  compute, so they scale with the vCPUs when the CPU did.

Every figure is capped at the target's capacity. It is conservative by
design; the learnt model corrects it once history exists.
"""

from __future__ import annotations

from dataclasses import dataclass

from vmshadow.domain.prediction import Requirement

RAN_OUT = 0.9  # share of a shadow's size at which it counts as having run out


@dataclass(frozen=True)
class Scaling:
    need: Requirement
    cpu_bound: bool
    memory_bound: bool


def physical_need(
    shadow_need: Requirement,
    *,
    shadow_vcpus: int,
    shadow_memory_mib: int,
    target_vcpus: int,
    target_memory_mib: int,
) -> Scaling:
    cpu_bound = shadow_need.vcpus >= RAN_OUT * shadow_vcpus
    mem_bound = shadow_need.memory_mib >= RAN_OUT * shadow_memory_mib
    cpu_x = target_vcpus / shadow_vcpus if cpu_bound else 1.0
    mem_x = target_memory_mib / shadow_memory_mib if mem_bound else 1.0
    need = Requirement(
        vcpus=min(shadow_need.vcpus * max(cpu_x, 1.0), float(target_vcpus)),
        memory_mib=min(shadow_need.memory_mib * max(mem_x, 1.0), float(target_memory_mib)),
        iops=shadow_need.iops * max(cpu_x, 1.0),
    )
    return Scaling(need, cpu_bound, mem_bound)
