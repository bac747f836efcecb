"""Detection: a libvirt domain that carries vmshadow's request element becomes a
transition, without any call to vmshadow's API.

A defined, stopped domain with the element is a launch whose pending VM *is*
that domain (adopted: sized in place, started on the decision); a running one
is a resize. One transition per domain at a time, keyed by host and domain
UUID (``detect_key``, unique in the store), so a restart or a second
controller on the same database never makes a second one.

Each pass per host (on a timer, at start, and at once on a libvirt event):
  * an adopted transition follows its domain: the request removed (or changed)
    before the decision cancels it, the domain undefined ends it; its status
    element is kept up to date;
  * an ended adopted transition is released: the size put back unless its VM
    was started, vmshadow's mark removed, the request removed (done, so never
    taken again), the status element left saying what happened;
  * a request with no transition becomes one; an invalid one becomes a
    failed transition whose reason names the attribute.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from vmshadow.controller.context import Context
from vmshadow.controller.policy import FAST, parse_policy, policy_of
from vmshadow.controller.schedule import check_scheduled_at
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.errors import ConfigError, ConflictError, NotFoundError, VmshadowError
from vmshadow.domain.transition import TERMINAL, Transition, TransitionKind, TransitionState
from vmshadow.domain.vm import validate_vm_name
from vmshadow.hypervisor.domainevents import DomainWatcher
from vmshadow.hypervisor.port import Host
from vmshadow.hypervisor.requestxml import (
    DomainRequest,
    RequestElement,
    StatusElement,
    alloc_slash,
    asked_size,
    original_size,
    parse_request,
    request_digest_of,
)
from vmshadow.image.userstore import BUILTIN, check_image_name, resolve_user_image
from vmshadow.store.repository import row_allocation
from vmshadow.workloads.catalog import check_profile, profile_names

log = logging.getLogger(__name__)
S = TransitionState
ORIGIN = "libvirt"
_UNDECIDED = (S.REQUESTED, S.SHADOWING, S.PROFILING, S.PREDICTED)


def is_adopted(row: Transition) -> bool:
    return row.origin == ORIGIN


def removable(r: Transition) -> bool:
    """An ended launch's pending VM that vmshadow defined and never started (an
    adopted domain is the user's: released here, never removed)."""
    launch = r.kind == TransitionKind.LAUNCH.value
    return r.vm_defined and not r.vm_started and launch and not is_adopted(r)


class Detector:
    """Sweeps each host for requests: every ``detect_interval_s``, and at once
    when a domain event says something changed there."""

    def __init__(self, ctx: Context, wake: threading.Event) -> None:
        self.ctx = ctx
        self.wake = wake
        self._dirty: set[str] = set()
        self._lock = threading.Lock()
        self._swept_at = -float("inf")
        self._watchers: list[DomainWatcher] = []
        self._warned: set[str] = set()

    def start(self) -> None:
        c = self.ctx.settings.controller
        if not c.detect:
            return
        if c.detect_events:
            for host in self.ctx.pool.names:
                w = DomainWatcher(self.ctx.pool.uri(host), functools.partial(self._event, host))
                w.start()
                self._watchers.append(w)

    def stop(self) -> None:
        for w in self._watchers:
            w.stop()

    def _event(self, host: str, _uuid: str | None) -> None:
        self.changed(host)

    def changed(self, host: str) -> None:
        with self._lock:
            self._dirty.add(host)
        self.wake.set()

    def tick(self, busy: Callable[[str], bool]) -> None:
        """One pass: the hosts an event marked, or all of them when the timer is due."""
        if not self.ctx.settings.controller.detect:
            return
        with self._lock:
            hosts, self._dirty = set(self._dirty), set()
        if time.monotonic() - self._swept_at >= self.ctx.settings.controller.detect_interval_s:
            self._swept_at = time.monotonic()
            hosts = set(self.ctx.pool.names)
        for host in sorted(hosts):
            try:
                sweep_host(self.ctx, host, busy, self._warned)
            except VmshadowError as exc:
                log.warning("cannot look for requests on host %s: %s", host, exc)


def sweep_host(
    ctx: Context,
    host: str,
    busy: Callable[[str], bool] = lambda _t: False,
    warned: set[str] | None = None,
) -> None:
    """One host: adopted transitions follow their domains, ended ones let go of
    them, and each request without a transition becomes one."""
    hv = ctx.hypervisor(host)
    found = {d.uuid: d for d in hv.domain_requests()}
    rows = [r for r in ctx.store.unfinished() if is_adopted(r) and _host_of(r) == host]
    held = {r.domain_uuid for r in rows}
    for row in rows:
        follow(ctx, hv, row, found.get(row.domain_uuid or ""))
    ended = [
        r
        for r in ctx.store.list_transitions(states=TERMINAL, limit=500)
        if is_adopted(r) and r.vm_defined and _host_of(r) == host
    ]
    for row in ended:
        held.add(row.domain_uuid)
        if not busy(row.id):
            release(ctx, row)
    for d in found.values():
        if d.request is not None and d.uuid not in held:
            take_request(ctx, hv, host, d, warned if warned is not None else set())


