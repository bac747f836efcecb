"""The client commands (ls, show, cancel, resize, and every command's bad input)
against the real API app on loopback (tests/integration/cli_service.py); the
decision at the prompt is in test_cli_decide.py."""

from __future__ import annotations

import json
from pathlib import Path

import cli_service
import httpx
import pytest
from cli_service import LAUNCH, Service, StandIn, api_get, cli, isolate

from vmshadow.config import Settings

pytestmark = pytest.mark.libvirt
settings = pytest.fixture(cli_service.settings, name="settings")
svc = pytest.fixture(cli_service.svc, name="svc")
url = pytest.fixture(cli_service.url, name="url")
stand_in = pytest.fixture(cli_service.stand_in, name="stand_in")


@pytest.fixture(autouse=True)
def _env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate(settings, monkeypatch)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        # Bad usage, found before the service is contacted: exit 2.
        (("--cpus", "0"), 2, "error: --cpus: 0 is not a number of vCPUs from 1 to 256"),
        (("--memory", "lots"), 2, "error: --memory: 'lots' is not a size like 4G, 512M or 2048"),
        (("--memory", "64M"), 2, "error: --memory: '64M' is not between 128 MiB and 4T"),
        (("--iops", "0"), 2, "error: --iops: 0 is not an IOPS cap from 1 to"),
        (("--load", "-5"), 2, "error: --load: -5 is not a load"),
        (("--image", "/etc/shadow"), 2, "error: --image: '/etc/shadow' is not an image name"),
        (("--at", "tomorrow"), 2, "error: --at: 'tomorrow' is not a time in ISO 8601"),
        (("--cpus", "two"), 2, "error: --cpus: 'two' is not a valid integer"),
        # The service's refusals (its quota, this host, its profiles): exit 1.
        (("--cpus", "9"), 1, "error: --cpus: 9 is above the quota of 8"),
        (("--memory", "100G"), 1, "error: --memory: 102400 MiB is more than the host's"),
        (("--profile", "nope"), 1, "error: --profile: unknown profile 'nope'"),
    ],
)
def test_bad_input_is_one_line_naming_the_flag(
    url: str, args: tuple[str, ...], code: int, message: str
) -> None:
    r = cli("launch", "web1", "--profile", "smoke", *args, url=url)
    assert r.exit_code == code, r.stderr
    assert r.stderr.startswith(message), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert api_get(url, "/transitions") == []  # nothing half-created


def test_bad_usage_never_contacts_the_service() -> None:
    # Nothing listens at this URL: a check that waited for the service would exit 3.
    down = "http://127.0.0.1:9"
    for args in (
        ("launch", "web1", "--profile", "smoke", "--cpus", "0"),
        ("launch", "Bad Name", "--profile", "smoke"),
        ("resize", "web1", "--profile", "smoke", "--load", "-1"),
        ("ls", "--state", "bogus"),
        ("ls", "--limit", "0"),
    ):
        r = cli(*args, url=down)
        assert r.exit_code == 2, (args, r.stderr)
        assert r.stderr.startswith("error: ") and "cannot reach" not in r.stderr, r.stderr


def test_bad_name_and_existing_domain(url: str) -> None:
    r = cli("launch", "Bad Name", "--profile", "smoke", url=url)
    assert r.exit_code == 2 and r.stderr.startswith("error: NAME: 'Bad Name' is not a valid")
    r = cli("launch", "test", "--profile", "smoke", url=url)  # the test driver's own domain
    assert r.exit_code == 1
    assert r.stderr.startswith("error: NAME: a domain named 'test' already exists"), r.stderr


