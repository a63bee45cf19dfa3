"""Each RetrainJob gets one first pass per process, and each ModelLine one pass per spec."""

from __future__ import annotations

from typing import Any

from retrainer_operator.first_sight import FirstSight, line_mark, run_mark

# The conditions each phase is the summary of (status.derive_phase).
TRUE = {
    "Pending": [],
    "Running": ["Running"],
    "Succeeded": ["Complete", "Verified"],
    "Failed": ["Failed"],
}


def run(uid: str, phase: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if phase:
        conditions = [{"type": t, "status": "True"} for t in TRUE[phase]]
        status = {"phase": phase, "conditions": conditions or [{"type": "Accepted"}]}
    return {"metadata": {"name": "r1", "uid": uid, "resourceVersion": "1"}, "status": status}


def line(uid: str, generation: int, version: str = "1") -> dict[str, Any]:
    return {"name": "shapes", "uid": uid, "generation": generation, "resourceVersion": version}


def test_the_first_event_of_a_running_retrainjob_asks_for_its_pass_and_later_ones_do_not() -> None:
    sight = FirstSight()
    assert sight.first("team", "r1", run_mark(run("u1")))
    assert not sight.first("team", "r1", run_mark(run("u1", "Running")))  # our status write
    assert not sight.first("team", "r1", run_mark(run("u1", "Running")))
    assert sight.first("team", "r2", run_mark(run("u2")))
    assert sight.first("other", "r1", run_mark(run("u3")))  # a name is per namespace
    assert len(sight) == 3


def test_a_retrainjob_made_again_under_its_name_is_seen_anew_even_without_its_deletion() -> None:
    sight = FirstSight()
    assert sight.first("team", "r1", run_mark(run("u1")))
    # The watch broke and listed again: the old object's deletion never came.
    assert sight.first("team", "r1", run_mark(run("u2")))
    assert not sight.first("team", "r1", run_mark(run("u2", "Pending")))


def test_a_deleted_or_ended_retrainjob_is_forgotten_and_an_ended_one_gets_no_pass() -> None:
    sight = FirstSight()
    assert not sight.first("team", "done", run_mark(run("u0", "Succeeded")))
    assert not sight.first("team", "failed", run_mark(run("u9", "Failed")))
    assert sight.first("team", "r1", run_mark(run("u1")))
    assert not sight.first("team", "r1", run_mark(run("u1", "Succeeded")))
    assert len(sight) == 0  # 10,000 finished RetrainJobs cost nothing here
    assert sight.first("team", "r2", run_mark(run("u2")))
    assert not sight.first("team", "r2", run_mark(None))  # deleted
    assert len(sight) == 0
    assert sight.first("team", "r2", run_mark(run("u2")))  # the same object seen after a delete


def test_a_line_is_seen_anew_when_its_spec_changes_not_when_its_status_does() -> None:
    sight = FirstSight()
    assert sight.first("team", "shapes", line_mark(line("l1", 1)))
    assert not sight.first("team", "shapes", line_mark(line("l1", 1, version="2")))  # status
    assert sight.first("team", "shapes", line_mark(line("l1", 2, version="3")))  # spec
    assert not sight.first("team", "shapes", line_mark(line("l1", 2, version="4")))
    assert sight.first("team", "shapes", line_mark(line("l2", 1)))  # made again
    assert not sight.first("team", "shapes", line_mark(None))  # deleted: forgotten
    assert len(sight) == 0
