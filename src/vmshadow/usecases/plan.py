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
from vmshadow.controller.context import shadow_image_for, user_image
from vmshadow.controller.predictor_choice import ChosenPredictor, build_predictor
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.prediction import Predictor, with_shadow_os
from vmshadow.domain.ramp import app_run
from vmshadow.domain.shadow import IDLE_PHASE_ID
from vmshadow.hypervisor.port import Connect
from vmshadow.image.userstore import BUILTIN
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
    image: str = BUILTIN,
) -> dict[str, Any]:
    """Shadow -> prediction for ``profile_name`` at ``load``; ``connect`` opens libvirt.

    ``image``: a store image whose own OS the shadow boots (measured at idle,
    with the built-in OS standing in if it cannot host the agent), which an
    application profile (one whose steps run a program of the image) needs.
    """
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
            profile,
            duration_s=duration,
            shadow_memory_mib=settings.shadow.memory_mib,
            image=image,
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
    builtin = require_image(settings)
    if image != BUILTIN:
        user_image(settings, image)  # checked before anything boots
    booted = shadow_image_for(settings, builtin, image)
    with connect(settings.libvirt_uri) as hv:
        reap_orphans(hv, settings.runs_dir)
        choice = accelerator_for(hv, builtin, settings)
        cb.stage(choice.reason)
        cb.stage("booting the shadow" if image == BUILTIN else f"booting the OS of image {image}")
        with ShadowSession(
            hv,
            booted,
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
    # The idle phase is the OS alone: the floor of the need, not a phase of the profile.
    points = [p for p in record.series if p.phase_id not in (None, IDLE_PHASE_ID)]
    app = app_run(r.result for r in record.phases)
    if app is not None and isinstance(engine, ChosenPredictor):
        pred = engine.predict(points, profile=profile_name, load=load, target=target, app=app)
    else:
        pred = engine.predict(points, profile=profile_name, load=load, target=target)
    pred = with_shadow_os(pred, record.shadow_os, record.os_idle)
    return {
        "profile": profile_name,
        "image": image,
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
