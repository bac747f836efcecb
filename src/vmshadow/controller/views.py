"""How a transition (and the host pool) is shown: the JSON document the API answers, the CLI
prints and the web UI renders, assembled from its row, its latest prediction,
its confirmation and (on request) its events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from vmshadow.config import ControllerSettings, Settings
from vmshadow.controller.policy import policy_of, prediction_of
from vmshadow.controller.schedule import decision_deadline
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.confidence import confidence_of
from vmshadow.domain.placement import bookings, capacities
from vmshadow.domain.prediction import StoredPrediction
from vmshadow.domain.transition import TERMINAL, Transition, TransitionState
from vmshadow.hypervisor.pool import HostPool
from vmshadow.store import fleet
from vmshadow.store.repository import Store, aware, row_allocation


def transition_view(
    store: Store,
    settings: ControllerSettings,
    row: Transition,
    *,
    with_events: bool = False,
) -> dict[str, Any]:
    """The JSON the API, the CLI and the web UI show for one transition."""
    pred = store.latest_prediction(row.id)
    conf = store.confirmation(row.id) if row.decision else None
    out: dict[str, Any] = {
        "id": row.id,
        "kind": row.kind.value,
        "vm_name": row.vm_name,
        "profile": row.profile,
        "image": row.image,
        "guest": _guest_view(row.guest),
        "load": row.load,
        "state": row.state.value,
        "reason": row.reason,
        "fast_launch": row.fast_launch,
        # Who decides (manual, auto-within:PCT, fast) and, for auto-within,
        # what it made of the first prediction (confirm, wait).
        "policy": str(policy_of(row)),
        "policy_verdict": row.policy_verdict,
        # "libvirt" for a request found in a domain's metadata (the domain is adopted).
        "origin": row.origin or "api",
        "domain_uuid": row.domain_uuid,
        "scheduled_at": _iso(row.scheduled_at),
        # When an undecided prediction is cancelled (null unless one is awaited).
        "decision_expires_at": _iso(decision_deadline(row, settings)),
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
        "requested": row_allocation(row.req_vcpus, row.req_memory_mib, row.req_iops).as_dict(),  # type: ignore[union-attr]
        "previous": (
            {"vcpus": row.previous_vcpus, "memory_mib": row.previous_memory_mib}
            if row.previous_vcpus
            else None
        ),
        "recommended": (
            Allocation(pred.rec_vcpus, pred.rec_memory_mib, pred.rec_iops).as_dict()
            if pred
            else None
        ),
        "final": (
            a.as_dict()
            if (a := row_allocation(row.final_vcpus, row.final_memory_mib, row.final_iops))
            else None
        ),
        "decision": row.decision.value if row.decision else None,
        "resize_mode": row.resize_mode,
        "prediction": _prediction_view(pred, row.load),
        "confirmation": (
            {
                "at": _iso(conf.at),
                "decision": conf.decision.value,
                "risk_acknowledged": conf.risk_acknowledged,
                "warnings": conf.warnings,
            }
            if conf
            else None
        ),
        "terminal": TransitionState(row.state) in TERMINAL,
        # Where it runs and why: the shadow's host, the VM's host and, when
        # the VM could not go where its shadow measured, the reason.
        "placement": {
            "shadow_host": row.shadow_host,
            "vm_host": row.vm_host,
            "reason": row.placement,
        },
    }
    if with_events:
        out["events"] = [
            {
                "id": e.id,
                "at": _iso(e.at),
                "kind": e.kind,
                "state": e.state,
                "message": e.message,
            }
            for e in store.events(row.id)
        ]
    return out


def _iso(dt: datetime | None) -> str | None:
    a = aware(dt)
    return a.isoformat() if a else None


def _prediction_view(pred: StoredPrediction | None, load: float | None) -> dict[str, Any] | None:
    if pred is None:
        return None
    return {
        "id": pred.id,
        "created_at": _iso(pred.created_at),
        "method": pred.method,
        "label": pred.label,
        "history_size": pred.history_size,
        "margin": pred.margin,
        "need": pred.detail.get("need"),
        "recommended": Allocation(pred.rec_vcpus, pred.rec_memory_mib, pred.rec_iops).as_dict(),
        "resize_mode": pred.detail.get("resize_mode"),
        "round": pred.detail.get("round"),
        "held_out": pred.detail.get("held_out"),
        # Which OS the shadow ran (the store image's, or the built-in one and why)
        # and that OS at idle, which the need includes.
        "shadow_os": pred.detail.get("shadow_os"),
        "os_idle": pred.detail.get("os_idle"),
        "raised_to_os_idle": pred.detail.get("raised_to_os_idle"),
        # The IOPS cap's burst: rate, burst rate and how long it may last.
        "iops_bucket": pred.detail.get("iops_bucket"),
        # Interval, 0-4 risk and what drives it, from what the prediction recorded.
        "confidence": confidence_of(prediction_of(pred), load=load).as_dict(),
    }


def _guest_view(guest: dict[str, Any] | None) -> dict[str, Any] | None:
    """The set-up without its secrets: user-data may hold any (only whether one was given)."""
    if not guest:
        return None
    keys = guest.get("ssh_keys") or []
    return {
        "network": guest.get("network"),
        "user": guest.get("user"),
        "ssh_keys": len(keys) if isinstance(keys, list) else 0,
        "user_data": guest.get("user_data") is not None,
        "disk_gib": guest.get("disk_gib"),
    }


def hosts_view(settings: Settings, store: Store, pool: HostPool) -> list[dict[str, Any]]:
    """Each host of the pool: what libvirt reports, what vmshadow has booked there."""
    held = fleet.holdings(store)
    shadow = Allocation(settings.shadow.vcpus, settings.shadow.memory_mib)
    raw = pool.capacities()
    booked = capacities(raw, bookings(held, pool.domain_names(), shadow))
    out = []
    for h in booked:
        out.append(
            {
                "name": h.name,
                "uri": pool.uri(h.name),
                "reachable": h.error is None,
                "error": h.error,
                "cpus": h.cpus,
                "memory_mib": h.memory_mib,
                "free_memory_mib": h.free_memory_mib,
                "cpu_model": h.cpu_model,
                "booked_vcpus": h.booked_vcpus,
                "booked_memory_mib": h.booked_memory_mib,
                "shadows": h.shadows,
                "room_vcpus": h.room_vcpus if h.error is None else 0,
                "room_memory_mib": h.room_memory_mib if h.error is None else 0,
            }
        )
    return out
