"""A new transition's guest options, checked: the NIC, user, SSH keys,
user-data and disk size of a VM launched from a store image.

The built-in image's VM takes none of them (its OS configures no network and
runs no cloud-init), so asking for one is an error naming the field rather
than an option quietly ignored. ``auto`` network is decided here, once, on the
host: libvirt's ``default`` network when the host has one (virt-install's
choice), else user networking with SSH on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vmshadow.config import Settings
from vmshadow.domain.errors import ConfigError
from vmshadow.domain.vm import GuestSetup, Network, parse_network
from vmshadow.image.seed import check_user_data
from vmshadow.image.userstore import BUILTIN

AUTO = "auto"
DEFAULT_LIBVIRT_NETWORK = "default"


@dataclass(frozen=True)
class GuestRequest:
    """The options as a request gives them; None means "not given"."""

    network: str | None = None
    user: str | None = None
    ssh_keys: tuple[str, ...] = ()
    user_data: str | None = None
    disk_gib: int | None = None

    def given(self) -> list[str]:
        names = []
        if self.network not in (None, "none"):
            names.append("network")
        for name in ("user", "user_data", "disk_gib"):
            if getattr(self, name) is not None:
                names.append(name)
        if self.ssh_keys:
            names.append("ssh_keys")
        return names


def resolve_guest(
    settings: Settings,
    image: str,
    req: GuestRequest,
    networks: Callable[[], dict[str, bool]],
) -> GuestSetup | None:
    """The checked set-up (None for the built-in image); ConfigError naming a field.

    ``networks`` gives the host's libvirt networks, name -> active (asked only
    when needed).
    """
    if image == BUILTIN:
        given = req.given()
        if given:
            raise ConfigError(
                given[0],
                "the built-in image runs no cloud-init and configures no network: "
                "launch from a store image (--image NAME) to use it",
            )
        return None
    if req.user_data is not None:
        check_user_data(req.user_data)
    return GuestSetup(
        network=_network(req.network or settings.vm.default_network, networks),
        user=req.user,
        ssh_keys=req.ssh_keys,
        user_data=req.user_data,
        disk_gib=req.disk_gib,
    )


def _network(text: str, networks: Callable[[], dict[str, bool]]) -> Network:
    if text == AUTO:
        # Only an active one: a defined but stopped network fails the VM's start.
        active = networks().get(DEFAULT_LIBVIRT_NETWORK, False)
        return Network("network", DEFAULT_LIBVIRT_NETWORK) if active else Network("user")
    net = parse_network(text)
    if net.kind == "network":
        known = networks()
        if net.name not in known:
            raise ConfigError(
                "network",
                f"no libvirt network {net.name!r} on this host; known: "
                f"{', '.join(sorted(known)) or 'none'} (or bridge:BR, user, none)",
            )
        if not known[net.name]:
            raise ConfigError(
                "network",
                f"the libvirt network {net.name!r} is not active: start it "
                f"(virsh net-start {net.name}) or choose another",
            )
    return net
