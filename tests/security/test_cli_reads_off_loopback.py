"""The CLI's reads carry the token, so they work against a service bound off
loopback, where reads need it (issue 14, item 11). The service is the real app
on libvirt's test driver, reached through Starlette's TestClient (an httpx
client), so no socket is bound to any address."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from vmshadow.cli.apiclient import ApiClient, ApiError, ClientConfig
from vmshadow.config import load_settings
from vmshadow.server import build

pytestmark = [pytest.mark.security, pytest.mark.libvirt]


def test_reads_send_the_token_when_the_client_has_one(tmp_path: Path) -> None:
    settings = load_settings(
        {
            ("data_dir",): str(tmp_path / "data"),
            ("libvirt_uri",): "test:///default",
            ("api", "host"): "0.0.0.0",  # never bound here: see the docstring
            ("api", "allow_plaintext"): True,
        },
        config_path=tmp_path / "none.toml",
        environ={},
    )
    svc = build(settings, with_controller=False)
    url = "http://127.0.0.1"
    with TestClient(svc.app, base_url=f"{url}/api/v1") as http:
        with_token = ApiClient(ClientConfig(url, None, settings.token_file))
        with_token._http = http
        assert with_token.list_transitions() == []
        without = ApiClient(ClientConfig(url, None, tmp_path / "no-such-token"))
        without._http = http
        with pytest.raises(ApiError) as refused:
            without.list_transitions()
        assert refused.value.status == 401