def size_pending(ctx: Context, row: Transition, a: Allocation) -> bool:
    """Size an adopted launch's domain at ``a`` (``steps.define_pending``); False
    when it runs (its user started it: its size is theirs)."""
    home = _host_of(row)
    if row.vm_host != home:
        # Placement booked the pending VM somewhere; the domain is where it is.
        ctx.store.update_fields(row.id, vm_host=home)
    hv = ctx.hypervisor(home)
    if hv.is_running(row.vm_name):
        return False
    hv.size_adopted(row.vm_name, a)
    return True


def _host_of(row: Transition) -> str | None:
    return (row.adopted or {}).get("host")


# -- a request becomes a transition ------------------------------------------------------
def take_request(ctx: Context, hv: Host, host: str, d: DomainRequest, warned: set[str]) -> None:
    assert d.request is not None
    if d.adopted_by is not None and not _known(ctx, d.adopted_by):
        return  # another vmshadow database's transition has it: never two owners
    digest = request_digest_of(d.request)
    if d.status is not None and d.status.request_digest == digest and _done(ctx, d.status):
        # Its transition ended and vmshadow stopped before removing the request.
        hv.remove_request(d.name)
        return
    try:
        validate_vm_name(d.name)
    except ConfigError as exc:
        if d.uuid not in warned:  # once per process: the sweep sees it every pass
            warned.add(d.uuid)
            log.warning("domain %s on %s has a request vmshadow cannot take: %s", d.name, host, exc)
        return
    original = original_size(hv.domain_xml(d.name))
    adoption: dict[str, Any] = {
        "origin": ORIGIN,
        "domain_uuid": d.uuid,
        "detect_key": f"{host}:{d.uuid}",
        "adopted": {"host": host, "digest": digest, "original": original, "request": ""},
    }
    req: RequestElement | None = None
    problem: ConfigError | None = None
    scheduled: datetime | None = None
    try:
        asked = asked_size(original)
    except ConfigError as exc:
        problem, asked = exc, Allocation(1, 128)  # only to record the refusal
    try:
        req = parse_request(d.request)
        adoption["adopted"]["request"] = req.text()
        if problem is None:
            scheduled = _check(ctx, req, asked)
    except ConfigError as exc:
        problem = problem or exc
    kind = TransitionKind.RESIZE if d.active else TransitionKind.LAUNCH
    policy = parse_policy(req.policy) if req is not None and problem is None else None
    try:
        row = ctx.store.create_transition(
            kind=kind,
            vm_name=d.name,
            profile=(req.profile if req else "")[:64],
            requested=asked,
            image=req.image if req and problem is None else BUILTIN,
            load=req.load if req and problem is None else None,
            scheduled_at=scheduled,
            fast_launch=policy is not None and policy.kind == FAST,
            policy=str(policy) if policy is not None else "manual",
            previous=asked if kind is TransitionKind.RESIZE else None,
            adoption=adoption,
        )
    except ConflictError as exc:  # another controller took it, or the name is busy
        log.info("request on domain %s not taken now: %s", d.name, exc)
        return
    ctx.store.update_fields(row.id, vm_host=host, vm_defined=True)
    where = f"domain {d.name} ({d.uuid}) on host {host}"
    if problem is not None:
        reason = f"the request element on {where} is invalid: {problem}"
        ctx.store.advance(row.id, S.FAILED, f"failed: {reason}", reason=reason)
        release(ctx, ctx.store.get(row.id))
        return
    hv.adopt_domain(d.name, row.id)
    ctx.store.add_event(
        row.id,
        "info",
        f"request found on {where}: {adoption['adopted']['request']}; the domain is the "
        f"{'VM to resize' if d.active else 'pending VM'}: vmshadow changes its size only, "
        "and never removes it or its disks",
    )
    hv.set_request_status(d.name, status_of(ctx, ctx.store.get(row.id)))
    log.info("transition %s: %s %s", row.id, kind.value, where)


def _check(ctx: Context, req: RequestElement, asked: Allocation) -> datetime | None:
    """The API's checks (``TransitionService._input_problems``), for a request element."""
    if req.profile not in profile_names():
        raise ConfigError("profile", f"unknown profile {req.profile!r}; known: {profile_names()}")
    check_profile(req.profile, req.load)
    if req.load is not None and not 0 < req.load < 1e9:
        raise ConfigError("load", "must be a positive number")
    parse_policy(req.policy)
    if check_image_name(req.image) != BUILTIN:
        resolve_user_image(ctx.settings.user_images_dir, req.image)
    q = ctx.settings.quotas
    if asked.vcpus > q.max_vcpus:
        raise ConfigError("vcpus", f"the domain's {asked.vcpus} is above the quota {q.max_vcpus}")
    if asked.memory_mib > q.max_memory_mib:
        raise ConfigError(
            "memory_mib",
            f"the domain's {asked.memory_mib} MiB is above the quota {q.max_memory_mib} MiB",
        )
    return check_scheduled_at(req.at, ctx.settings.controller, datetime.now(UTC))


