"""Build the shadow base image from Debian packages.

The image has three files, kept together in a directory named by the hash of
everything that went into them, so a change of any input (kernel package,
host tool versions, agent source, guest scripts) builds a new image and an
unchanged input reuses the cached one:

- ``vmlinuz``: the Debian cloud kernel (``linux-image-cloud-amd64``);
- ``initrd.img``: a busybox initramfs that loads the virtio modules and
  mounts the root disk;
- ``base.qcow2``: an ext4 root holding busybox, python3 (for the agent),
  ``stress-ng`` and ``fio`` with exactly the shared libraries they link.

Shadows never write to ``base.qcow2``: each boots from a copy-on-write overlay.
Building needs no root: ``apt-get download`` fetches the kernel package,
``dpkg-deb -x`` unpacks it and ``mke2fs -d`` fills a file system from a folder.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from importlib import resources
from pathlib import Path

from vmshadow.domain.errors import ImageError
from vmshadow.image.commands import run
from vmshadow.image.cpio import write_newc_archive
from vmshadow.image.files import ImageFiles, sha256_of
from vmshadow.image.hostfiles import copy_with_libraries, package_version, trimmed_stdlib

# Bump when the layout of the image changes in a way the inputs do not show.
BUILDER_VERSION = "2"  # 2: the base is read-only and its hash recorded
KERNEL_PACKAGE = "linux-image-cloud-amd64"
HOST_PACKAGES = ("busybox-static", "stress-ng", "fio")
GUEST_TOOLS = ("/usr/bin/stress-ng", "/usr/bin/fio")
# The cloud kernel builds virtio as modules. virtio_ring must load before
# virtio, and virtio_pci needs both PCI transport helpers first.
VIRTIO_MODULES = (
    "drivers/virtio/virtio_ring",
    "drivers/virtio/virtio",
    "drivers/virtio/virtio_pci_modern_dev",
    "drivers/virtio/virtio_pci_legacy_dev",
    "drivers/virtio/virtio_pci",
    "drivers/block/virtio_blk",
    "drivers/char/virtio_console",
    "drivers/virtio/virtio_balloon",
    # Entropy from the host: without it the guest's CRNG takes seconds to
    # initialise under TCG and the agent's first getrandom() waits for it.
    "drivers/char/hw_random/virtio-rng",
)
ROOT_FS_SLACK = 1.25
ROOT_FS_EXTRA_MIB = 48


def _guest_scripts() -> dict[str, bytes]:
    folder = resources.files("vmshadow.image") / "guest"
    return {name: (folder / name).read_bytes() for name in ("initramfs-init", "root-init")}


def _agent_sources() -> dict[str, bytes]:
    folder = resources.files("vmshadow.agent")
    return {
        entry.name: entry.read_bytes() for entry in folder.iterdir() if entry.name.endswith(".py")
    }


# What apt-cache's answer depends on: a new package list or install changes these.
APT_STATE = (
    Path("/var/cache/apt/pkgcache.bin"),
    Path("/var/lib/apt/lists"),
    Path("/var/lib/dpkg/status"),
)
KERNEL_CACHE = ".kernel-candidate.json"


def _apt_state() -> list[list[int] | None]:
    out: list[list[int] | None] = []
    for path in APT_STATE:
        try:
            st = path.stat()
        except OSError:
            out.append(None)
        else:
            out.append([st.st_mtime_ns, st.st_size])
    return out


def kernel_candidate(cache_dir: Path | None = None) -> tuple[str, str]:
    """Return (binary package, version) that ``linux-image-cloud-amd64`` points at.

    ``cache_dir``: remember the answer there while apt's state is unchanged:
    two ``apt-cache show`` calls took 1.5 s of every ``vmshadow plan``."""
    key = _apt_state()
    cached = cache_dir / KERNEL_CACHE if cache_dir is not None else None
    if cached is not None:
        try:
            got = json.loads(cached.read_text())
            if got.get("apt_state") == key:
                return str(got["package"]), str(got["version"])
        except (OSError, ValueError, KeyError, AttributeError):
            pass  # no cache, or another version's: ask apt-cache
    name, version = _ask_apt_cache()
    if cached is not None and cached.parent.is_dir():
        tmp = cached.with_name(f"{KERNEL_CACHE}.{os.getpid()}")
        try:
            tmp.write_text(json.dumps({"apt_state": key, "package": name, "version": version}))
            os.replace(tmp, cached)
        except OSError:
            tmp.unlink(missing_ok=True)  # a read-only images folder: ask again next time
    return name, version


def _ask_apt_cache() -> tuple[str, str]:
    out = run(["apt-cache", "show", "--no-all-versions", KERNEL_PACKAGE])
    for line in out.splitlines():
        if line.startswith("Depends:"):
            for dep in line.split(":", 1)[1].split(","):
                name = dep.strip().split(" ")[0]
                if name.startswith("linux-image-"):
                    version = package_version_from_cache(name)
                    return name, version
    raise ImageError(f"apt-cache shows no kernel behind {KERNEL_PACKAGE}: run apt-get update")


def package_version_from_cache(name: str) -> str:
    out = run(["apt-cache", "show", "--no-all-versions", name])
    for line in out.splitlines():
        if line.startswith("Version:"):
            return line.split(":", 1)[1].strip()
    raise ImageError(f"apt-cache has no version for {name}")


def input_digest(cache_dir: Path | None = None) -> tuple[str, dict[str, object]]:
    """Hash of every input of the image, and the inputs themselves for the manifest
    (``cache_dir``: see ``kernel_candidate``)."""
    kernel_pkg, kernel_version = kernel_candidate(cache_dir)
    python = Path(os.path.realpath("/usr/bin/python3"))
    inputs: dict[str, object] = {
        "builder": BUILDER_VERSION,
        "kernel": {"package": kernel_pkg, "version": kernel_version},
        "packages": {name: package_version(name) for name in HOST_PACKAGES},
        "python": {"binary": str(python), "version": package_version(f"{python.name}-minimal")},
        "modules": list(VIRTIO_MODULES),
    }
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode())
    for group in (_guest_scripts(), _agent_sources()):
        for name in sorted(group):
            digest.update(name.encode() + b"\0" + group[name])
    return digest.hexdigest()[:16], inputs


def find_image(images_dir: Path) -> ImageFiles | None:
    """The image matching today's inputs, if it is already built."""
    digest, _ = input_digest(images_dir)
    files = ImageFiles.at(images_dir / digest)
    return files if files.complete() else None


