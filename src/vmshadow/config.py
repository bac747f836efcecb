"""vmshadow settings, merged in layers.

Precedence, lowest first: built-in defaults, then the config file
(``$VMSHADOW_CONFIG`` or ``/etc/vmshadow/config.toml`` as root,
``~/.config/vmshadow/config.toml`` otherwise), then ``VMSHADOW_*`` environment
variables, then command-line flags. The result is validated once, at the entry
point, and passed in explicitly: nothing imports a global settings object.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from vmshadow.domain.errors import ConfigError
from vmshadow.ops.settings import LogSettings, WebhookSettings


def _default_data_dir() -> Path:
    # libvirt's QEMU (user libvirt-qemu) must read the image and the overlays, so
    # root keeps them in /var/lib, which it can traverse; /root is closed to it.
    if os.geteuid() == 0:
        return Path("/var/lib/vmshadow")
    return Path(platformdirs.user_data_dir("vmshadow"))


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
    phase_s: int = Field(
        8,
        ge=2,
        le=600,
        description="longest a phase of the built-in profiles runs in a shadow; it ends "
        "sooner once its estimate is stable (phase_min_s, stable_within)",
    )
    phase_min_s: float = Field(
        3.0, ge=1, le=600, description="shortest a phase runs before its estimate may end it"
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


def parse_hosts_env(value: str) -> list[dict[str, str]]:
    """``VMSHADOW_HOSTS="a=qemu:///system,b=qemu+ssh://root@b/system"`` -> host entries."""
    hosts = []
    for n, item in enumerate(p.strip() for p in value.split(",")):
        if not item:
            continue
        name, sep, uri = item.partition("=")
        if not sep or not name.strip() or not uri.strip():
            raise ConfigError(f"hosts.{n}", f"{item!r} is not NAME=URI")
        hosts.append({"name": name.strip(), "uri": uri.strip()})
    return hosts


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data_dir: Path = Field(default_factory=_default_data_dir, description="images, runs, cache")
    libvirt_uri: str = Field("qemu:///system", description="libvirt connection of the host")
    hosts: list[HostSettings] = Field(
        default_factory=list,
        description="the host pool; empty means one host, 'local', at libvirt_uri",
    )
    accelerator: Literal["auto", "kvm", "tcg"] = Field(
        "auto", description="auto probes KVM with a real boot and falls back to TCG"
    )
    shadow: ShadowSettings = Field(default_factory=ShadowSettings)
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default: SQLite file vmshadow.db in data_dir"
    )
    controller: ControllerSettings = Field(default_factory=ControllerSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    quotas: QuotaSettings = Field(default_factory=QuotaSettings)
    flavours_file: Path | None = Field(
        None,
        description="CSV flavour catalogue (name,vcpus,memory_mib[,price][,iops]): "
        "recommendations round to its cheapest covering flavour",
    )
    client: ClientSettings = Field(default_factory=ClientSettings)
    vm: VmSettings = Field(default_factory=VmSettings)
    launch: LaunchSettings = Field(default_factory=LaunchSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'vmshadow.db'}"

    @field_validator("hosts")
    @classmethod
    def _unique_host_names(cls, hosts: list[HostSettings]) -> list[HostSettings]:
        names = [h.name for h in hosts]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"host names must be unique; repeated: {', '.join(twice)}")
        return hosts

    @property
    def host_pool(self) -> list[HostSettings]:
        """The hosts to place shadows and VMs on; one host at ``libvirt_uri`` by default."""
        return list(self.hosts) or [HostSettings(name="local", uri=self.libvirt_uri)]

    @property
    def vms_dir(self) -> Path:
        return self.data_dir / "vms"

    def _pool_name(self, stem: str) -> str:
        # Pool names are host-wide in libvirt, folders are per install: a second
        # data_dir (a test's, a second service's) gets pools of its own.
        if self.data_dir.resolve() == _default_data_dir().resolve():
            return stem
        return f"{stem}-{hashlib.sha256(str(self.data_dir.resolve()).encode()).hexdigest()[:8]}"

    @property
    def images_pool(self) -> str:
        """The libvirt pool over ``user_images_dir``."""
        return self.vm.images_pool or self._pool_name("vmshadow-images")

    @property
    def disks_pool(self) -> str:
        """The libvirt pool over ``vm_disks_dir``."""
        return self.vm.disks_pool or self._pool_name("vmshadow-vms")

    @property
    def vm_disks_dir(self) -> Path:
        """The directory behind ``vm.disks_pool``: root disks and seeds, one flat folder."""
        return self.data_dir / "vm-disks"

    @property
    def token_file(self) -> Path:
        return self.data_dir / "api-token"

    images_dir_override: Path | None = Field(
        None,
        alias="images_dir",
        description="where shadow images are built and found; default: data_dir/images",
    )

    @property
    def images_dir(self) -> Path:
        return self.images_dir_override or self.data_dir / "images"

    @property
    def runs_dir(self) -> Path:
        return self.data_dir / "runs"

    user_images_dir_override: Path | None = Field(
        None,
        alias="user_images_dir",
        description="the image store: users' VM images, named by transitions; "
        "default: data_dir/user-images",
    )

    @property
    def user_images_dir(self) -> Path:
        return self.user_images_dir_override or self.data_dir / "user-images"

    @property
    def image_records_dir(self) -> Path:
        """What ``vmshadow image add`` recorded of each store image (outside the
        store, so that the pool over the store lists images only)."""
        return self.data_dir / "image-records"


_ENV = {
    "VMSHADOW_DATA_DIR": ("data_dir",),
    "VMSHADOW_LIBVIRT_URI": ("libvirt_uri",),
    "VMSHADOW_ACCELERATOR": ("accelerator",),
    "VMSHADOW_SHADOW_VCPUS": ("shadow", "vcpus"),
    "VMSHADOW_SHADOW_MEMORY_MIB": ("shadow", "memory_mib"),
    "VMSHADOW_SHADOW_HELLO_TIMEOUT_S": ("shadow", "hello_timeout_s"),
    "VMSHADOW_SHADOW_TEMPLATES": ("shadow", "templates"),
    "VMSHADOW_DATABASE_URL": ("database_url",),
    "VMSHADOW_IMAGES_DIR": ("images_dir",),
    "VMSHADOW_USER_IMAGES_DIR": ("user_images_dir",),
    "VMSHADOW_POLL_S": ("controller", "poll_s"),
    "VMSHADOW_API_HOST": ("api", "host"),
    "VMSHADOW_API_PORT": ("api", "port"),
    "VMSHADOW_API_WORKERS": ("api", "workers"),
    "VMSHADOW_OBSERVE_S": ("controller", "observe_s"),
    "VMSHADOW_REFINE_ROUNDS": ("controller", "refine_rounds"),
    "VMSHADOW_PHASE_S": ("controller", "phase_s"),
    "VMSHADOW_FLAVOURS_FILE": ("flavours_file",),
    "VMSHADOW_HOSTS": ("hosts",),
    "VMSHADOW_LEASE_S": ("controller", "lease_s"),
    "VMSHADOW_MAX_SHADOWS": ("controller", "max_shadows"),
    "VMSHADOW_URL": ("client", "url"),
    "VMSHADOW_VM_NETWORK": ("vm", "default_network"),
    "VMSHADOW_IMAGES_POOL": ("vm", "images_pool"),
    "VMSHADOW_DISKS_POOL": ("vm", "disks_pool"),
    "VMSHADOW_LAUNCH_PREBOOT": ("launch", "preboot"),
    "VMSHADOW_DETECT": ("controller", "detect"),
    "VMSHADOW_DETECT_INTERVAL_S": ("controller", "detect_interval_s"),
    "VMSHADOW_LOG_LEVEL": ("log", "level"),
    "VMSHADOW_LOG_FORMAT": ("log", "format"),
    "VMSHADOW_WEBHOOK_URL": ("webhooks", "url"),
    "VMSHADOW_TOKEN": ("client", "token"),
    "VMSHADOW_TOKEN_FILE": ("client", "token_file"),
}


def default_config_path() -> Path:
    if "VMSHADOW_CONFIG" in os.environ:
        return Path(os.environ["VMSHADOW_CONFIG"])
    if os.geteuid() == 0:
        return Path("/etc/vmshadow/config.toml")
    return Path(platformdirs.user_config_dir("vmshadow")) / "config.toml"


def _set(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def load_settings(
    overrides: dict[tuple[str, ...], Any] | None = None,
    *,
    config_path: Path | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Merge defaults < file < environment < overrides and validate the result once."""
    path = config_path or default_config_path()
    tree: dict[str, Any] = {}
    if path.is_file():
        try:
            tree = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(str(path), f"not valid TOML: {exc}") from exc
    env = os.environ if environ is None else environ
    for var, key in _ENV.items():
        if var in env:
            _set(tree, key, parse_hosts_env(env[var]) if key == ("hosts",) else env[var])
    for key, value in (overrides or {}).items():
        if value is not None:
            _set(tree, key, value)
    try:
        return Settings.model_validate(tree)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise ConfigError(field, err["msg"]) from exc
