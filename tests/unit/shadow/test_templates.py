"""The template store: its key, what makes a template valid, and cleaning up."""

from __future__ import annotations

import dataclasses
import json
import os
import struct
from pathlib import Path

import pytest

from vmshadow.domain.errors import ImageError
from vmshadow.domain.shadow import Accelerator, ShadowSize, ShadowSpec, TargetOs
from vmshadow.image.files import ImageFiles
from vmshadow.shadow.reaper import reap_orphans
from vmshadow.shadow.templates import (
    HEADER_FILE,
    STATE_FILE,
    TemplateStore,
    template_inputs,
    template_key,
)

VERSIONS = {"libvirt": "9.0.0", "hypervisor": "7.2.0", "driver": "QEMU"}


def _image(tmp_path: Path, name: str = "7f3981a15808b8c3", base_sha: str = "b" * 64) -> ImageFiles:
    d = tmp_path / "images" / name
    return ImageFiles(
        d, d / "vmlinuz", d / "initrd.img", d / "base.qcow2", {"base_sha256": base_sha}
    )


def _spec(image: ImageFiles, **changes: object) -> ShadowSpec:
    run = Path("/runs/s1")
    spec = ShadowSpec(
        shadow_id="s1",
        size=ShadowSize(),
        accelerator=Accelerator.TCG,
        kernel=image.kernel,
        initrd=image.initrd,
        root_disk=run / "root.qcow2",
        scratch_disk=run / "scratch.img",
        console_log=run / "console.log",
        run_dir=run,
        created_at="now",
        base=image.base,
    )
    return dataclasses.replace(spec, **changes)  # type: ignore[arg-type]


def _key(image: ImageFiles, spec: ShadowSpec, cache: str = "none", **versions: str) -> str:
    return template_key(
        template_inputs(image, spec, scratch_cache=cache, versions={**VERSIONS, **versions})
    )


def test_key_is_stable_and_ignores_what_each_shadow_has_of_its_own(tmp_path: Path) -> None:
    image = _image(tmp_path)
    one = _key(image, _spec(image))
    other_run = _spec(image, shadow_id="s2", run_dir=Path("/runs/s2"), owner="h:9")
    assert _key(image, other_run) == one
    assert len(one) == 20


def test_key_changes_with_each_input(tmp_path: Path) -> None:
    image = _image(tmp_path)
    spec = _spec(image)
    base = _key(image, spec)
    changed = {
        "image build": _key(_image(tmp_path, name="0000000000000000"), spec),
        "base bytes": _key(_image(tmp_path, base_sha="c" * 64), spec),
        "kernel args": _key(image, _spec(image, kernel_args=("console=ttyS0",))),
        "kernel": _key(image, _spec(image, kernel=Path("/other/vmlinuz"))),
        "memory": _key(image, _spec(image, size=ShadowSize(memory_mib=1024))),
        "vcpus": _key(image, _spec(image, size=ShadowSize(vcpus=2))),
        "scratch": _key(image, _spec(image, size=ShadowSize(scratch_mib=2048))),
        "accelerator": _key(image, _spec(image, accelerator=Accelerator.KVM)),
        "scratch cache": _key(image, spec, cache="writeback"),
        "libvirt": _key(image, spec, libvirt="9.1.0"),
        "qemu": _key(image, spec, hypervisor="8.0.0"),
    }
    assert all(k != base for k in changed.values()), changed
    assert len(set(changed.values())) == len(changed)


def test_store_image_key_follows_its_files_and_the_tools_disk(tmp_path: Path) -> None:
    image = _image(tmp_path)
    disk, tools = tmp_path / "debian.qcow2", tmp_path / "tools.iso"
    disk.write_bytes(b"a" * 10)
    tools.write_bytes(b"t" * 10)
    target = TargetOs("debian", ((disk, "qcow2"),), tmp_path / "seed.iso", tools)
    spec = _spec(image, target=target)
    first = _key(image, spec)
    assert first != _key(image, _spec(image))
    disk.write_bytes(b"b" * 11)  # the image replaced
    second = _key(image, spec)
    assert second != first
    tools.write_bytes(b"agent v2!!!!")  # a new agent on the tools disk
    assert _key(image, spec) != second


