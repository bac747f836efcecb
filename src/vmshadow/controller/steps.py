"""One step per state: each persists the state it moves to before acting on it,
and each can run again after a crash (every libvirt call it makes is idempotent:
define by name and transition, start if not running, destroy if present).

A step returns True when it moved the transition on and the worker should look
again, False when the transition waits (for its schedule, or for the user).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from statistics import median
from typing import Any

from vmshadow.agent.phasespec import PhaseSpec
from vmshadow.controller import placing
from vmshadow.controller.context import Context, full_vm_spec
from vmshadow.controller.realized import MAX_SAMPLES, points_of
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.errors import ShadowAborted
from vmshadow.domain.prediction import Prediction, requirement_of
from vmshadow.domain.ramp import ramp_saturated
from vmshadow.domain.samples import UsagePoint
from vmshadow.domain.transition import Decision, TransitionKind, TransitionState
from vmshadow.domain.vm import ResizeMode
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor
from vmshadow.predict.history import shadow_summary
from vmshadow.shadow.hostsampler import host_point
from vmshadow.shadow.session import ShadowSession
from vmshadow.store.models import HistoryRow, TransitionRow
from vmshadow.store.repository import aware, now, row_allocation
from vmshadow.workloads.catalog import SMOKE, check_profile, phases_for, ramp_plan

log = logging.getLogger(__name__)
S = TransitionState
FLUSH_EVERY_S = 1.0


class Cancelled(Exception):
    """The transition left the state this step drives (cancelled, or moved on)."""


def lead_time_s(ctx: Context) -> float:
    """How early to start a scheduled transition so the prediction is ready on time."""
    recent = ctx.store.recent_time_to_prediction()
    if not recent:
        return ctx.settings.controller.default_lead_s
    # Half again the typical time, and never less than the slowest recent one.
    return max(median(recent) * 1.5, max(recent))


def due(ctx: Context, row: TransitionRow) -> bool:
    at = aware(row.scheduled_at)
    return at is None or now() >= at - timedelta(seconds=lead_time_s(ctx))


def profile_steps(ctx: Context, profile: str, load: float | None) -> list[list[PhaseSpec]]:
    """The shadow's work: one step for smoke, a ramp of loads for a workload profile."""
    duration = ctx.settings.controller.phase_s
    if profile == SMOKE:
        return [phases_for(SMOKE, duration_s=duration)]
    prof = check_profile(profile, load)
    assert prof is not None
    return ramp_plan(prof, duration_s=duration, shadow_memory_mib=ctx.settings.shadow.memory_mib)


# -- requested -------------------------------------------------------------------------
def start(ctx: Context, row: TransitionRow) -> bool:
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


def _still(ctx: Context, tid: str, *states: TransitionState) -> TransitionRow:
    row = ctx.store.get(tid)
    if TransitionState(row.state) not in states or ctx.stop.is_set() or tid in ctx.lost:
        raise Cancelled(row.state)
    return row


def _host_cpus(hv: LibvirtHypervisor) -> int:
    return int(hv.host_resources()["cpus"])


def _define_pending(ctx: Context, hv: LibvirtHypervisor, row: TransitionRow, a: Allocation) -> None:
    if row.kind != TransitionKind.LAUNCH.value:
        return
    if not row.vm_defined:
        # Persisted first: if we die mid-define, cleanup knows the VM may exist.
        ctx.store.update_fields(row.id, vm_defined=True)
    hv.define_full_vm(full_vm_spec(ctx, row, a, _host_cpus(hv)))


