"""Passes take a training Job and its pods from what the watches showed (watched.py), and read
or list them whenever that may be short of the truth: a Job not seen, ended or deleted; pods
that do not account for every pod the Job counted; an ended Job's pods (their termination
messages are not kept)."""

from __future__ import annotations

import threading
from typing import Any

from retrainer_contract import api
from retrainer_operator import job_outcome, progress, reconcile
from retrainer_operator.watched import Watched, covers, slim_pod, watched_job
from test_job_event_pass import Cluster, Mlflow

JOB = "retrain-m-v1"


def job(**status: Any) -> dict[str, Any]:
    meta = {"name": JOB, "namespace": "team", "uid": "j1", "resourceVersion": "5"}
    meta["creationTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "spec": {}, "status": status}


def complete() -> dict[str, Any]:
    return job(succeeded=1, conditions=[{"type": "Complete", "status": "True"}])


def pod(name: str, phase: str, uid: str = "") -> dict[str, Any]:
    meta = {"name": name, "uid": uid or f"uid-{name}", "labels": {"job-name": JOB}}
    return {"metadata": meta, "spec": {"containers": [{"name": "t"}]}, "status": {"phase": phase}}


def test_a_job_is_kept_from_its_events_until_it_ends_or_is_deleted() -> None:
    watched = Watched()
    watched.job_seen("team", JOB, job(active=1))
    assert watched.job("team", JOB) == job(active=1)
    watched.job_seen("team", JOB, job(active=1, ready=1))
    assert watched.job("team", JOB) == job(active=1, ready=1)  # the newest event's body

    watched.job_seen("team", JOB, complete())
    assert watched.job("team", JOB) is None  # ended: the next pass reads it
    watched.job_seen("team", JOB, job(active=1))
    watched.job_seen("team", JOB, None)
    assert watched.job("team", JOB) is None  # deleted
    assert watched.job("other", JOB) is None  # per namespace


def test_pods_are_used_only_when_they_cover_every_pod_the_job_counted() -> None:
    watched = Watched()
    watched.job_seen("team", JOB, job(active=1, ready=1))
    # The pod watch is behind the Job watch (or not listed yet after a start): list them.
    assert watched.pods("team", JOB, job(active=1, ready=1)) is None
    watched.pod_seen("team", pod("p1", "Pending"), deleted=False)
    assert watched.pods("team", JOB, job(active=1, ready=1)) is None  # ready, none Running
    watched.pod_seen("team", pod("p1", "Running"), deleted=False)
    found = watched.pods("team", JOB, job(active=1, ready=1))
    assert found is not None and [p["status"]["phase"] for p in found] == ["Running"]
    # A Job that counted none yet, and saw none: no pods, without a LIST.
    assert watched.pods("team", "retrain-m-v2", job()) == []
    # An ended Job's pods are always listed: their termination messages are not kept.
    assert watched.pods("team", JOB, complete()) is None


def test_covers_counts_each_phase() -> None:
    failed, running = pod("p1", "Failed"), pod("p2", "Running")
    assert covers([failed, running], job(active=1, ready=1, failed=1))
    assert not covers([running], job(active=1, failed=1))  # the failed pod not seen
    assert not covers([failed], job(active=1, failed=1))  # the retry's pod not seen
    assert covers([failed, running], job(active=1))  # more than counted: a pod just made
    assert not covers([failed], job(terminating=1, failed=1))  # a pod being deleted not seen
    assert not covers([], job(startTime="2026-01-01T00:01:00Z"))  # started: some pod once
    assert covers([], job())
    # The pod watch ahead of the Job's counters: what the Job counts is all there.
    assert covers([pod("p1", "Succeeded")], job(active=1, ready=1))
    assert not covers([pod("p1", "Pending")], job(active=1, ready=1))  # behind: not ready yet


def test_a_deleted_pod_goes_and_an_ended_jobs_ended_pods_are_not_kept() -> None:
    watched = Watched()
    watched.job_seen("team", JOB, job(active=1, failed=1))
    watched.pod_seen("team", pod("p1", "Failed"), deleted=False)  # a retry: its Job goes on
    watched.pod_seen("team", pod("p2", "Running"), deleted=False)
    assert watched.size() == (1, 2, 0)
    watched.pod_seen("team", pod("p2", "Running"), deleted=True)
    assert watched.size() == (1, 1, 0)

    watched.job_seen("team", JOB, complete())  # ended: the Job and its pods go
    assert watched.size() == (0, 0, 0)
    # Ended pods of a Job not going (every one a start lists) are not kept; live ones are.
    watched.pod_seen("team", pod("p3", "Succeeded"), deleted=False)
    assert watched.size() == (0, 0, 0)
    watched.pod_seen("team", pod("p4", "Pending"), deleted=False)
    assert watched.size() == (0, 1, 0)
    watched.pod_seen("team", pod("p4", "Succeeded"), deleted=False)
    assert watched.size() == (0, 0, 0)
    # Pods without the Job controller's label are not training pods of a Job.
    watched.pod_seen("team", {"metadata": {"name": "x"}, "status": {}}, deleted=False)
    assert watched.size() == (0, 0, 0)


def test_a_slim_pod_keeps_what_says_why_it_waits_not_its_spec_or_messages() -> None:
    unschedulable = {"type": "PodScheduled", "status": "False", "message": "0/1 nodes"}
    waiting = {"reason": "ImagePullBackOff", "message": "no such image"}
    terminated = {"exitCode": 1, "message": '{"manifest": "large"}'}
    body = pod("p1", "Pending")
    body["status"]["conditions"] = [unschedulable, {"type": "Ready", "status": "False"}]
    body["status"]["containerStatuses"] = [
        {"image": "trainer:1", "state": {"waiting": waiting}},
        {"image": "sidecar:1", "state": {"terminated": terminated}},
    ]

    slim = slim_pod(body)

    assert slim == {
        "metadata": {"name": "p1", "uid": "uid-p1"},
        "status": {
            "phase": "Pending",
            "conditions": [unschedulable],
            "containerStatuses": [{"image": "trainer:1", "state": {"waiting": waiting}}],
        },
    }


def deps(cluster: Cluster) -> reconcile.Deps:
    return reconcile.Deps(config=None, cluster=cluster, mlflow=Mlflow(), store=None)  # type: ignore[arg-type]


def test_a_ticker_pass_takes_the_job_and_its_pods_from_the_watches() -> None:
    running = job(active=1, ready=1)
    cluster = Cluster(running)
    shared = deps(cluster)
    shared.watched.job_seen("team", JOB, running)
    shared.watched.pod_seen("team", pod("p1", "Running", uid="abcdef123456"), deleted=False)

    phase = reconcile.reconcile(shared, "team", "r1")  # no Job event: the ticker's pass

    assert phase == "Running"
    assert f"get job {JOB}" not in cluster.calls and "list pods" not in cluster.calls
    assert cluster.status["attempts"] == 1  # the pod the watch showed counts as an attempt


def test_a_pass_reads_and_lists_what_the_watches_have_not_shown() -> None:
    running = job(active=1, ready=1)
    cluster = Cluster(running, [pod("p1", "Running", uid="abcdef123456")])
    shared = deps(cluster)
    shared.watched.job_seen("team", JOB, running)  # the pod watch has not shown its pod

    reconcile.reconcile(shared, "team", "r1")

    assert f"get job {JOB}" not in cluster.calls
    assert "list pods" in cluster.calls
    assert cluster.status["attempts"] == 1

    lost = Cluster(running, [pod("p1", "Running")])  # nothing seen: a restart
    reconcile.reconcile(deps(lost), "team", "r1")
    assert lost.calls[1:3] == [f"get job {JOB}", "list pods"]


def test_events_noted_from_two_threads_while_passes_read_lose_nothing() -> None:
    # Kopf's loop is the only writer; the guard also keeps two writers and the passes' reads
    # consistent (a replica's watches and a test's both call in from threads).
    watched = Watched()
    watched.job_seen("team", JOB, job(active=400))
    names = [f"p{i}" for i in range(400)]

    def note(part: list[str]) -> None:
        for name in part:
            watched.pod_seen("team", pod(name, "Pending"), deleted=False)

    def read() -> None:
        for _ in range(200):
            found = watched.pods("team", JOB, job())
            assert found is not None and len(found) <= len(names)

    threads = [
        threading.Thread(target=note, args=(names[::2],)),
        threading.Thread(target=note, args=(names[1::2],)),
        threading.Thread(target=read),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    found = watched.pods("team", JOB, job(active=400))
    assert found is not None and sorted(p["metadata"]["name"] for p in found) == sorted(names)


def test_a_job_is_kept_as_much_as_a_pass_reads_and_decides_the_same() -> None:
    full = job(active=1)
    full["metadata"] |= {
        "labels": {"app.kubernetes.io/name": "retrainer-trainer"},
        "finalizers": [api.JOB_FINALIZER],
        "deletionTimestamp": "2026-01-01T00:02:00Z",
        "ownerReferences": [{"kind": "RetrainJob", "name": "r1", "uid": "u1"}],
    }
    full["spec"] = {"suspend": False, "backoffLimit": 2, "podFailurePolicy": {"rules": []}}

    kept = watched_job(full)

    assert "labels" not in kept["metadata"] and kept["spec"] == {"suspend": False}
    assert progress.observe_job(kept) == progress.observe_job(full)
    assert job_outcome.holds(kept) and job_outcome.being_deleted(kept)
    assert kept["metadata"]["resourceVersion"] == "5" and kept["status"] == full["status"]


def test_a_job_a_queue_holds_suspended_is_not_kept_until_it_starts() -> None:
    watched = Watched()
    queued = job()
    queued["spec"] = {"suspend": True}
    watched.job_seen("team", JOB, queued)
    assert watched.job("team", JOB) is None  # its passes read it: thousands can wait for hours

    admitted = job(active=1, startTime="2026-01-01T00:01:00Z")
    admitted["spec"] = {"suspend": False}
    watched.job_seen("team", JOB, admitted)
    assert watched.job("team", JOB) == admitted
    watched.job_seen("team", JOB, queued)  # suspended again before it started: read again
    assert watched.job("team", JOB) is None
