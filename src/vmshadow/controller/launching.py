"""The launching step: the decided size goes live.

A launch places the VM for its final size (moving the pending VM when its
host has no room for it), then starts it; a resize applies the size where the
VM runs, live when libvirt can. Either way the transition moves to
``running`` only after libvirt did it, so a crash in between repeats the step,
and every call it makes is idempotent.

A pre-booted launch (``controller.preboot``) is resumed instead: the decided
size is applied while it is still paused, then it runs; ``running`` follows
the resume at once, and the guest's side (hot-added vCPUs online, its clock)
and the shadow's teardown come after. A decision the pre-booted VM cannot
take live (past its maxima) stops it and boots it cold, as without pre-boot.
When the decision arrives while the shadow still runs, the engine resumes the
VM from a thread of its own (``launch_early``): the shadow's teardown, in
the transition's worker, does not delay it.
"""

from __future__ import annotations

import logging
import threading
import time

from vmshadow.controller import placing, preboot
from vmshadow.controller.context import Context
from vmshadow.controller.detection import is_adopted
from vmshadow.controller.steps import define_pending, destroy_shadows_of
from vmshadow.domain.allocation import Allocation, with_burst
from vmshadow.domain.errors import VmshadowError
from vmshadow.domain.transition import Transition, TransitionKind, TransitionState
from vmshadow.domain.vm import ResizeMode
from vmshadow.hypervisor.support import LiveSize
from vmshadow.store.base import alloc_text
from vmshadow.store.repository import now, row_allocation

log = logging.getLogger(__name__)
S = TransitionState


def final_allocation(ctx: Context, row: Transition) -> Allocation | None:
    """The decided size, with the burst over its IOPS cap that the prediction
    recommended (``domain.allocation.with_burst``): the store keeps the rate."""
    final = row_allocation(row.final_vcpus, row.final_memory_mib, row.final_iops)
    if final is None or final.iops is None:
        return final
    pred = ctx.store.latest_prediction(row.id)
    return with_burst(final, pred.detail.get("iops_bucket")) if pred else final


def launch(ctx: Context, row: Transition) -> bool:
    final = final_allocation(ctx, row)
    assert final is not None, "launching without a final allocation"
    if row.kind == TransitionKind.LAUNCH.value:
        resumed = resume_prebooted(ctx, row, final)
        if resumed is not None:
            if row.shadow_host is not None or row.vm_host is None:
                destroy_shadows_of(ctx.hypervisor(row.shadow_host), row.id, ctx)
            return resumed
    if row.shadow_host is not None or row.vm_host is None:
        destroy_shadows_of(ctx.hypervisor(row.shadow_host), row.id, ctx)
    if row.kind == TransitionKind.LAUNCH.value:
        hv = ctx.hypervisor(row.vm_host)
        if not hv.is_running(row.vm_name):
            # An adopted domain starts where its user defined it.
            moved = row if is_adopted(row) else _move_for_launch(ctx, row, final)
            if moved is None:
                return False  # no host has room yet: it waits, and says so
            row = moved
            hv = ctx.hypervisor(row.vm_host)
            define_pending(ctx, hv, row, final)
            placing.hold_or_stop(ctx, row.id)  # the fence: start once, by the lease holder
            hv.start_full_vm(row.vm_name)
        where = f" on {row.vm_host}" if row.vm_host and len(ctx.pool.names) > 1 else ""
        msg = f"VM {row.vm_name} started{where} with {alloc_text(final)}"
    else:
        hv = ctx.hypervisor(row.vm_host)
        resize = hv.resize_adopted if is_adopted(row) else hv.apply_resize
        mode = resize(row.vm_name, final)
        msg = f"VM {row.vm_name} resized to {alloc_text(final)} ({_resize_words(mode)})"
    return (
        ctx.store.advance(
            row.id, S.RUNNING, msg, expect=[S.LAUNCHING], vm_started=True, running_since=now()
        )
        is not None
    )


