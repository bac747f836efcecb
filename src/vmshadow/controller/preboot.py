"""The pending VM booted while its user decides, paused at guest ready.

Once a launch has its first prediction (``launch.preboot``, on by default),
the pending VM is started at the recommended size with maxima that leave a
live override up to the requested size room (``max(requested,
recommended)``), watched until its guest is ready, then paused: a paused
QEMU costs no host CPU. Confirming then resumes it (``controller.launching``)
instead of booting it. The transition's state stays ``predicted`` throughout;
what is pre-booted is read from libvirt (the domain of this transition,
running or paused, never launched), so a restarted controller finds it as it
was. Cancel or an expired decision removes it like any pending VM (the sweep).

The watch is a thread of this process: it pauses the VM only while the
transition is still undecided, under the lock the launch takes, so a confirm
never finds its resumed VM paused behind it.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from vmshadow.controller import placing
from vmshadow.controller.context import Context, full_vm_spec
from vmshadow.domain.allocation import Allocation, with_burst
from vmshadow.domain.errors import VmshadowError
from vmshadow.domain.transition import Transition, TransitionKind, TransitionState
from vmshadow.hypervisor.port import Host
from vmshadow.hypervisor.support import LiveSize
from vmshadow.store.base import alloc_text

log = logging.getLogger(__name__)
S = TransitionState
POLL_S = 0.5
# Striped, not one per transition: a long-lived service would keep a lock per
# transition it ever saw. Two transitions sharing one only wait for each other.
_LOCKS = [threading.Lock() for _ in range(64)]
_watches: dict[str, _Watch] = {}
_registry = threading.Lock()


def lock_for(tid: str) -> threading.Lock:
    """Held while pausing the pre-booted VM, and while the launch resumes it."""
    return _LOCKS[hash(tid) % len(_LOCKS)]


def maxima(requested: Allocation, recommended: Allocation) -> Allocation:
    """What the pre-booted VM can take live: up to the requested size, or the
    recommendation when it is larger."""
    return Allocation(
        max(requested.vcpus, recommended.vcpus),
        max(requested.memory_mib, recommended.memory_mib),
    )


def fits(size: LiveSize, a: Allocation) -> bool:
    """``a`` can be given to the pre-booted VM live: within its maxima, and no
    fewer vCPUs than it runs (QEMU cannot take a vCPU back from a running guest:
    ``vcpu_unplug`` in hypervisor/support.py; seen: "failed to find appropriate
    hotpluggable vcpus")."""
    return size.vcpus <= a.vcpus <= size.max_vcpus and a.memory_mib <= size.max_memory_mib


def wanted(ctx: Context, row: Transition) -> bool:
    return (
        ctx.settings.launch.preboot
        and row.kind == TransitionKind.LAUNCH.value
        and not row.fast_launch
        and not row.vm_started
        and row.origin is None  # an adopted domain starts on the decision only (docs)
    )


def prebooted(hv: Host, row: Transition) -> LiveSize | None:
    """The pre-booted VM of ``row`` (running or paused, never launched), or None."""
    if row.kind != TransitionKind.LAUNCH.value or row.vm_started:
        return None
    info = hv.full_vm_info(row.vm_name)
    if info is None or not info["running"] or info.get("transition_id") != row.id:
        return None
    return hv.live_maxima(row.vm_name)


def start(ctx: Context, row: Transition, recommended: Allocation) -> None:
    """Boot the pending VM at ``recommended`` and watch it until it can be paused.
    Failing to pre-boot never fails the transition: the confirm boots it then."""
    if not wanted(ctx, row):
        return
    requested = Allocation(row.req_vcpus, row.req_memory_mib, row.req_iops)
    most = maxima(requested, recommended)
    hv = ctx.hypervisor(row.vm_host)
    try:
        if not hv.is_running(row.vm_name):
            why = placing.preboot_shortfall(ctx, row, most)
            if why is not None:
                ctx.store.add_event(row.id, "info", f"pending VM not pre-booted: {why}")
                return
            spec = full_vm_spec(ctx, row, recommended, int(hv.host_resources()["cpus"]))
            spec = dataclasses.replace(
                spec,
                max_vcpus=max(spec.max_vcpus, most.vcpus),
                max_memory_mib=most.memory_mib,
            )
            hv.define_full_vm(spec)
            hv.start_full_vm(row.vm_name)
    except VmshadowError as exc:
        ctx.store.add_event(row.id, "warning", f"pending VM not pre-booted: {exc}")
        return
    ctx.store.add_event(
        row.id,
        "info",
        f"pending VM {row.vm_name} pre-booting at {alloc_text(recommended)} (live up to "
        f"{most.vcpus} vCPU, {most.memory_mib} MiB) while the decision is awaited",
    )
    watch(ctx, row, time.monotonic())


def watch(ctx: Context, row: Transition, started_at: float) -> None:
    """Pause the running pre-booted VM once its guest is ready (one watch per transition)."""
    with _registry:
        w = _watches.get(row.id)
        if w is not None and w.is_alive():
            return
        w = _Watch(ctx, row.id, row.vm_host, row.vm_name, started_at)
        _watches[row.id] = w
    w.start()


def stop_watch(tid: str, timeout: float = 5.0) -> None:
    """The decision came: the watch must not pause the VM any more."""
    with _registry:
        w = _watches.get(tid)
    if w is not None:
        w.halt.set()
        if w is not threading.current_thread():
            w.join(timeout)


class _Watch(threading.Thread):
    def __init__(
        self, ctx: Context, tid: str, host: str | None, name: str, started_at: float
    ) -> None:
        super().__init__(name=f"preboot-{tid}", daemon=True)
        self.ctx, self.tid, self.host, self.vm_name = ctx, tid, host, name
        self.started_at = started_at
        self.halt = threading.Event()

    def run(self) -> None:
        try:
            self._watch()
        except VmshadowError as exc:  # the VM removed meanwhile (a cancel), the store away
            log.info("transition %s: pre-boot watch ends: %s", self.tid, exc)
        except Exception:  # a thread of its own: nobody else would see it
            log.exception("transition %s: pre-boot watch failed", self.tid)
        finally:
            with _registry:
                if _watches.get(self.tid) is self:
                    del _watches[self.tid]

    def _undecided(self) -> bool:
        if self.halt.is_set() or self.ctx.stop.is_set():
            return False
        return self.ctx.store.get(self.tid).state == S.PREDICTED.value

    def _watch(self) -> None:
        ctx = self.ctx
        hv = ctx.hypervisor(self.host)
        deadline = self.started_at + ctx.settings.vm.guest_ready_timeout_s
        while not self.halt.wait(POLL_S):
            if not self._undecided():
                return
            ready = hv.guest_booted(self.vm_name)
            late = time.monotonic() > deadline
            if ready is False and not late:
                continue
            with lock_for(self.tid):
                if not self._undecided():
                    return
                hv.pause_full_vm(self.vm_name)
            if ctx.store.get(self.tid).state != S.PREDICTED.value:
                # Decided by another controller between the check and the pause:
                # its launch may already have resumed the VM, so undo ours.
                hv.resume_full_vm(self.vm_name)
                return
            took = time.monotonic() - self.started_at
            if late and not ready:
                what, level = "its guest never said it was ready", "warning"
            elif ready is None:
                what, level = "this host cannot ask its guest", "info"
            else:
                what, level = "guest ready", "info"
            ctx.store.add_event(
                self.tid,
                level,
                f"pending VM {self.vm_name} pre-booted and paused {took:.1f} s after start "
                f"({what}); a confirm resumes it",
            )
            return


def converge(ctx: Context) -> None:
    """After a restart: an undecided launch's pending VM found running is watched
    (and paused at guest ready), one never pre-booted is pre-booted now."""
    if not ctx.settings.launch.preboot:
        return
    lease_s = ctx.settings.controller.lease_s
    for row in ctx.store.list_transitions(states=[S.PREDICTED], limit=500):
        if not wanted(ctx, row) or not row.vm_defined:
            continue
        if not ctx.store.take_lease(row.id, ctx.owner, lease_s):
            continue  # another controller drives it (its refining worker)
        try:
            _converge_one(ctx, row)
        except VmshadowError as exc:
            log.warning("transition %s: cannot resume its pre-boot: %s", row.id, exc)
        finally:
            ctx.store.release_lease(row.id, ctx.owner)


def _converge_one(ctx: Context, row: Transition) -> None:
    hv = ctx.hypervisor(row.vm_host)
    info = hv.full_vm_info(row.vm_name)
    if info is not None and info.get("transition_id") != row.id:
        return
    if info is not None and info["state"] == "paused":
        return
    if info is not None and info["running"]:
        ctx.store.add_event(
            row.id,
            "info",
            f"controller restarted: pre-booted VM {row.vm_name} is paused once its guest is ready",
        )
        watch(ctx, row, time.monotonic())
        return
    pred = ctx.store.latest_prediction(row.id)
    if pred is not None:
        rec = Allocation(pred.rec_vcpus, pred.rec_memory_mib, pred.rec_iops)
        start(ctx, row, with_burst(rec, pred.detail.get("iops_bucket")))


def view(hv: Host, row: Transition) -> dict[str, Any] | None:
    """What the pending VM is while the decision is awaited: ``booting``,
    ``paused`` or ``off`` (defined, not pre-booted), and how far it can grow live."""
    if row.kind != TransitionKind.LAUNCH.value or row.vm_started:
        return None
    info = hv.full_vm_info(row.vm_name)
    if info is None or info.get("transition_id") != row.id:
        return None
    state = "off"
    if info["running"]:
        state = "paused" if info["state"] == "paused" else "booting"
    return {
        "state": state,
        "vcpus": info["vcpus"],
        "memory_mib": info["memory_mib"],
        "max_vcpus": info["max_vcpus"],
        "max_memory_mib": info["max_memory_mib"],
    }


def safe_view(connect: Callable[[str | None], Host], row: Transition) -> dict[str, Any] | None:
    """``view``, or None when the VM's host cannot be asked: a document says
    nothing of the pre-boot rather than fail."""
    try:
        return view(connect(row.vm_host), row)
    except VmshadowError:
        return None


def restart_warning(pre: dict[str, Any] | None, chosen: Allocation) -> dict[str, str] | None:
    """The warning a size past the pre-booted VM's maxima gets before it is confirmed."""
    if pre is None or pre["state"] == "off":
        return None
    over = []
    if chosen.vcpus > int(pre["max_vcpus"]):
        over.append(f"{chosen.vcpus} vCPU > {pre['max_vcpus']}")
    if chosen.vcpus < int(pre["vcpus"]):
        over.append(
            f"{chosen.vcpus} vCPU < the {pre['vcpus']} it runs: vCPUs cannot be removed live"
        )
    if chosen.memory_mib > int(pre["max_memory_mib"]):
        over.append(f"{chosen.memory_mib} MiB > {pre['max_memory_mib']} MiB")
    if not over:
        return None
    vcpus_off = chosen.vcpus > int(pre["max_vcpus"]) or chosen.vcpus < int(pre["vcpus"])
    return {
        "resource": "vcpus" if vcpus_off else "memory_mib",
        "severity": "needs-restart",
        "message": (
            f"needs a restart: the pending VM is pre-booted with {pre['vcpus']} vCPU (at most "
            f"{pre['max_vcpus']}), at most {pre['max_memory_mib']} MiB ({', '.join(over)}); "
            "launching this size stops it and boots it again cold instead of resuming it"
        ),
    }
