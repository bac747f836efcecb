"""The sections of vmshadow's settings (``[shadow]``, ``[controller]``, ``[api]``,
...), one model each; ``vmshadow.config`` holds ``Settings``, which composes
them, and the loading rules."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class ShadowSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    vcpus: int = Field(1, ge=1, le=64, description="vCPUs of each shadow")
    memory_mib: int = Field(512, ge=256, le=65536, description="memory of each shadow, MiB")
    scratch_mib: int = Field(1024, ge=64, le=65536, description="scratch disk for I/O phases, MiB")
    hello_timeout_s: float = Field(
        60.0, gt=0, le=600, description="how long a shadow may take to boot to its agent"
    )
    sample_interval_s: float = Field(1.0, ge=0.2, le=10, description="host sampling period")
    scratch_cache: Literal["none", "writeback", "directsync"] = Field(
        "none", description="QEMU cache mode of the scratch disk; none measures the real disk"
    )
    templates: bool = Field(
        True,
        description="start shadows from a saved, booted state of their image (data_dir/templates)"
        " instead of booting them; false: every shadow boots cold",
    )


class ControllerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    poll_s: float = Field(1.0, gt=0, le=60, description="how often the controller looks for work")
    max_shadows: int = Field(
        1, ge=1, le=64, description="shadows running at once on each host (each 1 vCPU busy)"
    )
    refine_rounds: int = Field(
        1,
        ge=0,
        le=20,
        description="extra profiling rounds after the first prediction, while the user decides",
    )
    observe_s: float = Field(
        600.0, ge=1, le=7 * 86400, description="how long a launched VM is observed for history"
    )
    default_lead_s: float = Field(
        120.0,
        ge=0,
        le=86400,
        description="lead time for a scheduled transition before any shadow has been timed",
    )
    margin: float = Field(1.2, ge=1.0, le=5.0, description="safety margin over the prediction")
    learned_min_history: int = Field(
        20,
        ge=19,
        le=1_000_000,
        description="completed launches with an expected load (history records) before the "
        "learned correction (`vmshadow model train`) corrects the ramp's extrapolation; "
        "19 is the fewest a 95 % conformal margin exists for",
    )
    phase_s: int = Field(
        8,
        ge=2,
        le=600,
        description="longest a phase of the built-in profiles runs in a shadow; it ends "
        "sooner once its estimate is stable (phase_min_s, stable_within)",
    )
    # 2 s: every estimate needs more samples than that of its own (a CPU mean
    # 3+, an I/O rate 4+), but a memory phase is done once the guest holds
    # what its stressor asked for (``domain.stability.Held``), often by then.
    phase_min_s: float = Field(
        2.0, ge=1, le=600, description="shortest a phase runs before its estimate may end it"
    )
    stable_within: float = Field(
        0.1,
        ge=0.01,
        le=1.0,
        description="a phase ends once its estimate (mean CPU's 95 % half-width, memory "
        "peak's or IOPS P95's last move) is within this fraction of it; 1 ends at phase_min_s",
    )
    contention_max: float = Field(
        0.1,
        gt=0,
        le=1.0,
        description="a ramp step whose vCPUs waited for the host's CPU (or whose host lost "
        "to steal) this fraction of its time is run again, or its figures flagged",
    )
    contention_retries: int = Field(
        1, ge=0, le=5, description="times a contended ramp step is run again"
    )
    admission_wait_s: float = Field(
        300.0,
        ge=0,
        le=86400,
        description="how long `vmshadow plan` waits for a free shadow slot on its host "
        "(controller.max_shadows, shared with the service) before it gives up",
    )
    lease_s: float = Field(
        30.0, ge=5, le=3600, description="a controller's hold on a transition, renewed while alive"
    )
    schedule_past_s: float = Field(
        86400.0, ge=0, le=30 * 86400, description="how far in the past scheduled_at may be"
    )
    schedule_ahead_s: float = Field(
        365 * 86400.0, ge=60, le=10 * 365 * 86400, description="how far ahead scheduled_at may be"
    )
    decision_timeout_s: float = Field(
        86400.0,
        ge=60,
        le=365 * 86400,
        description="a prediction left undecided this long is cancelled, freeing its capacity",
    )
    detect: bool = Field(
        True,
        description="take requests written into libvirt domains' metadata (the request "
        "element, docs/integrations.md); off: only the API, CLI and web UI make transitions",
    )
    detect_interval_s: float = Field(
        10.0, ge=1, le=3600, description="how often each host is swept for request elements"
    )
    detect_events: bool = Field(
        True, description="also listen to libvirt's domain events, so a request is seen at once"
    )


class ApiSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="address the API binds; loopback by default")
    port: int = Field(8600, ge=1, le=65535, description="TCP port of the API and web UI")
    max_body_bytes: int = Field(
        65536, ge=1024, le=16 * 2**20, description="largest request body accepted"
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="names clients use in the Host header besides the bound address and "
        "loopback (DNS rebinding guard), e.g. ['vmshadow.example.org']",
    )
    tls_cert: Path | None = Field(None, description="PEM certificate; with tls_key, serve HTTPS")
    tls_key: Path | None = Field(None, description="PEM private key of tls_cert")
    allow_plaintext: bool = Field(
        False, description="allow a bind off loopback without TLS (the token crosses in clear)"
    )
    max_streams: int = Field(
        100, ge=1, le=10_000, description="live SSE streams at once; more are refused with 503"
    )
    workers: int = Field(
        2,
        ge=1,
        le=64,
        description="API worker processes `vmshadow serve` runs on one socket (each its own "
        "Python: requests stop waiting on each other's, and the controller's, CPU)",
    )


class ClientSettings(BaseModel):
    """How the CLI's client commands (launch, ls, show, ...) reach a running service."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(
        None, description="the service's base URL; default http://<api.host>:<api.port>"
    )
    # SecretStr: a token must not show up in a repr or an error message.
    token: SecretStr | None = Field(
        None, description="API token; default: read from token_file when a call needs it"
    )
    token_file: Path | None = Field(
        None, description="file holding the API token; default data_dir/api-token"
    )
    timeout_s: float = Field(30.0, gt=0, le=600, description="timeout of one API call")


class QuotaSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_vcpus: int = Field(64, ge=1, le=256, description="largest vCPU count one VM may ask for")
    max_memory_mib: int = Field(
        262144, ge=256, le=4 * 1024 * 1024, description="largest memory one VM may ask for, MiB"
    )
    max_active_transitions: int = Field(
        100, ge=1, le=100000, description="unfinished transitions allowed at once"
    )


class VmSettings(BaseModel):
    """The full VMs vmshadow launches from store images, and where their volumes live."""

    model_config = ConfigDict(extra="forbid")

    default_network: str = Field(
        "auto",
        description="NIC of a VM launched from a store image when the request names none: "
        "auto (the libvirt network 'default' when it exists, else user), a libvirt "
        "network NAME, bridge:BR, user (loopback SSH forward) or none",
    )
    images_pool: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
        description="libvirt storage pool over the image store (a directory pool); default "
        "vmshadow-images, or vmshadow-images-HASH for a data_dir other than the default",
    )
    disks_pool: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
        description="libvirt storage pool of VMs' disks and cloud-init seeds; default "
        "vmshadow-vms, or vmshadow-vms-HASH for a data_dir other than the default",
    )
    guest_ready_timeout_s: float = Field(
        900.0,
        ge=10,
        le=86400,
        description="how long after start to wait for the guest agent and cloud-init",
    )


class LaunchSettings(BaseModel):
    """How a confirmed launch starts its VM."""

    model_config = ConfigDict(extra="forbid")

    preboot: bool = Field(
        True,
        description="boot the pending VM at the recommended size once predicted, pause it "
        "at guest ready, and resume it on confirm (off: define it, start it at confirm)",
    )


class HostSettings(BaseModel):
    """One hypervisor host of the pool, e.g. ``{name = "rack1-a", uri = "qemu+ssh://root@a/system"}``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        ...,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
        description="short name shown in placements (letters, digits, . _ -)",
    )
    uri: str = Field(..., min_length=1, description="libvirt connection URI of the host")
