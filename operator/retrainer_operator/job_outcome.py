"""The training Job's finalizer: a Job's outcome is recorded before the Job may go.

A Job that fails while the operator is down and is then removed (ttlSecondsAfterFinished, a
person, its RetrainJob's deletion) used to leave nothing to read: the operator saw a lost Job,
found no result, and trained the same version again. So every training Job carries
api.JOB_FINALIZER (builders.py). A delete then only marks the Job (deletionTimestamp); its
conditions stay readable, the reconciler records Complete or Failed from them, and only then
is the finalizer taken off:

- by the reconciler (`_job`), once the RetrainJob's status as read holds Complete=True (the
  version still verifies after the Job is gone) or the Job is being deleted before it ended
  (deleted by hand: nothing to record, the lost-Job path takes over);
- by `sweep`, for a Job whose RetrainJob is gone, is another object of the same name, is
  terminal, or has recorded the outcome: a terminal RetrainJob is never reconciled again, and a
  deleted one never at all, so their Jobs would otherwise hang forever.

Pure rules (`holds`, `recorded`, `releasable`) beside the two calls that patch a Job.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

from kubernetes.client.exceptions import ApiException
from retrainer_contract import api

from retrainer_operator import progress
from retrainer_operator.conditions import COMPLETE, FAILED, is_terminal, is_true
from retrainer_operator.progress import JobState

__all__ = [
    "JobClient",
    "being_deleted",
    "holds",
    "recorded",
    "releasable",
    "release",
    "settle",
    "sweep",
]

logger = logging.getLogger("retrainer.operator")

_MERGE_PATCH = "application/merge-patch+json"
_TRIES = 5


class JobClient(Protocol):
    """The cluster calls this module needs (kube.Cluster has them)."""

    batch: Any

    def read_job(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def list_jobs(self, namespace: str, label_selector: str) -> list[dict[str, Any]]: ...

    def read_retrainjob(self, namespace: str, name: str) -> dict[str, Any] | None: ...


def holds(job: Mapping[str, Any]) -> bool:
    """True while the Job carries the operator's finalizer."""
    return api.JOB_FINALIZER in ((job.get("metadata") or {}).get("finalizers") or [])


def being_deleted(job: Mapping[str, Any]) -> bool:
    """True once the Job was deleted (it stays while a finalizer holds it)."""
    return bool((job.get("metadata") or {}).get("deletionTimestamp"))


def recorded(status: Mapping[str, Any]) -> bool:
    """True when a RetrainJob's status already says how its Job ended."""
    return is_true(status, COMPLETE) or is_true(status, FAILED) or is_terminal(status)


def _owner_ref(job: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for ref in (job.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == api.KIND and str(ref.get("apiVersion", "")).startswith(api.GROUP):
            return dict(ref)
    return None


def releasable(job: Mapping[str, Any], owner: Mapping[str, Any] | None) -> bool:
    """Whether the finalizer may come off `job`, given its RetrainJob as read now (None: gone):
    the owner is gone or another object, or its status records the outcome."""
    ref = _owner_ref(job)
    if ref is None or owner is None:
        return True
    if (owner.get("metadata") or {}).get("uid") != ref.get("uid"):
        return True
    return recorded(owner.get("status") or {})


def release(cluster: JobClient, job: Mapping[str, Any]) -> None:
    """Take the finalizer off `job` (merge patch guarded by its resourceVersion; on a conflict
    read it again). A Job already gone, or without the finalizer, is left alone."""
    meta = job["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    current: Mapping[str, Any] | None = job
    for _ in range(_TRIES):
        if current is None or not holds(current):
            return
        finalizers = [
            f for f in current["metadata"].get("finalizers") or [] if f != api.JOB_FINALIZER
        ]
        body = {
            "metadata": {
                "finalizers": finalizers,
                "resourceVersion": current["metadata"].get("resourceVersion"),
            }
        }
        try:
            cluster.batch.patch_namespaced_job(
                name, namespace, body, _content_type=_MERGE_PATCH, _preload_content=False
            )
            logger.info("job finalizer removed job=%s/%s", namespace, name)
            return
        except ApiException as error:
            if error.status == 404:
                return
            if error.status != 409:
                raise
        current = cluster.read_job(namespace, name)
    logger.warning("job finalizer not removed job=%s/%s: it kept changing", namespace, name)


def settle(cluster: JobClient, job: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    """Before the reconciler observes `job` for a RetrainJob whose stored status is `status`:
    release a Job whose outcome that status already records, and one deleted before it ended
    (nothing to record; it is going). False for the latter: there is nothing to observe, the
    next pass finds it gone and treats it as a lost Job."""
    ended = progress.observe_job(job).state in (JobState.COMPLETE, JobState.FAILED)
    if being_deleted(job) and not ended:
        release(cluster, job)
        return False
    if holds(job) and recorded(status):
        release(cluster, job)
    return True


def _owner_of(cluster: JobClient, job: Mapping[str, Any]) -> dict[str, Any] | None:
    ref = _owner_ref(job)
    if ref is None:
        return None
    return cluster.read_retrainjob(job["metadata"]["namespace"], str(ref.get("name")))


def sweep(cluster: JobClient, namespace: str, model: str) -> list[str]:
    """Release the finalizer of every training Job of `model` in `namespace` whose RetrainJob
    is gone or has recorded how it ended; the names of the Jobs released."""
    selector = f"{api.LABEL_NAME}={api.TRAINER_NAME},{api.LABEL_MODEL}={model}"
    released: list[str] = []
    for job in cluster.list_jobs(namespace, selector):
        if holds(job) and releasable(job, _owner_of(cluster, job)):
            release(cluster, job)
            released.append(str(job["metadata"]["name"]))
    return released
