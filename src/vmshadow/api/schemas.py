"""Request bodies. Field descriptions become the OpenAPI documentation."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Size(BaseModel):
    model_config = ConfigDict(extra="forbid")

    vcpus: int = Field(..., ge=1, le=256, description="virtual CPUs")
    memory_mib: int = Field(..., ge=128, le=4 * 1024 * 1024, description="memory in MiB")
    iops: int | None = Field(None, ge=1, le=10_000_000, description="disk IOPS cap; none = no cap")


class CreateTransition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["launch", "resize"] = Field(
        "launch", description="a new VM, or a managed one resized"
    )
    vm_name: str = Field(..., min_length=1, max_length=63, description="libvirt name of the VM")
    profile: str = Field("smoke", max_length=64, description="workload profile the shadow runs")
    image: str = Field(
        "builtin",
        max_length=128,
        description="'builtin' or the name of an image in vmshadow's image store (never a path)",
    )
    load: float | None = Field(None, gt=0, description="expected load in the profile's unit")
    requested: Size | None = Field(None, description="the size asked for (required for a launch)")
    scheduled_at: datetime | None = Field(
        None, description="when the VM should run; the shadow starts early enough (ISO 8601)"
    )
    fast_launch: bool = Field(
        False, description="launch as soon as the prediction exists (the same as policy fast)"
    )
    policy: str = Field(
        "manual",
        max_length=32,
        description="who decides once the prediction exists: manual (a person), fast "
        "(launch with it at once), or auto-within:PCT (confirmed on its own when the "
        "recommendation is within PCT % of the requested size for every resource asked; "
        "otherwise a person decides)",
    )
    network: str | None = Field(
        None,
        max_length=80,
        description="store image only: a libvirt network NAME, bridge:BR, user (SSH "
        "forwarded from 127.0.0.1) or none; default: the service's vm.default_network",
    )
    user: str | None = Field(
        None, max_length=32, description="store image only: the user cloud-init creates"
    )
    ssh_keys: list[str] = Field(
        default_factory=list,
        max_length=32,
        description="store image only: OpenSSH public key lines for the user",
    )
    user_data: str | None = Field(
        None,
        max_length=65536,
        description="store image only: #cloud-config YAML or MIME multipart, passed "
        "to cloud-init after vmshadow's own",
    )
    disk_gib: int | None = Field(
        None, ge=1, le=65536, description="store image only: root disk size, GiB"
    )


class Override(BaseModel):
    model_config = ConfigDict(extra="forbid")

    vcpus: int = Field(..., ge=1, le=256)
    memory_mib: int = Field(..., ge=128, le=4 * 1024 * 1024)
    iops: int | None = Field(None, ge=1, le=10_000_000)
    acknowledge_risk: bool = Field(
        False, description="required when the override is below the predicted need"
    )


# -- response parts ----------------------------------------------------------------------
class PredictionConfidence(BaseModel):
    """How sure a prediction is (``prediction.confidence`` in a transition document;
    the rules are in ``vmshadow.domain.confidence``)."""

    model_config = ConfigDict(extra="forbid")

    risk: int = Field(
        ...,
        ge=0,
        le=4,
        description="risk that the recommendation falls short: 0 very low, 1 low, "
        "2 medium, 3 high, 4 very high (one point per driver, capped at 4)",
    )
    risk_level: Literal["very low", "low", "medium", "high", "very high"] = Field(
        ..., description="the risk in words"
    )
    drivers: list[str] = Field(..., description="what raised the risk, one short phrase each")
    intervals: dict[str, tuple[float, float] | None] | None = Field(
        ...,
        description="per resource (vcpus, memory_mib, iops), the need's [low, high] before "
        "the margin; null for a resource without one; null when the prediction recorded none "
        "(made before intervals existed)",
    )
    coverage: float | None = Field(
        ..., ge=0, le=1, description="the share of cases the intervals are meant to cover"
    )
    history_count: int = Field(..., ge=0, description="history records behind the prediction")
    contention: dict[str, Any] | None = Field(
        ...,
        description="the host contention during the shadow run: limit, max_wait (and max_steal "
        "where measured) as fractions, contended_phases; null when not measured",
    )
