"""One step per state: each persists the state it moves to before acting on it,
and each can run again after a crash (every libvirt call it makes is idempotent:
define by name and transition, start if not running, destroy if present).

A step returns True when it moved the transition on and the worker should look
again, False when the transition waits (for its schedule, or for the user).

Here: ``requested`` (start when due) and the shadow's states (``shadowing``,
``profiling``, ``predicted`` while it refines). ``launching`` is in
``controller.launching``, ``running`` in ``controller.observing``; the engine's
table maps each state to its step.
"""

from __future__ import annotations

import logging
import math
import threading
import time

from vmshadow.agent.phasespec import PhaseSpec
from vmshadow.controller import detection, placing, policy, preboot
from vmshadow.controller.context import Context, full_vm_spec, shadow_image_for
from vmshadow.controller.schedule import due, lead_s, lead_time_s
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.errors import ShadowAborted
from vmshadow.domain.prediction import Prediction, with_shadow_os
from vmshadow.domain.samples import UsagePoint
from vmshadow.domain.shadow import IDLE_PHASE_ID
from vmshadow.domain.transition import Decision, Transition, TransitionKind, TransitionState
from vmshadow.hypervisor.port import Host, Hypervisor
from vmshadow.image.files import ImageFiles
from vmshadow.shadow.admission import Admission, Reservation, lock_dir
from vmshadow.shadow.profiling import Adaptive, PhaseRun, ProfileHooks, run_profile, step_text
from vmshadow.shadow.session import ShadowRecord, ShadowSession, session_options
from vmshadow.store.base import alloc_text
from vmshadow.store.repository import now
from vmshadow.workloads.catalog import SMOKE, RampPlan, plan_for

log = logging.getLogger(__name__)
S = TransitionState
FLUSH_EVERY_S = 1.0
__all__ = ["due", "lead_s", "lead_time_s"]  # their home is controller.schedule


class Cancelled(Exception):
    """The transition left the state this step drives (cancelled, or moved on)."""


def profile_steps(ctx: Context, profile: str, load: float | None) -> RampPlan:
    """The shadow's work: one step for smoke, the steps of a workload profile
    planned around the expected load (``catalog.ramp_plan``)."""
    c, shadow = ctx.settings.controller, ctx.settings.shadow
    return plan_for(
        profile, load, duration_s=c.phase_s, shadow_memory_mib=shadow.memory_mib,
        shadow_vcpus=shadow.vcpus,
    )  # fmt: skip


# -- requested -------------------------------------------------------------------------
def start(ctx: Context, row: Transition) -> bool:
    if not due(ctx, row):
        return False
    note = ""
    if row.scheduled_at is not None:
        note = f", ahead of the schedule by {lead_time_s(ctx):.0f} s (lead time)"
    return placing.start_shadowing(ctx, row, note)


# -- shadowing, profiling, predicted (refining) ----------------------------------------
class _Recorder:
    """Buffers a session's points and writes them to the store about once a second."""

    def __init__(self, ctx: Context, tid: str) -> None:
        self.ctx, self.tid = ctx, tid
        self.run = 0
        self.points: list[UsagePoint] = []
        self._buffer: list[UsagePoint] = []
        self._lock = threading.Lock()
        self._last = time.monotonic()

    def __call__(self, p: UsagePoint) -> None:
        with self._lock:
            self.points.append(p)
            self._buffer.append(p)
            if time.monotonic() - self._last < FLUSH_EVERY_S:
                return
            batch, self._buffer = self._buffer, []
            self._last = time.monotonic()
        self.ctx.store.add_samples(self.tid, "shadow", self.run, batch)

    def flush(self) -> None:
        with self._lock:
            batch, self._buffer = self._buffer, []
        self.ctx.store.add_samples(self.tid, "shadow", self.run, batch)


def _still(ctx: Context, tid: str, *states: TransitionState) -> Transition:
    row = ctx.store.get(tid)
    if TransitionState(row.state) not in states or ctx.stop.is_set() or tid in ctx.lost:
        raise Cancelled(row.state)
    return row


