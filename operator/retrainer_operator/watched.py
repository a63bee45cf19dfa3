"""What the Job, pod and Event watches last showed of each training Job still going.

A pass over a RetrainJob waiting for or running its pod (the ticker's, every interval, or a
Job event's) read its Job and listed its pods: at 0.1 scale, 3,558 GETs and 7,074 LISTs of
31,000 operator requests for 1,090 runs, each LIST filtered by the apiserver over the whole
namespace's pods. The watches already deliver both, so a pass takes them from here and asks
the apiserver only when what was seen may be short of the truth:

- a Job is kept from its watch events until it ends or is deleted (its last state, an ended
  one, is what the event's own pass receives; a later pass reads it), only what passes read
  of it, and not while a queue holds it suspended (those passes read it, as before);
- a Job's pods are used only when they account for every pod the Job itself has counted
  (`covers`): a pod watch behind the Job watch, or not yet listed after a start, makes the
  pass list them as before. An ended Job's pods are always listed (their termination
  messages carry the trainer's manifest; they are not kept here).

A pending Job with no live pod says why from the newest FailedCreate Event the Job
controller posted about it (admission, quota): the Event watch selects those by reason on the
apiserver, where each such pass listed the namespace's Events filtered by the Job's uid (3,407
LISTs at 0.1, at most one a Job in 30 s).

The events come from Kopf's loop (handlers.py); passes read from their threads. Losing it
all is a restart: the watches list everything again, and until then passes read and list.
"""

from __future__ import annotations

import json
import threading
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from retrainer_operator import progress
from retrainer_operator.progress import JobState

__all__ = ["Watched", "covers", "ended", "queued", "slim_pod", "watched_job"]

# The label the Job controller puts on each pod of a Job (the selector kube.list_job_pods uses).
JOB_NAME_LABEL = "job-name"
_ENDED = (JobState.COMPLETE, JobState.FAILED)
_TERMINAL = ("Succeeded", "Failed")


def _compact(body: Mapping[str, Any]) -> bytes:
    # Compressed: thousands of Jobs wait for their pods under a burst; each pass unpacks one in
    # microseconds.
    return zlib.compress(json.dumps(body, separators=(",", ":")).encode(), 1)


def _unpack(raw: bytes) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(zlib.decompress(raw))
    return body


# What a pass reads of a Job (reconcile, job_outcome, progress): its identity, the version its
# finalizer's release is guarded by, whether it is being deleted, its suspension and status.
_JOB_META = (
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "finalizers",
    "ownerReferences",
)


