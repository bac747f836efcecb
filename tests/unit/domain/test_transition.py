"""Every edge of the lifecycle, legal and illegal."""

from __future__ import annotations

import itertools

import pytest

from vmshadow.domain.transition import (
    LEGAL_EDGES,
    TERMINAL,
    IllegalTransition,
    TransitionState,
    check_edge,
)

S = TransitionState
HAPPY = [
    S.REQUESTED,
    S.SHADOWING,
    S.PROFILING,
    S.PREDICTED,
    S.LAUNCHING,
    S.RUNNING,
    S.COMPLETED,
]
LEGAL = {(a, b) for a, b in itertools.pairwise(HAPPY)} | {
    (a, end) for a in S if a not in TERMINAL for end in (S.FAILED, S.CANCELLED)
}


@pytest.mark.parametrize(("a", "b"), sorted(LEGAL))
def test_legal_edges_pass(a: TransitionState, b: TransitionState) -> None:
    check_edge(a, b)


@pytest.mark.parametrize(("a", "b"), sorted(set(itertools.product(S, S)) - LEGAL))
def test_every_other_edge_is_refused_in_plain_words(a: TransitionState, b: TransitionState) -> None:
    with pytest.raises(IllegalTransition) as caught:
        check_edge(a, b)
    msg = str(caught.value)
    assert f"from {a.value} to {b.value}" in msg
    if a in TERMINAL:
        assert f"already {a.value}" in msg


def test_table_matches_the_list_above() -> None:
    assert {(a, b) for a, outs in LEGAL_EDGES.items() for b in outs} == LEGAL


def test_terminal_and_active_states() -> None:
    assert {s for s in S if s.terminal} == {S.COMPLETED, S.FAILED, S.CANCELLED}
    assert not S.PREDICTED.active  # waits for the user
    assert S.RUNNING.active