def _host_cpus(hv: Host) -> int:
    return int(hv.host_resources()["cpus"])


def define_pending(ctx: Context, hv: Host, row: Transition, a: Allocation) -> bool:
    """Define (or redefine) the pending VM at ``a``; False when it was left as it
    is: a pre-booted VM keeps its definition until the decision."""
    if row.origin is not None:  # the user's own domain, sized in place (``detection``)
        return detection.size_pending(ctx, row, a)
    if row.kind != TransitionKind.LAUNCH.value:
        return False
    if row.vm_defined and not row.vm_started and hv.is_running(row.vm_name):
        # Pre-booted (``controller.preboot``): a running domain keeps its
        # definition; the decided size is applied live when it is confirmed.
        log.info("transition %s: %s is pre-booted; sized at confirm", row.id, row.vm_name)
        return False
    if not row.vm_defined:
        # Persisted first: if we die mid-define, cleanup knows the VM may exist.
        ctx.store.update_fields(row.id, vm_defined=True)
    hv.define_full_vm(full_vm_spec(ctx, row, a, _host_cpus(hv)))
    return True


def shadow_and_predict(ctx: Context, row: Transition) -> bool:
    """Boot the shadow, profile, predict, then refine while the user decides."""
    requested = Allocation(row.req_vcpus, row.req_memory_mib, row.req_iops)
    phases = profile_steps(ctx, row.profile, row.load)
    rec = _Recorder(ctx, row.id)
    vm_hv = ctx.hypervisor(row.vm_host)
    with ctx.hypervisor(row.shadow_host) as hv:
        # We hold the lease: any shadow of this transition is a dead controller's.
        destroy_shadows_of(hv, row.id, ctx)
        if row.kind == TransitionKind.LAUNCH.value and row.state == S.SHADOWING.value:
            define_pending(ctx, vm_hv, row, requested)
            ctx.store.add_event(
                row.id, "info", f"pending VM {row.vm_name} defined (not started) as requested"
            )
        if row.state != S.SHADOWING.value:
            ctx.store.add_event(row.id, "info", "controller restarted: profiling again")
        _acquire_slot(ctx, row.id)
        booting = TransitionState(row.state)
        try:
            with ctx.shadow_session(
                hv,
                shadow_image_of(ctx, row.image),
                ctx.settings.runs_dir,
                accelerator=ctx.accelerator,
                **session_options(ctx.settings),
                transition_id=row.id,
                on_point=rec,
                # Cancel (or a controller stop) during boot: stop waiting for the agent.
                abort=lambda: _still(ctx, row.id, booting),
            ) as session:
                ready = session.record.timings.agent_ready_s
                ctx.store.advance(
                    row.id,
                    S.PROFILING,
                    f"shadow {session.name} ready after {ready:.1f} s "
                    f"({ctx.accelerator.value}, {session.record.boot_text()}"
                    f"{shadow_os_text(session.record)}); "
                    f"profiling {row.profile}",
                    expect=[S.SHADOWING],
                )
                _still(ctx, row.id, S.PROFILING)
                _profile_round(ctx, session, rec, phases, row.id, S.PROFILING)
                first = _predict(ctx, vm_hv, rec, row.id, session.record)
                row = ctx.store.advance(
                    row.id,
                    S.PREDICTED,
                    f"predicted: {alloc_text(first.recommended)} ({first.label})",
                    expect=[S.PROFILING],
                    predicted_at=now(),
                ) or _raise_cancelled(ctx, row.id)
                try:
                    if row.fast_launch:
                        confirm_fast(ctx, row.id)
                        return True
                    preboot.start(ctx, row, first.recommended)
                    for n in range(ctx.settings.controller.refine_rounds):
                        rec.run = n + 1
                        _still(ctx, row.id, S.PREDICTED)
                        _profile_round(ctx, session, rec, phases, row.id, S.PREDICTED)
                        _still(ctx, row.id, S.PREDICTED)
                        p = _predict(ctx, vm_hv, rec, row.id, session.record)
                        ctx.store.add_event(
                            row.id,
                            "info",
                            f"prediction refined (round {n + 2}): {alloc_text(p.recommended)}",
                        )
                finally:
                    # The launch (fast, or decided meanwhile) waits on this teardown,
                    # and the domain is destroyed next anyway: no polite stop (<= 3 s).
                    session.close(polite=False)
        except Cancelled:
            return True
        finally:
            rec.flush()
            # A boot that failed or was cancelled never reached _profile_round:
            # its host-wide reservation would hold a slot for RESERVE_S.
            _release_reservation(tid=row.id)
            ctx.shadow_slots.release()
            # The shadow is gone (the session closed it): its host has the room back.
            ctx.store.update_fields(row.id, shadow_live=False)
    if ctx.store.get(row.id).state != S.PREDICTED.value:
        return True  # decided while the shadow went: on to the next step at once
    ctx.store.add_event(row.id, "info", "shadow destroyed; waiting for a decision")
    return False


