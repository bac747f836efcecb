"""Templates: a booted shadow's running state, saved once per image and restored
by every later shadow of it instead of a boot.

A template lives in ``<data_dir>/templates/<key>/``: the libvirt save file
(``state.sav``: the guest's memory and devices with its agent up, waiting
for the host), the overlay the guest had written when it was saved, frozen
(``overlay.qcow2``: each restored shadow gets a new overlay backed by it; an
overlay of the base alone would not hold what the saved guest's page cache
and ext4 journal believe is on disk), the save file's header region as
saved (``header.bin``: restores rewrite the file's header and put this
back, see ``hypervisor.savefile``) and a record (``template.json``).

``key`` hashes every input the saved state depends on: the image (the
built-in image's build hash and base hash, or a store image's files and the
tools disk that carries the agent), kernel, initrd and their arguments, the
shadow's size and scratch cache mode, the accelerator, the layout of the
domain XML, and the libvirt and QEMU versions (QEMU's migration stream is
only promised to load into the QEMU that wrote it). Any change gives a new
key; the template of the old key is pruned when the new one is saved.

A template is saved from a cold-booted shadow in place (``ShadowSession``):
no extra guest boots for it. The folder is assembled under a temporary name
(``.build-<key>-<pid>``, swept by the reaper when its owner died) and renamed
into place, under a per-key lock, so no reader ever sees half a template and
two shadows never build the same one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from vmshadow.domain.errors import HypervisorError, ImageError
from vmshadow.domain.shadow import ShadowSpec
from vmshadow.hypervisor.filemodes import make_private_dir, private_dir, private_disk, qemu_readable
from vmshadow.hypervisor.savefile import SavedState, parse_region, read_region, root_chain
from vmshadow.image.files import ImageFiles

# Bump when the shadow's domain XML or the way a template is saved changes:
# every template saved before is then rebuilt.
TEMPLATE_LAYOUT = 1
TEMPLATES_DIR = "templates"
STATE_FILE = "state.sav"
OVERLAY_FILE = "overlay.qcow2"
HEADER_FILE = "header.bin"
RECORD_FILE = "template.json"
BUILD_PREFIX = ".build-"
LOCK_PREFIX = ".lock-"
OWNER_FILE = "owner"  # host:pid of the builder, as in a shadow's run folder


def _file_identity(path: Path) -> list[object]:
    """What changes when a file does, without hashing gigabytes per shadow:
    a store image is replaced (new inode) or rewritten (size, mtime)."""
    st = path.stat()
    return [str(path), st.st_ino, st.st_size, st.st_mtime_ns]


def template_inputs(
    image: ImageFiles,
    spec: ShadowSpec,
    *,
    scratch_cache: str,
    versions: Mapping[str, str],
) -> dict[str, object]:
    """Everything a saved shadow of ``spec`` depends on (``spec.target``: a store image's)."""
    inputs: dict[str, object] = {
        "layout": TEMPLATE_LAYOUT,
        "size": [spec.size.vcpus, spec.size.memory_mib, spec.size.scratch_mib],
        "accelerator": spec.accelerator.value,
        "scratch_cache": scratch_cache,
        "libvirt": versions.get("libvirt", ""),
        "qemu": versions.get("hypervisor", ""),
    }
    if spec.target is None:
        # The image folder is named by the hash of its inputs (agent included);
        # the base's own hash covers a rebuild in place.
        inputs["image"] = ["builtin", image.directory.name, image.manifest.get("base_sha256")]
        inputs["kernel"] = [str(spec.kernel), str(spec.initrd), list(spec.kernel_args)]
    else:
        t = spec.target
        inputs["image"] = [t.image, [[*_file_identity(p), fmt] for p, fmt in t.chain]]
        # The tools disk carries the agent, stress-ng and fio of a target OS.
        inputs["tools"] = _file_identity(t.tools)
    return inputs


def template_key(inputs: Mapping[str, object]) -> str:
    text = json.dumps(inputs, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def image_label(spec: ShadowSpec) -> str:
    """Which image a template is of: its older templates are pruned when it is saved anew."""
    return "builtin" if spec.target is None else f"store:{spec.target.image}"


@dataclass(frozen=True)
class Template:
    key: str
    directory: Path
    saved: SavedState

    @property
    def overlay(self) -> Path:
        return self.directory / OVERLAY_FILE


@dataclass(frozen=True)
class TemplateBuild:
    """A template being assembled: its key, inputs and temporary folder."""

    key: str
    inputs: dict[str, object]
    label: str
    below: tuple[tuple[Path, str], ...]
    directory: Path

    @property
    def state_file(self) -> Path:
        return self.directory / STATE_FILE


class TemplateStore:
    """The templates under one data folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _ensure_root(self) -> None:
        self.root.parent.mkdir(parents=True, exist_ok=True)
        make_private_dir(self.root, exist_ok=True)

    def find(self, key: str, below: Sequence[tuple[Path, str]]) -> Template | None:
        """The template of ``key``; None when there is none.

        ``ImageError`` when there is one but it is damaged (a file missing or
        of another size than saved, a header that is not libvirt's): the
        caller boots cold, says why, and discards it."""
        directory = self.root / key
        record_path = directory / RECORD_FILE
        if not record_path.is_file():
            return None
        try:
            record = json.loads(record_path.read_text())
            state = directory / STATE_FILE
            header = (directory / HEADER_FILE).read_bytes()
            if record.get("key") != key:
                raise ValueError(f"it records key {record.get('key')!r}")
            size = state.stat().st_size
            if size != record.get("state_bytes"):
                raise ValueError(
                    f"{STATE_FILE} is {size} bytes, {record.get('state_bytes')} were saved"
                )
            if not (directory / OVERLAY_FILE).is_file():
                raise ValueError(f"it has no {OVERLAY_FILE}")
            parse_region(header, where=HEADER_FILE)
            if hashlib.sha256(header).hexdigest() != record.get("header_sha256"):
                raise ValueError(f"{HEADER_FILE} changed since it was saved")
        except (OSError, ValueError, HypervisorError) as exc:
            raise ImageError(f"template {key} is damaged: {exc}") from exc
        chain = root_chain(directory / OVERLAY_FILE, below)
        return Template(key, directory, SavedState(state, header, chain))

    def discard(self, key: str) -> None:
        """Remove a template (damaged, or of inputs no longer used); shadows
        restored from it keep their open files."""
        directory = self.root / key
        if not directory.exists():
            return
        # Renamed first: a reader never sees a folder half deleted.
        doomed = self.root / f"{BUILD_PREFIX}{key}-discard-{os.getpid()}-{time.monotonic_ns()}"
        with contextlib.suppress(OSError):
            directory.rename(doomed)
            shutil.rmtree(doomed, ignore_errors=True)

    @contextlib.contextmanager
    def building(
        self,
        key: str,
        inputs: dict[str, object],
        label: str,
        below: Sequence[tuple[Path, str]],
    ) -> Iterator[TemplateBuild | None]:
        """A folder to save template ``key`` into, or None when another process
        is saving it right now (or it exists). Removed unless ``finish`` ran."""
        self._ensure_root()
        lock_fd = os.open(self.root / f"{LOCK_PREFIX}{key}", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield None
                return
            if (self.root / key / RECORD_FILE).is_file():
                yield None
                return
            directory = self.root / f"{BUILD_PREFIX}{key}-{os.getpid()}"
            shutil.rmtree(directory, ignore_errors=True)
            make_private_dir(directory)
            (directory / OWNER_FILE).write_text(f"{socket.gethostname()}:{os.getpid()}\n")
            try:
                yield TemplateBuild(key, inputs, label, tuple(below), directory)
            finally:
                shutil.rmtree(directory, ignore_errors=True)
        finally:
            os.close(lock_fd)

    def finish(self, build: TemplateBuild, overlay: Path) -> Template:
        """Make ``build`` a template: the saved overlay moved in, frozen, the
        record written, the folder renamed into place; older templates of
        the same image pruned."""
        d = build.directory
        state = build.state_file
        try:
            frozen = d / OVERLAY_FILE
            shutil.move(overlay, frozen)
            # Read by every restored shadow's QEMU through the group, written by none.
            qemu_readable(frozen)
            private_disk(state)  # read by libvirtd (root) alone
            header = read_region(state)
            (d / HEADER_FILE).write_bytes(header)
            private_disk(d / HEADER_FILE)
            record = {
                "key": build.key,
                "image": build.label,
                "inputs": build.inputs,
                "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "state_bytes": state.stat().st_size,
                "header_sha256": hashlib.sha256(header).hexdigest(),
            }
            (d / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n")
            (d / OWNER_FILE).unlink()
            private_dir(d)
            d.rename(self.root / build.key)
        except OSError as exc:
            raise ImageError(f"cannot store template {build.key}: {exc}") from exc
        self.prune(keep=build.key, label=build.label)
        found = self.find(build.key, build.below)
        assert found is not None
        return found

    def prune(self, *, keep: str, label: str) -> list[str]:
        """Remove the other templates of image ``label``, and any template whose
        image files are gone (a store image removed, an old built-in image
        cleaned away); returns their keys."""
        pruned = []
        for folder in sorted(self.root.iterdir()) if self.root.is_dir() else []:
            if folder.name == keep or folder.name.startswith(".") or not folder.is_dir():
                continue
            try:
                record = json.loads((folder / RECORD_FILE).read_text())
            except (OSError, ValueError):
                record = {"image": label}  # unreadable: not a template anyone can use
            if record.get("image") == label or _files_gone(record.get("inputs")):
                self.discard(folder.name)
                (self.root / f"{LOCK_PREFIX}{folder.name}").unlink(missing_ok=True)
                pruned.append(folder.name)
        return pruned


def _files_gone(inputs: object) -> bool:
    """True when a file the template was saved from no longer exists."""
    if not isinstance(inputs, dict):
        return False
    paths: list[object] = []
    kernel = inputs.get("kernel")
    if isinstance(kernel, list):
        paths += kernel[:2]
    image = inputs.get("image")
    if isinstance(image, list) and len(image) == 2 and isinstance(image[1], list):
        paths += [f[0] for f in image[1] if isinstance(f, list) and f]
    tools = inputs.get("tools")
    if isinstance(tools, list) and tools:
        paths.append(tools[0])
    return any(isinstance(p, str) and not Path(p).exists() for p in paths)


__all__ = [
    "TEMPLATES_DIR",
    "TEMPLATE_LAYOUT",
    "Template",
    "TemplateBuild",
    "TemplateStore",
    "image_label",
    "template_inputs",
    "template_key",
]
