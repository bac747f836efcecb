"""The tables. Alembic migrations (``store/migrations``) create them; a test
checks that the migrations and these models never drift apart.

Rows are the store's business; the rest of the program sees domain objects
(``vmshadow.domain``) through ``store.repository``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}  # noqa: RUF012


class TransitionRow(Base):
    __tablename__ = "transitions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    vm_name: Mapped[str] = mapped_column(String(63), index=True)
    profile: Mapped[str] = mapped_column(String(64))
    image: Mapped[str] = mapped_column(String(512), default="builtin")
    load: Mapped[float | None] = mapped_column(Float, nullable=True)
    req_vcpus: Mapped[int] = mapped_column(Integer)
    req_memory_mib: Mapped[int] = mapped_column(Integer)
    req_iops: Mapped[int | None] = mapped_column(Integer, nullable=True)
    scheduled_at: Mapped[datetime | None] = mapped_column(nullable=True)
    fast_launch: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # Bumped on every change: compare-and-set updates make concurrent
    # confirms, cancels and controller steps safe without long locks.
    version: Mapped[int] = mapped_column(Integer, default=1)
    # What this transition made in libvirt, so cleanup knows what is its own.
    vm_defined: Mapped[bool] = mapped_column(Boolean, default=False)
    vm_started: Mapped[bool] = mapped_column(Boolean, default=False)
    previous_vcpus: Mapped[int | None] = mapped_column(Integer, nullable=True)
    previous_memory_mib: Mapped[int | None] = mapped_column(Integer, nullable=True)
    final_vcpus: Mapped[int | None] = mapped_column(Integer, nullable=True)
    final_memory_mib: Mapped[int | None] = mapped_column(Integer, nullable=True)
    final_iops: Mapped[int | None] = mapped_column(Integer, nullable=True)
    decision: Mapped[str | None] = mapped_column(String(16), nullable=True)
    resize_mode: Mapped[str | None] = mapped_column(String(16), nullable=True)
    shadow_started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    predicted_at: Mapped[datetime | None] = mapped_column(nullable=True)
    running_since: Mapped[datetime | None] = mapped_column(nullable=True)
    # Which controller drives it, until when (taken over after expiry).
    lease_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(nullable=True)
    # Placement on the host pool: where the shadow runs (and whether it still
    # does, so it is booked there), where the VM goes and why.
    shadow_host: Mapped[str | None] = mapped_column(String(63), nullable=True)
    shadow_live: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    vm_host: Mapped[str | None] = mapped_column(String(63), nullable=True)
    placement: Mapped[str | None] = mapped_column(Text, nullable=True)
    # A store image's VM: network, user, SSH keys, user-data, disk size
    # (``domain.vm.GuestSetup.as_dict``); None for the built-in image.
    guest: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # Who decides once the prediction exists: manual, auto-within:PCT or fast
    # (``controller.policy``), and what auto-within made of the first prediction.
    policy: Mapped[str] = mapped_column(String(32), default="manual", server_default="manual")
    policy_verdict: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # A request found on a libvirt domain (``controller.detection``): origin
    # "libvirt", the domain's UUID, and what adoption must put back (its
    # original size, the request's digest). None for vmshadow's own requests.
    origin: Mapped[str | None] = mapped_column(String(16), nullable=True)
    domain_uuid: Mapped[str | None] = mapped_column(String(36), nullable=True)
    adopted: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # "host:uuid" while the transition is unfinished, None after: one
    # transition per domain at a time, whichever controller sees it first.
    detect_key: Mapped[str | None] = mapped_column(
        String(128), nullable=True, unique=True, index=True
    )


class EventRow(Base):
    """Append-only log of what happened to a transition, in order."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_transition_seq", "transition_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    transition_id: Mapped[str] = mapped_column(ForeignKey("transitions.id", ondelete="CASCADE"))
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(16))  # state | info | warning | error
    state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    message: Mapped[str] = mapped_column(Text)