def shadow_and_predict(ctx: Context, row: TransitionRow) -> bool:
    """Boot the shadow, profile, predict, then refine while the user decides."""
    requested = Allocation(row.req_vcpus, row.req_memory_mib, row.req_iops)
    phases = profile_steps(ctx, row.profile, row.load)
    rec = _Recorder(ctx, row.id)
    vm_hv = ctx.hypervisor(row.vm_host)
    with ctx.hypervisor(row.shadow_host) as hv:
        # We hold the lease: any shadow of this transition is a dead controller's.
        destroy_shadows_of(hv, row.id, ctx)
        if row.kind == TransitionKind.LAUNCH.value and row.state == S.SHADOWING.value:
            _define_pending(ctx, vm_hv, row, requested)
            ctx.store.add_event(
                row.id, "info", f"pending VM {row.vm_name} defined (not started) as requested"
            )
        if row.state != S.SHADOWING.value:
            ctx.store.add_event(row.id, "info", "controller restarted: profiling again")
        _acquire_slot(ctx, row.id)
        booting = TransitionState(row.state)
        try:
            with ShadowSession(
                hv,
                ctx.image,
                ctx.settings.runs_dir,
                accelerator=ctx.accelerator,
                hello_timeout_s=ctx.settings.shadow.hello_timeout_s,
                sample_interval_s=ctx.settings.shadow.sample_interval_s,
                scratch_cache=ctx.settings.shadow.scratch_cache,
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
                    f"({ctx.accelerator.value}); profiling {row.profile}",
                    expect=[S.SHADOWING],
                )
                _still(ctx, row.id, S.PROFILING)
                _profile_round(ctx, session, rec, phases, row.id, S.PROFILING)
                first = _predict(ctx, vm_hv, rec, row.id)
                row = ctx.store.advance(
                    row.id,
                    S.PREDICTED,
                    f"predicted: {_alloc(first.recommended)} ({first.label})",
                    expect=[S.PROFILING],
                    predicted_at=now(),
                ) or _raise_cancelled(ctx, row.id)
                try:
                    if row.fast_launch:
                        confirm_fast(ctx, row.id)
                        return True
                    for n in range(ctx.settings.controller.refine_rounds):
                        rec.run = n + 1
                        _still(ctx, row.id, S.PREDICTED)
                        _profile_round(ctx, session, rec, phases, row.id, S.PREDICTED)
                        _still(ctx, row.id, S.PREDICTED)
                        p = _predict(ctx, vm_hv, rec, row.id)
                        ctx.store.add_event(
                            row.id,
                            "info",
                            f"prediction refined (round {n + 2}): {_alloc(p.recommended)}",
                        )
                finally:
                    # The launch (fast, or decided meanwhile) waits on this teardown,
                    # and the domain is destroyed next anyway: no polite stop (<= 3 s).
                    session.close(polite=False)
        except Cancelled:
            return True
        finally:
            rec.flush()
            ctx.shadow_slots.release()
            # The shadow is gone (the session closed it): its host has the room back.
            ctx.store.update_fields(row.id, shadow_live=False)
    if ctx.store.get(row.id).state != S.PREDICTED.value:
        return True  # decided while the shadow went: on to the next step at once
    ctx.store.add_event(row.id, "info", "shadow destroyed; waiting for a decision")
    return False


def _raise_cancelled(ctx: Context, tid: str) -> TransitionRow:
    raise Cancelled(ctx.store.get(tid).state)


def _acquire_slot(ctx: Context, tid: str) -> None:
    waited = False
    while not ctx.shadow_slots.acquire(timeout=1.0):
        if not waited:
            ctx.store.add_event(tid, "info", "waiting for a free shadow slot on this host")
            waited = True
        _still(ctx, tid, S.SHADOWING, S.PROFILING)


def _profile_round(
    ctx: Context,
    session: ShadowSession,
    rec: _Recorder,
    steps: list[list[PhaseSpec]],
    tid: str,
    state: TransitionState,
) -> None:
    for n, phases in enumerate(steps):
        for spec in phases:
            _still(ctx, tid, state)
            try:
                session.run_phase(spec)
            except ShadowAborted:
                _still(ctx, tid, state)
                raise
            rec.flush()
        if len(steps) > 1 and ramp_saturated(
            rec.points, [p.phase_id for p in phases], ctx.settings.shadow.vcpus
        ):
            ctx.store.add_event(tid, "info", f"ramp step {n} saturated the shadow: ramp ends")
            return


def _predict(ctx: Context, hv: LibvirtHypervisor, rec: _Recorder, tid: str) -> Prediction:
    row = ctx.store.get(tid)
    points = [p for p in rec.points if p.phase_id is not None]
    requested = Allocation(row.req_vcpus, row.req_memory_mib, row.req_iops)
    p = ctx.predictor.predict(points, profile=row.profile, load=row.load, target=requested)
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
        _define_pending(ctx, hv, row, p.recommended)
        ctx.store.add_event(
            tid, "info", f"pending VM {row.vm_name} redefined: {_alloc(p.recommended)}"
        )
    log.info("transition %s: prediction %d %s", tid, pid, _alloc(p.recommended))
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


# -- launching -------------------------------------------------------------------------
def launch(ctx: Context, row: TransitionRow) -> bool:
    final = row_allocation(row.final_vcpus, row.final_memory_mib, row.final_iops)
    assert final is not None, "launching without a final allocation"
    if row.shadow_host is not None or row.vm_host is None:
        destroy_shadows_of(ctx.hypervisor(row.shadow_host), row.id, ctx)
    if row.kind == TransitionKind.LAUNCH.value:
        hv = ctx.hypervisor(row.vm_host)
        if not hv.is_running(row.vm_name):
            moved = _move_for_launch(ctx, row, final)
            if moved is None:
                return False  # no host has room yet: it waits, and says so
            row = moved
            hv = ctx.hypervisor(row.vm_host)
            _define_pending(ctx, hv, row, final)
            placing.hold_or_stop(ctx, row.id)  # the fence: start once, by the lease holder
            hv.start_full_vm(row.vm_name)
        where = f" on {row.vm_host}" if row.vm_host and len(ctx.pool.names) > 1 else ""
        msg = f"VM {row.vm_name} started{where} with {_alloc(final)}"
    else:
        mode = ctx.hypervisor(row.vm_host).apply_resize(row.vm_name, final)
        msg = f"VM {row.vm_name} resized to {_alloc(final)} ({_resize_words(mode)})"
    return (
        ctx.store.advance(
            row.id, S.RUNNING, msg, expect=[S.LAUNCHING], vm_started=True, running_since=now()
        )
        is not None
    )


