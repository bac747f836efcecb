"""Run a profile in a fresh shadow and report what each view measured.

This is the use case behind ``vmshadow shadow run``: make sure the image
exists, pick the accelerator, reap shadows orphaned by a crashed process,
boot a shadow, run the profile's phases, summarise each phase from the host
and the guest view, and destroy the shadow whatever happens. Given a store
image, the shadow runs that image's own OS (or says why it could not) and
the report carries its idle footprint.
"""

from __future__ import annotations

import time
from typing import Any

from vmshadow.agent.protocol import PhaseSpec
from vmshadow.config import Settings
from vmshadow.controller.context import shadow_image_for
from vmshadow.domain.errors import ConfigError
from vmshadow.domain.samples import Source, summarize_phase
from vmshadow.domain.shadow import ShadowSize
from vmshadow.hypervisor.port import Connect
from vmshadow.image.userstore import BUILTIN
from vmshadow.shadow.accelerator import AcceleratorChoice, accelerator_for
from vmshadow.shadow.profiling import ProfileHooks, run_profile
from vmshadow.shadow.reaper import reap_orphans
from vmshadow.shadow.session import ShadowRecord, ShadowSession, require_image, session_options
from vmshadow.usecases.progress import Progress
from vmshadow.workloads.smoke import PROFILES


def _report(
    record: ShadowRecord,
    profile: str,
    choice: AcceleratorChoice,
    size: ShadowSize,
    profile_s: float,
    total_s: float,
) -> dict[str, Any]:
    phases = []
    for run in record.phases:
        pid = run.spec.phase_id
        phases.append(
            {
                "phase_id": pid,
                "kind": run.spec.kind,
                "duration_s": run.spec.duration_s,
                "started_s": run.started_s,
                "ended_s": run.ended_s,
                "host": summarize_phase(record.series, pid, Source.HOST).as_dict(),
                "guest": summarize_phase(record.series, pid, Source.GUEST).as_dict(),
                "result": run.result,
            }
        )
    t = record.timings
    return {
        "shadow_id": record.shadow_id,
        "profile": profile,
        "accelerator": choice.accelerator.value,
        "accelerator_reason": choice.reason,
        "shadow": {
            "vcpus": size.vcpus,
            "memory_mib": size.memory_mib,
            "scratch_mib": size.scratch_mib,
        },
        "agent": record.hello,
        "timings": {
            "prepare_s": t.prepared_s,
            "boot_s": t.boot_s,
            "agent_ready_s": t.agent_ready_s,
            "profile_s": round(profile_s, 3),
            "boot": record.boot,
            "boot_reason": record.boot_reason,
            "total_s": round(total_s, 3),
        },
        "shadow_os": record.shadow_os.as_dict() if record.shadow_os else None,
        "os_idle": record.os_idle.as_dict() if record.os_idle else None,
        "host_qemu_peak_rss_mib": round(record.peak_qemu_rss_kib / 1024, 1),
        "host_qemu_cpu_s": None if record.qemu_cpu_s is None else round(record.qemu_cpu_s, 2),
        "samples": {
            "host": sum(1 for p in record.series if p.source is Source.HOST),
            "guest": sum(1 for p in record.series if p.source is Source.GUEST),
        },
        "phases": phases,
    }


def shadow_run(
    settings: Settings,
    profile: str,
    *,
    connect: Connect,
    progress: Progress | None = None,
    phases: list[PhaseSpec] | None = None,
    deadline_s: float | None = None,
    image: str = BUILTIN,
) -> dict[str, Any]:
    """Boot a shadow, run ``profile``, destroy the shadow; returns the report document.

    ``connect`` opens libvirt at ``settings.libvirt_uri``; ``deadline_s`` bounds the
    whole run (a phase that would end past it is cut short with ``ShadowAborted``);
    ``image`` names a store image whose own OS the shadow boots (see
    ``shadow.targetos``), or ``builtin``.
    """
    cb = progress or Progress()
    if phases is None:
        if profile not in PROFILES:
            raise ConfigError("profile", f"unknown profile {profile!r}; known: {sorted(PROFILES)}")
        phases = PROFILES[profile]()
    started = time.monotonic()
    deadline = started + deadline_s if deadline_s else None
    builtin = require_image(settings)
    options = session_options(settings)
    size = options["size"]
    with connect(settings.libvirt_uri) as hv:
        reaped = reap_orphans(hv, settings.runs_dir)
        if reaped:
            cb.stage(f"destroyed {len(reaped)} shadow(s) left by a crashed run")
        cb.stage("choosing the accelerator")
        choice = accelerator_for(hv, builtin, settings)
        cb.stage(choice.reason)
        booted = shadow_image_for(settings, builtin, image)
        cb.stage("booting the shadow" if image == BUILTIN else f"booting the OS of image {image}")
        with ShadowSession(
            hv,
            booted,
            settings.runs_dir,
            accelerator=choice.accelerator,
            **options,
            on_point=cb.point,
        ) as session:
            ready = session.record.timings.agent_ready_s
            cb.stage(f"agent ready after {ready:.1f} s; {session.record.boot_text()}")
            used = session.record.shadow_os
            if used is not None and used.used == "builtin":
                cb.stage(f"built-in OS instead of image {used.image}'s: {used.reason}")
            profile_started = time.monotonic()
            run_profile(
                session,
                [phases],
                session.record.series,
                shadow_vcpus=size.vcpus,
                deadline=deadline,
                hooks=ProfileHooks(phase_started=cb.phase_started, phase_done=cb.phase_done),
            )
            profile_s = time.monotonic() - profile_started
        record = session.record
    return _report(record, profile, choice, size, profile_s, time.monotonic() - started)
