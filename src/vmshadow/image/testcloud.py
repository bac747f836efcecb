"""Build a Debian 12 image shaped like Debian's genericcloud image, for tests and benches.

Users bring their own images; vmshadow's tests and benches need one with the
shape of a real cloud image (a partitioned disk with a bootloader, systemd,
cloud-init, the guest agent, python3) that any machine can make from Debian
packages, without downloading someone's disk image. ``vmshadow image build
--test-cloud`` makes it:

    <data_dir>/test-images/<digest>/debian-12-cloud.qcow2
    <data_dir>/test-images/<digest>/manifest.json

``digest`` hashes the inputs: the builder's version, the candidate versions
apt-cache gives for the packages the image installs (as the shadow image's
builder does for its kernel) and the versions of the host tools that write
the disk. Unchanged inputs reuse the cached image; a new package version in
the archive builds a new one. The image is read-only and root's: VMs boot
copy-on-write overlays of it.

Building needs root (mmdebstrap's root mode, a read-only loop mount for
GRUB's setup) and the Debian archive; it takes about a minute. ``--force``
replaces the image at the same path: an overlay made on the old one names
that path as its backing file, so delete such overlays first. Images of
older inputs stay until removed by hand, for the same reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vmshadow.domain.errors import ImageError
from vmshadow.image import testcloud_disk as disk
from vmshadow.image.commands import run
from vmshadow.image.files import sha256_of

# Bump when the image changes in a way the package versions do not show.
TESTCLOUD_VERSION = "3"  # 3: the initramfs holds fsck for the root
IMAGE_FILE = "debian-12-cloud.qcow2"
SUITE = "bookworm"
# Debian's own archive, as in Debian's cloud images (the image keeps these
# sources, so a VM made from it can install packages when it has a network).
MIRRORS = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
PACKAGES = (
    "linux-image-cloud-amd64",
    "systemd-sysv",
    "cloud-init",
    "openssh-server",
    "qemu-guest-agent",
    "python3",
    "sudo",
    "grub-pc",
    # cloud-init on Debian 12 writes ifupdown's configuration, and dhclient runs it.
    "ifupdown",
    "isc-dhcp-client",
    # growpart: cloud-init grows the root partition to a larger overlay's size.
    "cloud-guest-utils",
)
# The host tools whose output lands in the image (mke2fs's layout, GRUB's boot code).
HOST_TOOLS = ("mmdebstrap", "e2fsprogs", "gdisk", "grub-common", "grub-pc-bin", "qemu-utils")
DISK_BYTES = 2 * 2**30  # the virtual size of Debian's genericcloud image
MAX_IMAGE_BYTES = 400 * 10**6  # what the issue allows on disk; a bigger one is a bug
HOSTNAME = "debian"


@dataclass(frozen=True)
class CloudImage:
    """A built test cloud image and what its manifest says about it."""

    path: Path
    manifest: dict[str, object]

    @property
    def directory(self) -> Path:
        return self.path.parent

    def size_bytes(self) -> int:
        return self.path.stat().st_size


def cloud_images_dir(data_dir: Path) -> Path:
    return data_dir / "test-images"


def input_digest() -> tuple[str, dict[str, object]]:
    """Hash of every input of the image, and the inputs themselves for the manifest."""
    versions = _candidate_versions(PACKAGES)
    inputs: dict[str, object] = {
        "builder": TESTCLOUD_VERSION,
        "suite": SUITE,
        "mirrors": list(MIRRORS),
        "packages": versions,
        "host_tools": _installed_host_tools(),
        "disk_bytes": DISK_BYTES,
    }
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]
    return digest, inputs


def _stanzas(text: str) -> list[dict[str, str]]:
    """Debian control stanzas (apt-cache show, dpkg status) as dicts, without continuations."""
    return [
        dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and line[0] != " ")
        for block in text.split("\n\n")
        if block.strip()
    ]


def _candidate_versions(names: tuple[str, ...]) -> dict[str, str]:
    """apt-cache's candidate version of each package, and of the kernel the metapackage names.

    One apt-cache call for all of them: each call reads apt's whole cache (a
    second or so on a busy host), and this runs on every cache lookup.
    """
    stanzas = _stanzas(run(["apt-cache", "show", "--no-all-versions", *names]))
    versions = {st["Package"]: st["Version"] for st in stanzas if "Package" in st}
    missing = set(names) - versions.keys()
    if missing:
        raise ImageError(f"apt-cache knows no {', '.join(sorted(missing))}: run apt-get update")
    kernel_meta = next(st for st in stanzas if st.get("Package") == PACKAGES[0])
    kernels = [
        dep.strip().split(" ")[0]
        for dep in kernel_meta.get("Depends", "").split(",")
        if dep.strip().startswith("linux-image-")
    ]
    if len(kernels) != 1:
        raise ImageError(f"apt-cache shows no single kernel behind {PACKAGES[0]}: {kernels}")
    (kernel,) = _stanzas(run(["apt-cache", "show", "--no-all-versions", kernels[0]]))
    versions[kernel["Package"]] = kernel["Version"]
    return versions


def _installed_host_tools() -> dict[str, str]:
    out = run(
        ["dpkg-query", "-W", "-f", "${Package}\t${db:Status-Abbrev}${Version}\n", *HOST_TOOLS]
    )
    found = {}
    for line in out.splitlines():
        name, _, rest = line.partition("\t")
        status, version = rest[:3], rest[3:]
        if status.startswith("ii"):
            found[name.split(":")[0]] = version
    missing = set(HOST_TOOLS) - found.keys()
    if missing:
        raise ImageError(f"{', '.join(sorted(missing))} not installed: run ./scripts/setup")
    return found


def _load(directory: Path) -> CloudImage | None:
    image, manifest = directory / IMAGE_FILE, directory / "manifest.json"
    if not (image.is_file() and manifest.is_file()):
        return None
    return CloudImage(path=image, manifest=json.loads(manifest.read_text()))


def _require(directory: Path) -> CloudImage:
    image = _load(directory)
    if image is None:  # a rename just put both files there
        raise ImageError(f"the test cloud image vanished from {directory}")
    return image


def find_test_cloud_image(data_dir: Path) -> CloudImage | None:
    """The image matching today's inputs, if it is already built."""
    digest, _ = input_digest()
    return _load(cloud_images_dir(data_dir) / digest)


