"""A change made in one process wakes a controller in another on SQLite
(``ops.wake``): the datagram crosses the process boundary, a dead
controller's socket is swept, and the supervised service's controller takes a
new transition long before its poll would have (poll_s 30 s here)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from vmshadow.ops.wake import WakeListener, poke, wake_dir

pytestmark = [pytest.mark.subprocess]


def poke_from_another_process(data_dir: Path) -> int:
    code = "import sys; from pathlib import Path; from vmshadow.ops.wake import poke; "
    code += "print(poke(Path(sys.argv[1])))"
    out = subprocess.run(
        [sys.executable, "-c", code, str(data_dir)], capture_output=True, text=True, check=True
    )
    return int(out.stdout)


def test_a_poke_from_another_process_wakes_the_listener(tmp_path: Path) -> None:
    woken = threading.Event()
    listener = WakeListener(tmp_path, woken.set)
    assert listener.start()
    try:
        assert oct(listener.path.stat().st_mode & 0o777) == oct(0o600)
        assert poke_from_another_process(tmp_path) == 1
        assert woken.wait(10)
    finally:
        listener.stop()
    assert list(wake_dir(tmp_path).iterdir()) == []  # its socket went with it
    assert poke(tmp_path) == 0


def test_a_dead_controllers_socket_is_swept_and_a_live_one_still_woken(tmp_path: Path) -> None:
    wake_dir(tmp_path).mkdir(mode=0o700)
    dead = wake_dir(tmp_path) / "999999.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(dead))
    s.close()  # as kill -9 leaves it: the file, nobody reading
    woken = threading.Event()
    listener = WakeListener(tmp_path, woken.set)
    assert listener.start()
    try:
        assert poke(tmp_path) == 1
        assert woken.wait(10)
        assert not dead.exists()
    finally:
        listener.stop()


def test_no_folder_no_listener_no_error(tmp_path: Path) -> None:
    assert poke(tmp_path / "nowhere") == 0


@pytest.mark.libvirt
def test_the_supervised_controller_takes_a_create_at_once_not_at_its_poll(
    tmp_path: Path,
) -> None:
    from test_serve_ops import _free_port, built_images_dir

    data = tmp_path / "data"
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("VMSHADOW_")},
        "VMSHADOW_CONFIG": str(tmp_path / "none.toml"),
        "VMSHADOW_DATA_DIR": str(data),
        "VMSHADOW_IMAGES_DIR": str(built_images_dir()),
        "VMSHADOW_LIBVIRT_URI": "test:///default",
        "VMSHADOW_ACCELERATOR": "tcg",
        "VMSHADOW_API_PORT": str(port),
        "VMSHADOW_POLL_S": "30",
        "VMSHADOW_DETECT": "false",
    }
    log = (tmp_path / "serve.log").open("w+b")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vmshadow.cli", "serve"], env=env, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, Path(log.name).read_text()[-3000:]
            try:
                up = httpx.get(f"{base}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                up = False
            # Up, and its controller listening.
            if up and list(wake_dir(data).glob("*.sock")):
                break
            time.sleep(0.2)
        sockets = list(wake_dir(data).glob("*.sock"))
        assert len(sockets) == 1, Path(log.name).read_text()[-3000:]
        token = (data / "api-token").read_text().strip()
        r = httpx.post(
            f"{base}/transitions",
            headers={"Authorization": f"Bearer {token}"},
            json={
                "vm_name": "woken",
                "profile": "smoke",
                "requested": {"vcpus": 1, "memory_mib": 512},
            },
            timeout=30,
        )
        assert r.status_code == 201, r.text
        tid = r.json()["id"]
        # The controller's poll is 30 s away: only the wake-up moves it sooner.
        deadline = time.monotonic() + 15
        state = "requested"
        while time.monotonic() < deadline and state == "requested":
            time.sleep(0.2)
            state = httpx.get(f"{base}/transitions/{tid}", timeout=10).json()["state"]
        assert state != "requested", Path(log.name).read_text()[-3000:]
    finally:
        proc.terminate()
        proc.wait(timeout=120)
        log.close()
    assert list(wake_dir(data).glob("*.sock")) == []
