"""Every profile a transition or a plan can name: ``smoke`` plus the YAML profiles."""

from __future__ import annotations

from vmshadow.agent.phasespec import PhaseSpec
from vmshadow.domain.errors import ConfigError
from vmshadow.image.userstore import BUILTIN as BUILTIN_IMAGE
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


def require_app_image(profile: Profile, image: str) -> None:
    """Refuse a profile that runs an application for a shadow of the built-in image.

    Its program lives in the user's image; vmshadow's own shadow OS has only
    stress-ng and fio. Refused here, before anything boots, rather than by
    the agent halfway through a ramp (which it still does, should a store
    image's shadow fall back to the built-in OS).
    """
    if profile.app is not None and image == BUILTIN_IMAGE:
        raise ConfigError(
            "image",
            f"profile {profile.name} runs an application ({profile.app.command[0]}) that "
            "must be installed in the VM's image: it needs a shadow of a store image, and "
            "the built-in shadow OS has only stress-ng and fio",
        )


def ramp_plan(
    profile: Profile, *, duration_s: int, shadow_memory_mib: int, image: str = BUILTIN_IMAGE
) -> list[list[PhaseSpec]]:
    """The phases of each ramp step the shadow can hold, in order, for a
    shadow of ``image`` (a store image's name, or the built-in image)."""
    require_app_image(profile, image)
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