def _raise_cancelled(ctx: Context, tid: str) -> Transition:
    raise Cancelled(ctx.store.get(tid).state)


# A transition's reservation of its host's shadow slot, until its shadow is up.
_reserved: dict[str, Reservation] = {}


def _release_reservation(tid: str) -> None:
    held = _reserved.pop(tid, None)
    if held is not None:
        held.release()


def _acquire_slot(ctx: Context, tid: str) -> None:
    """One of this controller's shadow slots, then one of the host's: the host
    counts its running shadows, whoever started them (``vmshadow plan`` too)."""
    waited = False
    while not ctx.shadow_slots.acquire(timeout=1.0):
        if not waited:
            ctx.store.add_event(tid, "info", "waiting for a free shadow slot on this host")
            waited = True
        _still(ctx, tid, S.SHADOWING, S.PROFILING)
    c = ctx.settings.controller
    hv = ctx.hypervisor(ctx.store.get(tid).shadow_host)

    def told(n: int) -> None:
        ctx.store.add_event(tid, "info", f"waiting for a free shadow slot: {n} in use")

    try:
        admission = Admission(hv, c.max_shadows, lock_dir(ctx.settings.runs_dir))
        _reserved[tid] = admission.wait(
            wait_s=math.inf,
            on_wait=told if not waited else lambda _n: None,
            check=lambda: _still(ctx, tid, S.SHADOWING, S.PROFILING),
        )
    except BaseException:
        # Not yet in shadow_and_predict's try: the slot is ours to give back.
        ctx.shadow_slots.release()
        raise


def _profile_round(
    ctx: Context,
    session: ShadowSession,
    rec: _Recorder,
    plan: RampPlan,
    tid: str,
    state: TransitionState,
) -> None:
    _release_reservation(tid)  # the shadow is up: the host counts it now
    loads = [s.load for s in [*plan.steps, *plan.fallback]]
    smoke = ctx.store.get(tid).profile == SMOKE

    def saturated(n: int) -> None:
        ctx.store.add_event(tid, "info", f"ramp step {n} saturated the shadow: ramp ends")

    def phase_started(_spec: PhaseSpec) -> None:
        # A cancel (or a decision) stops the profile before its next phase.
        _still(ctx, tid, state)

    def step_done(n: int, runs: list[PhaseRun]) -> None:
        # How long each phase ran and why: the time to an answer is this.
        load = None if smoke or n >= len(loads) else loads[n]
        ctx.store.add_event(tid, "info", step_text(load, runs))

    hooks = ProfileHooks(
        phase_started=phase_started,
        phase_done=lambda _spec: rec.flush(),
        saturated=saturated,
        step_done=lambda _n, runs: step_done(plan.index_of(runs), runs),
        note=lambda text: ctx.store.add_event(tid, "warning", text),
    )
    # Steal is read from this machine's counters: only for a shadow host that is it.
    host = ctx.store.get(tid).shadow_host
    hv_uri = ctx.pool.uri(host) if host else ctx.settings.libvirt_uri
    try:
        run_profile(
            session,
            plan.phases,
            rec.points,
            shadow_vcpus=ctx.settings.shadow.vcpus,
            hooks=hooks,
            adaptive=Adaptive.from_settings(ctx.settings.controller, hv_uri),
            fallback=plan.fallback_phases,
        )
    except ShadowAborted:
        # A phase cut short by a cancel is the cancel, not a failed shadow.
        _still(ctx, tid, state)
        raise


