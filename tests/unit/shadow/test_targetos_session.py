"""A shadow of a store image's own OS, on libvirt's test driver with a scripted agent.

The test driver runs no guest; its agent channel is pointed at sockets this
test owns: one that never answers (an image that cannot host the agent) and
one that speaks the protocol (the built-in OS, or a target OS that can).
Checked: the fallback destroys the target's shadow completely before the
built-in one boots, every record says which OS ran and why, and a target
OS that answers is measured at idle.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vmshadow.agent.protocol import encode_message, message
from vmshadow.domain.errors import ConfigError, HypervisorError
from vmshadow.domain.shadow import IDLE_PHASE_ID, Accelerator, ShadowOs, ShadowSpec
from vmshadow.hypervisor.libvirt_adapter import LibvirtHypervisor
from vmshadow.image.files import ImageFiles, sha256_of
from vmshadow.shadow import targetos
from vmshadow.shadow.session import ShadowSession
from vmshadow.shadow.targetos import TargetImage, TargetOsImage, shadow_image

pytestmark = [pytest.mark.libvirt, pytest.mark.subprocess]

Script = Callable[[socket.socket], None]


def _hello() -> bytes:
    return encode_message(
        message(
            "hello",
            agent_version="0.1.0",
            protocol=1,
            kernel="6.1.0-test",
            cpus=1,
            mem_total_kib=480_000,
            scratch="/dev/vdb",
            net_ifaces=["lo"],
        )
    )


def _lines(conn: socket.socket) -> Iterator[dict[str, object]]:
    buf = b""
    while True:
        data = conn.recv(65536)
        if not data:
            return
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            yield json.loads(line)


def silent(conn: socket.socket) -> None:
    """An OS that never starts the agent: the channel stays quiet."""
    conn.settimeout(60)
    while conn.recv(65536):
        pass


def speaking(conn: socket.socket) -> None:
    """An agent: hello, an idle phase's samples and result, bye on shutdown."""
    conn.sendall(_hello())
    for msg in _lines(conn):
        if msg["type"] == "run":
            phase = msg["phase"]
            assert isinstance(phase, dict)
            pid = phase["phase_id"]
            conn.sendall(encode_message(message("phase_started", phase_id=pid, t=1.0)))
            for n in range(3):
                sample = message(
                    "sample",
                    phase_id=pid,
                    t=2.0 + n,
                    interval_s=1.0,
                    cpu_busy=0.02,
                    mem_used_kib=40 * 1024 + n,
                    mem_total_kib=480_000,
                    read_iops=0.0,
                    write_iops=0.0,
                    read_bps=0.0,
                    write_bps=0.0,
                    forks_ps=0.0,
                    faults_ps=0.0,
                )
                conn.sendall(encode_message(sample))
            result = message(
                "phase_result",
                phase_id=pid,
                kind=phase["kind"],
                duration_s=1.0,
                exit_code=0,
                metrics={},
            )
            conn.sendall(encode_message(result))
        elif msg["type"] == "shutdown":
            conn.sendall(encode_message(message("bye")))
            return


class Peer:
    """A unix socket whose every connection runs ``script`` on its own thread."""

    def __init__(self, path: Path, script: Script) -> None:
        self.path, self.script = path, script
        self.errors: list[BaseException] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(path))
        self._sock.listen(4)
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self.script(conn)
        except OSError:
            pass  # the host hung up
        except BaseException as exc:  # a bug in this test's script
            self.errors.append(exc)
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        for c in self._conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()
        self._sock.close()
        self._thread.join(5)
        assert not self.errors, self.errors


class TwoOsHypervisor(LibvirtHypervisor):
    """The test driver; a target-OS shadow's channel goes to one peer, the
    built-in OS's to another. Records every spec it started and whether a
    shadow of the same name was still there at the time."""

    def __init__(self, target_sock: Path, builtin_sock: Path) -> None:
        super().__init__("test:///default")
        self.socks = {True: target_sock, False: builtin_sock}
        self.started: list[tuple[ShadowSpec, bool]] = []

    def start_shadow(self, spec: ShadowSpec, *, scratch_cache: str = "none") -> None:
        self.started.append((spec, self.is_running(spec.name)))
        super().start_shadow(spec, scratch_cache=scratch_cache)

    def agent_socket_path(self, name: str) -> str:
        if not self.is_running(name):
            raise HypervisorError(f"domain {name} is gone")
        return str(self.socks[self.started[-1][0].target is not None])


