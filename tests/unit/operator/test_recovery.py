"""A lost ledger is rebuilt above every version that left evidence: no number is reused."""

from __future__ import annotations

from typing import Any

import pytest
from retrainer_contract import api, tracking
from retrainer_operator import ledger, recovery, versions
from retrainer_operator.mlflow_rest import Run


def job(model: str, version: int) -> dict[str, Any]:
    return {"metadata": {"labels": {api.LABEL_MODEL: model, api.LABEL_VERSION: str(version)}}}


def retrainjob(model: str, version: int | None) -> dict[str, Any]:
    status = {} if version is None else {"version": version}
    return {"spec": {"model": model}, "status": status}


class Evidence:
    """Plain stand-ins for the cluster and MLflow reads recovery.recover makes."""

    def __init__(
        self, jobs: list[Any], objs: list[Any], runs: list[int] | Exception, tag: int = 0
    ) -> None:
        self.jobs, self.objs, self.runs, self.tag = jobs, objs, runs, tag
        self.selectors: list[str] = []

    def list_jobs(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        self.selectors.append(label_selector)
        return self.jobs

    def list_retrainjobs(self, namespace: str) -> list[dict[str, Any]]:
        return self.objs

    def line_runs(self, experiment: str, namespace: str, model: str) -> list[Run]:
        if isinstance(self.runs, Exception):
            raise self.runs
        tags = [{"key": tracking.TAG_VERSION, "value": str(v)} for v in self.runs]
        return [Run({"info": {"run_id": f"r{t['value']}"}, "data": {"tags": [t]}}) for t in tags]

    def registrations_of(self, run_id: str) -> list[tuple[str, str]]:
        return []

    def allocated(self, experiment: str, namespace: str, model: str) -> int:
        return self.tag


def highest(evidence: Evidence) -> int:
    """The number a rebuilt ledger starts above (recovery.recover's first part)."""
    return recovery.recover(evidence, evidence, "ns", "shapes", "shapes")[0]  # type: ignore[arg-type]


def test_the_experiments_allocated_tag_counts_for_versions_that_never_trained() -> None:
    evidence = Evidence([], [retrainjob("shapes", 1)], [], tag=2)
    assert highest(evidence) == 2


def test_jobs_and_statuses_of_other_model_lines_are_not_evidence() -> None:
    found = recovery.versions_in(
        "shapes",
        [job("shapes", 2), job("other", 9)],
        [retrainjob("shapes", 3), retrainjob("other", 7), retrainjob("shapes", None)],
    )
    assert sorted(found) == [2, 3]


def test_mlflow_runs_count_when_jobs_and_retrainjobs_are_gone() -> None:
    evidence = Evidence([], [], [1, 2])
    assert highest(evidence) == 2
    assert evidence.selectors == [f"{api.LABEL_MODEL}=shapes"]


def test_the_highest_of_all_sources_wins_and_none_means_zero() -> None:
    evidence = Evidence([job("shapes", 4)], [retrainjob("shapes", 5)], [3])
    assert highest(evidence) == 5
    empty = Evidence([], [], [])
    assert highest(empty) == 0


def test_an_unreachable_mlflow_stops_recovery_instead_of_guessing() -> None:
    evidence = Evidence([], [], RuntimeError("MLflow down"))
    with pytest.raises(RuntimeError, match="MLflow down"):
        highest(evidence)


def test_allocation_starts_above_the_floor_and_keeps_counting_from_the_ledger() -> None:
    data, first = ledger.allocate_in({}, "uid-3", "third", None, floor=3)
    assert first.version == 3 and data["next"] == "4"
    data, again = ledger.allocate_in(data, "uid-3", "third", None, floor=3)
    assert again.version == 3
    _, fourth = ledger.allocate_in(data, "uid-4", "fourth", None, floor=1)
    assert fourth.version == 4


def test_a_rebuilt_ledger_continues_above_the_evidence_and_keeps_latest_resolvable() -> None:
    seeded = ledger.seed_in({}, 5, {3: ("a" * 64, "run-3")})
    assert seeded["next"] == "6"
    assert ledger.resolve_base_in(seeded, "latest") == 3
    assert ledger.seed_in({"next": "9"}, 5, {3: ("a" * 64, "run-3")}) == {"next": "9"}


def test_only_succeeded_and_verified_retrainjobs_count_as_verified() -> None:
    def obj(name: str, version: int, phase: str, verified: str) -> dict[str, Any]:
        return {
            "metadata": {"name": name},
            "spec": {"model": "shapes"},
            "status": {
                "version": version,
                "phase": phase,
                "conditions": [{"type": "Verified", "status": verified}],
                "artifacts": [{"name": "production", "sha256": "b" * 64}],
            },
        }

    found = recovery.verified_in(
        "shapes",
        [
            obj("a", 1, "Succeeded", "True"),
            obj("b", 2, "Failed", "False"),
            obj("c", 3, "Succeeded", "Unknown"),
        ],
    )
    assert found == {1: ("b" * 64, "a")}


def test_a_late_verification_on_a_deleted_line_does_not_pass_for_a_ledger() -> None:
    from lines_fake import NO_EVIDENCE, FakeLines

    store = FakeLines()
    versions.mark_verified(store, "team", "shapes", 1, "a" * 64)  # after the line was deleted
    versions.ensure(store, "team", "shapes", lambda: (1, {}))
    allocation = versions.allocate(store, "team", "shapes", "uid-2", "second", None, NO_EVIDENCE)
    assert allocation.version == 2
    assert versions.resolve_base(store, "team", "shapes", "latest") == 1


def test_a_line_deleted_between_ensure_and_allocate_still_numbers_above_the_evidence() -> None:
    from lines_fake import FakeLines

    store = FakeLines()
    versions.ensure(store, "team", "shapes", lambda: (1, {}))
    del store.lines[("team", "shapes")]  # deleted now: the allocation creates a bare line
    allocation = versions.allocate(
        store, "team", "shapes", "uid-2", "second", None, lambda: (1, {})
    )
    assert allocation.version == 2
