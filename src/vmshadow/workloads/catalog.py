"""Every profile a transition or a plan can name: ``smoke`` plus the YAML profiles."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from vmshadow.agent.phasespec import PhaseSpec
from vmshadow.domain.errors import ConfigError
from vmshadow.domain.ramp import expected_step
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


# Of the shadow's vCPUs: a load the profile's own costs put at or under this is
# measured as it is. The costs are estimates and TCG adds its own, so it stays
# clear of ``ramp.CPU_SATURATED`` (0.9), where a step no longer tells the cost.
HOLD_CPU = 0.8


class HasSpec(Protocol):
    @property
    def spec(self) -> PhaseSpec: ...


@dataclass(frozen=True)
class PlannedStep:
    step: int  # the number in its phase ids: a ramp index, or the expected load's
    load: float
    phases: list[PhaseSpec]


@dataclass(frozen=True)
class RampPlan:
    """The steps a shadow runs, in order; ``fallback`` runs only when every
    step run saturated the shadow (the profile's costs under-stated the load)."""

    steps: list[PlannedStep]
    fallback: list[PlannedStep] = field(default_factory=list)
    why: str = ""

    @property
    def phases(self) -> list[list[PhaseSpec]]:
        return [s.phases for s in self.steps]

    @property
    def fallback_phases(self) -> list[list[PhaseSpec]]:
        return [s.phases for s in self.fallback]

    def index_of(self, runs: Sequence[HasSpec]) -> int:
        """Which step (the fallback's after the steps) ``runs`` are, by their phases."""
        ids = [r.spec.phase_id for r in runs]
        for i, s in enumerate([*self.steps, *self.fallback]):
            if [p.phase_id for p in s.phases] == ids:
                return i
        return -1


def ramp_plan(
    profile: Profile,
    *,
    duration_s: int,
    shadow_memory_mib: int,
    image: str = BUILTIN_IMAGE,
    load: float | None = None,
    shadow_vcpus: int = 1,
) -> RampPlan:
    """The steps to run for ``load`` in a shadow of ``image`` (a store image's
    name, or the built-in image), planned around the expected load:

    - the shadow holds ``load`` (its memory and ``HOLD_CPU`` of its vCPUs by
      the profile's own costs): one step at ``load``, nothing to extrapolate;
      a lower load stands by should it saturate the shadow after all;
    - it does not: the largest ramp load it holds, with all three phases,
      extrapolated from there. CPU and I/O cost in proportion to the load (a
      rate-limited stressor's only fixed cost is the shadow OS's background,
      0.03-0.05 vCPU under TCG, which the proportion over-states by a few per
      cent, never under); memory adds what its stressor asks per unit
      (``predict.ramp``: a vm stressor holds what it asks, so a lower load's
      memory phase gave the same line). A lower load (half or less) stands by:
      its CPU phase runs should the top step saturate the shadow. A second
      step cost 5-9 s of a 15 s answer; on analytics at 200 the answer with
      it differed by under 1 MiB of memory and 3.5 % less CPU;
    - no ``load``, or a profile that runs an application (its phases always
      run their length and its costs are only an estimate): every ramp load
      the shadow's memory holds, as the profile lists them.

    Steps that cannot change the answer are not run."""
    require_app_image(profile, image)
    mem_cap = SHADOW_MEMORY_SHARE * shadow_memory_mib

    def fits(x: float) -> bool:
        return profile.demand(x)["memory_mib"] <= mem_cap

    def holds(x: float) -> bool:
        return fits(x) and profile.demand(x)["vcpus"] <= HOLD_CPU * shadow_vcpus

    def step(i: int, x: float, kinds: tuple[str, ...] = ("-cpu", "-memory", "-io")) -> PlannedStep:
        phases = profile.phases(x, duration_s=duration_s, step=i)
        if profile.app is None:
            phases = [p for p in phases if p.phase_id.endswith(kinds)]
        return PlannedStep(i, x, phases)

    indexed = list(enumerate(profile.ramp))
    if load is None or profile.app is not None:
        steps = [step(i, x) for i, x in indexed if fits(x)]
        if not steps:
            raise _too_big(profile, shadow_memory_mib)
        return RampPlan(steps, why=f"the profile's ramp: {_loads(steps)}")
    if holds(load):
        here = profile.ramp.index(load) if load in profile.ramp else expected_step(profile.ramp)
        below = [(i, x) for i, x in indexed if x <= load / 2 and fits(x)]
        fallback = [step(*below[-1], kinds=("-cpu",))] if below else []
        return RampPlan(
            [step(here, load)],
            fallback,
            why=f"the shadow holds {load:g} {profile.unit}: measured as it is",
        )
    held = [(i, x) for i, x in indexed if x < load and holds(x)]
    if not held:
        # Not even the first load holds: the first that fits memory still
        # bounds the cost from below, and says so (saturated).
        first = [(i, x) for i, x in indexed if fits(x)]
        if not first:
            raise _too_big(profile, shadow_memory_mib)
        steps = [step(*first[0])]
        return RampPlan(steps, why=f"no ramp load fits the shadow's CPU: {_loads(steps)}")
    top_i, top = held[-1]
    lower = [(i, x) for i, x in held if x <= top / 2] or held[:-1]
    steps = [step(top_i, top)]
    return RampPlan(
        steps,
        [step(*lower[-1], kinds=("-cpu",))] if lower else [],
        why=f"{load:g} {profile.unit} is beyond the shadow: extrapolated from {_loads(steps)}",
    )


def _loads(steps: Sequence[PlannedStep]) -> str:
    return ", ".join(f"{s.load:g}" for s in steps)


def _too_big(profile: Profile, shadow_memory_mib: int) -> ConfigError:
    return ConfigError(
        "profile",
        f"{profile.name}: even its first ramp load needs more memory than a "
        f"{shadow_memory_mib} MiB shadow can hold",
    )


def plan_for(
    name: str,
    load: float | None,
    *,
    duration_s: int,
    shadow_memory_mib: int,
    shadow_vcpus: int = 1,
    image: str = BUILTIN_IMAGE,
) -> RampPlan:
    """What a shadow runs for profile ``name`` at ``load``: smoke's one step, or
    the workload profile's steps planned around the load (``ramp_plan``)."""
    if name == SMOKE:
        return RampPlan([PlannedStep(0, 0.0, smoke_phases(duration_s))], why="the smoke run")
    profile = check_profile(name, load)
    assert profile is not None
    return ramp_plan(
        profile,
        duration_s=duration_s,
        shadow_memory_mib=shadow_memory_mib,
        image=image,
        load=load,
        shadow_vcpus=shadow_vcpus,
    )


def phases_for(name: str, *, duration_s: int) -> list[PhaseSpec]:
    if name == SMOKE:
        return smoke_phases(duration_s)
    raise ConfigError("profile", f"{name} is a ramp profile: use ramp_plan")
