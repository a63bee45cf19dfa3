"""A pass brought by a Job event starts from the Job as that event showed it: no read of the
Job. A body of another Job (an older one, before a lost Job was created again) or none at all
(the ticker's passes, a Job deleted) is read instead. A pending Job with no live pod says why
from the Job controller's newest FailedCreate Event, as the Event watch showed it."""

from __future__ import annotations

import json
from typing import Any

from retrainer_operator import reconcile
from retrainer_operator.watched import Watched


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

    def patch_status(
        self, namespace: str, name: str, status: dict[str, Any], resource_version: Any = None
    ) -> bytes:
        self.calls.append("patch status")
        self.status = status
        # The object as stored, as the apiserver answers.
        stored = {"metadata": {"namespace": namespace, "name": name}, "status": status}
        return json.dumps(stored).encode()

    def patch_annotations(
        self, namespace: str, name: str, annotations: dict[str, str], resource_version: Any = None
    ) -> bytes:
        self.calls.append("patch annotations")
        stored = {"metadata": {"namespace": namespace, "name": name, "annotations": annotations}}
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


def refused(job_uid: str, message: str, when: str, name: str = "e1") -> dict[str, Any]:
    """A FailedCreate Event of the Job controller, as its watch shows it."""
    involved = {"kind": "Job", "uid": job_uid, "name": "retrain-m-v1"}
    meta = {"name": name, "namespace": "team"}
    return {"metadata": meta, "involvedObject": involved, "reason": "FailedCreate"} | {
        "message": message,
        "lastTimestamp": when,
    }


def test_a_pending_job_without_a_live_pod_says_why_from_the_watched_failed_create() -> None:
    without = Cluster(pending_job("retrain-m-v1"))
    shared = deps(without)
    shared.watched.refusal_seen(refused("j1", "exceeded quota", "2026-01-01T00:00:05Z"), False)
    shared.watched.refusal_seen(refused("j2", "another Job's", "2026-01-01T00:00:09Z"), False)
    reconcile.reconcile(shared, "team", "r1", seen_job=pending_job("retrain-m-v1"))
    assert "list events" not in without.calls  # the Event watch showed it: no LIST
    running = next(c for c in without.status["conditions"] if c["type"] == "Running")
    assert running["reason"] == "PodCreationFailed" and "exceeded quota" in running["message"]

    # A live pod was created since: its own status says why it waits, not an older refusal.
    pending_pod = {"metadata": {"name": "p"}, "status": {"phase": "Pending"}}
    with_pod = Cluster(pending_job("retrain-m-v1"), [pending_pod])
    other = deps(with_pod)
    other.watched.refusal_seen(refused("j1", "exceeded quota", "2026-01-01T00:00:05Z"), False)
    reconcile.reconcile(other, "team", "r1", seen_job=pending_job("retrain-m-v1"))
    assert with_pod.status.get("phase") == "Pending"
    assert "PodCreationFailed" not in json.dumps(with_pod.status)


def test_the_newest_failed_create_of_a_job_is_kept_until_its_event_expires() -> None:
    watched = Watched()
    watched.refusal_seen(refused("j1", "quota", "2026-01-01T00:00:05Z", "e1"), False)
    watched.refusal_seen(refused("j1", "webhook", "2026-01-01T00:00:09Z", "e2"), False)
    watched.refusal_seen(refused("j1", "older", "2026-01-01T00:00:01Z", "e0"), False)
    assert [e["message"] for e in watched.refusals("j1")] == ["webhook"]
    watched.refusal_seen(refused("j1", "quota", "2026-01-01T00:00:05Z", "e1"), True)
    assert [e["message"] for e in watched.refusals("j1")] == ["webhook"]  # another Event went
    watched.refusal_seen(refused("j1", "webhook", "2026-01-01T00:00:09Z", "e2"), True)
    assert watched.refusals("j1") == []  # expired
    # Only a Job's Events: a pod's or one naming no uid is not a Job's refusal.
    pod_event = refused("p1", "x", "2026-01-01T00:00:05Z")
    pod_event["involvedObject"]["kind"] = "Pod"
    watched.refusal_seen(pod_event, False)
    assert watched.refusals("p1") == []


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
