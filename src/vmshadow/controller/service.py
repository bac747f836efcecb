"""The operations a user asks for (API, CLI, web UI), checked before they are stored.

Nothing here changes libvirt: the service validates, records the intent with
a compare-and-set, and wakes the controller, which acts. So two confirms at
once launch one VM, and a crash between "recorded" and "done" is resumed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from vmshadow.config import Settings
from vmshadow.controller import preboot
from vmshadow.controller.guestopts import GuestRequest, resolve_guest
from vmshadow.controller.policy import FAST, parse_policy, prediction_of
from vmshadow.controller.schedule import check_scheduled_at
from vmshadow.controller.views import hosts_view, transition_view
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.errors import (
    ConfigError,
    ConflictError,
    InputErrors,
    NotFoundError,
    RiskNotAcknowledged,
    VmshadowError,
)
from vmshadow.domain.prediction import StoredPrediction, override_findings
from vmshadow.domain.transition import Decision, Transition, TransitionKind, TransitionState
from vmshadow.domain.vm import GuestSetup, validate_vm_name
from vmshadow.hypervisor.pool import HostPool, pool_from_settings
from vmshadow.hypervisor.port import Host
from vmshadow.image.userstore import BUILTIN, check_image_name, resolve_user_image
from vmshadow.store.bundle import TransitionBundle
from vmshadow.store.repository import Store
from vmshadow.workloads.catalog import check_profile, profile_names

S = TransitionState
# The smallest size a request may ask for: a stand-in for the resource not being checked.
_MIN_VCPUS, _MIN_MEMORY_MIB = 1, 128


@dataclass(frozen=True)
class NewTransition:
    kind: TransitionKind
    vm_name: str
    profile: str
    requested: Allocation | None  # None for a resize: keep the VM's current size as the ask
    image: str = "builtin"
    load: float | None = None
    scheduled_at: datetime | None = None
    fast_launch: bool = False
    guest: GuestRequest = field(default_factory=GuestRequest)
    policy: str = "manual"  # manual | auto-within:PCT | fast (controller.policy)


class TransitionService:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        pool: HostPool | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.pool = pool or pool_from_settings(settings)
        self._on_change = on_change or (lambda: None)

    def _hv(self, host: str | None = None) -> Host:
        return self.pool.connect(host)

    def _largest_host(self) -> dict[str, int]:
        """Sizes are checked against the largest host of the pool: a VM no host
        can ever hold is refused at once; one that fits later waits for room."""
        best: dict[str, int] | None = None
        for name in self.pool.names:
            try:
                res = self._hv(name).host_resources()
            except VmshadowError:
                continue
            size = (res["cpus"], res["memory_mib"])
            if best is None or size > (best["cpus"], best["memory_mib"]):
                best = res
        if best is None:
            return self._hv().host_resources()  # raises the first host's error
        return best

    def hosts(self) -> list[dict[str, Any]]:
        """Each host of the pool: what libvirt reports, what vmshadow has booked there."""
        return hosts_view(self.settings, self.store, self.pool)

    # -- create ----------------------------------------------------------------------------
    def create(self, req: NewTransition) -> Transition:
        host = self._largest_host()
        problems, scheduled, guest = self._input_problems(req, host)
        if len(problems) > 1:
            # A form marks every field in one go; one problem is answered alone.
            raise InputErrors(problems)
        if problems:
            raise problems[0]
        # A quick refusal before any libvirt call; the store checks again atomically.
        active = self.store.count_unfinished()
        if active >= self.settings.quotas.max_active_transitions:
            raise ConflictError(
                f"{active} transitions are unfinished, the quota is "
                f"{self.settings.quotas.max_active_transitions}: wait or cancel some"
            )
        previous: Allocation | None = None
        found_on = self.pool.find_vm(req.vm_name)
        with self._hv(found_on) as hv:
            if req.kind is TransitionKind.LAUNCH:
                if found_on is not None:
                    where = "this host" if len(self.pool.names) == 1 else f"host {found_on}"
                    raise ConflictError(
                        f"vm_name: a domain named {req.vm_name!r} already exists on {where}"
                    )
                if (self.settings.vms_dir / req.vm_name).exists():
                    # Never adopted: a disk planted there would become this VM's.
                    raise ConflictError(
                        f"vm_name: the folder {self.settings.vms_dir / req.vm_name} already "
                        "exists (a VM removed without its disks?): move it away or choose "
                        "another name"
                    )
            else:
                managed = {name for name, _meta in hv.list_managed_vms()}
                if req.vm_name not in managed:
                    raise NotFoundError(
                        f"vm_name: {req.vm_name!r} is not a VM vmshadow manages on this host"
                    )
                info = hv.full_vm_info(req.vm_name) or {}
                iops = info.get("iops")
                previous = Allocation(
                    vcpus=int(str(info.get("vcpus", 1))),
                    memory_mib=int(str(info.get("memory_mib", 512))),
                    iops=int(str(iops)) if iops else None,
                )
        requested = req.requested or previous
        assert requested is not None
        if req.requested is None:  # a resize keeps the VM's size: checked like an asked one
            self.check_size(requested, host)
        # A resize happens where the VM is; recorded before anyone places it.
        host_of_vm = found_on if req.kind is TransitionKind.RESIZE else None
        row = self.store.create_transition(
            kind=req.kind,
            vm_name=req.vm_name,
            profile=req.profile,
            requested=requested,
            image=req.image,
            load=req.load,
            scheduled_at=scheduled,
            # fast_launch: true and policy fast are one (the flag came first).
            fast_launch=req.fast_launch or parse_policy(req.policy).kind == FAST,
            policy=FAST if req.fast_launch else str(parse_policy(req.policy)),
            previous=previous,
            max_active=self.settings.quotas.max_active_transitions,
            guest=guest.as_dict() if guest is not None else None,
        )
        if host_of_vm is not None:
            self.store.update_fields(row.id, vm_host=host_of_vm)
            row = self.store.get(row.id)
        self._on_change()
        return row

    def _input_problems(
        self, req: NewTransition, host: dict[str, int]
    ) -> tuple[list[ConfigError], datetime | None, GuestSetup | None]:
        """Every input error of ``req`` in the order ``create`` reports them, and
        its ``scheduled_at`` in UTC. Only the input: a name already taken or a VM
        that is not managed depend on the hosts, and stay ``create``'s (409, 404)."""
        found: list[ConfigError] = []

        def check(fn: Callable[[], object]) -> None:
            try:
                fn()
            except ConfigError as exc:
                found.append(exc)

        def profile() -> None:
            # Names only: a path here would let an API caller make the service read files.
            if req.profile not in profile_names():
                raise ConfigError(
                    "profile", f"unknown profile {req.profile!r}; known: {profile_names()}"
                )
            check_profile(req.profile, req.load)

        def image() -> None:
            if check_image_name(req.image) != BUILTIN:
                # A store name, checked with its whole backing chain: never a host path.
                resolve_user_image(self.settings.user_images_dir, req.image)

        def load() -> None:
            if req.load is not None and not 0 < req.load < 1e9:
                raise ConfigError("load", "must be a positive number")

        guest: list[GuestSetup | None] = [None]

        def guest_setup() -> None:
            guest[0] = resolve_guest(
                self.settings, req.image, req.guest, lambda: self._hv().networks()
            )

        check(lambda: validate_vm_name(req.vm_name))
        check(profile)
        check(image)
        check(load)
        check(lambda: parse_policy(req.policy))
        if req.kind is TransitionKind.LAUNCH:
            check(guest_setup)
        elif req.guest.given():
            found.append(ConfigError(req.guest.given()[0], "a resize keeps the VM's set-up"))
        scheduled: datetime | None = None
        try:
            scheduled = check_scheduled_at(
                req.scheduled_at, self.settings.controller, datetime.now(UTC)
            )
        except ConfigError as exc:
            found.append(exc)
        if req.kind is TransitionKind.LAUNCH and req.requested is None:
            found.append(ConfigError("requested", "a launch needs a requested size"))
        if req.requested is not None:
            size = req.requested
            # check_size stops at vCPUs; each resource checked with the other at its
            # minimum reports both when both are too large.
            check(lambda: self.check_size(Allocation(size.vcpus, _MIN_MEMORY_MIB), host))
            check(lambda: self.check_size(Allocation(_MIN_VCPUS, size.memory_mib), host))
        return found, scheduled, guest[0]

    def check_size(self, a: Allocation, host: dict[str, int] | None = None) -> None:
        q = self.settings.quotas
        if a.vcpus > q.max_vcpus:
            raise ConfigError("vcpus", f"{a.vcpus} is above the quota of {q.max_vcpus}")
        if a.memory_mib > q.max_memory_mib:
            raise ConfigError(
                "memory_mib", f"{a.memory_mib} MiB is above the quota of {q.max_memory_mib} MiB"
            )
        if host is None:
            host = self._largest_host()
        if a.vcpus > host["cpus"]:
            raise ConfigError("vcpus", f"{a.vcpus} is more than the host's {host['cpus']} CPUs")
        if a.memory_mib > host["memory_mib"]:
            raise ConfigError(
                "memory_mib",
                f"{a.memory_mib} MiB is more than the host's {host['memory_mib']} MiB",
            )

    # -- decide ----------------------------------------------------------------------------
    def _prediction(self, tid: str) -> tuple[Transition, StoredPrediction]:
        row = self.store.get(tid)
        pred = self.store.latest_prediction(tid)
        if row.state != S.PREDICTED.value or pred is None:
            if row.decision:
                raise ConflictError(f"transition {tid} was already confirmed ({row.decision})")
            raise ConflictError(
                f"transition {tid} is {row.state}: there is no prediction to confirm"
            )
        return row, pred

    def _check_recommendation(self, rec: Allocation) -> None:
        """A recommendation no host could hold (or above a quota) is refused at
        confirmation rather than left waiting for room that never comes."""
        try:
            self.check_size(rec)
        except ConfigError as exc:
            raise ConfigError(
                exc.field,
                f"the recommendation cannot launch: {exc.reason}; override with a size that fits",
            ) from exc

    def confirm(self, tid: str) -> Transition:
        row, pred = self._prediction(tid)
        self._check_recommendation(Allocation(pred.rec_vcpus, pred.rec_memory_mib, pred.rec_iops))
        out = self.store.confirm(
            tid,
            decision=Decision.PREDICTION,
            allocation=Allocation(pred.rec_vcpus, pred.rec_memory_mib, pred.rec_iops),
            prediction_id=pred.id,
            warnings=[],
            risk_acknowledged=False,
            resize_mode=row.resize_mode,
        )
        self._on_change()
        return out

    def review_override(self, tid: str, chosen: Allocation) -> dict[str, Any]:
        """The warnings an override would get, and how a resize would be applied."""
        row, pred = self._prediction(tid)
        self.check_size(chosen)
        findings = override_findings(prediction_of(pred), chosen)
        warnings: list[dict[str, str]] = [f.as_dict() for f in findings]
        mode = None
        pre = None
        if row.kind == TransitionKind.RESIZE.value:
            with self._hv(row.vm_host) as hv:
                mode = hv.resize_mode(row.vm_name, chosen).value
        else:
            pre = preboot.safe_view(self._hv, row)
            restart = preboot.restart_warning(pre, chosen)
            if restart is not None:
                warnings.append(restart)
        return {
            "warnings": warnings,
            "needs_acknowledgement": any(f.severity == "under-provisioned" for f in findings),
            "resize_mode": mode,
            "preboot": pre,
            "needs_restart": any(w["severity"] == "needs-restart" for w in warnings),
        }

    def override(self, tid: str, chosen: Allocation, *, acknowledge_risk: bool) -> Transition:
        review = self.review_override(tid, chosen)
        if review["needs_acknowledgement"] and not acknowledge_risk:
            raise RiskNotAcknowledged([w["message"] for w in review["warnings"]])
        pred = self.store.latest_prediction(tid)
        out = self.store.confirm(
            tid,
            decision=Decision.OVERRIDE,
            allocation=chosen,
            prediction_id=pred.id if pred else None,
            warnings=review["warnings"],
            risk_acknowledged=acknowledge_risk and review["needs_acknowledgement"],
            resize_mode=review["resize_mode"],
        )
        self._on_change()
        return out

    def fast_launch(self, tid: str) -> Transition:
        row = self.store.get(tid)
        state = TransitionState(row.state)
        if state is S.PREDICTED:
            pred = self.store.latest_prediction(tid)
            assert pred is not None
            self._check_recommendation(
                Allocation(pred.rec_vcpus, pred.rec_memory_mib, pred.rec_iops)
            )
            out = self.store.confirm(
                tid,
                decision=Decision.FAST_LAUNCH,
                allocation=Allocation(pred.rec_vcpus, pred.rec_memory_mib, pred.rec_iops),
                prediction_id=pred.id,
                warnings=[],
                risk_acknowledged=False,
                resize_mode=row.resize_mode,
            )
        elif state in (S.REQUESTED, S.SHADOWING, S.PROFILING):
            if not self.store.update_fields(
                tid, expect=[S.REQUESTED, S.SHADOWING, S.PROFILING], fast_launch=True
            ):
                return self.fast_launch(tid)  # it just moved on; decide again
            self.store.add_event(tid, "info", "fast launch: will launch as soon as predicted")
            out = self.store.get(tid)
        else:
            raise ConflictError(f"transition {tid} is {row.state}: too late for a fast launch")
        self._on_change()
        return out

    def cancel(self, tid: str) -> Transition:
        row = self.store.get(tid)
        state = TransitionState(row.state)
        if state.terminal:
            raise ConflictError(f"transition {tid} is already {row.state}")
        if state is S.RUNNING:
            # The VM was launched and keeps running: only watching it ends, so
            # the transition is complete (with no history record), not cancelled.
            note = "observation stopped by the user; the VM keeps running"
            done = self.store.advance(tid, S.COMPLETED, note, expect=[state], reason="stopped")
        else:
            note = "cancelled: the shadow and the pending VM are being removed"
            done = self.store.advance(tid, S.CANCELLED, note, expect=[state], reason="cancelled")
        if done is None:
            return self.cancel(tid)  # it moved on meanwhile: cancel from where it is now
        self._on_change()
        return self.store.get(tid)

    # -- read ------------------------------------------------------------------------------
    def document(self, tid: str) -> dict[str, Any]:
        """``GET /transitions/{id}``: one statement, not a read of the row first."""
        return self.view(self.store.bundle(tid), with_events=True)

    def view(
        self, row: Transition | TransitionBundle, *, with_events: bool = False
    ) -> dict[str, Any]:
        """The transition as the API shows it (see ``controller.views``); one
        transition's own document also says what its pending VM is while the
        decision is awaited (asked of libvirt, so not for every row of a list)."""
        store = self.store
        if with_events:
            # What a polling client reads every second: one statement, not four.
            got = row if isinstance(row, TransitionBundle) else self.store.bundle(row.id)
            row, store = got.transition, cast(Store, got.reader(self.store))
        elif isinstance(row, TransitionBundle):
            row = row.transition
        out = transition_view(store, self.settings.controller, row, with_events=with_events)
        if with_events and row.state == S.PREDICTED.value:
            out["preboot"] = preboot.safe_view(self._hv, row)
        return out
