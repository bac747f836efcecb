"""What a recommendation in another tool's form is made from.

A ``Recommendation`` is the size vmshadow settled on (the decided size once
there is one, else the latest prediction's), the size that was asked for (a
ceiling a live change may grow up to), the VM's name and its disk. It is built
from the same JSON the API, CLI and web UI show for a transition
(``from_view``), or from a plan (``from_plan``), so every caller emits the
same thing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vmshadow.domain.allocation import Allocation, with_burst
from vmshadow.domain.errors import ConfigError

# libvirt accepts nearly any domain name; the other tools do not. The emitted
# text quotes names anyway, but a name outside this set is refused rather
# than silently rewritten into another VM's name.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
DISK_TARGET_RE = re.compile(r"(vd|sd|hd|xvd)[a-z]{1,2}")


@dataclass(frozen=True)
class Recommendation:
    name: str
    vcpus: int
    memory_mib: int
    iops: int | None = None
    # The IOPS cap's burst (``<iotune>``'s total_iops_sec_max and _max_length).
    iops_burst: int | None = None
    iops_burst_s: int | None = None
    # What was asked for: the maxima that leave room to grow live up to it.
    max_vcpus: int | None = None
    max_memory_mib: int | None = None
    disk_gib: int | None = None
    disk_target: str = "vda"
    origin: str = ""  # "transition ID" or "plan": said in a comment of the output

    def __post_init__(self) -> None:
        if not NAME_RE.fullmatch(self.name):
            raise ConfigError(
                "name",
                f"{self.name!r} cannot be written for other tools: use letters, digits, "
                "'.', '_' and '-' (at most 63, starting with a letter or digit)",
            )
        if not DISK_TARGET_RE.fullmatch(self.disk_target):
            raise ConfigError("disk_target", f"{self.disk_target!r} is not a disk target like vda")
        for field, value in (("vcpus", self.vcpus), ("memory_mib", self.memory_mib)):
            if value < 1:
                raise ConfigError(field, f"must be at least 1, got {value}")
        if self.iops is not None and self.iops < 1:
            raise ConfigError("iops", f"must be at least 1 when given, got {self.iops}")
        if self.iops_burst is not None and (self.iops is None or self.iops_burst < self.iops):
            raise ConfigError(
                "iops_burst", f"must be at least iops ({self.iops}), got {self.iops_burst}"
            )
        if self.iops_burst_s is not None and (self.iops_burst is None or self.iops_burst_s < 1):
            raise ConfigError(
                "iops_burst_s", f"needs iops_burst and at least 1 s, got {self.iops_burst_s}"
            )

    @property
    def top_vcpus(self) -> int:
        """The vCPU maximum: room for the asked size, never below the recommendation."""
        return max(self.vcpus, self.max_vcpus or self.vcpus)

    @property
    def top_memory_mib(self) -> int:
        return max(self.memory_mib, self.max_memory_mib or self.memory_mib)


def _int(doc: Mapping[str, Any] | None, key: str) -> int | None:
    if not doc:
        return None
    value = doc.get(key)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def from_view(doc: Mapping[str, Any], *, disk_target: str = "vda") -> Recommendation:
    """From a transition's JSON (``GET /api/v1/transitions/{id}``): the decided size
    when there is one, else the latest recommendation; refused before any."""
    size = doc.get("final") or doc.get("recommended")
    if not size:
        raise ConfigError(
            "state",
            f"transition {doc.get('id')} has no recommendation yet (it is {doc.get('state')}): "
            "wait until it is predicted",
        )
    requested = doc.get("requested") or {}
    guest = doc.get("guest") or {}
    vcpus, memory = _int(size, "vcpus"), _int(size, "memory_mib")
    if vcpus is None or memory is None:
        raise ConfigError("recommended", "the transition's size has no vcpus or memory_mib")
    iops = _int(size, "iops")
    # The store keeps the rate; the burst is the prediction's, in proportion to it.
    prediction = doc.get("prediction") or {}
    burst = (
        with_burst(Allocation(vcpus, memory, iops), prediction.get("iops_bucket"))
        if iops is not None and vcpus >= 1 and memory >= 128
        else None
    )
    return Recommendation(
        name=str(doc.get("vm_name") or ""),
        vcpus=vcpus,
        memory_mib=memory,
        iops=iops,
        iops_burst=burst.iops_burst if burst else None,
        iops_burst_s=burst.iops_burst_s if burst else None,
        max_vcpus=_int(requested, "vcpus"),
        max_memory_mib=_int(requested, "memory_mib"),
        disk_gib=_int(guest, "disk_gib"),
        disk_target=disk_target,
        origin=f"transition {doc.get('id')}",
    )


def from_plan(
    name: str,
    recommended: Mapping[str, Any],
    *,
    requested: Mapping[str, Any] | None = None,
    disk_gib: int | None = None,
    disk_target: str = "vda",
) -> Recommendation:
    """From ``vmshadow plan``'s recommendation (``{"vcpus", "memory_mib", "iops"}``)."""
    vcpus, memory = _int(recommended, "vcpus"), _int(recommended, "memory_mib")
    if vcpus is None or memory is None:
        raise ConfigError("recommended", "the plan's recommendation has no vcpus or memory_mib")
    return Recommendation(
        name=name,
        vcpus=vcpus,
        memory_mib=memory,
        iops=_int(recommended, "iops"),
        iops_burst=_int(recommended, "iops_burst"),
        iops_burst_s=_int(recommended, "iops_burst_s"),
        max_vcpus=_int(requested, "vcpus"),
        max_memory_mib=_int(requested, "memory_mib"),
        disk_gib=disk_gib,
        disk_target=disk_target,
        origin="plan",
    )
