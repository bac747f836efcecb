"""Decision policies: parsing, and auto-within's verdict per resource."""

from __future__ import annotations

import pytest

from vmshadow.controller.policy import CONFIRM, WAIT, Policy, parse_policy, verdict
from vmshadow.domain.allocation import Allocation
from vmshadow.domain.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "policy"),
    [
        ("manual", Policy("manual")),
        ("FAST", Policy("fast")),
        ("auto-within:20", Policy("auto-within", 20.0)),
        ("auto-within:12.5%", Policy("auto-within", 12.5)),
    ],
)
def test_policies_parse(text: str, policy: Policy) -> None:
    assert parse_policy(text) == policy


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("auto", "not a policy"),
        ("auto-within", "not a policy"),
        ("auto-within:x", "not a percentage"),
        ("auto-within:-1", "between 0 and 1000"),
        ("auto-within:5000", "between 0 and 1000"),
    ],
)
def test_bad_policies_name_the_field(text: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_policy(text)
    assert err.value.field == "policy" and words in err.value.reason


def test_str_is_the_stored_form() -> None:
    assert str(parse_policy("auto-within:20.0")) == "auto-within:20"


P20 = Policy("auto-within", 20.0)


def test_within_for_every_asked_resource_confirms() -> None:
    what, why = verdict(P20, Allocation(2, 1000), Allocation(2, 1200, 5000))
    assert what == CONFIRM and "auto-within:20" in why
    # IOPS were not asked: a recommended cap does not count.


def test_one_resource_outside_waits_and_says_which_and_by_how_much() -> None:
    what, why = verdict(P20, Allocation(2, 1000), Allocation(3, 1000))
    assert what == WAIT
    assert "vcpus 3 vCPU vs 2 vCPU asked (50 %)" in why and "memory" not in why


def test_asked_iops_count_and_no_cap_is_outside() -> None:
    assert verdict(P20, Allocation(2, 1024, 100), Allocation(2, 1024, 110))[0] == CONFIRM
    assert verdict(P20, Allocation(2, 1024, 100), Allocation(2, 1024, 130))[0] == WAIT
    what, why = verdict(P20, Allocation(2, 1024, 100), Allocation(2, 1024, None))
    assert what == WAIT and "iops no cap" in why


def test_the_bound_is_inclusive() -> None:
    assert verdict(P20, Allocation(5, 1000), Allocation(6, 800))[0] == CONFIRM
