"""Reading the training Job: states, failure reasons, attempts, termination messages, epochs."""

from __future__ import annotations

from typing import Any

import pytest
from retrainer_operator import progress
from retrainer_operator.conditions import Reason
from retrainer_operator.progress import (
    JobState,
    any_pod_running,
    attempt_ids,
    failure_message,
    metrics_from_run,
    observe_job,
    progress_from_run,
    termination_message,
)


def job(*conds: tuple[str, str], **status: Any) -> dict[str, Any]:
    return {
        "spec": {},
        "status": {
            "conditions": [
                {"type": t, "status": "True", "reason": r, "message": f"{t} because {r}"}
                for t, r in conds
            ],
            **status,
        },
    }


def pod(uid: str, phase: str, finished: str = "", message: str = "") -> dict[str, Any]:
    statuses = []
    if finished:
        statuses.append(
            {"state": {"terminated": {"finishedAt": finished, "message": message, "exitCode": 1}}}
        )
    return {"metadata": {"uid": uid}, "status": {"phase": phase, "containerStatuses": statuses}}


def test_a_new_job_is_pending_until_a_pod_is_ready() -> None:
    assert observe_job(job()).state is JobState.PENDING
    assert observe_job(job(active=1)).state is JobState.PENDING
    assert observe_job(job(active=1, ready=1)).state is JobState.RUNNING


def test_complete_wins_over_counters() -> None:
    assert observe_job(job(("Complete", ""), succeeded=1)).state is JobState.COMPLETE


@pytest.mark.parametrize(
    ("job_reason", "reason"),
    [
        ("PodFailurePolicy", Reason.BAD_INPUT),
        ("BackoffLimitExceeded", Reason.BACKOFF_LIMIT_EXCEEDED),
        ("DeadlineExceeded", Reason.DEADLINE_EXCEEDED),
        ("SomethingNew", Reason.JOB_FAILED),
    ],
)
def test_job_failure_reasons_map_to_retrainjob_reasons(job_reason: str, reason: str) -> None:
    observed = observe_job(job(("Failed", job_reason)))
    assert observed.state is JobState.FAILED
    assert observed.reason == reason
    assert job_reason in observed.message


def test_failure_target_already_counts_as_failed() -> None:
    observed = observe_job(job(("FailureTarget", "PodFailurePolicy"), active=1, ready=1))
    assert (observed.state, observed.reason) == (JobState.FAILED, Reason.BAD_INPUT)


def test_a_suspended_job_waits_for_admission() -> None:
    assert observe_job({"spec": {"suspend": True}, "status": {}}).state is JobState.SUSPENDED
    assert observe_job(job(("Suspended", "JobSuspended"))).state is JobState.SUSPENDED


def test_attempts_remember_pods_that_are_gone() -> None:
    pods = [pod("bbbbbbbb-2", "Running"), pod("cccccccc-3", "Pending")]
    ids = attempt_ids(pods, ["aaaaaaaa"])
    assert ids == ["aaaaaaaa", "bbbbbbbb"]  # the pending one has not started yet
    assert attempt_ids(pods, ids) == ids


def test_the_latest_termination_message_wins() -> None:
    pods = [
        pod("a", "Failed", "2026-01-01T00:00:01Z", "old"),
        pod("b", "Failed", "2026-01-01T00:00:09Z", "bad label in labels/train/x.txt"),
        pod("c", "Running"),
    ]
    assert termination_message(pods) == "bad label in labels/train/x.txt"
    assert termination_message([pod("c", "Running")]) == ""
    assert any_pod_running(pods)


def test_the_trainers_json_error_becomes_reason_and_message() -> None:
    raw = '{"error":{"reason":"BadLabel","message":"labels/train/x.txt: class 7","exitCode":3}}'
    assert failure_message(raw) == "BadLabel: labels/train/x.txt: class 7"
    assert failure_message("Traceback ... MemoryError") == "Traceback ... MemoryError"
    assert failure_message('{"version": 1}') == '{"version": 1}'


def test_progress_reads_epochs_done_against_epochs_planned() -> None:
    assert progress_from_run({"epoch": 2.0}, {"epochs": "5"}, {}) == {
        "epoch": 2,
        "epochs": 5,
        "text": "2/5",
    }
    assert progress_from_run({"epoch": 1.0}, {}, {"training": {"epochs": 3}})["text"] == "1/3"  # type: ignore[index]
    assert progress_from_run({}, {"epochs": "5"}, {}) is None


def test_metrics_keep_only_the_status_fields() -> None:
    assert metrics_from_run({"mAP50": 0.5, "mAP50_95": 0.3, "epoch": 3.0, "lr": 0.1}) == {
        "mAP50": 0.5,
        "mAP50_95": 0.3,
    }


def test_a_pod_the_scheduler_cannot_place_is_reported_with_the_schedulers_message() -> None:
    pod = {
        "metadata": {"name": "p"},
        "status": {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/1 nodes are available: 1 node(s) didn't match selector.",
                }
            ],
        },
    }
    found = progress.stuck([pod], [])
    assert found is not None and found.reason == Reason.POD_UNSCHEDULABLE
    assert "didn't match selector" in found.message


def test_an_image_that_cannot_be_pulled_is_reported() -> None:
    pod = {
        "metadata": {"name": "p"},
        "status": {
            "phase": "Pending",
            "containerStatuses": [
                {"image": "x:1", "state": {"waiting": {"reason": "ImagePullBackOff"}}}
            ],
        },
    }
    found = progress.stuck([pod], [])
    assert found is not None and found.reason == Reason.IMAGE_PULL_FAILED
    assert "ImagePullBackOff" in found.message


def test_pods_refused_at_creation_are_reported_from_the_jobs_latest_event() -> None:
    events = [
        {"reason": "FailedCreate", "message": "old", "lastTimestamp": "2026-01-01T00:00:00Z"},
        {
            "reason": "FailedCreate",
            "message": 'pods "x" is forbidden: exceeded quota: q',
            "lastTimestamp": "2026-01-01T00:00:09Z",
        },
        {"reason": "SuccessfulCreate", "message": "other", "lastTimestamp": "2026-01-01T00:00:10Z"},
    ]
    found = progress.stuck([], events)
    assert found is not None and found.reason == Reason.POD_CREATION_FAILED
    assert "exceeded quota" in found.message


def test_nothing_is_stuck_while_a_pod_runs_or_before_anything_is_known() -> None:
    running = {"metadata": {"name": "p"}, "status": {"phase": "Running"}}
    refused = [{"reason": "FailedCreate", "message": "m"}]
    assert progress.stuck([running], refused) is None
    assert progress.stuck([], []) is None


def test_a_created_pod_makes_an_earlier_failed_create_history() -> None:
    pending = {"metadata": {"name": "p"}, "status": {"phase": "Pending"}}
    gone = {"metadata": {"name": "q"}, "status": {"phase": "Failed"}}
    refused = [{"reason": "FailedCreate", "message": "exceeded quota"}]
    assert progress.stuck([pending], refused) is None
    found = progress.stuck([gone], refused)  # the retry's pod is refused: said again
    assert found is not None and found.reason == Reason.POD_CREATION_FAILED


def test_only_unfinished_pods_are_live() -> None:
    pods = [
        {"metadata": {"name": n}, "status": {"phase": phase}}
        for n, phase in (("a", "Running"), ("b", "Succeeded"), ("c", "Pending"), ("d", "Failed"))
    ]
    assert progress.live_pods(pods) == ["a", "c"]
