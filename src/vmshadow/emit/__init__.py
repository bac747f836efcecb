"""A recommendation in the forms other tools take: ``--emit FORMAT``.

from vmshadow.emit import emit, from_view
print(emit("virsh", from_view(transition_json)))
"""

from __future__ import annotations

from collections.abc import Callable

from vmshadow.domain.errors import ConfigError
from vmshadow.emit.libvirt_tools import virsh, virt_install
from vmshadow.emit.other_tools import kubevirt, openstack, terraform
from vmshadow.emit.recommendation import Recommendation, from_plan, from_view

FORMATS: dict[str, Callable[[Recommendation], str]] = {
    "virt-install": virt_install,
    "virsh": virsh,
    "terraform": terraform,
    "kubevirt": kubevirt,
    "openstack": openstack,
}


def emit(fmt: str, rec: Recommendation) -> str:
    try:
        render = FORMATS[fmt]
    except KeyError:
        raise ConfigError("emit", f"unknown format {fmt!r}; one of: {', '.join(FORMATS)}") from None
    return render(rec)


__all__ = ["FORMATS", "Recommendation", "emit", "from_plan", "from_view"]
