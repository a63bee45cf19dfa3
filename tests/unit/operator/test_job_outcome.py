"""The training Job's finalizer: on every Job the operator builds, off only once the Job's
outcome is in the RetrainJob's status, or once nobody can record it any more."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from retrainer_contract import api
from retrainer_operator import job_outcome
from retrainer_operator.builders import build_job_spec
from retrainer_operator.config import OperatorConfig
from test_builders import retrainjob

CONFIG = OperatorConfig(claim_name="models")


def job(
    *,
    finalizers: tuple[str, ...] = (api.JOB_FINALIZER,),
    deleted: bool = False,
    ended: str | None = None,
    owner: str = "shapes-run",
    uid: str = "uid-1",
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": "retrain-shapes-v1",
        "namespace": "team",
        "resourceVersion": "7",
        "labels": {api.LABEL_MODEL: "shapes"},
        "finalizers": list(finalizers),
        "ownerReferences": [
            {"apiVersion": api.API_VERSION, "kind": api.KIND, "name": owner, "uid": uid}
        ],
    }
    if deleted:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    conditions = [{"type": ended, "status": "True"}] if ended else []
    return {"metadata": meta, "status": {"conditions": conditions}}


def owner(*conditions: str, uid: str = "uid-1") -> dict[str, Any]:
    return {
        "metadata": {"name": "shapes-run", "namespace": "team", "uid": uid},
        "status": {"conditions": [{"type": c, "status": "True"} for c in conditions]},
    }


class Batch:
    """BatchV1Api's patch: records each patch; answers with the queued errors first."""

    def __init__(self, *errors: int) -> None:
        self.errors = list(errors)
        self.patches: list[dict[str, Any]] = []

    def patch_namespaced_job(self, name: str, namespace: str, body: Any, **kwargs: Any) -> None:
        assert kwargs["_content_type"] == "application/merge-patch+json"
        if self.errors:
            raise ApiException(status=self.errors.pop(0))
        self.patches.append(copy.deepcopy(body))


class Cluster:
    def __init__(self, jobs: list[dict[str, Any]], owners: dict[str, Any], batch: Batch) -> None:
        self.jobs, self.owners, self.batch = jobs, owners, batch

    def read_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return next((j for j in self.jobs if j["metadata"]["name"] == name), None)

    def list_jobs(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        # One listing of the namespace's training Jobs serves every line (by its model label).
        assert label_selector == f"{api.LABEL_NAME}={api.TRAINER_NAME}"
        return self.jobs

    def read_retrainjob(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.owners.get(name)


def test_every_training_job_is_built_with_the_finalizer() -> None:
    built = build_job_spec(retrainjob(), 1, None, CONFIG)
    assert built["metadata"]["finalizers"] == [api.JOB_FINALIZER]
    assert job_outcome.holds(built)


@pytest.mark.parametrize(
    ("found", "may_go"),
    [
        (None, True),  # the RetrainJob was deleted
        (owner(uid="uid-2"), True),  # another RetrainJob of the same name
        (owner("Running"), False),  # its outcome is not recorded yet
        (owner("Complete"), True),  # recorded: verification goes on without the Job
        (owner("Failed"), True),  # recorded and terminal
    ],
)
def test_the_finalizer_comes_off_only_once_nobody_needs_the_job(
    found: dict[str, Any] | None, may_go: bool
) -> None:
    assert job_outcome.releasable(job(ended="Failed", deleted=True), found) is may_go


def test_release_patches_the_finalizer_away_guarded_by_the_resource_version() -> None:
    held = job(finalizers=("foregroundDeletion", api.JOB_FINALIZER), deleted=True)
    batch = Batch(409)  # someone else changed the Job between our read and our patch
    job_outcome.release(Cluster([held], {}, batch), held)
    assert batch.patches == [
        {"metadata": {"finalizers": ["foregroundDeletion"], "resourceVersion": "7"}}
    ]
    job_outcome.release(Cluster([], {}, Batch(404)), held)  # gone already: fine


def test_a_job_that_ended_is_observed_before_its_finalizer_comes_off() -> None:
    """Fault point: the Job deleted (TTL) after it failed, its outcome not yet recorded."""
    batch = Batch()
    failed = job(ended="Failed", deleted=True)
    assert job_outcome.settle(Cluster([failed], {}, batch), failed, owner("Running")["status"])
    assert batch.patches == []  # still held: the reconciler records Failed first
    recorded = owner("Complete")["status"]
    complete = job(ended="Complete")
    assert job_outcome.settle(Cluster([complete], {}, batch), complete, recorded)
    assert len(batch.patches) == 1


def test_a_job_deleted_before_it_ended_is_let_go_and_not_observed() -> None:
    batch = Batch()
    deleted = job(deleted=True)
    assert not job_outcome.settle(
        Cluster([deleted], {}, batch), deleted, owner("Running")["status"]
    )
    assert len(batch.patches) == 1


def test_the_sweep_releases_the_jobs_of_gone_and_finished_retrainjobs_only() -> None:
    jobs = [
        job(owner="gone"),
        job(owner="failed", ended="Failed"),
        job(owner="running"),
        job(owner="done", finalizers=()),
    ]
    for found in jobs:
        found["metadata"]["name"] = f"retrain-{found['metadata']['ownerReferences'][0]['name']}"
    other = job(owner="other-line")
    other["metadata"]["labels"] = {api.LABEL_MODEL: "circles"}
    owners = {"failed": owner("Failed"), "running": owner("Running"), "done": owner("Failed")}
    released = job_outcome.sweep(Cluster([*jobs, other], owners, Batch()), "team", "shapes")
    assert released == ["retrain-gone", "retrain-failed"]