def _fake_template(store: TemplateStore, key: str, image: str = "builtin") -> Path:
    """A template folder laid out as ``finish`` leaves one (small synthetic state)."""
    d = store.root / key
    d.mkdir(parents=True)
    xml = b"<domain><name>vmshadow-shadow-t</name></domain>\0"
    data_len = len(xml) + 64
    header = struct.pack("<16s5I14I", b"LibvirtQemudSave", 2, data_len, 1, 0, 0, *[0] * 14)
    region = header + xml + b"\0" * 64
    (d / STATE_FILE).write_bytes(region + b"QEVM" + b"\0" * 100)
    (d / HEADER_FILE).write_bytes(region)
    (d / "overlay.qcow2").write_bytes(b"QFI")
    import hashlib

    record = {
        "key": key,
        "image": image,
        "state_bytes": (d / STATE_FILE).stat().st_size,
        "header_sha256": hashlib.sha256(region).hexdigest(),
    }
    (d / "template.json").write_text(json.dumps(record))
    return d


def test_find_returns_a_valid_template_with_its_chain(tmp_path: Path) -> None:
    store = TemplateStore(tmp_path / "templates")
    d = _fake_template(store, "k1")
    base = ((tmp_path / "base.qcow2", "qcow2"),)
    t = store.find("k1", base)
    assert t is not None
    assert t.saved.root_chain == ((d / "overlay.qcow2", "qcow2"), *base)
    assert store.find("other", base) is None


@pytest.mark.parametrize("damage", ["truncated", "no overlay", "header", "record"])
def test_a_damaged_template_is_refused_with_the_reason(tmp_path: Path, damage: str) -> None:
    store = TemplateStore(tmp_path / "templates")
    d = _fake_template(store, "k1")
    if damage == "truncated":
        os.truncate(d / STATE_FILE, 50)
    elif damage == "no overlay":
        (d / "overlay.qcow2").unlink()
    elif damage == "header":
        (d / HEADER_FILE).write_bytes(b"garbage" * 20)
    else:
        (d / "template.json").write_text("{not json")
    with pytest.raises(ImageError, match="template k1 is damaged"):
        store.find("k1", ())
    store.discard("k1")
    assert not d.exists()
    assert store.find("k1", ()) is None


def test_building_is_exclusive_and_leaves_nothing_when_not_finished(tmp_path: Path) -> None:
    store = TemplateStore(tmp_path / "templates")
    with store.building("k1", {}, "builtin", ()) as build:
        assert build is not None
        assert build.directory.name.startswith(".build-k1-")
        # A second builder of the same key (another shadow) does not build it.
        with store.building("k1", {}, "builtin", ()) as second:
            assert second is None
        with store.building("k2", {}, "builtin", ()) as other:
            assert other is not None
    assert not build.directory.exists()
    assert store.find("k1", ()) is None


def test_prune_removes_older_templates_of_the_same_image_only(tmp_path: Path) -> None:
    store = TemplateStore(tmp_path / "templates")
    _fake_template(store, "old")
    _fake_template(store, "new")
    _fake_template(store, "debian", image="store:debian")
    assert store.prune(keep="new", label="builtin") == ["old"]
    assert sorted(p.name for p in store.root.iterdir() if not p.name.startswith(".")) == [
        "debian",
        "new",
    ]


def test_prune_removes_templates_whose_image_files_are_gone(tmp_path: Path) -> None:
    store = TemplateStore(tmp_path / "templates")
    disk = tmp_path / "gone.qcow2"
    disk.write_bytes(b"x")
    for key, files in (("kept", tmp_path), ("stale", disk)):
        d = _fake_template(store, key, image=f"store:{key}")
        record = json.loads((d / "template.json").read_text())
        record["inputs"] = {"image": [key, [[str(files), 1, 1, 1, "qcow2"]]]}
        (d / "template.json").write_text(json.dumps(record))
    assert store.prune(keep="new", label="builtin") == []
    disk.unlink()  # the store image was removed
    assert store.prune(keep="new", label="builtin") == ["stale"]
    assert store.find("kept", ()) is not None


def test_reaper_sweeps_the_build_folder_of_a_dead_process(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    templates = tmp_path / "templates"
    dead = templates / ".build-k1-999999"
    alive = templates / f".build-k2-{os.getpid()}"
    for d, pid in ((dead, 999_999_999), (alive, os.getpid())):
        d.mkdir(parents=True)
        (d / "owner").write_text(f"{os.uname().nodename}:{pid}\n")

    class NoDomains:
        def list_shadows(self) -> list[object]:
            return []

    reaped = reap_orphans(NoDomains(), runs)  # type: ignore[arg-type]
    assert reaped == [str(dead)]
    assert alive.exists() and not dead.exists()
