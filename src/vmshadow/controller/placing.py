"""Placing a transition on the host pool: the shadow when it starts, the full VM
when it launches. The rules are ``domain.placement``; this module reads the
hosts from libvirt, the bookings from the store, and writes the choice with
its reason under the store's placement lock (``store.fleet.place``).
"""

from __future__ import annotations

from dataclasses import replace

from vmshadow.controller.context import Context
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.errors import ConflictError, VmshadowError
from vmshadow.domain.placement import (
    Holding,
    HostCapacity,
    NoRoom,
    Placement,
    bookings,
    capacities,
    place_shadow,
    place_vm,
)
from vmshadow.domain.transition import Transition, TransitionKind, TransitionState
from vmshadow.store import fleet
from vmshadow.store.repository import now

S = TransitionState


class LeaseLost(Exception):
    """Another controller drives this transition now: stop without touching it."""


def shadow_size(ctx: Context) -> Allocation:
    return Allocation(ctx.settings.shadow.vcpus, ctx.settings.shadow.memory_mib)


def _booked(
    ctx: Context, hosts: list[HostCapacity], held: list[Holding], tid: str
) -> list[HostCapacity]:
    held = _with_preboots(ctx, held)
    # Names, not vmshadow's metadata: a launched VM books its room while a
    # domain of its name exists on its host (listing 1,000 VMs' metadata per
    # placement was 9 % of the controller's CPU at 1,000 transitions).
    present = ctx.pool.domain_names()
    return capacities(hosts, bookings(held, present, shadow_size(ctx)), exclude=tid)


def _with_preboots(ctx: Context, held: list[Holding]) -> list[Holding]:
    """A pre-booted pending VM holds what it booted with (its maxima: QEMU may
    have touched that much memory before the balloon), not only the requested
    size its record books until the decision. Read from libvirt, and only for
    undecided launches: one lookup each, at placement only."""
    if not ctx.settings.launch.preboot:
        return held
    waiting = [h for h in held if h.active and not h.vm_started and h.vm_host is not None]
    rows = ctx.store.get_many(h.transition_id for h in waiting)
    out = []
    for h in held:
        r = rows.get(h.transition_id)
        if r is None or r.state not in (S.PREDICTED.value, S.LAUNCHING.value):
            out.append(h)
            continue
        try:
            info = ctx.hypervisor(h.vm_host).full_vm_info(h.vm_name)
        except VmshadowError:
            info = None
        if info is None or not info["running"] or info.get("transition_id") != r.id:
            out.append(h)
            continue
        out.append(
            replace(
                h,
                vm_vcpus=max(h.vm_vcpus, int(str(info["vcpus"]))),
                vm_memory_mib=max(h.vm_memory_mib, int(str(info["max_memory_mib"]))),
            )
        )
    return out


def preboot_shortfall(ctx: Context, row: Transition, size: Allocation) -> str | None:
    """Why the VM's host has no room to pre-boot it at ``size`` (its maxima),
    None when it has: the record books the requested size, which may be less."""
    hosts = ctx.pool.capacities()
    why: list[str] = []

    def decide(r: Transition, held: list[Holding]) -> fleet.Change | None:
        here = [h for h in _booked(ctx, hosts, held, r.id) if h.name == r.vm_host]
        if not here:
            why.append(f"its host {r.vm_host} is not in the pool")
        elif (short := here[0].shortfall(size)) is not None:
            why.append(
                f"{here[0].name} has no room for {size.vcpus} vCPU, "
                f"{size.memory_mib} MiB ({short})"
            )
        return None  # a check under the placement lock: nothing to write

    fleet.place(ctx.store, row.id, ctx.owner, decide)
    return why[0] if why else None


def note_waiting(ctx: Context, tid: str, reason: str) -> None:
    """Say why it waits, once (a controller retries every poll)."""
    events = ctx.store.events(tid)
    if not events or events[-1].message != reason:
        ctx.store.add_event(tid, "info", reason)


def start_shadowing(ctx: Context, row: Transition, note: str) -> bool:
    """requested -> shadowing on a host with room for the shadow, the pending VM
    booked where it would go today. False (and a note) when no host has room."""
    hosts = ctx.pool.capacities()
    waiting: list[str] = []

    def decide(r: Transition, held: list[Holding]) -> fleet.Change | None:
        if r.state != S.REQUESTED.value:
            return None
        booked = _booked(ctx, hosts, held, r.id)
        prefer = r.vm_host if r.kind == TransitionKind.RESIZE.value else None
        shadow = place_shadow(
            booked, shadow_size(ctx), max_shadows=ctx.settings.controller.max_shadows, prefer=prefer
        )
        if isinstance(shadow, NoRoom):
            waiting.append(f"waiting: {shadow.reason}")
            return None
        fields: dict[str, object] = {
            "shadow_host": shadow.host,
            "shadow_live": True,
            "shadow_started_at": now(),
        }
        msg = f"shadowing {shadow.reason}"
        if r.kind == TransitionKind.LAUNCH.value:
            vm = place_vm(booked, fleet.vm_allocation(r), shadow_host=shadow.host)
            if isinstance(vm, NoRoom):
                waiting.append(f"waiting: {vm.reason}")
                return None
            fields.update(vm_host=vm.host, placement=vm.reason)
            if vm.host != shadow.host:
                msg += f"; pending VM {vm.reason}"
        return fleet.Change(msg + note, fields, to=S.SHADOWING)

    done = fleet.place(ctx.store, row.id, ctx.owner, decide)
    if done is None and waiting:
        note_waiting(ctx, row.id, waiting[0])
    return done is not None


def place_for_launch(ctx: Context, row: Transition, final: Allocation) -> Placement | None:
    """Where the VM starts with its final size: its shadow's host when it fits,
    else the freest host with the same CPU model. Records a change of host
    (before the VM is moved) and returns the placement; None when no host has
    room now (the transition waits, with a note). Raises ConflictError when no
    host could ever hold it."""
    hosts = ctx.pool.capacities()
    result: list[Placement | NoRoom] = []

    def decide(r: Transition, held: list[Holding]) -> fleet.Change | None:
        if r.state != S.LAUNCHING.value:
            raise LeaseLost(r.state)
        choice = place_vm(_booked(ctx, hosts, held, r.id), final, shadow_host=r.shadow_host)
        result.append(choice)
        if isinstance(choice, NoRoom):
            return None
        return fleet.Change(
            f"VM {r.vm_name} placed {choice.reason}",
            {"vm_host": choice.host, "placement": choice.reason},
        )

    if fleet.place(ctx.store, row.id, ctx.owner, decide) is None:
        if result and isinstance(result[0], NoRoom) and result[0].never:
            # Waiting cannot help: fail now, with why (the sweep removes the pending VM).
            raise ConflictError(result[0].reason)
        if result and isinstance(result[0], NoRoom):
            note_waiting(ctx, row.id, f"waiting: {result[0].reason}")
            return None
        raise LeaseLost(row.id)
    choice = result[0]
    assert isinstance(choice, Placement)
    return choice


def hold_or_stop(ctx: Context, tid: str) -> None:
    """The fence before an act that must happen once (starting the VM): we must
    still hold the lease, renewed for the time the act takes."""
    if not fleet.hold(ctx.store, tid, ctx.owner, ctx.settings.controller.lease_s):
        ctx.lost.add(tid)
        raise LeaseLost(tid)
