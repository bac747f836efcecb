"""The running step: watch the launched VM, then record what it really used.

For the observation window the VM's counters are sampled from the host (no
agent runs in a user's VM); at its end the observed need is compared with the
prediction and written as a history record, the data the next model trains on.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from vmshadow.controller.context import Context
from vmshadow.controller.guestready import GuestReadyWatch
from vmshadow.controller.realized import MAX_SAMPLES, points_of
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.history import LaunchRecord
from vmshadow.domain.prediction import requirement_of
from vmshadow.domain.samples import UsagePoint
from vmshadow.domain.shadow import IDLE_PHASE_ID
from vmshadow.domain.transition import Transition, TransitionState
from vmshadow.predict.history import shadow_summary
from vmshadow.shadow.hostsampler import host_point
from vmshadow.store.repository import aware, now, row_allocation

S = TransitionState


def observe(ctx: Context, row: Transition) -> bool:
    """Watch the launched VM from the host for the observation window."""
    since = aware(row.running_since) or now()
    until = since + timedelta(seconds=ctx.settings.controller.observe_s)
    interval = ctx.settings.shadow.sample_interval_s
    t0 = time.monotonic() - (now() - since).total_seconds()
    ready = GuestReadyWatch(ctx, row, started_at=t0)
    with ctx.hypervisor(row.vm_host) as hv:
        prev = hv.counters(row.vm_name)
        # The window is at least as long as the wait for the guest: "guest
        # ready" is said while the transition still runs, never after it ended.
        while now() < until or not ready.done:
            if ctx.stop.wait(interval):
                return False
            state = ctx.store.get(row.id).state
            if state != S.RUNNING.value:
                return True
            ready.poll(hv)
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


def _complete(ctx: Context, row: Transition, since: object) -> None:
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
        # The OS at rest is not the profile: a model learns the profile's cost.
        if p.phase_id is not None and p.phase_id != IDLE_PHASE_ID
    ]
    shadow_size = Allocation(ctx.settings.shadow.vcpus, ctx.settings.shadow.memory_mib)
    shadow_doc: dict[str, Any] = (
        shadow_summary(shadow_points, shadow_size)
        if shadow_points
        else {"vcpus": shadow_size.vcpus, "memory_mib": shadow_size.memory_mib}
    )
    # The ramp's *uncorrected* extrapolation and the engine that answered: the
    # learned correction (``predict.correction``) learns how far the ramp is
    # from what was realized, never from its own corrected answers.
    said: dict[str, Any] = dict(pred.detail) if pred else {}
    shadow_doc.update(
        predicted=said.get("need"),
        method=pred.method if pred else None,
        engine=said.get("engine") or (pred.method if pred else None),
        extrapolated=said.get("extrapolated"),
        beyond_ramp=said.get("beyond_ramp"),
    )
    ctx.store.add_history(
        LaunchRecord(
            transition_id=row.id,
            job=f"{row.profile}@{row.load}" if row.load is not None else row.profile,
            profile=row.profile,
            load=row.load,
            shadow=shadow_doc,
            target=final,
            observed=observed,
            observed_s=_span_s(points, ctx.settings.shadow.sample_interval_s),
        )
    )
    ctx.store.advance(
        row.id,
        S.COMPLETED,
        f"observed {len(points)} samples: P95 {observed.vcpus:.2f} vCPU, "
        f"peak {observed.memory_mib:.0f} MiB, P95 {observed.iops:.0f} IOPS; history recorded",
        expect=[S.RUNNING],
    )


def _span_s(points: Sequence[UsagePoint], interval_s: float) -> float:
    """Seconds observed, from the samples' own times (a count times the
    interval is wrong once samples go missing or the interval changes)."""
    if not points:
        return 0.0
    times = [p.t for p in points]
    return max(times) - min(times) + interval_s
