"""How the controller's shadow step picks the OS its shadow boots, and says which."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from vmshadow.controller import context, steps
from vmshadow.domain.errors import ConfigError
from vmshadow.domain.shadow import Accelerator, OsIdle, ShadowOs
from vmshadow.domain.vm import DiskImage
from vmshadow.image.files import ImageFiles
from vmshadow.shadow import targetos
from vmshadow.shadow.session import ShadowRecord
from vmshadow.shadow.targetos import TargetOsImage


def _ctx(tmp_path: Path) -> Any:
    image = ImageFiles.at(tmp_path / "image")
    return SimpleNamespace(image=image, settings=SimpleNamespace(data_dir=tmp_path))


def test_the_built_in_image_boots_as_before(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    assert steps.shadow_image_of(ctx, "builtin") is ctx.image


def test_a_store_image_boots_its_own_os_with_its_whole_chain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "store"
    found = DiskImage(store / "web-os", "qcow2", ((store / "debian-12", "qcow2"),))
    monkeypatch.setattr(context, "user_image", lambda settings, name: found)
    monkeypatch.setattr(targetos, "ensure_tools_disk", lambda data_dir: data_dir / "t.iso")
    got = steps.shadow_image_of(_ctx(tmp_path), "web-os")
    assert isinstance(got, TargetOsImage) and got.target is not None
    assert got.target.chain == ((store / "web-os", "qcow2"), (store / "debian-12", "qcow2"))
    assert got.target.tools == tmp_path / "t.iso"
    assert got.base == tmp_path / "image" / "base.qcow2"  # the fallback stays at hand


def test_a_store_image_gone_since_the_request_leaves_the_built_in_os(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def gone(settings: object, name: str) -> DiskImage:
        raise ConfigError("image", f"image {name!r} is not in the image store")

    monkeypatch.setattr(context, "user_image", gone)
    got = steps.shadow_image_of(_ctx(tmp_path), "web-os")
    assert isinstance(got, TargetOsImage) and got.target is None
    assert "is not in the image store" in got.unusable


def test_the_ready_event_names_the_os() -> None:
    record = ShadowRecord("abc", Accelerator.TCG)
    assert steps.shadow_os_text(record) == ""
    record.shadow_os = ShadowOs("web-os", "target")
    record.os_idle = OsIdle(memory_mib=40.6, vcpus=0.012)
    assert steps.shadow_os_text(record) == ", OS of image web-os, at idle 41 MiB, 0.01 vCPU"
    record.shadow_os = ShadowOs("old-os", "builtin", "the guest has no python3")
    assert steps.shadow_os_text(record) == (
        ", built-in OS: image old-os could not host the agent: the guest has no python3"
    )
