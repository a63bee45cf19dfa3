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

from retrainer_operator import clock, progress
from retrainer_operator.conditions import COMPLETE, FAILED, is_terminal, is_true
from retrainer_operator.progress import JobState

__all__ = [
    "JobClient",
    "being_deleted",
    "held",
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


# The namespace's training Jobs, listed once for all its lines: the sweep runs on every line
# tick, and a LIST per line per tick (1,000 lines: 1,000 LISTs every 10 s) was most of an idle
# operator's requests. A Job released meanwhile still looks held for at most this long; its
# release then finds it released (409, read again) and leaves it.
SWEEP_LISTING_SECONDS = 5.0
_TRAINING_JOBS = f"{api.LABEL_NAME}={api.TRAINER_NAME}"
_listings: clock.Shared[dict[str, list[dict[str, Any]]]] = clock.Shared()


def _slim(job: Mapping[str, Any]) -> dict[str, Any]:
    """What the sweep reads of a Job (a listing is kept for seconds: no spec, no status)."""
    meta = job.get("metadata") or {}
    keep = ("name", "namespace", "resourceVersion", "finalizers", "ownerReferences")
    return {"metadata": {k: meta[k] for k in keep if k in meta}}


def _held_by_model(cluster: JobClient, namespace: str) -> dict[str, list[dict[str, Any]]]:
    """The namespace's training Jobs that hold the finalizer, by model line."""
    found: dict[str, list[dict[str, Any]]] = {}
    for job in cluster.list_jobs(namespace, _TRAINING_JOBS):
        if holds(job):
            model = ((job.get("metadata") or {}).get("labels") or {}).get(api.LABEL_MODEL, "")
            found.setdefault(str(model), []).append(_slim(job))
    return found


def held(cluster: JobClient, namespace: str, model: str) -> list[str] | None:
    """The training Jobs of `model` holding the finalizer as the namespace's last sweep listing
    showed them, without listing (None: no listing kept, as after a sweep released some)."""
    listing = _listings.peek((cluster, namespace))
    if listing is None:
        return None
    return [str(job["metadata"]["name"]) for job in listing.get(model, [])]


def sweep(
    cluster: JobClient,
    namespace: str,
    model: str,
    owners: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[str]:
    """Release the finalizer of every training Job of `model` in `namespace` whose RetrainJob
    is gone or has recorded how it ended; the names of the Jobs released.

    The namespace's Jobs are listed at most once per SWEEP_LISTING_SECONDS for all its lines.
    `owners`: the line's RetrainJobs by name as the caller listed them (a few seconds old at
    most); a Job whose RetrainJob is in it, with the uid of the Job's owner reference, costs no
    read. Such a listing can only be behind: a RetrainJob it shows unrecorded is released on a
    later sweep, and one it lacks or shows with another uid (created since, gone, re-created)
    is read."""
    held = _listings.get(
        (cluster, namespace),
        SWEEP_LISTING_SECONDS,
        lambda: _held_by_model(cluster, namespace),
    )
    released: list[str] = []
    for job in held.get(model, []):
        ref = _owner_ref(job) or {}
        listed = (owners or {}).get(str(ref.get("name")))
        owner: Mapping[str, Any] | None
        if listed is None or (listed.get("metadata") or {}).get("uid") != ref.get("uid"):
            owner = _owner_of(cluster, job)  # not listed, or listed before a re-create
        else:
            owner = listed
        if holds(job) and releasable(job, owner):
            release(cluster, job)
            released.append(str(job["metadata"]["name"]))
    if released:
        _listings.forget((cluster, namespace))
    return released
