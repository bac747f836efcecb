"""The request element and the status element, read and written without libvirt."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from vmshadow.domain.allocation import Allocation
from vmshadow.domain.errors import ConfigError
from vmshadow.hypervisor.requestxml import (
    REQUEST_NS,
    StatusElement,
    alloc_slash,
    asked_size,
    original_size,
    parse_request,
    parse_status,
    request_digest_of,
    status_xml,
)

GOLDEN = Path(__file__).parent / "golden" / "request_domain.xml"


def element(**attrs: str) -> str:
    body = " ".join(f'{k}="{v}"' for k, v in attrs.items())
    return f'<vmshadow:request xmlns:vmshadow="{REQUEST_NS}" {body}/>'


def test_the_golden_domain_request_is_read_with_every_attribute() -> None:
    req = parse_request(GOLDEN.read_text())
    assert req.profile == "web" and req.load == 200 and req.policy == "auto-within:20"
    assert req.at == datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    assert req.image == "builtin"
    assert req.text() == "profile=web load=200 policy=auto-within:20 at=2026-12-02T09:00:00+00:00"


def test_the_element_as_libvirt_returns_it_has_no_prefix() -> None:
    req = parse_request('<request profile="smoke"/>')
    assert (req.profile, req.load, req.policy, req.at) == ("smoke", None, "manual", None)


def test_the_digest_ignores_attribute_order_but_not_values() -> None:
    a = request_digest_of(element(profile="web", load="2"))
    assert a == request_digest_of('<request load="2" profile="web"/>')
    assert a != request_digest_of(element(profile="web", load="3"))
    assert parse_request(element(profile="web", load="2")).digest == a


@pytest.mark.parametrize(
    ("xml", "field", "words"),
    [
        (element(load="2"), "profile", "required"),
        (element(profile="web", lod="2"), "lod", "unknown attribute"),
        (element(profile="web", load="many"), "load", "not a number"),
        (element(profile="web", at="tomorrow"), "at", "ISO 8601"),
        (element(profile="web", at="2026-12-02T09:00:00"), "at", "time zone"),
        ("<request profile='web'", "request", "well-formed"),
        ("<other/>", "request", "no <request>"),
    ],
)
def test_refusals_name_the_attribute(xml: str, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_request(xml)
    assert err.value.field == field and words in err.value.reason


def test_original_size_reads_units_and_the_last_disks_tuning() -> None:
    original = original_size(GOLDEN.read_text())
    assert original == {
        "vcpus": 2,
        "max_vcpus": 4,
        "memory_kib": 3072 * 1024,
        "max_memory_kib": 4 * 1024 * 1024,
        "disk": "vdb",
        "iotune": {"total_iops_sec": "500"},
    }
    assert asked_size(original) == Allocation(2, 3072, 500)


def test_a_domain_below_what_vmshadow_sizes_is_refused_naming_memory() -> None:
    xml = "<domain><memory unit='MiB'>64</memory><vcpu>1</vcpu></domain>"
    with pytest.raises(ConfigError) as err:
        asked_size(original_size(xml))
    assert err.value.field == "memory_mib"


def test_status_round_trips_and_ignores_empty_attributes() -> None:
    s = StatusElement(
        transition="t1",
        state="predicted",
        request_digest="abc",
        request="profile=web",
        policy="auto-within:20",
        requested="2/3072/500",
        recommended=alloc_slash(Allocation(1, 1024, None)),
    )
    xml = status_xml(s)
    assert xml.startswith("<status ") and 'final="' not in xml
    assert parse_status(xml) == s
    assert s.recommended == "1/1024/-"
    assert parse_status("<status state='x'/>") is None
    assert parse_status("<domain><metadata/></domain>") is None