def shadow_image_of(ctx: Context, image: str) -> ImageFiles:
    """What the transition's shadow boots (``context.shadow_image_for``)."""
    return shadow_image_for(ctx.settings, ctx.image, image)


def shadow_os_text(record: ShadowRecord) -> str:
    """', image web-os' or ', built-in OS for image web-os: why': for the event
    that says the shadow is ready (empty for the built-in image)."""
    used = record.shadow_os
    if used is None:
        return ""
    if used.used == "target":
        idle = record.os_idle
        at_idle = f", at idle {idle.memory_mib:.0f} MiB, {idle.vcpus:.2f} vCPU" if idle else ""
        return f", OS of image {used.image}{at_idle}"
    return f", built-in OS: image {used.image} could not host the agent: {used.reason}"


def _predict(
    ctx: Context, hv: Host, rec: _Recorder, tid: str, record: ShadowRecord | None = None
) -> Prediction:
    row = ctx.store.get(tid)
    # The idle phase is the OS alone, no part of the workload: it enters below
    # as the floor of the need, not as a phase of the profile.
    points = [p for p in rec.points if p.phase_id not in (None, IDLE_PHASE_ID)]
    requested = Allocation(row.req_vcpus, row.req_memory_mib, row.req_iops)
    p = ctx.predictor.predict(points, profile=row.profile, load=row.load, target=requested)
    if record is not None:
        p = with_shadow_os(p, record.shadow_os, record.os_idle)
    extra: dict[str, object] = {}
    if row.kind == TransitionKind.RESIZE.value:
        mode = hv.resize_mode(row.vm_name, p.recommended)
        extra["resize_mode"] = mode.value
        ctx.store.update_fields(tid, resize_mode=mode.value)
    pid = ctx.store.add_prediction(
        tid,
        Prediction(**{**p.__dict__, "detail": {**p.detail, **extra, "round": rec.run}}),
    )
    if row.kind == TransitionKind.LAUNCH.value and row.state in (
        S.PROFILING.value,
        S.PREDICTED.value,
    ):
        if define_pending(ctx, hv, row, p.recommended):
            ctx.store.add_event(
                tid, "info", f"pending VM {row.vm_name} redefined: {alloc_text(p.recommended)}"
            )
        else:
            ctx.store.add_event(
                tid,
                "info",
                f"pending VM {row.vm_name} is running: the refined size "
                f"{alloc_text(p.recommended)} is applied when it is confirmed",
            )
    policy.on_first_prediction(ctx, row, p)
    log.info("transition %s: prediction %d %s", tid, pid, alloc_text(p.recommended))
    return p


def confirm_fast(ctx: Context, tid: str) -> None:
    latest = ctx.store.latest_prediction(tid)
    assert latest is not None, "fast launch before any prediction"
    ctx.store.confirm(
        tid,
        decision=Decision.FAST_LAUNCH,
        allocation=Allocation(latest.rec_vcpus, latest.rec_memory_mib, latest.rec_iops),
        prediction_id=latest.id,
        warnings=[],
        risk_acknowledged=False,
        resize_mode=ctx.store.get(tid).resize_mode,
    )


def destroy_shadows_of(hv: Hypervisor, tid: str, ctx: Context) -> list[str]:
    import shutil

    gone = []
    for name, meta in hv.list_shadows():
        if meta.transition_id == tid:
            hv.destroy(name)
            if meta.run_dir:
                shutil.rmtree(meta.run_dir, ignore_errors=True)
            gone.append(name)
    return gone
