"""Issue 14, items 9 and 10: the shared base stays root's, read-only and intact.

The unit part checks ``ImageFiles.verify_base`` on a made-up image; the real
part boots one shadow on QEMU and looks at the files while QEMU runs: before
the fix libvirt gave the base to QEMU's user for good, 0644, so any QEMU
process could write the disk every later shadow boots.
"""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

import pytest

from vmshadow.config import Settings
from vmshadow.domain.errors import ImageError
from vmshadow.hypervisor.filemodes import qemu_gid
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor
from vmshadow.image.builder import find_image
from vmshadow.image.files import ImageFiles, sha256_of
from vmshadow.shadow.accelerator import accelerator_for
from vmshadow.shadow.session import ShadowSession

pytestmark = pytest.mark.security


def made_up_image(folder: Path) -> ImageFiles:
    folder.mkdir()
    (folder / "base.qcow2").write_bytes(os.urandom(1 << 16))
    for name in ("vmlinuz", "initrd.img"):
        (folder / name).write_bytes(b"")
    manifest = {"base_sha256": sha256_of(folder / "base.qcow2")}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return ImageFiles.at(folder)


def test_a_changed_base_is_refused(tmp_path: Path) -> None:
    img = made_up_image(tmp_path / "img")
    img.verify_base()
    assert img.base.stat().st_mode & 0o777 == 0o444
    img.base.chmod(0o644)
    with img.base.open("r+b") as f:  # what a QEMU that could write it would do
        f.write(b"QFI\xfb")
    with pytest.raises(ImageError, match="changed since it was built"):
        img.verify_base()


def test_an_image_without_a_recorded_hash_is_refused(tmp_path: Path) -> None:
    img = made_up_image(tmp_path / "img")
    (img.directory / "manifest.json").write_text("{}")
    with pytest.raises(ImageError, match="records no hash"):
        ImageFiles.at(img.directory).verify_base()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_a_base_an_older_vmshadow_left_to_qemu_is_taken_back(tmp_path: Path) -> None:
    img = made_up_image(tmp_path / "img")
    qemu = pwd.getpwnam("libvirt-qemu")
    os.chown(img.base, qemu.pw_uid, qemu.pw_gid)
    img.base.chmod(0o644)
    img.verify_base()
    st = img.base.stat()
    assert (st.st_uid, st.st_mode & 0o777) == (0, 0o444)


@pytest.mark.e2e
@pytest.mark.libvirt
@pytest.mark.subprocess
def test_a_running_shadow_leaves_the_base_to_root() -> None:
    settings = Settings()
    image = find_image(settings.images_dir)
    if image is None:
        pytest.fail(f"no shadow image in {settings.images_dir}: run ./scripts/setup first")
    with LibvirtHypervisor(settings.libvirt_uri) as hv:
        accel = accelerator_for(hv, image, settings).accelerator
        with ShadowSession(hv, image, settings.runs_dir, accelerator=accel) as session:
            base, run = image.base.stat(), session.run_dir.stat()
            root = session.spec.root_disk.stat()
    assert (base.st_uid, base.st_mode & 0o777) == (os.geteuid(), 0o444)
    assert run.st_mode & 0o777 == 0o750
    if os.geteuid() == 0 and qemu_gid() is not None:
        assert run.st_gid == qemu_gid()
    assert root.st_mode & 0o077 == 0  # QEMU's user owns it while it runs, nobody else reads it
    after = image.base.stat()
    assert (after.st_uid, after.st_mode & 0o777) == (os.geteuid(), 0o444)
