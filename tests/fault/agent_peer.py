"""A misbehaving agent on a real unix socket, and a shadow session wired to it.

The session runs on libvirt's ``test:///default`` driver (a real driver with
no guest behind the domain); its agent channel is redirected to a socket this
test owns, so the host side (``UnixSocketTransport``, ``AgentClient``,
``ShadowSession``) meets exactly the bytes a broken guest agent would send.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from vmshadow.agent.protocol import encode_message, message
from vmshadow.domain.errors import HypervisorError
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor
from vmshadow.image.files import ImageFiles, sha256_of

Behaviour = Callable[[socket.socket], None]


def hello(**over: object) -> bytes:
    fields: dict[str, object] = {
        "agent_version": "0.1.0",
        "protocol": 1,
        "kernel": "6.1.0-test",
        "cpus": 1,
        "mem_total_kib": 480_000,
        "scratch": "/dev/vdb",
        "net_ifaces": ["lo"],
        **over,
    }
    return encode_message(message("hello", **fields))


class AgentPeer:
    """Listens on ``path``; each connection gets ``behaviour`` on its own thread."""

    def __init__(self, path: Path, behaviour: Behaviour) -> None:
        self.path = path
        self.behaviour = behaviour
        self.received = bytearray()
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(path))
        self._sock.listen(4)
        self._sock.settimeout(0.2)
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._accept = threading.Thread(target=self._loop, daemon=True)
        self._accept.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._conns.append(conn)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self.behaviour(conn)
        except OSError:
            pass  # the host hung up on us: that is what a broken agent gets
        except BaseException as exc:  # a bug in the test's script, not in the host
            self.errors.append(exc)
        finally:
            conn.close()  # the agent's end of the channel goes when its script ends

    def read_until(self, conn: socket.socket, needle: bytes, timeout: float = 10.0) -> bytes:
        """What the host sent, up to and including ``needle``."""
        conn.settimeout(timeout)
        while needle not in self.received:
            data = conn.recv(65536)
            if not data:
                break
            self.received += data
        return bytes(self.received)

    def close(self) -> None:
        self._stop.set()
        for c in self._conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()
        self._sock.close()
        self._accept.join(5)
        for t in self._threads:
            t.join(5)
        assert not self.errors, self.errors


class PeerHypervisor(LibvirtHypervisor):
    """The test driver, with the agent channel pointed at a socket the test owns."""

    def __init__(self, uri: str, socket_path: Path) -> None:
        super().__init__(uri)
        self.socket_path = socket_path

    def agent_socket_path(self, name: str) -> str:
        # The test driver leaves the channel's socket path empty; the domain must exist.
        if not self.is_running(name):
            raise HypervisorError(f"domain {name} is gone")
        return str(self.socket_path)


def tiny_image(folder: Path) -> ImageFiles:
    """A real qcow2 base to overlay (the test driver never reads kernel or disks)."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", str(folder / "base.qcow2"), "64M"],
        check=True,
    )
    for name in ("vmlinuz", "initrd.img"):
        (folder / name).write_bytes(b"")
    manifest = {"for": "fault tests", "base_sha256": sha256_of(folder / "base.qcow2")}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return ImageFiles.at(folder)


def wait_closed(conn: socket.socket, timeout: float = 120.0) -> None:
    """Hold the connection, saying nothing, until the host hangs up."""
    conn.settimeout(timeout)
    while conn.recv(65536):
        pass


@contextlib.contextmanager
def peer(path: Path, behaviour: Behaviour) -> Iterator[AgentPeer]:
    p = AgentPeer(path, behaviour)
    try:
        yield p
    finally:
        p.close()
