"""Reading what the training Job is doing: its state, attempts, failure cause and progress.

Pure functions over the Job, its pods and the MLflow run, so each rule (which Job condition
means bad input, how evictions count as attempts, where epochs come from) is unit-testable.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Mapping
from typing import Any

from retrainer_contract import documents, metrics

from retrainer_operator.conditions import Reason

__all__ = [
    "JobState",
    "Observation",
    "any_pod_running",
    "attempt_ids",
    "failure_message",
    "live_pods",
    "metrics_from_run",
    "observe_job",
    "progress_from_run",
    "stuck",
    "termination_message",
]


class JobState(enum.Enum):
    PENDING = "Pending"
    SUSPENDED = "Suspended"
    RUNNING = "Running"
    COMPLETE = "Complete"
    FAILED = "Failed"


@dataclasses.dataclass(frozen=True)
class Observation:
    """The Job's state, and for failures the RetrainJob reason and the Job's own message."""

    state: JobState
    reason: str = ""
    message: str = ""


# Job condition reasons -> RetrainJob failure reasons.
_FAILURE_REASONS = {
    "PodFailurePolicy": Reason.BAD_INPUT,  # FailJob on exit code 3
    "BackoffLimitExceeded": Reason.BACKOFF_LIMIT_EXCEEDED,
    "DeadlineExceeded": Reason.DEADLINE_EXCEEDED,
}


def _true_conditions(job: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {
        c.get("type", ""): c
        for c in (job.get("status") or {}).get("conditions") or []
        if c.get("status") == "True"
    }


def observe_job(job: Mapping[str, Any]) -> Observation:
    """The state of a batch/v1 Job from its conditions and counters."""
    conds = _true_conditions(job)
    status = job.get("status") or {}
    # Complete is final; SuccessCriteriaMet precedes it but pods may still be finishing.
    if "Complete" in conds:
        return Observation(JobState.COMPLETE)
    # Failed is final; FailureTarget precedes it while the pods terminate.
    failed = conds.get("Failed") or conds.get("FailureTarget")
    if failed is not None:
        job_reason = str(failed.get("reason", ""))
        return Observation(
            JobState.FAILED,
            _FAILURE_REASONS.get(job_reason, Reason.JOB_FAILED),
            str(failed.get("message", "")),
        )
    if "Suspended" in conds or (job.get("spec") or {}).get("suspend"):
        return Observation(JobState.SUSPENDED)
    if int(status.get("ready") or 0) > 0:
        return Observation(JobState.RUNNING)
    return Observation(JobState.PENDING)


def _pod_running(pod: Mapping[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running"


def any_pod_running(pods: Iterable[Mapping[str, Any]]) -> bool:
    """True when a training pod is Running (the Job's `ready` counter may lag behind)."""
    return any(_pod_running(p) for p in pods)


def attempt_ids(pods: Iterable[Mapping[str, Any]], seen: Iterable[str]) -> list[str]:
    """Pod uids that ever ran for this Job: those already `seen` plus the current ones.

    Evicted pods disappear from the API, so the set is remembered on the RetrainJob; it is the
    basis of status.attempts (an eviction is an attempt, even though it is not a failure).
    """
    ids = set(seen)
    for pod in pods:
        uid = (pod.get("metadata") or {}).get("uid")
        phase = (pod.get("status") or {}).get("phase")
        if uid and phase in ("Running", "Succeeded", "Failed"):
            ids.add(uid[:8])
    return sorted(ids)


def termination_message(pods: Iterable[Mapping[str, Any]]) -> str:
    """The trainer's termination message from the most recently finished pod ("" if none)."""
    best: tuple[str, str] = ("", "")
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (cs.get("state") or {}).get("terminated") or (
                cs.get("lastState") or {}
            ).get("terminated")
            if not terminated:
                continue
            finished = str(terminated.get("finishedAt") or "")
            message = str(terminated.get("message") or "").strip()
            if message and finished >= best[0]:
                best = (finished, message)
    return best[1]


def failure_message(raw: str) -> str:
    """A readable failure from the trainer's termination message (documents.failure_text)."""
    return documents.failure_text(raw)


def progress_from_run(
    run_metrics: Mapping[str, float], params: Mapping[str, str], spec: Mapping[str, Any]
) -> dict[str, Any] | None:
    """status.progress from the run's latest `epoch` metric and `epochs` param."""
    planned_raw = params.get(metrics.EPOCHS_PARAM) or (spec.get("training") or {}).get("epochs")
    if metrics.EPOCH not in run_metrics or planned_raw is None:
        return None
    planned = int(float(planned_raw))
    done = min(int(run_metrics[metrics.EPOCH]), planned)
    return {"epoch": done, "epochs": planned, "text": f"{done}/{planned}"}


def metrics_from_run(run_metrics: Mapping[str, float]) -> dict[str, float]:
    """status.metrics (the latest validation metrics) from the run's metrics."""
    return {k: float(run_metrics[k]) for k in metrics.KEYS if k in run_metrics}


# Container waiting reasons that mean the image cannot be had.
_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName"})


def _pod_stuck(pod: Mapping[str, Any]) -> Observation | None:
    status = pod.get("status") or {}
    name = (pod.get("metadata") or {}).get("name", "")
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            message = str(cond.get("message") or cond.get("reason") or "not schedulable")
            return Observation(JobState.PENDING, Reason.POD_UNSCHEDULABLE, f"pod {name}: {message}")
    for cs in status.get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in _PULL_REASONS:
            message = (
                f"pod {name}: {waiting['reason']}: {waiting.get('message') or cs.get('image')}"
            )
            return Observation(JobState.PENDING, Reason.IMAGE_PULL_FAILED, message)
    if status.get("phase") == "Failed" and status.get("reason") in _PULL_REASONS:
        message = f"pod {name}: {status['reason']}: {status.get('message', '')}"
        return Observation(JobState.PENDING, Reason.IMAGE_PULL_FAILED, message)
    return None


def stuck(
    pods: Iterable[Mapping[str, Any]], job_events: Iterable[Mapping[str, Any]]
) -> Observation | None:
    """Why a Job that is not running is stuck: its pods cannot be created (admission, quota:
    the Job controller's FailedCreate events), scheduled, or pulled; None when nothing says.

    Once a pod of the Job is alive (pending or running), it was created: an earlier
    FailedCreate is history, and the pod's own status says why it waits."""
    listed = list(pods)
    for pod in listed:
        found = _pod_stuck(pod)
        if found is not None:
            return found
    if live_pods(listed):
        return None
    failed = [e for e in job_events if e.get("reason") == "FailedCreate"]
    if failed:
        latest = max(failed, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
        return Observation(
            JobState.PENDING, Reason.POD_CREATION_FAILED, str(latest.get("message") or "")
        )
    return None


def live_pods(pods: Iterable[Mapping[str, Any]]) -> list[str]:
    """Names of pods that have not finished (still able to write their version)."""
    return [
        str((p.get("metadata") or {}).get("name", ""))
        for p in pods
        if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
    ]
