"""Every profile a transition or a plan can name: ``smoke`` plus the YAML profiles."""

from __future__ import annotations

from vmshadow.agent.phasespec import PhaseSpec
from vmshadow.domain.errors import ConfigError
from vmshadow.workloads.profiles import Profile, builtin_profiles, load_profile
from vmshadow.workloads.smoke import smoke_phases

SMOKE = "smoke"
# Keep the ramp inside the shadow: a working set near its memory would measure
# the guest's reclaim, not the workload.
SHADOW_MEMORY_SHARE = 0.7


def profile_names() -> list[str]:
    return sorted([SMOKE, *builtin_profiles()])


def check_profile(name: str, load: float | None) -> Profile | None:
    """The profile for ``name`` (None for smoke); a ramp profile needs a load."""
    if name == SMOKE:
        return None
    profile = load_profile(name)
    if load is None:
        raise ConfigError("load", f"profile {name} needs the expected load in {profile.unit}")
    return profile


def ramp_plan(
    profile: Profile, *, duration_s: int, shadow_memory_mib: int
) -> list[list[PhaseSpec]]:
    """The phases of each ramp step the shadow can hold, in order."""
    steps = []
    for i, load in enumerate(profile.ramp):
        if profile.demand(load)["memory_mib"] > SHADOW_MEMORY_SHARE * shadow_memory_mib:
            break
        steps.append(profile.phases(load, duration_s=duration_s, step=i))
    if not steps:
        raise ConfigError(
            "profile",
            f"{profile.name}: even its first ramp load needs more memory than a "
            f"{shadow_memory_mib} MiB shadow can hold",
        )
    return steps


def phases_for(name: str, *, duration_s: int) -> list[PhaseSpec]:
    if name == SMOKE:
        return smoke_phases(duration_s)
    raise ConfigError("profile", f"{name} is a ramp profile: use ramp_plan")