def build_image(
    images_dir: Path, *, force: bool = False, log: Callable[[str], None] | None = None
) -> ImageFiles:
    """Build (or reuse) the base image for the current inputs; returns its files."""
    say = log or (lambda _msg: None)
    digest, inputs = input_digest(images_dir)
    target = images_dir / digest
    files = ImageFiles.at(target)
    if files.complete() and not force:
        say(f"image {digest} is up to date")
        return files
    images_dir.mkdir(parents=True, exist_ok=True)
    # QEMU runs as libvirt-qemu and must read the kernel, initrd and base image.
    os.chmod(images_dir, 0o755)  # noqa: S103
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=".build-", dir=images_dir) as tmp:
        work = Path(tmp)
        say("fetching the kernel package")
        kernel_root = _unpack_kernel(work, inputs["kernel"])  # type: ignore[arg-type]
        say("assembling the root file system")
        root = work / "root"
        _assemble_root(root)
        out = work / "out"
        out.mkdir()
        out.chmod(0o755)
        version = _kernel_release(kernel_root)
        shutil.copyfile(kernel_root / "boot" / f"vmlinuz-{version}", out / "vmlinuz")
        say("writing the initramfs")
        _write_initramfs(out / "initrd.img", kernel_root / "lib" / "modules" / version)
        say("writing the root disk")
        _write_root_disk(root, work, out / "base.qcow2")
        for name in ("vmlinuz", "initrd.img"):
            (out / name).chmod(0o644)
        # Read-only, even to its owner: shadows only ever read it (see verify_base).
        (out / "base.qcow2").chmod(0o444)
        manifest = {
            "base_sha256": sha256_of(out / "base.qcow2"),
            "digest": digest,
            "inputs": inputs,
            "kernel_release": version,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "build_seconds": round(time.monotonic() - started, 1),
        }
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
        if target.exists():
            shutil.rmtree(target)
        # A rename is atomic: a reader sees either no image or a whole one.
        out.rename(target)
    files = ImageFiles.at(target)
    say(
        f"image {digest} built in {files.manifest['build_seconds']} s, "
        f"{files.size_bytes() / 2**20:.0f} MiB"
    )
    return files


def _unpack_kernel(work: Path, kernel: dict[str, str]) -> Path:
    debs = work / "debs"
    debs.mkdir()
    run(["apt-get", "download", f"{kernel['package']}={kernel['version']}"], cwd=debs)
    (deb,) = list(debs.glob("*.deb"))
    unpacked = work / "kernel"
    run(["dpkg-deb", "-x", str(deb), str(unpacked)])
    return unpacked


