"""The controller: finds transitions that need work and drives each on its own thread.

Why threads and not asyncio: everything a step waits on is blocking (libvirt,
the agent's channel, SQLAlchemy), and a transition spends minutes in a handful
of calls; a thread per active transition (shadows bounded by a semaphore)
keeps each step plain sequential code that reads like the lifecycle.
Requests written into libvirt domains become transitions in each pass too
(``controller.detection``).

Crash safety: each transition is leased to one controller (renewed while a
worker holds it); state is persisted before it is acted on; on start-up the
controller reaps shadows whose owner died and removes pending VMs of
transitions that ended before their VM was launched. A transition that was
mid-step resumes at the start of that step.

Several controllers (on PostgreSQL) share the work: each pass claims free or
expired transitions with ``SELECT ... FOR UPDATE SKIP LOCKED``
(``store.fleet.claim``), so no two drive one transition; a controller that
dies loses its leases when they expire and another takes over. A worker
whose renewal fails (it stalled, and another took over) stops, and the one
act that must never repeat, starting the VM, is fenced by a lease check.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

from vmshadow.config import Settings
from vmshadow.controller import launching, observing, placing, policy, preboot, schedule, steps
from vmshadow.controller.context import Context, ShadowSessionFactory
from vmshadow.controller.detection import Detector, removable
from vmshadow.domain.errors import ConflictError, NotFoundError, StoreError, VmshadowError
from vmshadow.domain.prediction import Predictor
from vmshadow.domain.transition import TERMINAL, Transition, TransitionState
from vmshadow.hypervisor.pool import HostPool, pool_from_settings
from vmshadow.hypervisor.port import Host
from vmshadow.predict.choice import LivePredictor
from vmshadow.shadow.accelerator import accelerator_for
from vmshadow.shadow.reaper import pid_alive, reap_orphans
from vmshadow.shadow.session import ShadowSession, require_image
from vmshadow.store import fleet
from vmshadow.store.repository import Store, now

log = logging.getLogger(__name__)
S = TransitionState

_STEPS: dict[TransitionState, Callable[[Context, object], bool]] = {
    S.REQUESTED: steps.start,  # type: ignore[dict-item]
    S.SHADOWING: steps.shadow_and_predict,  # type: ignore[dict-item]
    S.PROFILING: steps.shadow_and_predict,  # type: ignore[dict-item]
    S.LAUNCHING: launching.launch,  # type: ignore[dict-item]
    S.RUNNING: observing.observe,  # type: ignore[dict-item]
}
_SHADOW_STATES = frozenset({S.REQUESTED, S.SHADOWING, S.PROFILING})

# The shortest time between two passes of the loop when workers wake it.
MIN_PASS_GAP_S = 0.05


class Controller:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        predictor: Predictor | None = None,
        pool: HostPool | None = None,
        shadow_session: ShadowSessionFactory = ShadowSession,
    ) -> None:
        self.settings = settings
        self.store = store
        self._predictor = predictor or LivePredictor(settings)
        self.pool = pool or pool_from_settings(settings)
        # What a step boots its shadow with; set before ``start`` to replace it.
        self.shadow_session = shadow_session
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._workers: dict[str, threading.Thread] = {}
        self._shadow_workers: set[str] = set()  # workers admitted to boot a shadow
        self._swept_at = -math.inf  # time.monotonic() of the last sweep
        self._admission = threading.Lock()
        self._shadow_capacity = settings.controller.max_shadows * len(self.pool.names)
        self._thread: threading.Thread | None = None
        self.ctx: Context | None = None
        self.detector: Detector | None = None  # requests found in libvirt domains
        self.wake = threading.Event()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        image = require_image(self.settings)
        # One accelerator for the pool, probed on its first host: hosts of one
        # pool are expected to be alike in this (all KVM, or all TCG).
        with self._hv() as hv:
            choice = accelerator_for(hv, image, self.settings)
        log.info("accelerator: %s", choice.reason)
        self.ctx = Context(
            settings=self.settings,
            store=self.store,
            image=image,
            accelerator=choice.accelerator,
            predictor=self._predictor,
            owner=self.owner,
            pool=self.pool,
            # Per host the store's bookings bound the shadows; this bounds the
            # threads one process runs shadows in.
            shadow_slots=threading.BoundedSemaphore(self._shadow_capacity),
            shadow_session=self.shadow_session,
        )
        self.reconcile()
        self.detector = Detector(self.ctx, self.wake)
        self.detector.start()
        self._thread = threading.Thread(target=self._loop, name="controller", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        if self.ctx is None:
            return
        self.ctx.stop.set()
        self.wake.set()
        if self.detector is not None:
            self.detector.stop()
        if self._thread is not None:
            self._thread.join(timeout)
        for t in list(self._workers.values()):
            t.join(timeout)

    def _hv(self, host: str | None = None) -> Host:
        return self.pool.connect(host)

    # -- reconciliation --------------------------------------------------------------------
    def reconcile(self) -> None:
        """After a crash: no shadow outlives its owner, no pending VM its transition."""
        fleet.release_dead_owners(self.store, socket.gethostname(), pid_alive)
        for host in self.pool.names:
            try:
                hv = self._hv(host)
                for name in reap_orphans(hv, self.settings.runs_dir):
                    log.warning("reaped %s on %s, left by a process that died", name, host)
            except VmshadowError as exc:
                log.warning("cannot reconcile host %s: %s", host, exc)
        self.sweep()
        # Undecided launches nobody refines any more: their pending VM is
        # pre-booted, or paused at guest ready, as if no restart had happened.
        assert self.ctx is not None
        preboot.converge(self.ctx)

    def sweep(self) -> None:
        """Remove what ended transitions left: shadows, and VMs never launched."""
        assert self.ctx is not None
        # An adopted domain is the user's: detection releases it, nothing removes it.
        ended = list(filter(removable, self.store.list_transitions(states=TERMINAL, limit=500)))
        fleet.release_stale_shadows(self.store)
        for host in self.pool.names:
            try:
                self._sweep_host(host)
            except VmshadowError as exc:
                log.warning("cannot sweep host %s: %s", host, exc)
        for row in ended:
            if self._busy(row.id) or not self.store.take_lease(
                row.id, self.owner, self.settings.controller.lease_s
            ):
                continue
            try:
                hv = self._hv(row.vm_host)
                info = hv.full_vm_info(row.vm_name)
                # Only the VM this transition defined: a later transition may
                # already have defined its own under the same name.
                if info is not None and info.get("transition_id") == row.id:
                    hv.remove_full_vm(row.vm_name)
                self.store.update_fields(row.id, vm_defined=False)
                self.store.add_event(
                    row.id, "info", f"pending VM {row.vm_name} removed ({row.state})"
                )
            except VmshadowError as exc:
                self.store.add_event(row.id, "error", f"could not remove {row.vm_name}: {exc}")
            finally:
                self.store.release_lease(row.id, self.owner)

    def _sweep_host(self, host: str) -> None:
        """Shadows of ended transitions, and pending VMs left on a host their
        transition moved away from (a crash between the move's two steps)."""
        assert self.ctx is not None
        hv = self._hv(host)
        for tid in {m.transition_id for _n, m in hv.list_shadows() if m.transition_id}:
            if self._busy(tid):
                continue
            try:
                row = self.store.get(tid)
            except NotFoundError:  # a shadow of a transition this database never had
                continue
            if TransitionState(row.state).terminal:
                steps.destroy_shadows_of(hv, tid, self.ctx)
        vms = [
            (name, meta.transition_id)
            for name, meta in hv.list_managed_vms()
            if meta.transition_id is not None and not self._busy(meta.transition_id)
        ]
        # One query for all of them: a SELECT per VM, every pass, was a large
        # share of the controller's time with 1,000 VMs on a host.
        rows = self.store.get_many(tid for _n, tid in vms)
        for name, tid in vms:
            vm = rows.get(tid)
            if vm is None:
                continue
            stray = vm.vm_host is not None and vm.vm_host != host and not vm.vm_started
            if stray and not hv.is_running(name):
                hv.remove_full_vm(name)
                self.store.add_event(vm.id, "info", f"pending VM {name} removed from {host}")

    # -- the loop ----------------------------------------------------------------------------
    def _busy(self, tid: str) -> bool:
        t = self._workers.get(tid)
        return t is not None and t.is_alive()

    def _loop(self) -> None:
        assert self.ctx is not None
        while not self.ctx.stop.is_set():
            started = time.monotonic()
            try:
                self.tick()
            except Exception:  # the loop must outlive any one bad pass
                log.exception("controller pass failed")
            self.wake.wait(self.settings.controller.poll_s)
            self.wake.clear()
            # A worker wakes the loop at each state change it makes: with hundreds
            # of transitions moving, passes (each reading every unfinished
            # transition) ran back to back and took the CPU the API needed.
            gap = min(MIN_PASS_GAP_S, self.settings.controller.poll_s)
            self.ctx.stop.wait(max(0.0, started + gap - time.monotonic()))

    def tick(self) -> None:
        assert self.ctx is not None
        candidates: list[str] = []
        # Only as many transitions that need a shadow as there are free slots:
        # a worker per waiting transition (each polling the store, each with a
        # lease to renew) is what made 1,000 concurrent requests collapse, and
        # unclaimed ones stay free for another controller with room.
        with self._admission:
            self._shadow_workers = {t for t in self._shadow_workers if self._busy(t)}
            shadow_room = self._shadow_capacity - len(self._shadow_workers)
        needs_shadow: set[str] = set()
        if self.detector is not None:
            self.detector.tick(self._busy)
        for row in self.store.unfinished():
            try:
                state = self._consider(row)
            except Exception as exc:  # one bad row fails its transition, never the pass
                self._fail_row(row.id, exc)
                continue
            if state is None:
                continue
            if state in _SHADOW_STATES:
                if shadow_room <= 0:
                    continue
                shadow_room -= 1
                needs_shadow.add(row.id)
            candidates.append(row.id)
        # Those no other controller drives or is claiming this instant.
        for tid in fleet.claim(
            self.store, candidates, self.owner, self.settings.controller.lease_s
        ):
            self.ctx.lost.discard(tid)
            worker = threading.Thread(
                target=self._drive, args=(tid,), name=f"transition-{tid}", daemon=True
            )
            self._workers[tid] = worker
            if tid in needs_shadow:
                with self._admission:
                    self._shadow_workers.add(tid)
            worker.start()
        self._workers = {k: t for k, t in self._workers.items() if t.is_alive()}
        # At most one sweep per poll period: it lists every domain of every host
        # (11 % of the service's CPU at 300 concurrent transitions, sweeping at
        # every pass). What it removes can wait a second.
        if time.monotonic() - self._swept_at >= self.settings.controller.poll_s:
            self._swept_at = time.monotonic()
            self.sweep()

    def _consider(self, row: Transition) -> TransitionState | None:
        """The state a worker should drive ``row`` from, or None when it waits
        (or was dealt with here: a fast launch confirmed, a decision expired)."""
        assert self.ctx is not None
        state = TransitionState(row.state)
        if state is S.PREDICTED:
            if policy.auto_confirm(self.ctx, row):
                return None
            if not row.fast_launch:
                self._expire_decision(row)
            elif not self._busy(row.id) and self.store.latest_prediction(row.id) is not None:
                # Fast launch chosen while the shadow was already finishing.
                with contextlib.suppress(ConflictError):
                    steps.confirm_fast(self.ctx, row.id)
            return None
        if state is S.LAUNCHING and row.id in self._shadow_workers and self._busy(row.id):
            # Confirmed while its worker still tears the shadow down: a
            # pre-booted VM is resumed now, not after the teardown.
            launching.launch_early(self.ctx, row)
            return None
        if state not in _STEPS or self._busy(row.id):
            return None
        if state is S.REQUESTED and not steps.due(self.ctx, row):
            return None
        return state

    def _expire_decision(self, row: Transition) -> None:
        """An undecided prediction holds its VM's room on a host: after
        ``decision_timeout_s`` it is cancelled, as a user's cancel would."""
        deadline = schedule.decision_deadline(row, self.settings.controller)
        if deadline is None or now() < deadline:
            return
        reason = schedule.decision_timeout_reason(self.settings.controller)
        note = f"{reason}; the shadow and the pending VM are being removed"
        if self.store.advance(row.id, S.CANCELLED, note, expect=[S.PREDICTED], reason=reason):
            log.info("transition %s: %s", row.id, reason)
            self._swept_at = -math.inf  # its pending VM goes in this pass's sweep

    def _fail_row(self, tid: str, exc: Exception) -> None:
        if isinstance(exc, VmshadowError):
            reason = str(exc)
            log.warning("transition %s: %s", tid, reason)
        else:
            reason = f"internal error: {type(exc).__name__}: {exc}"
            log.exception("transition %s: internal error", tid)
        try:
            self._fail(tid, reason)
        except Exception:  # e.g. a state no code knows: logged, and the pass goes on
            log.exception("transition %s: cannot record its failure", tid)

    def _drive(self, tid: str) -> None:
        assert self.ctx is not None
        ctx = self.ctx
        renew = threading.Event()
        keeper = threading.Thread(target=self._keep_lease, args=(tid, renew), daemon=True)
        keeper.start()
        first_state: str | None = None
        try:
            while not ctx.stop.is_set():
                row = self.store.get(tid)
                first_state = first_state or row.state
                if TransitionState(row.state) not in _SHADOW_STATES:
                    # Past its shadow (a fast launch or a decision made while it
                    # went, then the launch and observation): the slot is free.
                    with self._admission:
                        self._shadow_workers.discard(tid)
                step = _STEPS.get(TransitionState(row.state))
                if step is None or not step(ctx, row):
                    break
        except (steps.Cancelled, placing.LeaseLost):
            pass  # cancelled, or another controller drives it now
        except StoreError as exc:  # the operator's to fix, not the request's: logged
            log.error("transition %s: %s", tid, exc)
            self._fail(tid, str(exc))
        except VmshadowError as exc:
            self._fail(tid, str(exc))
        except Exception as exc:  # a bug must fail its transition, not hang it
            log.exception("transition %s: internal error", tid)
            self._fail(tid, f"internal error: {type(exc).__name__}: {exc}")
        finally:
            renew.set()
            keeper.join(5)
            self.store.release_lease(tid, self.owner)
            # Cleanup and the next state without waiting a poll; but one that
            # only waits (no host has room yet) is retried at the next poll, not
            # at once: that was a busy loop at 100 % CPU.
            with contextlib.suppress(VmshadowError):
                if self.store.get(tid).state != first_state:
                    self.wake.set()

    def _keep_lease(self, tid: str, done: threading.Event) -> None:
        period = self.settings.controller.lease_s / 3
        while not done.wait(period):
            try:
                held = fleet.hold(self.store, tid, self.owner, self.settings.controller.lease_s)
            except Exception:  # the database away for a moment: try again next period
                log.exception("transition %s: lease renewal failed", tid)
                continue
            if not held:
                assert self.ctx is not None
                log.warning("transition %s: another controller took it over; stopping", tid)
                self.ctx.lost.add(tid)
                return

    def _fail(self, tid: str, reason: str) -> None:
        row = self.store.get(tid)
        if TransitionState(row.state).terminal:
            return
        assert self.ctx is not None
        if tid in self.ctx.lost:
            return  # not ours to fail: the controller that took it over decides
        self.store.advance(tid, S.FAILED, f"failed: {reason}", reason=reason)
        steps.destroy_shadows_of(self._hv(row.shadow_host), tid, self.ctx)
