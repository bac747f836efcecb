"""The launching step: the decided size goes live.

A launch places the VM for its final size (moving the pending VM when its
host has no room for it), then starts it; a resize applies the size where the
VM runs, live when libvirt can. Either way the transition moves to
``running`` only after libvirt did it, so a crash in between repeats the step,
and every call it makes is idempotent.
"""

from __future__ import annotations

from vmshadow.controller import placing
from vmshadow.controller.context import Context
from vmshadow.controller.steps import define_pending, destroy_shadows_of
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.transition import TransitionKind, TransitionState
from vmshadow.domain.vm import ResizeMode
from vmshadow.store.base import alloc_text
from vmshadow.store.models import TransitionRow
from vmshadow.store.repository import now, row_allocation

S = TransitionState


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
            define_pending(ctx, hv, row, final)
            placing.hold_or_stop(ctx, row.id)  # the fence: start once, by the lease holder
            hv.start_full_vm(row.vm_name)
        where = f" on {row.vm_host}" if row.vm_host and len(ctx.pool.names) > 1 else ""
        msg = f"VM {row.vm_name} started{where} with {alloc_text(final)}"
    else:
        mode = ctx.hypervisor(row.vm_host).apply_resize(row.vm_name, final)
        msg = f"VM {row.vm_name} resized to {alloc_text(final)} ({_resize_words(mode)})"
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
