"""The image store: ``/images`` to list, show, upload (``PUT``) and remove images.

Thin over ``image.catalog``, which ``vmshadow image add/ls/rm`` share, so an
upload gets exactly the checks of ``image add``. The upload is streamed into
a hidden partial file in the store as it arrives (never held in memory), and
that file is removed whatever ends the request early: a client that goes
away, a body shorter or longer than its ``Content-Length``, a refused image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.params import Depends
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from vmshadow.api.errors import error_response
from vmshadow.api.guards import UPLOAD_MAX_BYTES, UPLOAD_TYPE
from vmshadow.controller.service import TransitionService
from vmshadow.domain.errors import ConfigError, ConflictError
from vmshadow.image.catalog import ImageCatalog, ImageInUse, Users, image_users
from vmshadow.image.importing import (
    CHUNK,
    Partial,
    check_default_user,
    check_new_name,
    check_os_variant,
)

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {UPLOAD_TYPE: {"schema": {"type": "string", "format": "binary"}}},
    }
}


def images_router(service: TransitionService, auth: Sequence[Depends]) -> APIRouter:
    router = APIRouter(tags=["images"])
    auth = list(auth)
    catalog = ImageCatalog.from_settings(service.settings)
    pool = service.pool
    run = anyio.to_thread.run_sync  # qemu-img, libvirt, the store and the disk all block

    def users() -> dict[str, Users]:
        # Every host of the pool: a VM on any of them may be backed by a store image.
        hosts = [pool.connect(n) for n in pool.names]
        return image_users(catalog.store_dir, hosts, service.store)

    @router.get("/images")
    async def list_images() -> list[dict[str, Any]]:
        return await run(lambda: [i.to_json() for i in catalog.images(users())])

    @router.get("/images/{name}")
    async def show_image(name: str) -> dict[str, Any]:
        return await run(lambda: catalog.get(name, users()).to_json())

    @router.delete("/images/{name}", dependencies=auth)
    async def remove_image(name: str) -> Response:
        try:
            info = await run(lambda: catalog.remove(name, pool.connect(), users()))
        except ImageInUse as exc:
            reason = str(exc).partition(": ")[2]
            return error_response(
                409,
                str(exc),
                "name",
                reason,
                in_use_by=exc.vms,
                transitions=exc.transitions,
                images=exc.images,
            )
        return JSONResponse(info.to_json())

    @router.put("/images/{name}", status_code=201, dependencies=auth, openapi_extra=_UPLOAD_BODY)
    async def upload_image(
        name: str,
        request: Request,
        os_variant: Annotated[str | None, Query(description="osinfo ID, e.g. debian12")] = None,
        default_user: Annotated[
            str | None, Query(description="the image's cloud user; default from os_variant")
        ] = None,
    ) -> Response:
        # Everything that can be refused is refused before a byte is read.
        check_new_name(name)
        check_os_variant(os_variant)
        check_default_user(default_user)
        ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if ctype != UPLOAD_TYPE:
            return error_response(
                415, f"send the image as {UPLOAD_TYPE}", "Content-Type", f"not {ctype or 'given'}"
            )
        length = request.headers.get("content-length", "")
        if not length.isdigit():
            return error_response(411, "send a Content-Length with the image", "Content-Length")
        expected = int(length)
        if expected > UPLOAD_MAX_BYTES:  # the guard's check, kept here for direct callers
            return error_response(413, f"body larger than {UPLOAD_MAX_BYTES} bytes", "body")
        host = await run(pool.connect)
        await run(catalog.ensure_pool, host)
        try:
            partial = await run(catalog.start, name)
        except ConflictError as exc:  # the name is taken: say which field
            return error_response(409, str(exc), "name", str(exc).partition(": ")[2])
        try:
            try:
                await _receive(request, partial, expected)
            except ClientDisconnect:
                # Nobody reads this answer; it keeps a traceback out of the log.
                return error_response(400, "the client went away: nothing was kept", "body")
            info = await run(
                lambda: catalog.finish(
                    partial,
                    name,
                    host,
                    shown=f"the upload of {name}",
                    os_variant=os_variant,
                    default_user=default_user,
                    what="body",
                )
            )
        finally:
            # Synchronous on purpose: an await here could itself be cancelled.
            partial.discard()
        return JSONResponse(info.to_json(), status_code=201, headers={"Location": request.url.path})

    return router


async def _receive(request: Request, partial: Partial, expected: int) -> None:
    """The body into ``partial``, a chunk at a time, exactly ``expected`` bytes."""
    run = anyio.to_thread.run_sync  # hashing and writing block
    pending = bytearray()
    async for chunk in request.stream():  # ClientDisconnect if the client goes
        pending += chunk
        if partial.size + len(pending) > expected:
            raise ConfigError("body", f"longer than its Content-Length of {expected}")
        if len(pending) >= CHUNK:
            await run(partial.write, bytes(pending))
            pending.clear()
    await run(partial.write, bytes(pending))
    if partial.size != expected:
        raise ConfigError("body", f"the upload ended after {partial.size} of {expected} bytes")
