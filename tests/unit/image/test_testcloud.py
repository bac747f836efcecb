"""The test cloud image builder's cache key, cache lookup and root-folder set-up.

The whole build (mmdebstrap, the disk, GRUB, a boot) is exercised by
tests/e2e/test_testcloud_e2e.py; these check the parts that decide what is
built and what goes into the image, without root or the Debian archive.
"""

from __future__ import annotations

import json
import shutil
import stat
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from vmshadow.domain.errors import ImageError
from vmshadow.image import commands, testcloud, testcloud_disk

UUID = "0b9b6a52-5a3f-5d6e-8a0c-3c3e4b1c2d10"


def _fake_archive(
    monkeypatch: pytest.MonkeyPatch, *, versions: dict[str, str], tools: dict[str, str]
) -> list[list[str]]:
    calls: list[list[str]] = []

    def run(argv: Sequence[str], **_: object) -> str:
        calls.append(list(argv))
        if argv[:2] == ["apt-cache", "show"]:
            stanzas = []
            for name in argv[3:]:
                if name not in versions:
                    continue
                depends = (
                    "\nDepends: linux-image-6.1.0-57-cloud-amd64 (= 6.1.192-3)"
                    if name == "linux-image-cloud-amd64"
                    else ""
                )
                stanzas.append(
                    f"Package: {name}\nVersion: {versions[name]}{depends}\n"
                    "Description: x\n a continuation line: not a field\n"
                )
            return "\n".join(stanzas)
        if argv[0] == "dpkg-query":
            return "".join(f"{name}\tii {version}\n" for name, version in tools.items())
        raise AssertionError(f"unexpected command {argv}")

    # Where each module looks the command runner up: the digest's look-ups run
    # in testcloud, the build's steps in testcloud_disk.
    monkeypatch.setattr(testcloud, "run", run)
    monkeypatch.setattr(testcloud_disk, "run", run)
    return calls


def _versions(**changed: str) -> dict[str, str]:
    base = {name: "1.0" for name in testcloud.PACKAGES}
    base["linux-image-6.1.0-57-cloud-amd64"] = "6.1.192-3"
    return {**base, **changed}


TOOLS = {name: "2.0" for name in testcloud.HOST_TOOLS}


def test_digest_changes_with_any_package_or_host_tool_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _fake_archive(monkeypatch, versions=_versions(), tools=TOOLS)
    digest, inputs = testcloud.input_digest()
    assert inputs["packages"] == _versions()  # the kernel behind the metapackage too
    assert inputs["host_tools"] == TOOLS
    # one apt-cache call for the packages, one for the kernel, one dpkg-query
    assert len(calls) == 3
    assert testcloud.input_digest()[0] == digest

    _fake_archive(monkeypatch, versions=_versions(**{"cloud-init": "1.1"}), tools=TOOLS)
    assert testcloud.input_digest()[0] != digest
    kernel = _versions(**{"linux-image-6.1.0-57-cloud-amd64": "6.1.193-1"})
    _fake_archive(monkeypatch, versions=kernel, tools=TOOLS)
    assert testcloud.input_digest()[0] != digest
    _fake_archive(monkeypatch, versions=_versions(), tools={**TOOLS, "grub-pc-bin": "2.1"})
    assert testcloud.input_digest()[0] != digest


def test_a_package_apt_does_not_know_or_a_missing_tool_is_an_image_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    versions = _versions()
    del versions["qemu-guest-agent"]
    _fake_archive(monkeypatch, versions=versions, tools=TOOLS)
    with pytest.raises(ImageError, match="qemu-guest-agent.*apt-get update"):
        testcloud.input_digest()

    tools = dict(TOOLS)
    del tools["mmdebstrap"]
    _fake_archive(monkeypatch, versions=_versions(), tools=tools)
    with pytest.raises(ImageError, match="mmdebstrap not installed"):
        testcloud.input_digest()


