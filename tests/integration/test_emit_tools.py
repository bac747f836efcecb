"""Each ``--emit`` format as the tool itself reads it.

- virt-install parses the arguments and prints the domain XML they make
  (``--print-xml --dry-run`` on ``test:///default``: nothing is created);
- virsh runs the commands on a domain of ``test:///default``;
- the Terraform block is formatted by ``terraform fmt`` (when installed) and its
  XSLT applied by ``xsltproc`` to a real domain XML;
- the KubeVirt YAML is validated against KubeVirt's published OpenAPI schema
  (``tests/data/kubevirt``), with every object closed;
- the OpenStack command is parsed back into its options.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from vmshadow.emit import Recommendation, emit
from vmshadow.emit.other_tools import IOPS_ANNOTATION

REC = Recommendation(
    "web1", 2, 1536, 400, max_vcpus=4, max_memory_mib=4096, disk_gib=20, origin="transition t1"
)
SCHEMA = Path(__file__).parents[1] / "data" / "kubevirt" / "instancetype-definitions.json"
DOMAIN = """<domain type="test">
  <name>{name}</name>
  <memory unit="MiB">512</memory>
  <vcpu>1</vcpu>
  <os><type arch="x86_64">hvm</type></os>
  <devices>
    <disk type="file" device="disk">
      <source file="/var/lib/vmshadow/vms/{name}.qcow2"/>
      <target dev="vda" bus="virtio"/>
      <iotune><total_iops_sec>9999</total_iops_sec></iotune>
    </disk>
    <disk type="file" device="cdrom">
      <source file="/var/lib/vmshadow/vms/{name}-seed.iso"/>
      <target dev="hdc" bus="ide"/>
    </disk>
  </devices>
