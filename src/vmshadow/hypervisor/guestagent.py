"""A launched VM's guest, through its qemu-guest-agent: does it answer, has
cloud-init finished, which addresses does it have.

cloud-init writes ``/run/cloud-init/result.json`` when its last stage ends
(with the errors of every stage); the agent's file calls read it without a
network or a login, the way ``cloud-init status`` does inside. A mixin of
``LibvirtHypervisor``; every call is short and never raises for a guest that
does not answer yet: that is the answer (``agent=False``).
"""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import libvirt
import libvirt_qemu

from vmshadow.domain.vm import GuestStatus

AGENT_TIMEOUT_S = 2
RESULT_FILE = "/run/cloud-init/result.json"
MAX_RESULT_BYTES = 256 * 1024
_PING = json.dumps({"execute": "guest-ping"})
_NO_AGENT_API = {libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED}


class GuestAgentMixin:
    _conn: Any

    def _lookup(self, name: str) -> Any | None:
        raise NotImplementedError

    def guest_status(self, name: str) -> GuestStatus | None:
        """The guest's state as its agent tells it; None if the VM does not run or
        the driver cannot talk to guest agents at all."""
        dom = self._lookup(name)
        try:
            if dom is None or not dom.isActive():
                return None
        except libvirt.libvirtError:
            return None
        try:
            libvirt_qemu.qemuAgentCommand(dom, _PING, AGENT_TIMEOUT_S, 0)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in _NO_AGENT_API:
                return None  # a driver that talks to no guest agent (the test driver)
            return GuestStatus(agent=False)
        cloud_init, errors = _cloud_init(dom)
        return GuestStatus(
            agent=True, cloud_init=cloud_init, errors=errors, addresses=_addresses(dom)
        )


def _agent(dom: Any, command: dict[str, Any]) -> Any | None:
    """One agent command's ``return`` value; None if the agent does not answer or refuses."""
    try:
        reply = libvirt_qemu.qemuAgentCommand(dom, json.dumps(command), AGENT_TIMEOUT_S, 0)
    except libvirt.libvirtError:
        return None
    try:
        return json.loads(reply).get("return")
    except (ValueError, AttributeError):
        return None


def _cloud_init(dom: Any) -> tuple[str | None, tuple[str, ...]]:
    handle = _agent(dom, {"execute": "guest-file-open", "arguments": {"path": RESULT_FILE}})
    if not isinstance(handle, int):
        return "running", ()  # not written yet (or no cloud-init: the wait times out)
    data = b""
    try:
        while len(data) < MAX_RESULT_BYTES:
            chunk = _agent(
                dom, {"execute": "guest-file-read", "arguments": {"handle": handle, "count": 65536}}
            )
            if not isinstance(chunk, dict):
                break
            data += base64.b64decode(chunk.get("buf-b64", ""))
            if chunk.get("eof") or not chunk.get("count"):
                break
    finally:
        _agent(dom, {"execute": "guest-file-close", "arguments": {"handle": handle}})
    try:
        result = json.loads(data)
        errors = result["v1"]["errors"]
    except (ValueError, KeyError, TypeError):
        return None, ()
    errs = tuple(str(e)[:300] for e in errors[:10]) if isinstance(errors, list) else ()
    return ("error" if errs else "done"), errs


def _addresses(dom: Any) -> tuple[str, ...]:
    found: list[str] = []
    with contextlib.suppress(libvirt.libvirtError):
        ifaces = dom.interfaceAddresses(libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT, 0)
        for iface, info in sorted((ifaces or {}).items()):
            if iface == "lo":
                continue
            for addr in (info or {}).get("addrs") or []:
                ip = str(addr.get("addr", ""))
                if ip and not ip.startswith("fe80:"):
                    found.append(f"{ip}/{addr.get('prefix', '')}".rstrip("/"))
    return tuple(found)