def test_a_cached_image_is_reused_without_root_and_a_missing_one_needs_root(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _fake_archive(monkeypatch, versions=_versions(), tools=TOOLS)
    monkeypatch.setattr(testcloud.os, "geteuid", lambda: 1000)
    with pytest.raises(ImageError, match="needs root"):
        testcloud.build_test_cloud_image(tmp_path)
    assert testcloud.find_test_cloud_image(tmp_path) is None

    digest, _ = testcloud.input_digest()
    folder = testcloud.cloud_images_dir(tmp_path) / digest
    folder.mkdir(parents=True)
    (folder / testcloud.IMAGE_FILE).write_bytes(b"qcow2")
    (folder / "manifest.json").write_text(json.dumps({"digest": digest}))
    said: list[str] = []
    image = testcloud.build_test_cloud_image(tmp_path, log=said.append)
    assert image.path == folder / testcloud.IMAGE_FILE
    assert image.manifest == {"digest": digest}
    assert said == [f"test cloud image {digest} is up to date"]
    assert testcloud.find_test_cloud_image(tmp_path) == image
    # --force rebuilds, which needs root again
    with pytest.raises(ImageError, match="needs root"):
        testcloud.build_test_cloud_image(tmp_path, force=True)


def test_installed_versions_come_from_the_image_dpkg_status(tmp_path: Path) -> None:
    status = tmp_path / "var" / "lib" / "dpkg" / "status"
    status.parent.mkdir(parents=True)
    stanzas = [
        f"Package: {name}\nStatus: install ok installed\nVersion: 9.{i}\n"
        "Description: a package\n with: a continuation line\n"
        for i, name in enumerate(
            (*testcloud.PACKAGES, "linux-image-6.1.0-57-cloud-amd64", "zlib1g")
        )
    ]
    status.write_text("\n".join(stanzas))
    found = testcloud._installed_versions(tmp_path)
    assert found["cloud-init"] == "9.2"
    assert found["linux-image-6.1.0-57-cloud-amd64"] == f"9.{len(testcloud.PACKAGES)}"
    assert "zlib1g" not in found

    status.write_text("\n".join(s for s in stanzas if "Package: sudo\n" not in s))
    with pytest.raises(ImageError, match="did not install sudo"):
        testcloud._installed_versions(tmp_path)


@pytest.mark.subprocess
def test_a_failed_command_names_itself_its_exit_code_and_its_stderr() -> None:
    script = "import sys; sys.stderr.write('x' * 2000 + 'the reason'); sys.exit(3)"
    with pytest.raises(ImageError) as caught:
        commands.run([sys.executable, "-c", script])
    message = str(caught.value)
    assert message.startswith(f"{sys.executable} -c import sys")
    assert "exited 3" in message and message.endswith("the reason")
    assert len(message) < 1000  # the tail of stderr, not all of it
    with pytest.raises(ImageError, match="not installed"):
        commands.run(["/nonexistent/vmshadow-no-such-tool"])


def _bootstrapped_tree(root: Path) -> None:
    """The parts of a fresh mmdebstrap tree that configure_root reads or replaces."""
    for folder in ("etc/ssh", "etc/cloud/cloud.cfg.d", "etc/default", "var/lib/dbus", "boot"):
        (root / folder).mkdir(parents=True)
    for key in ("ssh_host_ed25519_key", "ssh_host_ed25519_key.pub", "ssh_host_rsa_key"):
        (root / "etc" / "ssh" / key).write_text("secret")
    (root / "etc" / "ssh" / "sshd_config").write_text("# kept\n")
    (root / "etc" / "machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    (root / "var" / "lib" / "dbus" / "machine-id").write_text("0123\n")
    (root / "etc" / "hostname").write_text("build-host\n")
    (root / "etc" / "resolv.conf").write_text("nameserver 10.0.0.1\n")
    (root / "etc" / "default" / "grub").write_text('GRUB_CMDLINE_LINUX=""\n')
    # GRUB's modules as the image's grub-pc-bin installs them (the host's are the same package)
    shutil.copytree("/usr/lib/grub/i386-pc", root / "usr" / "lib" / "grub" / "i386-pc")


@pytest.mark.subprocess
def test_configure_root_leaves_what_a_cloud_image_has_at_first_boot(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _bootstrapped_tree(root)
    testcloud_disk.configure_root(
        root, fs_uuid=UUID, release="6.1.0-57-cloud-amd64", hostname="debian"
    )

    etc = root / "etc"
    assert (etc / "fstab").read_text().startswith(f"UUID={UUID} / ext4 ")
    assert sorted(p.name for p in (etc / "ssh").iterdir()) == ["sshd_config"]
    assert (etc / "machine-id").read_text() == ""
    assert not (root / "var" / "lib" / "dbus" / "machine-id").exists()
    assert (etc / "hostname").read_text() == "debian\n"
    assert (etc / "resolv.conf").read_text() == ""
    cloud_cfg = (etc / "cloud" / "cloud.cfg.d" / "90_vmshadow_test_image.cfg").read_text()
    assert "locale: C.UTF-8" in cloud_cfg
    assert "datasource" not in cloud_cfg  # the seed decides, not the image
    assert "console=ttyS0,115200" in (etc / "default" / "grub").read_text()

    grub = root / "boot" / "grub"
    cfg = (grub / "grub.cfg").read_text()
    assert f"search --no-floppy --fs-uuid --set=root {UUID}" in cfg
    assert f"linux /boot/vmlinuz-6.1.0-57-cloud-amd64 root=UUID={UUID} ro" in cfg
    assert "initrd /boot/initrd.img-6.1.0-57-cloud-amd64" in cfg
    core = grub / "i386-pc" / "core.img"
    # grub-mkimage wrote a core image carrying the search for this UUID
    assert core.stat().st_size > 10_000 and stat.S_ISREG(core.stat().st_mode)
    assert (grub / "i386-pc" / "boot.img").stat().st_size == 512
    assert (grub / "i386-pc" / "normal.mod").is_file()


def test_kernel_release_needs_exactly_one_kernel_with_its_initramfs(tmp_path: Path) -> None:
    boot = tmp_path / "boot"
    boot.mkdir()
    with pytest.raises(ImageError, match="one kernel"):
        testcloud_disk.kernel_release(tmp_path)
    (boot / "vmlinuz-6.1.0-57-cloud-amd64").write_bytes(b"k")
    with pytest.raises(ImageError, match="no initramfs"):
        testcloud_disk.kernel_release(tmp_path)
    (boot / "initrd.img-6.1.0-57-cloud-amd64").write_bytes(b"i")
    assert testcloud_disk.kernel_release(tmp_path) == "6.1.0-57-cloud-amd64"
    (boot / "vmlinuz-6.1.0-58-cloud-amd64").write_bytes(b"k")
    with pytest.raises(ImageError, match="one kernel"):
        testcloud_disk.kernel_release(tmp_path)