@pytest.fixture
def image(tmp_path: Path) -> ImageFiles:
    folder = tmp_path / "image"
    folder.mkdir()
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", str(folder / "base.qcow2"), "64M"],
        check=True,
    )
    for name in ("vmlinuz", "initrd.img"):
        (folder / name).write_bytes(b"")
    manifest = {"base_sha256": sha256_of(folder / "base.qcow2")}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return ImageFiles.at(folder)


@pytest.fixture
def store_image(tmp_path: Path) -> TargetImage:
    """A store image (an empty disk: nothing on it could ever start the agent)."""
    disk = tmp_path / "store" / "empty"
    disk.parent.mkdir()
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(disk), "16M"], check=True)
    tools = tmp_path / "tools.iso"
    tools.write_bytes(b"")  # the test driver never reads a disk
    return TargetImage("empty", ((disk, "raw"),), tools)


def _with_target(image: ImageFiles, target: TargetImage) -> TargetOsImage:
    fields = {f: getattr(image, f) for f in ("directory", "kernel", "initrd", "base", "manifest")}
    return TargetOsImage(**fields, image_name=target.name, target=target)


@contextlib.contextmanager
def peers(tmp_path: Path, target: Script) -> Iterator[TwoOsHypervisor]:
    a = Peer(tmp_path / "target.sock", target)
    b = Peer(tmp_path / "builtin.sock", speaking)
    try:
        with TwoOsHypervisor(a.path, b.path) as hv:
            yield hv
    finally:
        a.close()
        b.close()


def test_an_os_that_never_starts_the_agent_falls_back_to_the_built_in_one(
    tmp_path: Path, image: ImageFiles, store_image: TargetImage
) -> None:
    runs = tmp_path / "runs"
    with peers(tmp_path, silent) as hv:
        session = ShadowSession(
            hv,
            _with_target(image, store_image),
            runs,
            accelerator=Accelerator.TCG,
            hello_timeout_s=1.0,
            sample_interval_s=0.2,
        )
        with session:
            record = session.record
            assert session.spec.target is None  # the built-in OS runs now
            assert not (session.run_dir / "seed.iso").exists()  # a fresh folder
        assert hv.list_shadows() == []
    (target_spec, _), (builtin_spec, target_left) = hv.started
    assert target_spec.target is not None and builtin_spec.target is None
    assert target_spec.name == builtin_spec.name
    assert not target_left  # destroyed completely before the built-in OS booted
    assert record.shadow_os is not None
    assert (record.shadow_os.image, record.shadow_os.used) == ("empty", "builtin")
    # An empty disk writes nothing on the console: the reason says so.
    assert "did not answer within" in record.shadow_os.reason
    assert "nothing on its console" in record.shadow_os.reason
    assert record.os_idle is None
    assert record.hello["kernel"] == "6.1.0-test"
    assert not runs.exists() or list(runs.iterdir()) == []


def test_an_os_that_answers_is_measured_at_idle(
    tmp_path: Path,
    image: ImageFiles,
    store_image: TargetImage,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(targetos, "SETTLE_MAX_S", 0.5)  # the test driver's vCPU never idles
    runs = tmp_path / "runs"
    with peers(tmp_path, speaking) as hv:
        with ShadowSession(
            hv,
            _with_target(image, store_image),
            runs,
            accelerator=Accelerator.TCG,
            hello_timeout_s=5.0,
            sample_interval_s=0.2,
        ) as session:
            record = session.record
            assert session.spec.target is not None
            assert (session.run_dir / "seed.iso").is_file()
            assert [p.spec.phase_id for p in record.phases] == [IDLE_PHASE_ID]
        assert hv.list_shadows() == []
    assert len(hv.started) == 1
    assert record.shadow_os == ShadowOs("empty", "target", "")
    assert record.os_idle is not None
    assert 40.0 <= record.os_idle.memory_mib < 40.1  # the guest's peak while idle
    assert not runs.exists() or list(runs.iterdir()) == []


def test_a_store_image_that_fails_its_check_never_boots(tmp_path: Path, image: ImageFiles) -> None:
    def refuse(name: str) -> tuple[tuple[Path, str], ...]:
        raise ConfigError("image", f"image {name!r} resolves outside the image store")

    got = shadow_image(image, "evil", refuse, tmp_path)
    assert isinstance(got, TargetOsImage) and got.target is None
    assert "resolves outside the image store" in got.unusable
    assert shadow_image(image, "builtin", refuse, tmp_path) is image
