"""``vmshadow plan``: one shadow, one prediction, no launch.

Boots a shadow, runs the profile (a ramp of loads for a workload profile, the
fixed smoke run otherwise), predicts what the full load needs and returns the
document ``plan`` prints. Nothing is defined in libvirt but the shadow, which
is destroyed on every path.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from vmshadow.config import Settings
from vmshadow.controller.context import shadow_image_for, user_image
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.confidence import confidence_of
from vmshadow.domain.prediction import Predictor, with_shadow_os
from vmshadow.domain.ramp import app_run
from vmshadow.domain.shadow import IDLE_PHASE_ID
from vmshadow.hypervisor.port import Connect
from vmshadow.image.userstore import BUILTIN
from vmshadow.predict.choice import ChosenPredictor, build_predictor
from vmshadow.shadow.accelerator import accelerator_for
from vmshadow.shadow.admission import Admission, lock_dir
from vmshadow.shadow.profiling import Adaptive, PhaseRun, ProfileHooks, run_profile, step_text
from vmshadow.shadow.reaper import reap_orphans
from vmshadow.shadow.session import ShadowSession, require_image, session_options
from vmshadow.usecases.progress import Progress
from vmshadow.workloads.catalog import check_profile, plan_for


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
    c = settings.controller
    ramp = plan_for(
        profile_name,
        load,
        duration_s=c.phase_s,
        shadow_memory_mib=settings.shadow.memory_mib,
        shadow_vcpus=settings.shadow.vcpus,
        image=image,
    )
    loads = [s.load for s in [*ramp.steps, *ramp.fallback]]
    if profile is not None:
        cb.stage(f"plan: {ramp.why}")

    def step_started(n: int) -> None:
        if profile is not None and n < len(loads):
            cb.stage(f"ramp step {n}: {loads[n]:g} {profile.unit}")

    def step_done(_n: int, runs: list[PhaseRun]) -> None:
        i = ramp.index_of(runs)
        cb.stage(step_text(loads[i] if profile is not None and i >= 0 else None, runs))

    hooks = ProfileHooks(
        step_started=step_started,
        phase_started=cb.phase_started,
        phase_done=cb.phase_done,
        saturated=lambda n: cb.stage(f"step {n} saturated the shadow: ramp ends"),
        step_done=step_done,
        note=cb.stage,
    )
    builtin = require_image(settings)
    if image != BUILTIN:
        user_image(settings, image)  # checked before anything boots
    booted = shadow_image_for(settings, builtin, image)
    with connect(settings.libvirt_uri) as hv:
        reap_orphans(hv, settings.runs_dir)
        choice = accelerator_for(hv, builtin, settings)
        cb.stage(choice.reason)
        # The service's limit holds for a plan too: the host counts its shadows.
        admission = Admission(hv, c.max_shadows, lock_dir(settings.runs_dir))
        slot = admission.wait(
            wait_s=c.admission_wait_s,
            on_wait=lambda n: cb.stage(
                f"waiting for a free shadow slot: {n} in use, controller.max_shadows "
                f"is {c.max_shadows} (at most {c.admission_wait_s:.0f} s)"
            ),
        )
        cb.stage("booting the shadow" if image == BUILTIN else f"booting the OS of image {image}")
        try:
            with ShadowSession(
                hv,
                booted,
                settings.runs_dir,
                accelerator=choice.accelerator,
                **session_options(settings),
                on_point=cb.point,
            ) as session:
                slot.release()  # the shadow is up: the host counts it now
                ready = session.record.timings.agent_ready_s
                cb.stage(f"agent ready after {ready:.1f} s; {session.record.boot_text()}")
                profile_started = time.monotonic()
                runs = run_profile(
                    session,
                    ramp.phases,
                    session.record.series,
                    shadow_vcpus=settings.shadow.vcpus,
                    hooks=hooks,
                    adaptive=Adaptive.from_settings(c, settings.libvirt_uri),
                    fallback=ramp.fallback_phases,
                )
                profile_s = time.monotonic() - profile_started
        finally:
            slot.release()
        record = session.record
    # The idle phase is the OS alone: the floor of the need, not a phase of the profile.
    points = [p for p in record.series if p.phase_id not in (None, IDLE_PHASE_ID)]
    app = app_run(r.result for r in record.phases)
    if app is not None and isinstance(engine, ChosenPredictor):
        pred = engine.predict(points, profile=profile_name, load=load, target=target, app=app)
    else:
        pred = engine.predict(points, profile=profile_name, load=load, target=target)
    pred = with_shadow_os(pred, record.shadow_os, record.os_idle)
    contention = _contention(runs, c.contention_max)
    if contention["contended_phases"] and "host's CPU" not in pred.label:
        # Steal (not in the points the predictor reads) starved it: said here.
        pred = dataclasses.replace(
            pred,
            label=f"{pred.label}; the host starved the shadow: its CPU figures may be low",
        )
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
            # The plan's contention covers every phase (steal too), not only the
            # points the predictor read.
            "confidence": confidence_of(
                dataclasses.replace(pred, detail={**pred.detail, "contention": contention}),
                load=load,
            ).as_dict(),
        },
        "phases": [r.as_dict() for r in runs],
        "contention": contention,
        "timings": {
            "boot_s": record.timings.boot_s,
            "agent_ready_s": record.timings.agent_ready_s,
            "profile_s": round(profile_s, 3),
            "boot": record.boot,
            "boot_reason": record.boot_reason,
            "total_s": round(time.monotonic() - started, 3),
        },
    }


def _contention(runs: list[PhaseRun], limit: float) -> dict[str, object]:
    """The host's contention over the profile: the worst phase's figures and the
    phases at or over ``limit`` (whose figures a starved shadow may have biased)."""
    seen = [r for r in runs if r.contention is not None]

    def worst(attr: str) -> float | None:
        vals = [getattr(r.contention, attr) for r in seen]
        known = [v for v in vals if v is not None]
        return round(max(known), 3) if known else None

    return {
        "limit": limit,
        "max_wait": worst("wait"),
        "max_steal": worst("steal"),
        "max_host_busy": worst("host_busy"),
        "contended_phases": [
            r.spec.phase_id for r in seen if r.contention and r.contention.contended(limit)
        ],
    }
