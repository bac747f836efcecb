"""What a launched VM really used so far, next to what was predicted for it.

The controller stores the launched VM's host-side samples while it observes
it (target ``vm``); the same definition of a requirement as the prediction's
(P95 busy vCPUs, peak memory, P95 IOPS) makes the two comparable while the
observation is still running, not only once the history record is written.

Two things kept the comparison from being fair and are handled here: the VM's
boot (a verdict waits for enough samples after it, see ``BOOT_S``) and the
IOPS cap, which sits on the workload's disk alone while the host's counters
add up every disk (see ``Realized.iops_all_disks``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from vmshadow.domain.prediction import Requirement, requirement_of
from vmshadow.domain.samples import StoredSample, UsagePoint
from vmshadow.image.userstore import BUILTIN
from vmshadow.store.repository import Store

# Ten minutes of once-a-second samples is 600; a week-long window would still fit.
MAX_SAMPLES = 1_000_000
# A VM's first minute is its boot, not its workload: kernel, systemd and
# cloud-init read the root disk hard (cloud-init finished 53-58 s after start on
# a quiet host, docs/development.md), and root-disk reads 28 s after launch were
# called "under-provisioned" against the scratch disk's cap. A VM sample's t
# counts from the launch (controller/observing.py), so this is t >= BOOT_S.
BOOT_S = 60.0
# A P95 over fewer than 20 samples is the largest sample itself: 20 is the
# smallest count at which the 95th percentile has a sample above it, so fewer
# after the boot gives no verdict ("too early to tell").
MIN_SAMPLES = 20


@dataclass(frozen=True)
class Realized:
    requirement: Requirement
    samples: int  # the samples the requirement is over
    seconds: float  # span of those samples
    # At least MIN_SAMPLES after the boot: the requirement is over those alone
    # and a verdict may be given. Before, it is over every sample so far, shown
    # but not judged.
    settled: bool = True
    # The host's block counters add up every disk, and the built-in image's root
    # disk is not capped (only its scratch disk is, hypervisor/fullvmxml.py), so
    # its IOPS cannot be held against the cap; a user image's one disk can.
    iops_all_disks: bool = False


def points_of(samples: Iterable[StoredSample]) -> list[UsagePoint]:
    return [s.point for s in samples]


def realized(store: Store, tid: str) -> Realized | None:
    """The launched VM's requirement so far, past its boot once there is enough
    of that; None before any sample."""
    points = points_of(store.samples(tid, target="vm", limit=MAX_SAMPLES))
    if not points:
        return None
    after = [p for p in points if p.t >= BOOT_S]
    settled = len(after) >= MIN_SAMPLES
    used = after if settled else points
    span = max(p.t for p in used) - min(p.t for p in used)
    all_disks = store.get(tid).image == BUILTIN
    return Realized(requirement_of(used), len(used), span, settled, all_disks)