def _move_for_launch(ctx: Context, row: TransitionRow, final: Allocation) -> TransitionRow | None:
    """Place the VM for its final size; if that is another host, the new host is
    recorded first, then the pending VM leaves the old one (a crash in between
    leaves a stray the sweep removes)."""
    choice = placing.place_for_launch(ctx, row, final)
    if choice is None:
        return None
    old = row.vm_host
    if old is not None and old != choice.host:
        info = ctx.hypervisor(old).full_vm_info(row.vm_name)
        if info is not None and info.get("transition_id") == row.id and not info["running"]:
            ctx.hypervisor(old).remove_full_vm(row.vm_name)
            ctx.store.add_event(row.id, "info", f"pending VM {row.vm_name} removed from {old}")
    return ctx.store.get(row.id)


def _resize_words(mode: ResizeMode) -> str:
    return {
        ResizeMode.LIVE: "applied live",
        ResizeMode.RESTART: "applied to the configuration and restarted",
        ResizeMode.OFFLINE: "applied to the configuration; the VM was not running",
    }[mode]


def destroy_shadows_of(hv: LibvirtHypervisor, tid: str, ctx: Context) -> list[str]:
    import shutil

    gone = []
    for name, meta in hv.list_shadows():
        if meta.transition_id == tid:
            hv.destroy(name)
            if meta.run_dir:
                shutil.rmtree(meta.run_dir, ignore_errors=True)
            gone.append(name)
    return gone


# -- running ---------------------------------------------------------------------------
def observe(ctx: Context, row: TransitionRow) -> bool:
    """Watch the launched VM from the host for the observation window."""
    since = aware(row.running_since) or now()
    until = since + timedelta(seconds=ctx.settings.controller.observe_s)
    interval = ctx.settings.shadow.sample_interval_s
    t0 = time.monotonic() - (now() - since).total_seconds()
    with ctx.hypervisor(row.vm_host) as hv:
        prev = hv.counters(row.vm_name)
        while now() < until:
            if ctx.stop.wait(interval):
                return False
            state = ctx.store.get(row.id).state
            if state != S.RUNNING.value:
                return True
            cur = hv.counters(row.vm_name)
            if cur is None:
                ctx.store.add_event(row.id, "warning", f"VM {row.vm_name} is not running")
                break
            if prev is not None:
                p = host_point(prev, cur, t0=t0, phase_id=None)
                if p is not None:
                    ctx.store.add_samples(row.id, "vm", 0, [p])
            prev = cur
    _complete(ctx, ctx.store.get(row.id), since)
    return True


def _complete(ctx: Context, row: TransitionRow, since: object) -> None:
    points = points_of(ctx.store.samples(row.id, target="vm", limit=MAX_SAMPLES))
    observed = requirement_of(points)
    pred = ctx.store.latest_prediction(row.id)
    final = row_allocation(row.final_vcpus, row.final_memory_mib, row.final_iops)
    # The shadow's own run (the round the prediction came from), summarised as
    # a model learns from it, so that this record trains the next model.
    shadow_rows = ctx.store.samples(row.id, target="shadow", limit=MAX_SAMPLES)
    last_round = max((s.run for s in shadow_rows), default=0)
    shadow_points = [
        p
        for p in points_of([s for s in shadow_rows if s.run == last_round])
        if p.phase_id is not None
    ]
    shadow_size = Allocation(ctx.settings.shadow.vcpus, ctx.settings.shadow.memory_mib)
    shadow_doc: dict[str, Any] = (
        shadow_summary(shadow_points, shadow_size)
        if shadow_points
        else {"vcpus": shadow_size.vcpus, "memory_mib": shadow_size.memory_mib}
    )
    shadow_doc.update(
        predicted=pred.detail.get("need") if pred else None,
        method=pred.method if pred else None,
    )
    ctx.store.add_history(
        HistoryRow(
            transition_id=row.id,
            created_at=now(),
            source="vmshadow",
            job=f"{row.profile}@{row.load}" if row.load is not None else row.profile,
            profile=row.profile,
            load=row.load,
            shadow=shadow_doc,
            target=final.as_dict() if final else {},
            observed=observed.as_dict(),
            observed_s=len(points) * ctx.settings.shadow.sample_interval_s,
        )
    )
    ctx.store.advance(
        row.id,
        S.COMPLETED,
        f"observed {len(points)} samples: P95 {observed.vcpus:.2f} vCPU, "
        f"peak {observed.memory_mib:.0f} MiB, P95 {observed.iops:.0f} IOPS; history recorded",
        expect=[S.RUNNING],
    )


def _alloc(a: Allocation) -> str:
    return f"{a.vcpus} vCPU, {a.memory_mib} MiB" + (f", {a.iops} IOPS" if a.iops else "")
