"""The steps of the test cloud image build that touch files and disks.

``testcloud.py`` decides what to build and where; this module does it:

1. ``bootstrap``: mmdebstrap installs the packages into a folder;
2. ``configure_root``: the folder gets what Debian's genericcloud image has
   (fstab by UUID, cloud-init's locale, no SSH host keys, an empty machine-id,
   GRUB's files and a hand-written ``grub.cfg``);
3. ``write_disk``: a sparse raw file gets a GPT table (a BIOS-boot partition
   and the root), ``mke2fs -d`` fills the root partition straight from the
   folder at its byte offset (no mount; loop partition scanning and
   device-mapper do not work on these hosts), ``e2fsck -n`` checks it, and
   GRUB's boot sector and core image go in place (``grub-bios-setup``, which
   needs the one read-only loop mount of the build, see
   ``_install_boot_sectors``).

Every command is an argument list: there is no shell anywhere in vmshadow.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from vmshadow.domain.errors import ImageError
from vmshadow.image.commands import run

SECTOR = 512
# The layout of Debian's genericcloud image, minus the EFI partition: BIOS
# boot is partition 14 in sectors 2048-8191, the root is partition 1 after it
# (so growpart and x-systemd.growfs grow partition 1 to the end of the disk).
BIOS_BOOT_TYPE = "21686148-6449-6E6F-744E-656564454649"
LINUX_FS_TYPE = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
BIOS_BOOT_SECTORS = (2048, 8191)
ROOT_FIRST_SECTOR = 8192
GRUB_BIOS_SETUP = "/usr/lib/grub/i386-pc/grub-bios-setup"
# Modules built into GRUB's core image: enough to find the root file system by
# its UUID on a GPT disk through the BIOS; the rest load from /boot/grub.
CORE_MODULES = ("biosdisk", "part_gpt", "ext2", "search", "search_fs_uuid")
KERNEL_ARGS = "ro console=tty0 console=ttyS0,115200 consoleblank=0"


def fstab(fs_uuid: str) -> str:
    return f"UUID={fs_uuid} / ext4 rw,discard,errors=remount-ro,x-systemd.growfs 0 1\n"


def bootstrap(root: Path, *, suite: str, packages: Sequence[str], mirrors: Sequence[str]) -> None:
    """Install a minbase Debian with ``packages`` into the empty folder ``root``."""
    # initramfs-tools finds the root's file system type by probing the root
    # device, which does not exist in a chroot, and then leaves fsck out of the
    # initramfs ("fsck not present" at boot). Naming the type in its conf.d
    # before the kernel is installed keeps fsck in. copy-in is mmdebstrap's own
    # file copy, not a shell command.
    conf = root.parent / "initramfs-tools"
    (conf / "conf.d").mkdir(parents=True)
    (conf / "conf.d" / "vmshadow-fstype").write_text("FSTYPE=ext4\n")
    run(
        [
            "mmdebstrap",
            "--variant=minbase",
            # root mode: files get their real owners, and mke2fs -d copies them as they are.
            "--mode=root",
            "--format=directory",
            f"--essential-hook=copy-in {conf} /etc",
            f"--include={','.join(packages)}",
            suite,
            str(root),
            *mirrors,
        ]
    )


def kernel_release(root: Path) -> str:
    releases = sorted(p.name.removeprefix("vmlinuz-") for p in (root / "boot").glob("vmlinuz-*"))
    if len(releases) != 1:
        raise ImageError(f"expected one kernel in the image's /boot, found {releases}")
    if not (root / "boot" / f"initrd.img-{releases[0]}").is_file():
        raise ImageError(f"the kernel {releases[0]} has no initramfs in the image's /boot")
    return releases[0]


def configure_root(root: Path, *, fs_uuid: str, release: str, hostname: str) -> None:
    """Turn the bootstrapped folder into what a cloud image holds at first boot."""
    etc = root / "etc"
    (etc / "fstab").write_text(fstab(fs_uuid))
    (etc / "hostname").write_text(f"{hostname}\n")  # mmdebstrap copied the host's
    (etc / "hosts").write_text(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        "ff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
    )
    # The host's resolver must not leak into the image; DHCP fills it in the guest.
    resolv = etc / "resolv.conf"
    resolv.unlink(missing_ok=True)
    resolv.write_text("")
    resolv.chmod(0o644)
    # cloud-init's locale step fails on a minbase system that generated no locale.
    # The datasource is left to cloud-init's own search: the seed (or the
    # shadow's kernel command line) decides, as on Debian's images.
    (etc / "cloud" / "cloud.cfg.d" / "90_vmshadow_test_image.cfg").write_text(
        "# vmshadow's test cloud image (vmshadow image build --test-cloud)\nlocale: C.UTF-8\n"
    )
    # Every VM made from the image gets its own host keys and machine-id at first boot.
    for key in (etc / "ssh").glob("ssh_host_*"):
        key.unlink()
    (etc / "machine-id").write_text("")
    (root / "var" / "lib" / "dbus" / "machine-id").unlink(missing_ok=True)
    # A kernel upgrade in the guest runs update-grub: keep the serial console there too.
    with (etc / "default" / "grub").open("a") as grub_defaults:
        grub_defaults.write(
            "\n# vmshadow test image: serial console, no menu delay\n"
            "GRUB_TIMEOUT=0\n"
            'GRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200 consoleblank=0"\n'
            'GRUB_TERMINAL="serial console"\n'
            'GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"\n'
        )
    _install_grub_files(root, fs_uuid=fs_uuid, release=release)


def _install_grub_files(root: Path, *, fs_uuid: str, release: str) -> None:
    """What grub-install puts in /boot/grub, and a grub.cfg written by hand.

    grub-mkconfig is not used: it probes the running system's devices and
    special-cases loop-file roots, so its output would describe the build host.
    """
    modules = root / "usr" / "lib" / "grub" / "i386-pc"
    boot_grub = root / "boot" / "grub"
    target = boot_grub / "i386-pc"
    target.mkdir(parents=True, exist_ok=True)
    for item in modules.iterdir():
        if item.suffix in (".mod", ".lst", ".img"):
            shutil.copy2(item, target / item.name)
    early = boot_grub / "i386-pc" / "early.cfg"
    early.write_text(
        f"search --no-floppy --fs-uuid --set=root {fs_uuid}\nset prefix=($root)/boot/grub\n"
    )
    run(
        [
            "grub-mkimage",
            "--format=i386-pc",
            f"--directory={modules}",
            f"--output={target / 'core.img'}",
            f"--config={early}",
            "--prefix=/boot/grub",
            *CORE_MODULES,
        ]
    )
    (boot_grub / "grub.cfg").write_text(
        "# Written by vmshadow's test image builder; update-grub in the guest replaces it.\n"
        "set timeout=0\n"
        "serial --unit=0 --speed=115200\n"
        "terminal_input serial console\n"
        "terminal_output serial console\n"
        f"search --no-floppy --fs-uuid --set=root {fs_uuid}\n"
        "menuentry 'Debian GNU/Linux 12' {\n"
        f"    linux /boot/vmlinuz-{release} root=UUID={fs_uuid} {KERNEL_ARGS}\n"
        f"    initrd /boot/initrd.img-{release}\n"
        "}\n"
    )


def write_disk(root: Path, raw: Path, *, size_bytes: int, fs_uuid: str, work: Path) -> None:
    """Write a bootable GPT disk holding ``root`` into the new file ``raw``."""
    with raw.open("wb") as disk:
        disk.truncate(size_bytes)  # sparse: only what mke2fs writes takes space
    run(
        [
            "sgdisk",
            "--set-alignment=2048",
            f"--new=14:{BIOS_BOOT_SECTORS[0]}:{BIOS_BOOT_SECTORS[1]}",
            f"--typecode=14:{BIOS_BOOT_TYPE}",
            "--change-name=14:BIOS boot",
            f"--new=1:{ROOT_FIRST_SECTOR}:0",
            f"--typecode=1:{LINUX_FS_TYPE}",
            "--change-name=1:root",
            str(raw),
        ]
    )
    offset, length = root_partition_extent(raw)
    # mke2fs writes the file system at a byte offset inside the disk file
    # (``-E offset``), copying owners, modes, hard links and capabilities from
    # the folder (``-d``). nodiscard: discarding a file punches holes, and it
    # must not touch the partition table in front of the offset.
    run(
        [
            "mke2fs",
            "-q",
            "-F",
            "-t",
            "ext4",
            "-L",
            "root",
            "-U",
            fs_uuid,
            "-E",
            f"offset={offset},nodiscard,root_owner=0:0",
            "-d",
            str(root),
            str(raw),
            f"{length // 1024}k",
        ]
    )
    run(["e2fsck", "-f", "-n", f"{raw}?offset={offset}"])
    _install_boot_sectors(raw, offset=offset, length=length, work=work)


def root_partition_extent(raw: Path) -> tuple[int, int]:
    """Byte offset and length of partition 1, as sgdisk reads them back."""
    first = last = None
    for line in run(["sgdisk", "--info=1", str(raw)]).splitlines():
        if line.startswith("First sector:"):
            first = int(line.split(":", 1)[1].split()[0])
        elif line.startswith("Last sector:"):
            last = int(line.split(":", 1)[1].split()[0])
    if first is None or last is None:
        raise ImageError(f"sgdisk shows no root partition on {raw}")
    return first * SECTOR, (last - first + 1) * SECTOR


def _install_boot_sectors(raw: Path, *, offset: int, length: int, work: Path) -> None:
    """GRUB's boot sector into sector 0 and its core image into the BIOS-boot partition.

    grub-bios-setup reads boot.img and core.img from ``-d`` and insists that
    the folder lies on a device its device map can open. So the root
    partition is attached read-only through a loop device at its offset
    (partition scanning and device-mapper do not work here), mounted
    read-only, and both the disk file and that loop device go in the map.
    """
    mountpoint = work / "mnt"
    mountpoint.mkdir()
    with _loop_mounted(raw, offset=offset, length=length, mountpoint=mountpoint) as loop:
        device_map = work / "device.map"
        device_map.write_text(f"(hd0) {raw}\n(hd1) {loop}\n")
        run(
            [
                GRUB_BIOS_SETUP,
                "--skip-fs-probe",
                f"--directory={mountpoint / 'boot' / 'grub' / 'i386-pc'}",
                f"--device-map={device_map}",
                str(raw),
            ]
        )


@contextmanager
def _loop_mounted(raw: Path, *, offset: int, length: int, mountpoint: Path) -> Iterator[str]:
    loop = run(
        [
            "losetup",
            "--read-only",
            "--find",
            "--show",
            f"--offset={offset}",
            f"--sizelimit={length}",
            str(raw),
        ]
    ).strip()
    try:
        # noload: a read-only mount must not replay (write) the journal.
        run(["mount", "-t", "ext4", "-o", "ro,noload", loop, str(mountpoint)])
        try:
            yield loop
        finally:
            run(["umount", str(mountpoint)])
    finally:
        run(["losetup", "--detach", loop])


def compress(raw: Path, target: Path) -> None:
    """Compressed qcow2 clusters, as Debian ships its images; VMs use overlays on it."""
    run(["qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", str(raw), str(target)])


def scratch_dir(parent: Path) -> tempfile.TemporaryDirectory[str]:
    """A private work folder beside the images, so the final rename stays on one file system."""
    return tempfile.TemporaryDirectory(prefix=".build-", dir=parent)