def _kernel_release(kernel_root: Path) -> str:
    releases = [p.name for p in (kernel_root / "lib" / "modules").iterdir()]
    if len(releases) != 1:
        raise ImageError(f"expected one kernel release in the package, found {releases}")
    return releases[0]


def _module_file(modules_dir: Path, name: str) -> Path:
    for suffix in (".ko", ".ko.xz", ".ko.zst"):
        candidate = modules_dir / "kernel" / f"{name}{suffix}"
        if candidate.exists():
            return candidate
    raise ImageError(f"kernel module {name} is missing from the kernel package")


def _write_initramfs(path: Path, modules_dir: Path) -> None:
    entries: list[tuple[str, int, bytes | None]] = [
        (d, 0o040755, None) for d in ("bin", "dev", "proc", "sys", "newroot", "modules")
    ]
    entries.append(("bin/busybox", 0o100755, Path("/bin/busybox").read_bytes()))
    entries.append(("init", 0o100755, _guest_scripts()["initramfs-init"]))
    order = []
    for name in VIRTIO_MODULES:
        source = _module_file(modules_dir, name)
        data = source.read_bytes()
        if source.suffix == ".xz":
            import lzma

            data = lzma.decompress(data)
        elif source.suffix == ".zst":
            data = subprocess.run(
                ["zstd", "-dc", str(source)], capture_output=True, check=True
            ).stdout
        base = Path(name).name
        order.append(base)
        entries.append((f"modules/{base}.ko", 0o100644, data))
    entries.append(("modules.order", 0o100644, ("\n".join(order) + "\n").encode()))
    with gzip.open(path, "wb", compresslevel=6) as out:
        write_newc_archive(out, entries)


def _assemble_root(root: Path) -> None:
    for d in ("bin", "sbin", "dev", "proc", "sys", "tmp", "etc", "opt/vmshadow", "root", "run"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    shutil.copy2("/bin/busybox", root / "bin" / "busybox")
    applets = run(["/bin/busybox", "--list"]).split()
    for applet in applets:
        link = root / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")
    python = Path(os.path.realpath("/usr/bin/python3"))
    elves: list[Path] = [python, *map(Path, GUEST_TOOLS)]
    stdlib = Path("/usr/lib") / python.name
    elves += trimmed_stdlib(stdlib, root / stdlib.relative_to("/"))
    copy_with_libraries(elves, root)
    (root / "usr" / "bin").mkdir(parents=True, exist_ok=True)
    py3 = root / "usr" / "bin" / "python3"
    if not py3.exists():
        py3.symlink_to(python.name)
    _install_agent(root / "opt" / "vmshadow")
    init = root / "sbin" / "vmshadow-init"
    init.write_bytes(_guest_scripts()["root-init"])
    init.chmod(0o755)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    (root / "etc" / "hostname").write_text("vmshadow-shadow\n")
    # Byte-compile once here: compiling at every boot costs seconds under TCG.
    run(
        [
            str(python),
            "-m",
            "compileall",
            "-q",
            "-j",
            "0",
            "-d",
            "/",
            str(root / "usr" / "lib"),
            str(root / "opt" / "vmshadow"),
        ]
    )


def _install_agent(dest: Path) -> None:
    package = dest / "vmshadow"
    (package / "agent").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for name, data in _agent_sources().items():
        (package / "agent" / name).write_bytes(data)


def _tree_bytes(root: Path) -> int:
    return sum(p.lstat().st_size for p in root.rglob("*"))


def _write_root_disk(root: Path, work: Path, target: Path) -> None:
    raw = work / "root.ext4"
    size_mib = int(_tree_bytes(root) * ROOT_FS_SLACK / 2**20) + ROOT_FS_EXTRA_MIB
    run(
        [
            "mke2fs",
            "-q",
            "-F",
            "-t",
            "ext4",
            "-L",
            "vmshadow-root",
            "-O",
            "^has_journal",
            "-E",
            "root_owner=0:0",
            "-d",
            str(root),
            str(raw),
            f"{size_mib}M",
        ]
    )
    # Compressed clusters keep the base small; shadows only read it, through an overlay.
    run(["qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", str(raw), str(target)])


def list_images(images_dir: Path) -> Iterable[ImageFiles]:
    if not images_dir.is_dir():
        return []
    return [
        ImageFiles.at(p)
        for p in sorted(images_dir.iterdir())
        if p.is_dir() and not p.name.startswith(".")
    ]