def test_ls_show_cancel(
    url: str, svc: Service, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = cli("ls", url=url)  # not a terminal: the header alone on stdout
    assert r.exit_code == 0 and "no transitions" in r.stderr
    assert r.stdout == "ID\tVM\tKIND\tPROFILE\tSTATE\tREQUESTED\tRECOMMENDED\tFINAL\tAGE\n"
    created = httpx.post(
        f"{url}/api/v1/transitions",
        json={
            "vm_name": "db1",
            "profile": "oltp",
            "load": 100,
            "requested": {"vcpus": 2, "memory_mib": 2048},
        },
        headers={"Authorization": f"Bearer {svc.token}"},
    ).json()
    tid = created["id"]
    # Without --url or VMSHADOW_URL the CLI goes where `vmshadow serve` listens.
    monkeypatch.setenv("VMSHADOW_API_PORT", url.rsplit(":", 1)[1])
    r = cli("ls", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout) == api_get(url, "/transitions")
    r = cli("ls")
    header, row = r.stdout.splitlines()  # not a terminal: plain rows, no legend
    assert header.split("\t")[:5] == ["ID", "VM", "KIND", "PROFILE", "STATE"]
    assert row.split("\t")[:8] == [
        tid,
        "db1",
        "launch",
        "oltp@100",
        "requested",
        "2/2048/-",
        "-",
        "-",
    ]
    assert "sizes:" not in r.stdout
    r = cli("ls", "--state", "cancelled")
    assert "no transitions in state cancelled" in r.stderr
    r = cli("show", tid, "--json")
    assert json.loads(r.stdout) == api_get(url, f"/transitions/{tid}")
    r = cli("show", tid)
    assert r.exit_code == 0 and "timeline" in r.stdout and "oltp at load 100" in r.stdout
    assert "placement" not in r.stdout  # nothing placed yet
    svc.store.update_fields(tid, shadow_host="a", vm_host="b", placement="on b, the freest host")
    r = cli("show", tid)
    assert "shadow on a; VM on b, the freest host" in r.stdout
    r = cli("cancel", tid, "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["state"] == "cancelled"
    r = cli("cancel", tid)
    assert r.exit_code == 1
    assert r.stderr.strip() == f"error: transition {tid} is already cancelled"


def test_unknown_id_and_bad_state(url: str) -> None:
    for cmd in ("show", "cancel", "attach"):
        r = cli(cmd, "nope", url=url)
        assert r.exit_code == 1, cmd
        assert r.stderr.strip() == "error: no transition 'nope'", (cmd, r.stderr)
    r = cli("ls", "--state", "sleeping", url=url)
    assert r.exit_code == 2
    assert r.stderr.strip() == (
        "error: --state: 'sleeping' is not a state: one of requested, shadowing, profiling, "
        "predicted, launching, running, completed, failed, cancelled"
    )


def test_resize_of_an_unmanaged_vm_and_half_a_size(url: str) -> None:
    r = cli("resize", "test", "--profile", "smoke", url=url)
    assert r.exit_code == 1
    assert "'test' is not a VM vmshadow manages" in r.stderr
    r = cli("resize", "test", "--profile", "smoke", "--cpus", "2", url=url)
    assert r.exit_code == 2 and r.stderr.startswith("error: --cpus/--memory: give both")


def test_connect_picks_the_libvirt_uri_for_host_commands() -> None:
    # The fixtures leave libvirt_uri at its default (qemu:///system): -c says where to go.
    r = cli("shadow", "gc", "-c", "test:///default")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.strip() == "removed 0 leftover(s)"
    r = cli("shadow", "gc", "--connect", "bogus:///nowhere")
    assert r.exit_code == 1 and r.stderr.startswith("error: ") and "bogus" in r.stderr


def test_service_down_says_where_it_looked(url: str) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{s.getsockname()[1]}"
    for args in (("ls",), ("show", "x"), LAUNCH):
        r = cli(*args, url=down)
        assert r.exit_code == 3, args
        assert f"is `vmshadow serve` running at {down}?" in r.stderr
        assert "connection refused" in r.stderr and "Traceback" not in r.stderr


def test_wrong_or_missing_token(
    url: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VMSHADOW_TOKEN", "wrong")
    r = cli(*LAUNCH, url=url)
    assert r.exit_code == 1 and r.stderr.startswith("error: token: the service refused")
    monkeypatch.delenv("VMSHADOW_TOKEN")
    monkeypatch.setenv("VMSHADOW_TOKEN_FILE", str(settings.data_dir / "missing"))
    r = cli(*LAUNCH, url=url)
    assert r.exit_code == 1 and "error: token: no token file" in r.stderr
    # Reading needs no token.
    assert cli("ls", url=url).exit_code == 0


def test_token_and_url_from_the_config_file(
    url: str, svc: Service, stand_in: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "client.toml"
    conf.write_text(f'[client]\nurl = "{url}/api/v1/"\ntoken = "{svc.token}"\n')
    monkeypatch.setenv("VMSHADOW_CONFIG", str(conf))
    monkeypatch.setenv("VMSHADOW_TOKEN_FILE", str(tmp_path / "missing"))
    r = cli("launch", "web1", "--profile", "smoke", "--yes", "--json")
    assert r.exit_code == 0, r.stderr  # the token from the config file was accepted
    assert json.loads(r.stdout)["state"] == "running"
    conf.write_text('[client]\nurl = "127.0.0.1:8600"\n')
    r = cli("ls")
    assert r.exit_code == 1
    assert (
        r.stderr.strip() == "error: client.url: '127.0.0.1:8600' is not an http:// or https:// URL"
    )
