"""``vmshadow plan``: one shadow, one prediction, no launch.

Boots a shadow, runs the profile (a ramp of loads for a workload profile, the
fixed smoke run otherwise), predicts what the full load needs and returns the
document ``plan`` prints. Nothing is defined in libvirt but the shadow, which
is destroyed on every path.
"""

from __future__ import annotations

import time
from typing import Any

from vmshadow.config import Settings
from vmshadow.controller.predictor_choice import build_predictor
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.prediction import Predictor
from vmshadow.hypervisor.port import Connect
from vmshadow.shadow.accelerator import accelerator_for
from vmshadow.shadow.profiling import ProfileHooks, run_profile
from vmshadow.shadow.reaper import reap_orphans
from vmshadow.shadow.session import ShadowSession, require_image, session_options
from vmshadow.usecases.progress import Progress
from vmshadow.workloads.catalog import SMOKE, check_profile, phases_for, ramp_plan


def plan(
    settings: Settings,
    profile_name: str,
    load: float | None,
    *,
    connect: Connect,
    target: Allocation | None = None,
    predictor: Predictor | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Shadow -> prediction for ``profile_name`` at ``load``; ``connect`` opens libvirt."""
    cb = progress or Progress()
    started = time.monotonic()
    profile = check_profile(profile_name, load)
    # Before the shadow boots: an unreadable model or flavour file fails at once.
    engine = predictor or build_predictor(settings)
    duration = settings.controller.phase_s
    if profile is None:
        steps = [phases_for(SMOKE, duration_s=duration)]
    else:
        steps = ramp_plan(
            profile, duration_s=duration, shadow_memory_mib=settings.shadow.memory_mib
        )

    def step_started(n: int) -> None:
        if profile is not None:
            cb.stage(f"ramp step {n}: {profile.ramp[n]:g} {profile.unit}")

    hooks = ProfileHooks(
        step_started=step_started,
        phase_started=cb.phase_started,
        phase_done=cb.phase_done,
        saturated=lambda n: cb.stage(f"step {n} saturated the shadow: ramp ends"),
    )
    image = require_image(settings)
    with connect(settings.libvirt_uri) as hv:
        reap_orphans(hv, settings.runs_dir)
        choice = accelerator_for(hv, image, settings)
        cb.stage(choice.reason)
        cb.stage("booting the shadow")
        with ShadowSession(
            hv,
            image,
            settings.runs_dir,
            accelerator=choice.accelerator,
            **session_options(settings),
            on_point=cb.point,
        ) as session:
            ready = session.record.timings.agent_ready_s
            cb.stage(f"agent ready after {ready:.1f} s")
            profile_started = time.monotonic()
            run_profile(
                session,
                steps,
                session.record.series,
                shadow_vcpus=settings.shadow.vcpus,
                hooks=hooks,
            )
            profile_s = time.monotonic() - profile_started
        record = session.record
    points = [p for p in record.series if p.phase_id is not None]
    pred = engine.predict(points, profile=profile_name, load=load, target=target)
    return {
        "profile": profile_name,
        "unit": profile.unit if profile else None,
        "load": load,
        "target": target.as_dict() if target else None,
        "accelerator": choice.accelerator.value,
        "prediction": {
            "method": pred.method,
            "label": pred.label,
            "history_size": pred.history_size,
            "margin": pred.margin,
            # The ramp extrapolation gives one estimate; the quantile model
            # (with history) a median and a P90, its ``need`` being the P90.
            "median": pred.detail.get("median") or pred.need.as_dict(),
            "p90": pred.detail.get("p90"),
            "recommended": pred.recommended.as_dict(),
            "detail": {k: v for k, v in pred.detail.items() if k not in ("p90", "median")},
        },
        "timings": {
            "boot_s": record.timings.boot_s,
            "agent_ready_s": record.timings.agent_ready_s,
            "profile_s": round(profile_s, 3),
            "total_s": round(time.monotonic() - started, 3),
        },
    }
