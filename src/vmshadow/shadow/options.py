"""What the settings decide about every shadow, and the built-in image it boots.

Kept apart from ``session`` (which re-exports both) so the session module
holds the session alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict

from vmshadow.domain.errors import ImageError
from vmshadow.domain.shadow import ShadowSize
from vmshadow.image.builder import find_image
from vmshadow.image.files import ImageFiles
from vmshadow.shadow.templates import TEMPLATES_DIR, TemplateStore

if TYPE_CHECKING:
    from vmshadow.config import Settings


class SessionOptions(TypedDict):
    """What the settings decide about every shadow (``ShadowSession``'s keywords)."""

    size: ShadowSize
    hello_timeout_s: float
    sample_interval_s: float
    scratch_cache: str
    templates: TemplateStore | None  # None: every shadow boots cold


def session_options(settings: Settings) -> SessionOptions:
    """The shadow the settings ask for, for every caller that boots one: the
    ramp's saturation and memory checks assume this size (a caller that booted
    the default size instead never saw its ramp saturate)."""
    s = settings.shadow
    return SessionOptions(
        size=ShadowSize(vcpus=s.vcpus, memory_mib=s.memory_mib, scratch_mib=s.scratch_mib),
        hello_timeout_s=s.hello_timeout_s,
        sample_interval_s=s.sample_interval_s,
        scratch_cache=s.scratch_cache,
        templates=TemplateStore(settings.data_dir / TEMPLATES_DIR) if s.templates else None,
    )


def require_image(settings: Settings) -> ImageFiles:
    """The shadow image built from the current inputs, or ``ImageError`` saying how to build it."""
    image = find_image(settings.images_dir)
    if image is None:
        raise ImageError(
            f"no shadow image for the current inputs in {settings.images_dir}: "
            "run `vmshadow image build`"
        )
    return image