def _known(ctx: Context, tid: str) -> bool:
    try:
        ctx.store.get(tid)
    except NotFoundError:
        return False
    return True


def _done(ctx: Context, status: StatusElement) -> bool:
    try:
        row = ctx.store.get(status.transition)
    except NotFoundError:
        return False  # another database's transition: this one takes the request anew
    return TransitionState(row.state).terminal


# -- an adopted transition follows its domain --------------------------------------------
def follow(ctx: Context, hv: Host, row: Transition, d: DomainRequest | None) -> None:
    state = TransitionState(row.state)
    digest = (row.adopted or {}).get("digest")
    if d is None:
        to = S.COMPLETED if state is S.RUNNING else S.CANCELLED
        reason = f"domain {row.vm_name} was undefined by its user"
        ctx.store.advance(row.id, to, f"{reason}: transition ended", reason=reason)
        return
    if state in _UNDECIDED and (d.request is None or request_digest_of(d.request) != digest):
        what = "removed" if d.request is None else "changed"
        reason = f"the request element was {what} before the decision"
        note = f"cancelled: {reason}; the domain's size is put back"
        if ctx.store.advance(row.id, S.CANCELLED, note, expect=[state], reason=reason):
            log.info("transition %s: %s", row.id, reason)
        return
    if d.adopted_by is not None and d.adopted_by != row.id:
        # Two vmshadow databases took the request at once: the last mark wins.
        reason = f"domain {row.vm_name} was taken by transition {d.adopted_by} of another database"
        ctx.store.advance(row.id, S.CANCELLED, f"cancelled: {reason}", reason=reason)
        return
    if d.adopted_by is None:
        hv.adopt_domain(row.vm_name, row.id)  # a crash between the insert and the mark
    want = status_of(ctx, row)
    if d.status != want:
        hv.set_request_status(row.vm_name, want)


def release(ctx: Context, row: Transition) -> None:
    """An ended adopted transition lets go of its domain (once: ``vm_defined`` off)."""
    if not ctx.store.take_lease(row.id, ctx.owner, ctx.settings.controller.lease_s):
        return
    try:
        hv = ctx.hypervisor(_host_of(row))
        original = (row.adopted or {}).get("original")
        present = {d.uuid: d for d in hv.domain_requests()}.get(row.domain_uuid or "")
        if present is not None and present.adopted_by in (None, row.id):
            launch = row.kind == TransitionKind.LAUNCH.value
            if launch and not row.vm_started and original:
                _put_back(ctx, hv, row, original)
            if present.adopted_by == row.id:
                hv.release_domain(row.vm_name)
            hv.set_request_status(row.vm_name, status_of(ctx, row))
            if present.request is not None:
                hv.remove_request(row.vm_name)
        ctx.store.update_fields(row.id, vm_defined=False)
    except VmshadowError as exc:
        ctx.store.add_event(row.id, "error", f"could not release domain {row.vm_name}: {exc}")
    finally:
        ctx.store.release_lease(row.id, ctx.owner)


def _put_back(ctx: Context, hv: Host, row: Transition, original: dict[str, Any]) -> None:
    """The size the domain had before it was adopted (a launch never started)."""
    if hv.restore_adopted(row.vm_name, original):
        size = f"{original['vcpus']} vCPU, {int(original['memory_kib']) // 1024} MiB"
        ctx.store.add_event(row.id, "info", f"domain {row.vm_name}'s size put back: {size}")
    else:
        ctx.store.add_event(
            row.id, "info", f"domain {row.vm_name} was started by its user: its size is left as is"
        )


def status_of(ctx: Context, row: Transition) -> StatusElement:
    """What the domain's status element should say about ``row`` now."""
    pred = ctx.store.latest_prediction(row.id)
    rec = Allocation(pred.rec_vcpus, pred.rec_memory_mib, pred.rec_iops) if pred else None
    adopted = row.adopted or {}
    note = row.reason or ""
    if not note and row.policy_verdict == "wait" and row.state == S.PREDICTED.value:
        note = "waiting for a decision: the recommendation is outside the policy's bounds"
    return StatusElement(
        transition=row.id,
        state=row.state,
        request_digest=adopted.get("digest", ""),
        request=adopted.get("request", ""),
        policy=str(policy_of(row)),
        requested=alloc_slash(Allocation(row.req_vcpus, row.req_memory_mib, row.req_iops)),
        recommended=alloc_slash(rec),
        final=alloc_slash(row_allocation(row.final_vcpus, row.final_memory_mib, row.final_iops)),
        note=note[:500],
    )
