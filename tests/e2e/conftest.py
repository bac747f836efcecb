"""Real shadows under the local libvirt (``qemu:///system``).

These tests boot the image that the README's set-up built, in the default data
folder (libvirt's QEMU user must be able to reach it, which /tmp's private
pytest folders do not allow). Each test checks that what it started is gone
afterwards: no domain and no run folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from vmshadow.config import Settings, load_settings
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor
from vmshadow.image.builder import find_image


@pytest.fixture(scope="session")
def settings() -> Settings:
    s = load_settings(config_path=Path("/nonexistent"), environ={})
    if find_image(s.images_dir) is None:
        pytest.fail(f"no shadow image in {s.images_dir}: run ./scripts/setup first")
    return s


@pytest.fixture
def hv(settings: Settings) -> Iterator[LibvirtHypervisor]:
    with LibvirtHypervisor(settings.libvirt_uri) as conn:
        yield conn
