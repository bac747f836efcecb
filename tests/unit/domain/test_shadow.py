from pathlib import Path

import pytest

from vmshadow.domain.errors import ConfigError
from vmshadow.domain.shadow import Accelerator, ShadowSize, ShadowSpec


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"vcpus": 0}, "shadow.vcpus"),
        ({"memory_mib": 128}, "shadow.memory_mib"),
        ({"scratch_mib": 10}, "shadow.scratch_mib"),
    ],
)
def test_shadow_size_names_the_bad_field(kwargs: dict[str, int], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        ShadowSize(**kwargs)
    assert info.value.field == field


def test_shadow_defaults_are_small() -> None:
    size = ShadowSize()
    assert (size.vcpus, size.memory_mib) == (1, 512)


def test_shadow_id_is_checked() -> None:
    p = Path("/x")
    with pytest.raises(ConfigError, match="shadow_id"):
        ShadowSpec("Bad Id", ShadowSize(), Accelerator.TCG, p, p, p, p, p, p, "now")


def test_accelerator_maps_to_libvirt_domain_type() -> None:
    assert Accelerator.KVM.libvirt_domain_type == "kvm"
    assert Accelerator.TCG.libvirt_domain_type == "qemu"
