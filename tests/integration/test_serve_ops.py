"""``vmshadow serve`` as an operator runs it: JSON logs (the access log too),
``/metrics`` and a webhook to a receiver on loopback, in one real process on
libvirt's test driver."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from test_webhooks import Receiver

pytestmark = [pytest.mark.subprocess, pytest.mark.libvirt]
SIZE = {"vcpus": 1, "memory_mib": 512}


def built_images_dir() -> Path:
    from vmshadow.config import load_settings

    return load_settings(config_path=Path("/nonexistent"), environ={}).images_dir


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_json_logs_metrics_and_a_webhook(tmp_path: Path) -> None:
    receiver = Receiver()
    vmshadow = Path(sys.executable).with_name("vmshadow")
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("VMSHADOW_")},
        "VMSHADOW_CONFIG": str(tmp_path / "none.toml"),
        "VMSHADOW_DATA_DIR": str(tmp_path / "data"),
        # The controller starts only with a built shadow image: the machine's own.
        "VMSHADOW_IMAGES_DIR": str(built_images_dir()),
        "VMSHADOW_LIBVIRT_URI": "test:///default",
        "VMSHADOW_API_PORT": str(port),
        "VMSHADOW_WEBHOOK_URL": receiver.url,
        "PYTHONUNBUFFERED": "1",
    }
    log = (tmp_path / "serve.log").open("w+b")
    proc = subprocess.Popen(
        [str(vmshadow), "serve", "--log-format", "json"], env=env, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/api/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        token = (tmp_path / "data" / "api-token").read_text().strip()
        created = httpx.post(
            f"{base}/api/v1/transitions",
            json={
                "vm_name": "web1",
                "profile": "smoke",
                "requested": {"vcpus": 1, "memory_mib": 512},
            },
            headers={"Authorization": f"Bearer {token}"},
        )
        assert created.status_code == 201, created.text
        tid = created.json()["id"]
        assert (
            httpx.post(
                f"{base}/api/v1/transitions/{tid}/cancel",
                headers={"Authorization": f"Bearer {token}"},
            ).status_code
            == 200
        )
        metrics = httpx.get(f"{base}/metrics").text
        assert 'vmshadow_transitions{state="cancelled"} 1.0' in metrics
        assert "vmshadow_api_request_duration_seconds_bucket" in metrics
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        receiver.server.shutdown()
        receiver.server.server_close()
    log.seek(0)
    text = log.read().decode()
    log.close()
    docs = []
    for line in text.splitlines():
        if line.startswith("{"):
            docs.append(json.loads(line))
    access = [d for d in docs if d["logger"] == "uvicorn.access"]
    assert any(d["path"] == "/api/v1/health" and d["status"] == 200 for d in access), text
    assert any("webhooks: delivering to" in d["message"] for d in docs), text
    # Only lines that are JSON: the announcement goes to stdout as plain lines,
    # everything logged is one JSON object per line.
    assert all(ln.startswith("{") or not ln.startswith(" ") for ln in text.splitlines())
