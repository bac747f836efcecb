"""``vmshadow vm ls`` and ``vmshadow vm delete`` against a stand-in API client:
the table, the plain rows for pipes, escaping, the question before deleting,
and the one-line errors. The real service behind them: tests/integration/test_cli_vms_service.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from vmshadow.cli.apiclient import ApiClient, ApiError
from vmshadow.cli.main import app
from vmshadow.cli.vms import plain_rows, removed_text, vm_table

VM: dict[str, Any] = {
    "name": "web1",
    "host": "local",
    "state": "running",
    "running": True,
    "vcpus": 2,
    "memory_mib": 1024,
    "iops": None,
    "image": "debian12",
    "network": "user",
    "addresses": ["10.0.2.15", "fe80::1"],
    "ssh_port": 2222,
    "ssh_user": "debian",
    "ssh": "ssh -p 2222 debian@127.0.0.1",
    "guest_ready": True,
    "vm_dir": "/var/lib/vmshadow/vms/web1",
    "transition_id": "1a2b3c4d5e6f",
    "transition_kind": "launch",
    "transition_state": "running",
    "transition_terminal": False,
    "profile": "web",
    "load": 200.0,
}


@pytest.fixture
def calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The API client's VM calls, answered from ``VM`` and recorded."""
    monkeypatch.setenv("VMSHADOW_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("VMSHADOW_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("VMSHADOW_TOKEN", "t")
    seen: list[str] = []

    def vm(_self: ApiClient, name: str) -> dict[str, Any]:
        seen.append(f"GET {name}")
        if name != "web1":
            raise ApiError(404, {"error": f"no VM named {name!r} that vmshadow launched"})
        return VM

    def delete_vm(_self: ApiClient, name: str) -> None:
        seen.append(f"DELETE {name}")

    def vms(_self: ApiClient) -> dict[str, Any]:
        seen.append("LIST")
        return {"items": [VM], "errors": [{"host": "b", "vm": None, "error": "cannot connect"}]}

    monkeypatch.setattr(ApiClient, "vm", vm)
    monkeypatch.setattr(ApiClient, "delete_vm", delete_vm)
    monkeypatch.setattr(ApiClient, "vms", vms)
    return seen


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner(mix_stderr=False).invoke(
        app, list(args), input=input, env={"VMSHADOW_URL": "http://127.0.0.1:9"}
    )


def test_ls_in_a_pipe_is_tab_separated_and_warns_of_a_host(calls: list[str]) -> None:
    r = run("vm", "ls")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines() == [
        "NAME\tSTATE\tSIZE\tHOST\tIMAGE\tADDRESSES\tSSH",
        "web1\trunning\t2/1024/-\tlocal\tdebian12\t10.0.2.15, fe80::1\t"
        "ssh -p 2222 debian@127.0.0.1",
    ]
    assert r.stderr.strip() == "warning: host b: cannot connect"


def test_ls_json_is_the_api_document(calls: list[str]) -> None:
    r = run("vm", "ls", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["items"] == [VM]


def test_the_table_shows_what_libvirt_and_the_guest_say_as_text() -> None:
    hostile = {**VM, "addresses": ["[bold red]x[/]"], "ssh": None, "image": None}
    console = Console(record=True, width=160)
    console.print(vm_table([VM, hostile]))
    text = console.export_text()
    assert "[bold red]x[/]" in text  # printed as it is, never read as markup
    assert "ssh -p 2222 debian@127.0.0.1" in text and "sizes: vCPU/MiB/IOPS" in text
    # A newline from the guest must not split a row of the plain output.
    rows = plain_rows([{**VM, "addresses": ["a\nb"]}]).splitlines()
    assert len(rows) == 2 and rows[1].split("\t")[5] == "a b"


def test_delete_asks_first_and_says_what_it_removed(calls: list[str]) -> None:
    r = run("vm", "delete", "web1", input="y\n")
    assert r.exit_code == 0, r.stderr
    assert calls == ["GET web1", "DELETE web1"]
    said = " ".join(r.stdout.split())  # Rich wraps at the terminal's width
    assert "VM web1 on host local: running, 2 vCPU, 1024 MiB; transition 1a2b3c4d5e6f" in said
    assert "Delete web1? The VM is destroyed and its disks are deleted [y/N]" in said
    assert said.endswith(removed_text(VM))
    assert removed_text(VM) == (
        "deleted VM web1 from host local: destroyed, undefined, its disks removed (folder "
        "/var/lib/vmshadow/vms/web1); transition 1a2b3c4d5e6f ended first (it was running)"
    )


@pytest.mark.parametrize("answer", ["n\n", "\n", None])  # no, the default, stdin closed
def test_delete_declined_leaves_the_vm(calls: list[str], answer: str | None) -> None:
    r = run("vm", "delete", "web1", input=answer)
    assert r.exit_code == 1
    assert calls == ["GET web1"]
    assert "not deleted: web1 is left as it is" in r.stderr


def test_delete_yes_does_not_ask(calls: list[str]) -> None:
    r = run("vm", "delete", "web1", "--yes")
    assert r.exit_code == 0 and calls == ["GET web1", "DELETE web1"]
    assert "Delete web1?" not in r.stdout


def test_delete_errors_are_one_line(calls: list[str]) -> None:
    r = run("vm", "delete", "nope", "--yes")
    assert r.exit_code == 1 and calls == ["GET nope"]
    assert r.stderr.strip() == "error: no VM named 'nope' that vmshadow launched"
    r = run("vm", "delete", "Bad Name", "--yes")  # bad usage: the service is not asked
    assert r.exit_code == 2 and calls == ["GET nope"]
    assert r.stderr.startswith("error: NAME: 'Bad Name' is not a valid VM name")