class SampleRow(Base):
    __tablename__ = "samples"
    __table_args__ = (Index("ix_samples_transition_seq", "transition_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    transition_id: Mapped[str] = mapped_column(ForeignKey("transitions.id", ondelete="CASCADE"))
    target: Mapped[str] = mapped_column(String(8))  # shadow | vm
    run: Mapped[int] = mapped_column(Integer, default=0)  # profiling round of the shadow
    t: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(8))  # host | guest
    phase_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    busy_vcpus: Mapped[float] = mapped_column(Float)
    mem_used_mib: Mapped[float | None] = mapped_column(Float, nullable=True)
    read_iops: Mapped[float] = mapped_column(Float)
    write_iops: Mapped[float] = mapped_column(Float)
    read_bps: Mapped[float] = mapped_column(Float)
    write_bps: Mapped[float] = mapped_column(Float)
    forks_ps: Mapped[float | None] = mapped_column(Float, nullable=True)  # guest only
    faults_ps: Mapped[float | None] = mapped_column(Float, nullable=True)  # guest only


class PredictionRow(Base):
    __tablename__ = "predictions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    transition_id: Mapped[str] = mapped_column(
        ForeignKey("transitions.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime]
    method: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(Text)
    history_size: Mapped[int] = mapped_column(Integer, default=0)
    margin: Mapped[float] = mapped_column(Float)
    rec_vcpus: Mapped[int] = mapped_column(Integer)
    rec_memory_mib: Mapped[int] = mapped_column(Integer)
    rec_iops: Mapped[int | None] = mapped_column(Integer, nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)


class ConfirmationRow(Base):
    """The user's decision, with the warnings they were shown."""

    __tablename__ = "confirmations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    transition_id: Mapped[str] = mapped_column(
        ForeignKey("transitions.id", ondelete="CASCADE"), unique=True
    )
    at: Mapped[datetime]
    decision: Mapped[str] = mapped_column(String(16))
    prediction_id: Mapped[int | None] = mapped_column(ForeignKey("predictions.id"), nullable=True)
    vcpus: Mapped[int] = mapped_column(Integer)
    memory_mib: Mapped[int] = mapped_column(Integer)
    iops: Mapped[int | None] = mapped_column(Integer, nullable=True)
    risk_acknowledged: Mapped[bool] = mapped_column(Boolean, default=False)
    warnings: Mapped[dict[str, Any]] = mapped_column(JSON)


class HistoryRow(Base):
    """A shadow run paired with what the launched VM really used."""

    __tablename__ = "history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    transition_id: Mapped[str | None] = mapped_column(
        ForeignKey("transitions.id", ondelete="SET NULL"), nullable=True, unique=True
    )
    created_at: Mapped[datetime]
    # "vmshadow" (recorded by the controller) or an imported data set's name
    # (history_sources); rows imported before 0005 keep their "sar:<folder>".
    source: Mapped[str] = mapped_column(String(255), index=True)
    job: Mapped[str] = mapped_column(String(128))
    profile: Mapped[str | None] = mapped_column(String(64), nullable=True)
    load: Mapped[float | None] = mapped_column(Float, nullable=True)
    shadow: Mapped[dict[str, Any]] = mapped_column(JSON)  # size and per-resource usage
    target: Mapped[dict[str, Any]] = mapped_column(JSON)  # allocation of the full VM
    observed: Mapped[dict[str, Any]] = mapped_column(JSON)  # requirement observed on it
    observed_s: Mapped[float] = mapped_column(Float)


class HistorySourceRow(Base):
    """One imported data set: its name (the key of its history rows), where it
    was read from and a digest of what was read, so that importing it again
    replaces it and importing another data set adds to it."""

    __tablename__ = "history_sources"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # lumos | sysstat
    location: Mapped[str | None] = mapped_column(Text, nullable=True)  # resolved path
    digest: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    imported_at: Mapped[datetime]
