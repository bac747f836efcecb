"""Every input error of a new transition at once, so that a form can mark all its fields.

``TransitionService.create`` stops at the first refusal: right for the
service, which must never half-create, but a user who mistyped three fields
then learns of them one submit at a time. These are the same checks, in the
same order and with the same words, run side by side; ``create`` still runs
them all again before it stores anything.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from vmshadow.api.schemas import CreateTransition
from vmshadow.controller.schedule import check_scheduled_at
from vmshadow.controller.service import TransitionService
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.errors import ConfigError
from vmshadow.domain.vm import validate_vm_name
from vmshadow.image.userstore import check_image_name
from vmshadow.workloads.catalog import check_profile, profile_names

# The smallest size the schema accepts: a stand-in for the resource not being checked.
_MIN_VCPUS, _MIN_MEMORY_MIB = 1, 128


def input_problems(service: TransitionService, body: CreateTransition) -> list[ConfigError]:
    """The ConfigErrors ``service.create`` would raise one by one, all of them.

    Only input errors: a name already taken or a VM that is not managed depend
    on the hosts' state, and stay ``create``'s (409 and 404).
    """
    found: list[ConfigError] = []

    def check(fn: Callable[[], object]) -> None:
        try:
            fn()
        except ConfigError as exc:
            found.append(exc)

    def profile() -> None:
        if body.profile not in profile_names():
            raise ConfigError(
                "profile", f"unknown profile {body.profile!r}; known: {profile_names()}"
            )
        check_profile(body.profile, body.load)

    def load() -> None:
        if body.load is not None and not 0 < body.load < 1e9:
            raise ConfigError("load", "must be a positive number")

    def requested() -> None:
        if body.kind == "launch" and body.requested is None:
            raise ConfigError("requested", "a launch needs a requested size")

    check(lambda: validate_vm_name(body.vm_name))
    check(profile)
    check(lambda: check_image_name(body.image))
    check(load)
    controller = service.settings.controller
    check(lambda: check_scheduled_at(body.scheduled_at, controller, datetime.now(UTC)))
    check(requested)
    if body.requested is not None:
        size = body.requested
        host = service._largest_host()
        # check_size stops at vCPUs; each resource checked with the other at its
        # minimum reports both when both are too large.
        check(lambda: service.check_size(Allocation(size.vcpus, _MIN_MEMORY_MIB), host))
        check(lambda: service.check_size(Allocation(_MIN_VCPUS, size.memory_mib), host))
    return found