def watched_job(job: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a Job's body a pass reads: no labels, no pod template or other spec."""
    meta = job.get("metadata") or {}
    spec = job.get("spec") or {}
    kept: dict[str, Any] = {"metadata": {k: meta[k] for k in _JOB_META if k in meta}}
    kept["spec"] = {"suspend": spec["suspend"]} if "suspend" in spec else {}
    kept["status"] = job.get("status") or {}
    return kept


def ended(job: Mapping[str, Any]) -> bool:
    """Whether the Job says it ended (Complete, or Failed or about to be)."""
    return progress.observe_job(job).state in _ENDED


def queued(job: Mapping[str, Any]) -> bool:
    """Held suspended since its creation (a Kueue queue's): no start, no pod counted."""
    status = job.get("status") or {}
    counts = ("active", "ready", "failed", "succeeded", "terminating")
    return (
        bool((job.get("spec") or {}).get("suspend"))
        and not status.get("startTime")
        and not any(status.get(k) for k in counts)
    )


def slim_pod(pod: Mapping[str, Any]) -> dict[str, Any]:
    """What a pass reads of a live training pod (progress.py): its name and uid, its phase and
    why it waits (unschedulable, an image that cannot be pulled). No termination message: an
    ended Job's pods are listed."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    slim: dict[str, Any] = {"phase": status.get("phase")}
    for key in ("reason", "message"):
        if status.get(key):
            slim[key] = status[key]
    scheduled = [
        c
        for c in status.get("conditions") or []
        if c.get("type") == "PodScheduled" and c.get("status") == "False"
    ]
    if scheduled:
        slim["conditions"] = scheduled
    waiting = [
        {"image": cs.get("image"), "state": {"waiting": (cs.get("state") or {})["waiting"]}}
        for cs in status.get("containerStatuses") or []
        if (cs.get("state") or {}).get("waiting")
    ]
    if waiting:
        slim["containerStatuses"] = waiting
    return {"metadata": {"name": meta.get("name"), "uid": meta.get("uid")}, "status": slim}


def covers(pods: Sequence[Mapping[str, Any]], job: Mapping[str, Any]) -> bool:
    """Whether `pods` hold every pod the Job's own status counts: as many pods as it counts
    in all, as many Succeeded and Failed as it counted, as many at or past Running as it
    counts ready or ended, and some pod once it has started (a start with no count left: list
    what remains). The pod watch is often ahead of the Job's counters (a pod still counted
    active has ended, one counted ready has finished), which covers; behind them (the two
    watches race, or the pods are not listed yet after a start), it does not."""
    counted = job.get("status") or {}

    def count(*keys: str) -> int:
        return sum(int(counted.get(key) or 0) for key in keys)

    phases = [(p.get("status") or {}).get("phase") for p in pods]
    started = sum(1 for phase in phases if phase in ("Running", *_TERMINAL))
    return (
        len(pods) >= count("active", "terminating", "succeeded", "failed")
        and phases.count("Succeeded") >= count("succeeded")
        and phases.count("Failed") >= count("failed")
        and started >= count("ready", "succeeded", "failed")
        and (bool(pods) or not counted.get("startTime"))
    )


def _stamp(event: Mapping[str, Any]) -> str:
    return str(event.get("lastTimestamp") or event.get("eventTime") or "")


class Watched:
    """Training Jobs that have not ended and their pods, as their watches last showed them,
    and the newest FailedCreate Event of each Job."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._jobs: dict[tuple[str, str], bytes] = {}
        # (namespace, job name) -> pod name -> slim pod (compact JSON, compressed).
        self._pods: dict[tuple[str, str], dict[str, bytes]] = {}
        # Job uid -> its newest FailedCreate Event (reason, message, when).
        self._refusals: dict[str, dict[str, Any]] = {}

    def job_seen(self, namespace: str, name: str, job: Mapping[str, Any] | None) -> None:
        """A Job event: `job` its body, None when deleted. An ended Job is dropped with its
        pods; a queued one is not kept (its passes read it: a Kueue queue can hold thousands
        for hours, and their passes list no pods)."""
        key = (namespace, name)
        gone = job is None or ended(job)
        kept = None if job is None or gone or queued(job) else _compact(watched_job(job))
        with self._guard:
            if gone:
                self._pods.pop(key, None)
            if kept is None:
                self._jobs.pop(key, None)
            else:
                self._jobs[key] = kept

    def pod_seen(self, namespace: str, pod: Mapping[str, Any], deleted: bool) -> None:
        """A training pod's event."""
        meta = pod.get("metadata") or {}
        job, name = (meta.get("labels") or {}).get(JOB_NAME_LABEL), meta.get("name")
        if not job or not name:
            return
        key = (namespace, str(job))
        ended = (pod.get("status") or {}).get("phase") in _TERMINAL
        with self._guard:
            # An ended pod is kept only for a Job still going (one that retries): the ended
            # pods of ended Jobs, every one of them listed at a start, would fill it.
            if deleted or (ended and key not in self._jobs):
                pods = self._pods.get(key)
                if pods is not None:
                    pods.pop(str(name), None)
                    if not pods:
                        del self._pods[key]
            else:
                self._pods.setdefault(key, {})[str(name)] = _compact(slim_pod(pod))

    def refusal_seen(self, event: Mapping[str, Any], deleted: bool) -> None:
        """A FailedCreate Event (its watch selects them by reason): the Job controller could
        not create a Job's pod (admission, quota). Events expire (an hour by default)."""
        involved = event.get("involvedObject") or {}
        uid, name = involved.get("uid"), (event.get("metadata") or {}).get("name")
        if involved.get("kind") != "Job" or not uid or not name:
            return
        kept = {"name": name, "reason": event.get("reason"), "message": event.get("message")}
        kept["lastTimestamp"] = _stamp(event)
        with self._guard:
            current = self._refusals.get(str(uid))
            if deleted:
                if current is not None and current["name"] == name:
                    del self._refusals[str(uid)]
            elif current is None or kept["lastTimestamp"] >= current["lastTimestamp"]:
                self._refusals[str(uid)] = kept

    def refusals(self, job_uid: str) -> list[dict[str, Any]]:
        """The Job's newest FailedCreate Event, if its watch showed one."""
        with self._guard:
            found = self._refusals.get(job_uid)
        return [dict(found)] if found is not None else []

    def job(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Job as its newest event showed it; None: not seen, ended or deleted (read it)."""
        with self._guard:
            raw = self._jobs.get((namespace, name))
        if raw is None:
            return None
        return _unpack(raw)

    def pods(
        self, namespace: str, name: str, job: Mapping[str, Any]
    ) -> list[dict[str, Any]] | None:
        """Job `name`'s pods as their watch showed them, when they cover the counters of `job`
        (its body) and it has not ended; None: list them."""
        if ended(job):
            return None
        with self._guard:
            raws = list((self._pods.get((namespace, name)) or {}).values())
        pods = [_unpack(raw) for raw in raws]
        return pods if covers(pods, job) else None

    def size(self) -> tuple[int, int, int]:
        """Jobs, pods and FailedCreate Events kept (tests)."""
        with self._guard:
            return len(self._jobs), sum(len(p) for p in self._pods.values()), len(self._refusals)