def build_test_cloud_image(
    data_dir: Path, *, force: bool = False, log: Callable[[str], None] | None = None
) -> CloudImage:
    """Build (or reuse) the test cloud image for today's inputs."""
    say = log or (lambda _msg: None)
    digest, inputs = input_digest()
    images = cloud_images_dir(data_dir)
    target = images / digest
    cached = _load(target)
    if cached is not None and not force:
        say(f"test cloud image {digest} is up to date")
        return cached
    if os.geteuid() != 0:
        raise ImageError(
            "building the test cloud image needs root (mmdebstrap's root mode and a "
            "loop device for GRUB's setup): run it with sudo"
        )
    images.mkdir(parents=True, exist_ok=True)
    # QEMU runs as libvirt-qemu and must be able to reach the image (read only).
    images.chmod(0o755)
    started = time.monotonic()
    with disk.scratch_dir(images) as tmp:
        work = Path(tmp)
        out = _build_into(work, digest=digest, inputs=inputs, say=say, started=started)
        if target.exists():
            if not force and _load(target) is not None:
                # Another build of the same inputs finished first: keep its image,
                # which VMs may already be using as a backing file.
                say(f"test cloud image {digest} was built meanwhile; keeping that one")
                return _require(target)
            # Moved aside first, so the path never holds half of either image.
            target.rename(work / "replaced")
        # A rename is atomic: a reader sees either no image or a whole one.
        out.rename(target)
    image = _require(target)
    say(
        f"test cloud image {digest} built in {image.manifest['build_seconds']} s, "
        f"{image.size_bytes() / 2**20:.0f} MiB"
    )
    return image


def _build_into(
    work: Path,
    *,
    digest: str,
    inputs: dict[str, object],
    say: Callable[[str], None],
    started: float,
) -> Path:
    root = work / "root"
    root.mkdir()
    say("installing Debian packages with mmdebstrap (about a minute)")
    # Derived from the digest: the same inputs give the same file system UUID.
    fs_uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"vmshadow-test-cloud:{digest}"))
    disk.bootstrap(root, suite=SUITE, packages=PACKAGES, mirrors=MIRRORS)
    installed = _installed_versions(root)
    release = disk.kernel_release(root)
    say(f"configuring the image (kernel {release}, root UUID {fs_uuid})")
    disk.configure_root(root, fs_uuid=fs_uuid, release=release, hostname=HOSTNAME)
    say("writing the partitioned disk and GRUB")
    raw = work / "disk.raw"
    disk.write_disk(root, raw, size_bytes=DISK_BYTES, fs_uuid=fs_uuid, work=work)
    _remove_tree(root)  # frees ~0.5 GB before the compressed copy is written
    say("compressing to qcow2")
    out = work / "out"
    out.mkdir()
    out.chmod(0o755)
    image = out / IMAGE_FILE
    disk.compress(raw, image)
    raw.unlink()
    size = image.stat().st_size
    if size > MAX_IMAGE_BYTES:
        raise ImageError(
            f"the test cloud image is {size / 10**6:.0f} MB, over its {MAX_IMAGE_BYTES / 10**6:.0f}"
            " MB limit: check what the packages pulled in"
        )
    # Read-only even to root's QEMU processes: VMs only ever read it, through overlays.
    image.chmod(0o444)
    manifest = {
        "digest": digest,
        "inputs": inputs,
        "installed": installed,
        "kernel_release": release,
        "fs_uuid": fs_uuid,
        "sha256": sha256_of(image),
        "size_bytes": size,
        "virtual_size_bytes": DISK_BYTES,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_seconds": round(time.monotonic() - started, 1),
    }
    manifest_path = out / "manifest.json"
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    manifest_path.chmod(0o444)
    return out


def _installed_versions(root: Path) -> dict[str, str]:
    """What the archive actually served: the host's apt lists may be older than the mirror."""
    wanted = set(PACKAGES)
    found = {
        st["Package"]: st.get("Version", "")
        for st in _stanzas((root / "var" / "lib" / "dpkg" / "status").read_text())
        if st.get("Package") in wanted or st.get("Package", "").startswith("linux-image-")
    }
    missing = wanted - found.keys()
    if missing:
        raise ImageError(f"mmdebstrap did not install {', '.join(sorted(missing))}")
    return found


def _remove_tree(path: Path) -> None:
    # The image and manifest are 0444; their folder is writable, so unlinking works.
    shutil.rmtree(path)
