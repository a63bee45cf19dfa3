"""The phase is a pure summary of the conditions; conditions move only on real transitions."""

from __future__ import annotations

from typing import Any

import pytest
from retrainer_operator.conditions import (
    ACCEPTED,
    COMPLETE,
    FAILED,
    PROMOTED,
    RUNNING,
    VERIFIED,
    derive_phase,
    get_condition,
    is_terminal,
    set_condition,
    with_phase,
)


def status_with(**conds: bool | None) -> dict[str, Any]:
    status: dict[str, Any] = {}
    for type_, value in conds.items():
        status = set_condition(status, type_, value, "Why", "msg", 1, now="2026-01-01T00:00:00Z")
    return status


@pytest.mark.parametrize(
    ("conds", "phase"),
    [
        ({}, "Pending"),
        ({ACCEPTED: True}, "Pending"),
        ({ACCEPTED: True, RUNNING: True}, "Running"),
        ({ACCEPTED: True, RUNNING: False, COMPLETE: True}, "Verifying"),
        ({ACCEPTED: True, COMPLETE: True, VERIFIED: True}, "Succeeded"),
        ({ACCEPTED: True, COMPLETE: True, VERIFIED: False, FAILED: True}, "Failed"),
        ({ACCEPTED: False, FAILED: True}, "Failed"),
        ({ACCEPTED: True, RUNNING: True, FAILED: True}, "Failed"),
        # Verified, the champion not yet moved (an outage): not finished.
        ({ACCEPTED: True, COMPLETE: True, VERIFIED: True, PROMOTED: None}, "Verifying"),
        ({ACCEPTED: True, COMPLETE: True, VERIFIED: True, PROMOTED: True}, "Succeeded"),
        ({ACCEPTED: True, COMPLETE: True, VERIFIED: True, PROMOTED: False}, "Succeeded"),
    ],
)
def test_phase_is_derived_from_conditions(conds: dict[str, bool | None], phase: str) -> None:
    assert derive_phase(status_with(**conds)) == phase


def test_only_succeeded_and_failed_are_terminal() -> None:
    assert is_terminal(status_with(Accepted=True, Complete=True, Verified=True))
    assert is_terminal(status_with(Failed=True))
    assert not is_terminal(status_with(Accepted=True, Running=True))
    assert not is_terminal({})


def test_transition_time_moves_only_when_the_status_changes() -> None:
    first = set_condition({}, RUNNING, True, "PodRunning", "a", 1, now="2026-01-01T00:00:00Z")
    same = set_condition(first, RUNNING, True, "PodRunning", "b", 1, now="2026-01-02T00:00:00Z")
    flipped = set_condition(same, RUNNING, False, "Done", "c", 1, now="2026-01-03T00:00:00Z")
    assert get_condition(same, RUNNING)["lastTransitionTime"] == "2026-01-01T00:00:00Z"  # type: ignore[index]
    assert get_condition(same, RUNNING)["message"] == "b"  # type: ignore[index]
    assert get_condition(flipped, RUNNING)["lastTransitionTime"] == "2026-01-03T00:00:00Z"  # type: ignore[index]


def test_conditions_carry_every_field_in_a_stable_order() -> None:
    status = status_with(Failed=True, Accepted=True, Running=False)
    assert [c["type"] for c in status["conditions"]] == [ACCEPTED, RUNNING, FAILED]
    for cond in status["conditions"]:
        assert set(cond) == {
            "type",
            "status",
            "reason",
            "message",
            "observedGeneration",
            "lastTransitionTime",
        }


def test_set_condition_never_mutates_its_input() -> None:
    before = status_with(Accepted=True)
    snapshot = repr(before)
    set_condition(before, RUNNING, True, "PodRunning", "m", 1)
    assert repr(before) == snapshot


def test_with_phase_records_phase_and_observed_generation() -> None:
    status = with_phase(status_with(Accepted=True, Running=True), 3)
    assert status["phase"] == "Running"
    assert status["observedGeneration"] == 3
