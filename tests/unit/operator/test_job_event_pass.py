"""A pass brought by a Job event starts from the Job as that event showed it: no read of the
Job. A body of another Job (an older one, before a lost Job was created again) or none at all
(the ticker's passes, a Job deleted) is read instead. A pending Job's Events are listed only
while it has no live pod (the Job controller's FailedCreate says why there is none)."""

from __future__ import annotations

import json
from typing import Any

from retrainer_operator import clock, reconcile


class Cluster:
    """The calls one pass over a training RetrainJob makes, recorded."""

    def __init__(self, job: dict[str, Any], pods: list[dict[str, Any]] | None = None) -> None:
        self.job = job
        self.pods = pods or []
        self.calls: list[str] = []
        self.status: dict[str, Any] = {}

    def read_retrainjob(self, namespace: str, name: str) -> dict[str, Any]:
        self.calls.append("get retrainjob")
        return {
            "metadata": {"namespace": namespace, "name": name, "uid": "u1", "generation": 1},
            "spec": {"model": "m"},
            "status": {"version": 1, "jobName": "retrain-m-v1", "phase": "Pending"},
        }

    def read_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(f"get job {name}")
        return self.job

    def list_job_pods(self, namespace: str, job_name: str) -> list[dict[str, Any]]:
        self.calls.append("list pods")
        return self.pods

    def list_events(self, namespace: str, uid: str) -> list[dict[str, Any]]:
        self.calls.append("list events")
        return [{"reason": "FailedCreate", "message": "exceeded quota"}]

    def patch_status(
        self, namespace: str, name: str, status: dict[str, Any], resource_version: Any = None
    ) -> bytes:
        self.calls.append("patch status")
        self.status = status
        # The object as stored, as the apiserver answers.
        stored = {"metadata": {"namespace": namespace, "name": name}, "status": status}
        return json.dumps(stored).encode()

    def emit_event(self, *args: Any) -> None:
        self.calls.append("create event")


class Mlflow:
    def find_run(self, *args: Any) -> None:
        return None


def running_job(name: str, resource_version: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "team", "resourceVersion": resource_version},
        "spec": {},
        "status": {"active": 1, "ready": 1},
    }


def deps(cluster: Cluster) -> reconcile.Deps:
    return reconcile.Deps(config=None, cluster=cluster, mlflow=Mlflow(), store=None)  # type: ignore[arg-type]


def test_a_pass_from_a_job_event_does_not_read_the_job_again() -> None:
    cluster = Cluster(running_job("retrain-m-v1", "7"))

    phase = reconcile.reconcile(
        deps(cluster), "team", "r1", seen_job=running_job("retrain-m-v1", "9")
    )

    assert phase == "Running"
    assert "get job retrain-m-v1" not in cluster.calls
    assert cluster.calls[:2] == ["get retrainjob", "list pods"]


def test_a_pass_without_the_named_jobs_body_reads_it() -> None:
    for seen_job in (None, running_job("retrain-m-v0", "3")):
        cluster = Cluster(running_job("retrain-m-v1", "7"))

        phase = reconcile.reconcile(deps(cluster), "team", "r1", seen_job=seen_job)

        assert phase == "Running"
        assert "get job retrain-m-v1" in cluster.calls


def pending_job(name: str) -> dict[str, Any]:
    meta = {"name": name, "uid": "j1", "creationTimestamp": "2026-01-01T00:00:00Z"}
    return {"metadata": meta, "spec": {}, "status": {"active": 1}}


def test_a_pending_jobs_events_are_listed_only_while_it_has_no_live_pod() -> None:
    pending_pod = {"metadata": {"name": "p"}, "status": {"phase": "Pending"}}
    with_pod = Cluster(pending_job("retrain-m-v1"), [pending_pod])
    reconcile.reconcile(deps(with_pod), "team", "r1", seen_job=pending_job("retrain-m-v1"))
    assert "list events" not in with_pod.calls

    without = Cluster(pending_job("retrain-m-v1"))
    reconcile.reconcile(deps(without), "team", "r1", seen_job=pending_job("retrain-m-v1"))
    assert "list events" in without.calls
    running = next(c for c in without.status["conditions"] if c["type"] == "Running")
    assert running["reason"] == "PodCreationFailed" and "exceeded quota" in running["message"]


def test_a_pending_jobs_events_are_listed_at_most_once_in_their_spacing_and_the_reason_stays() -> (
    None
):
    cluster = Cluster(pending_job("retrain-m-v1"))
    shared = deps(cluster)
    reconcile.reconcile(shared, "team", "r1", seen_job=pending_job("retrain-m-v1"))
    assert cluster.calls.count("list events") == 1
    found = cluster.status

    # The next pass (the ticker's, seconds later) keeps what the last look found.
    cluster.read_retrainjob = lambda namespace, name: {  # type: ignore[method-assign]
        "metadata": {"namespace": namespace, "name": name, "uid": "u1", "generation": 1},
        "spec": {"model": "m"},
        "status": found,
    }
    cluster.calls.clear()
    reconcile.reconcile(shared, "team", "r1", seen_job=pending_job("retrain-m-v1"))
    assert "list events" not in cluster.calls
    assert "patch status" not in cluster.calls  # nothing changed: the reason stands

    other = deps(cluster)  # another process (or the spacing passed): it looks again
    other.event_looks = clock.Spacing(0.0)
    reconcile.reconcile(other, "team", "r1", seen_job=pending_job("retrain-m-v1"))
    assert "list events" in cluster.calls


def queued_job(name: str, **status: Any) -> dict[str, Any]:
    meta = {"name": name, "uid": "j1", "creationTimestamp": "2026-01-01T00:00:00Z"}
    return {"metadata": meta, "spec": {"suspend": True}, "status": status}


def test_a_job_waiting_in_a_queue_since_its_creation_lists_no_pods() -> None:
    cluster = Cluster(queued_job("retrain-m-v1"))

    reconcile.reconcile(deps(cluster), "team", "r1", seen_job=queued_job("retrain-m-v1"))

    assert "list pods" not in cluster.calls
    running = next(c for c in cluster.status["conditions"] if c["type"] == "Running")
    assert running["reason"] == "JobSuspended"


def test_a_suspended_job_that_ran_before_lists_its_pods() -> None:
    # Suspended again after it started (a Kueue preemption): its pods count as attempts.
    for status in ({"startTime": "2026-01-01T00:01:00Z"}, {"failed": 1}, {"terminating": 1}):
        job = queued_job("retrain-m-v1", **status)
        cluster = Cluster(job)
        reconcile.reconcile(deps(cluster), "team", "r1", seen_job=job)
        assert "list pods" in cluster.calls, status