def _move_for_launch(ctx: Context, row: Transition, final: Allocation) -> Transition | None:
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


def resume_prebooted(ctx: Context, row: Transition, final: Allocation) -> bool | None:
    """Launch the pre-booted VM by resuming it at ``final``: True when it runs (or
    the launch was done meanwhile), None when there is none to resume (never
    pre-booted, or stopped here because ``final`` is past its maxima)."""
    hv = ctx.hypervisor(row.vm_host)
    preboot.stop_watch(row.id)
    with preboot.lock_for(row.id):
        row = ctx.store.get(row.id)
        if row.state != S.LAUNCHING.value:
            return True  # launched by the other path (the worker, or launch_early)
        size = preboot.prebooted(hv, row)
        if size is None:
            return None
        if not preboot.fits(size, final):
            hv.power_off_full_vm(row.vm_name)
            ctx.store.add_event(
                row.id,
                "warning",
                f"{alloc_text(final)} is not what pre-booted VM {row.vm_name} can take live "
                f"({size.vcpus} to {size.max_vcpus} vCPU, at most {size.max_memory_mib} MiB): "
                "it was stopped and is started again cold at the decided size",
            )
            return None
        placing.hold_or_stop(ctx, row.id)  # the fence: resume once, by the lease holder
        t0 = time.monotonic()
        hv.set_live_size(row.vm_name, final)
        hv.resume_full_vm(row.vm_name)
        took = time.monotonic() - t0
        done = ctx.store.advance(
            row.id,
            S.RUNNING,
            f"VM {row.vm_name} started with {alloc_text(final)}",
            expect=[S.LAUNCHING],
            vm_started=True,
            running_since=now(),
        )
    if done is None:
        return False
    _after_resume(ctx, row, final, size, took)
    return True


def _after_resume(
    ctx: Context, row: Transition, final: Allocation, size: LiveSize, took: float
) -> None:
    """The guest's side of the resume, once ``running`` is recorded: hot-added
    vCPUs online (through its agent) and its clock, which stood still while paused."""
    hv = ctx.hypervisor(row.vm_host)
    notes = [f"resumed the pre-booted VM in {took:.2f} s"]
    try:
        if final.vcpus > size.vcpus:
            hv.online_guest_vcpus(row.vm_name, final.vcpus)
            notes.append(f"{final.vcpus - size.vcpus} hot-added vCPU brought online")
        how = hv.sync_guest_clock(row.vm_name)
        notes.append(f"clock synced by its {how}" if how else "clock not synced (no agent)")
    except VmshadowError as exc:
        notes.append(f"guest not adjusted: {exc}")
    ctx.store.add_event(row.id, "info", "; ".join(notes))


_early: dict[str, threading.Thread] = {}
_early_lock = threading.Lock()


def launch_early(ctx: Context, row: Transition) -> None:
    """Resume a pre-booted VM confirmed while its transition's worker is still
    tearing the shadow down, from a thread of its own (once per transition).
    Anything it cannot do is left to the worker's launching step."""
    final = final_allocation(ctx, row)
    if final is None or not ctx.settings.launch.preboot:
        return

    def go() -> None:
        try:
            resume_prebooted(ctx, row, final)
        except (VmshadowError, placing.LeaseLost) as exc:
            log.info("transition %s: early resume left to the worker: %s", row.id, exc)
        except Exception:  # a thread of its own: nobody else would see it
            log.exception("transition %s: early resume failed", row.id)

    with _early_lock:
        if row.id in _early:
            return  # once: the engine asks at every pass while the worker is busy
        if len(_early) > 1000:  # finished ones, kept so they are not started again
            for tid in [t for t, th in _early.items() if not th.is_alive()]:
                del _early[tid]
        thread = threading.Thread(target=go, name=f"resume-{row.id}", daemon=True)
        _early[row.id] = thread
    thread.start()
