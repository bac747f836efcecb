"""What every controller step needs: settings, store, host pool, image, predictor."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from vmshadow.config import Settings
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.prediction import Predictor
from vmshadow.domain.shadow import Accelerator, ShadowSize
from vmshadow.domain.transition import Transition
from vmshadow.domain.vm import BuiltinImage, DiskImage, FullVmSpec, GuestSetup, VmVolumes
from vmshadow.hypervisor.filemodes import private_dir, qemu_readable
from vmshadow.hypervisor.pool import HostPool
from vmshadow.hypervisor.port import Host, Hypervisor
from vmshadow.image.files import ImageFiles
from vmshadow.image.userstore import BUILTIN, resolve_user_image
from vmshadow.shadow.session import OnPoint, ShadowSession
from vmshadow.shadow.targetos import shadow_image
from vmshadow.shadow.templates import TemplateStore
from vmshadow.store.repository import Store, now


class ShadowSessionFactory(Protocol):
    """Makes the session a step boots its shadow with: ``ShadowSession`` itself,
    or a stand-in where no guest can run (``bench/scale.py`` on the test driver)."""

    def __call__(
        self,
        hypervisor: Hypervisor,
        image: ImageFiles,
        runs_dir: Path,
        *,
        accelerator: Accelerator,
        size: ShadowSize,
        hello_timeout_s: float,
        sample_interval_s: float,
        scratch_cache: str,
        transition_id: str | None,
        on_point: OnPoint | None,
        abort: Callable[[], object] | None,
        templates: TemplateStore | None,
    ) -> ShadowSession: ...


@dataclass
class Context:
    settings: Settings
    store: Store
    image: ImageFiles
    accelerator: Accelerator
    predictor: Predictor
    owner: str
    pool: HostPool
    stop: threading.Event = field(default_factory=threading.Event)
    shadow_slots: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(1)
    )
    # Transitions whose lease another controller took over: their worker stops.
    lost: set[str] = field(default_factory=set)
    shadow_session: ShadowSessionFactory = ShadowSession

    def hypervisor(self, host: str | None = None) -> Host:
        """The shared connection to ``host`` (the pool's first host when None:
        records from before the host pool have no host)."""
        return self.pool.connect(host)


def vm_image(ctx: Context, image: str) -> BuiltinImage | DiskImage:
    if image == BUILTIN:
        ctx.image.verify_base()
        return BuiltinImage(kernel=ctx.image.kernel, initrd=ctx.image.initrd, base=ctx.image.base)
    return user_image(ctx.settings, image)


def user_image(settings: Settings, name: str) -> DiskImage:
    """The store image ``name``, checked again here, not only at create: the
    store may have changed since."""
    found = resolve_user_image(settings.user_images_dir, name)
    # QEMU reads the chain through its group (the domain keeps libvirt from
    # relabelling it): the store and its images are shared and read-only.
    private_dir(found.path.parent)
    for path, _fmt in found.chain:
        qemu_readable(path)
    return DiskImage(
        path=found.path,
        format=found.format,
        backing=found.backing,
        virtual_size=found.virtual_size,
    )


def shadow_image_for(settings: Settings, builtin: ImageFiles, image: str) -> ImageFiles:
    """What a shadow for ``image`` boots: the built-in image, or the store
    image's own OS with the built-in one as its fallback (``shadow.targetos``);
    the store image is checked again, with its whole chain, as a VM's is."""

    def chain(name: str) -> tuple[tuple[Path, str], ...]:
        found = user_image(settings, name)
        return ((found.path, found.format), *found.backing)

    return shadow_image(builtin, image, chain, settings.data_dir)


def full_vm_spec(
    ctx: Context, row: Transition, allocation: Allocation, host_cpus: int
) -> FullVmSpec:
    """The pending VM's definition. Its maxima leave room to grow live later:
    all host CPUs, and memory as allocated (the balloon can only shrink it)."""
    # A store image's VM always has a set-up; one made before there were any
    # gets the defaults: the image's own user, no keys, no NIC.
    guest = None
    if row.image != BUILTIN:
        guest = GuestSetup.from_dict(row.guest) if row.guest else GuestSetup()
    return FullVmSpec(
        name=row.vm_name,
        transition_id=row.id,
        allocation=allocation,
        max_vcpus=max(allocation.vcpus, host_cpus),
        max_memory_mib=allocation.memory_mib,
        accelerator=ctx.accelerator,
        image=vm_image(ctx, row.image),
        vm_dir=ctx.settings.vms_dir / row.vm_name,
        created_at=now().strftime("%Y-%m-%dT%H:%M:%SZ"),
        owner=ctx.owner,
        guest=guest,
        volumes=VmVolumes(ctx.settings.disks_pool, ctx.settings.vm_disks_dir),
    )