</domain>
"""


def commands(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln and not ln.startswith("#")]


def run(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, **kw)


@pytest.mark.skipif(shutil.which("virt-install") is None, reason="virt-install (virtinst) needed")
def test_virt_install_makes_the_recommended_domain() -> None:
    (line,) = commands(emit("virt-install", REC))
    proc = run(
        ["virt-install", "--connect", "test:///default", "--name", "emit-web1", "--import",
         "--osinfo", "detect=off,require=off", "--network", "none", "--graphics", "none",
         "--print-xml", "--dry-run", *shlex.split(line)]
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    dom = ET.fromstring(proc.stdout)
    vcpu = dom.find("vcpu")
    assert vcpu is not None and vcpu.get("current") == "2" and vcpu.text == "4"
    assert dom.findtext("currentMemory") == str(1536 * 1024)
    assert dom.findtext("memory") == str(4096 * 1024)
    assert dom.findtext("devices/disk/iotune/total_iops_sec") == "400"


@pytest.fixture
def domain(tmp_path: Path) -> Path:
    path = tmp_path / "web1.xml"
    path.write_text(DOMAIN.format(name="web1"))
    return path


def virsh_session(domain: Path, rec: Recommendation) -> subprocess.CompletedProcess[str]:
    """All of ``rec``'s virsh commands in one session (test:///default keeps its
    state per connection): define a small domain, configure, start, change it
    live, then print its live and its inactive XML."""
    cmds = [c.removeprefix("virsh ") for c in commands(emit("virsh", rec))]
    config = [c for c in cmds if "--live" not in c]
    live = [c for c in cmds if "--live" in c]
    script = [f"define {domain}", *config, "start web1", *live]
    script += ["dumpxml web1", "dumpxml web1 --inactive"]
    return run(["virsh", "-c", "test:///default", "; ".join(script)])


def test_virsh_commands_resize_a_domain(domain: Path) -> None:
    """All commands run in one virsh session (test:///default keeps its state
    per connection): define a small domain, configure, start, change it live."""
    proc = virsh_session(domain, REC)
    # The test driver refuses any total_iops_sec (a quirk noted in
    # hypervisor/support.py): that refusal comes from the driver, so virsh
    # accepted the command and its options; any other error fails the test.
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    quirk = "cannot be set higher than total_iops_sec_max"
    assert all("block I/O throttle" in e or quirk in e for e in errors), proc.stderr
    assert len(errors) == 2 * 2  # the two blkdeviotune calls, two lines each
    live_xml, config_xml = re.findall(r"<domain.*?</domain>", proc.stdout, re.S)
    for text in (live_xml, config_xml):
        dom = ET.fromstring(text)
        vcpu = dom.find("vcpu")
        assert vcpu is not None and vcpu.get("current") == "2" and vcpu.text == "4"
        assert dom.findtext("currentMemory") == str(1536 * 1024)
        assert dom.findtext("memory") == str(4096 * 1024)


def test_the_terraform_xslt_caps_each_disk_once(domain: Path, tmp_path: Path) -> None:
    if shutil.which("xsltproc") is None:
        pytest.skip("xsltproc needed (./scripts/setup installs it)")
    text = emit("terraform", REC)
    xslt = re.search(r"<<-EOT\n(.*?)\n\s*EOT", text, re.S)
    assert xslt is not None
    sheet = tmp_path / "iotune.xsl"
    sheet.write_text("\n".join(ln.strip() for ln in xslt.group(1).splitlines()))
    proc = run(["xsltproc", str(sheet), str(domain)])
    assert proc.returncode == 0, proc.stderr
    dom = ET.fromstring(proc.stdout)
    disk, cdrom = dom.findall("devices/disk")
    assert [e.text for e in disk.iter("total_iops_sec")] == ["400"]
    assert cdrom.find("iotune") is None
    assert dom.findtext("name") == "web1"


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform not installed")
def test_terraform_reads_the_block() -> None:
    proc = run(["terraform", "fmt", "-check", "-"], input=emit("terraform", REC))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def closed(schema: Any) -> Any:
    """The schema with every object that lists properties closed to others."""
    if isinstance(schema, dict):
        out = {k: closed(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [closed(v) for v in schema]
    return schema


@pytest.fixture(scope="module")
def kubevirt_schema() -> dict[str, Any]:
    defs = json.loads(SCHEMA.read_text())["definitions"]
    root = dict(defs["v1beta1.VirtualMachineInstancetype"])
    root["definitions"] = defs
    return closed(root)  # type: ignore[no-any-return]


@pytest.mark.parametrize("rec", [REC, Recommendation("db_2.prod", 1, 512, origin="plan")])
def test_kubevirt_yaml_matches_the_published_schema(
    kubevirt_schema: dict[str, Any], rec: Recommendation
) -> None:
    doc = yaml.safe_load(emit("kubevirt", rec))
    jsonschema.Draft4Validator(kubevirt_schema).validate(doc)
    assert doc["spec"]["cpu"]["guest"] == rec.vcpus


def test_the_schema_check_catches_a_wrong_key(kubevirt_schema: dict[str, Any]) -> None:
    doc = yaml.safe_load(emit("kubevirt", REC))
    doc["spec"]["cpu"]["guests"] = doc["spec"]["cpu"].pop("guest")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(kubevirt_schema).validate(doc)
    assert yaml.safe_load(emit("kubevirt", REC))["metadata"]["annotations"] == {
        IOPS_ANNOTATION: "400"
    }


def test_openstack_command_parses_into_the_flavor() -> None:
    (line,) = commands(emit("openstack", REC))
    argv = shlex.split(line)
    assert argv[:3] == ["openstack", "flavor", "create"] and argv[-1] == "web1"
    opts = dict(zip(argv[3:-1:2], argv[4:-1:2], strict=True))
    assert opts == {
        "--vcpus": "2",
        "--ram": "1536",
        "--disk": "20",
        "--property": "quota:disk_total_iops_sec=400",
    }


def test_virsh_sets_the_burst_and_the_domain_keeps_it(domain: Path) -> None:
    """With a burst, the test driver takes the cap (it refuses a rate alone),
    so the domain's XML shows all three figures, live and in its configuration."""
    burst = Recommendation("web1", 2, 1536, 400, iops_burst=4000, iops_burst_s=12, max_vcpus=4)
    proc = virsh_session(domain, burst)
    assert "error:" not in proc.stderr, proc.stderr
    for text in re.findall(r"<domain.*?</domain>", proc.stdout, re.S):
        tune = ET.fromstring(text).find("devices/disk/iotune")
        assert tune is not None
        got = {e.tag: e.text for e in tune}
        assert got["total_iops_sec"] == "400" and got["total_iops_sec_max"] == "4000"
        assert got["total_iops_sec_max_length"] == "12"


def test_the_terraform_xslt_writes_the_burst(domain: Path, tmp_path: Path) -> None:
    if shutil.which("xsltproc") is None:
        pytest.skip("xsltproc needed (./scripts/setup installs it)")
    burst = Recommendation("web1", 2, 1536, 400, iops_burst=4000, iops_burst_s=12)
    xslt = re.search(r"<<-EOT\n(.*?)\n\s*EOT", emit("terraform", burst), re.S)
    assert xslt is not None
    sheet = tmp_path / "iotune.xsl"
    sheet.write_text("\n".join(ln.strip() for ln in xslt.group(1).splitlines()))
    proc = run(["xsltproc", str(sheet), str(domain)])
    assert proc.returncode == 0, proc.stderr
    disk = ET.fromstring(proc.stdout).findall("devices/disk")[0]
    assert [(e.tag, e.text) for e in disk.iter() if e.tag.startswith("total_iops")] == [
        ("total_iops_sec", "400"),
        ("total_iops_sec_max", "4000"),
        ("total_iops_sec_max_length", "12"),
    ]
