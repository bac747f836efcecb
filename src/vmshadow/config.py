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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vmshadow.domain.errors import ConfigError
from vmshadow.ops.settings import LogSettings, WebhookSettings
from vmshadow.settings_sections import (
    ApiSettings,
    ClientSettings,
    ControllerSettings,
    HostSettings,
    LaunchSettings,
    QuotaSettings,
    ShadowSettings,
    VmSettings,
)

__all__ = [
    "ApiSettings",
    "ClientSettings",
    "ControllerSettings",
    "HostSettings",
    "LaunchSettings",
    "LogSettings",
    "QuotaSettings",
    "Settings",
    "ShadowSettings",
    "VmSettings",
    "WebhookSettings",
    "load_settings",
]


def _default_data_dir() -> Path:
    # libvirt's QEMU (user libvirt-qemu) must read the image and the overlays, so
    # root keeps them in /var/lib, which it can traverse; /root is closed to it.
    if os.geteuid() == 0:
        return Path("/var/lib/vmshadow")
    return Path(platformdirs.user_data_dir("vmshadow"))


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
