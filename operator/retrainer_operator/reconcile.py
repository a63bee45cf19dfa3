"""The reconciler: from a RetrainJob and what the cluster shows, the next whole status.

Every trigger (a RetrainJob's first sight by this process, a training Job event, the progress
ticker) calls `reconcile(deps, namespace, name)`. It takes the RetrainJob as last seen (this
process's memory of what the watch or its own writes showed, else a read), does the one next
step (checks + version + Job, or observe the Job, or verify), computes the whole new status
and patches it once if it changed, with an Event per condition transition. Each step is
idempotent, so an operator killed at any moment converges to one Job and one version.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from retrainer_contract import api, documents, evaluation, layout, tracking
from retrainer_contract.objectstore import ObjectStore

from retrainer_operator import (
    checks,
    faults,
    job_outcome,
    metrics,
    progress,
    promotion,
    recovery,
    versions,
)
from retrainer_operator.builders import ImageNotAllowed, build_job_spec
from retrainer_operator.champion import ChampionError, ChampionFactory, ChampionStore
from retrainer_operator.conditions import (
    ACCEPTED,
    COMPLETE,
    FAILED,
    PROMOTED,
    RUNNING,
    VERIFIED,
    Reason,
    get_condition,
    is_terminal,
    now_iso,
    set_condition,
    with_phase,
)
from retrainer_operator.config import OperatorConfig
from retrainer_operator.kube import Cluster, RetrainJobChanged
from retrainer_operator.line_champions import line_champions
from retrainer_operator.mlflow_rest import MlflowError, MlflowRest
from retrainer_operator.onepass import one_pass
from retrainer_operator.progress import JobState
from retrainer_operator.run_memory import RunMemory
from retrainer_operator.verification import verify_manifest
from retrainer_operator.watched import Watched, queued

__all__ = ["Deps", "Locks", "reconcile"]

logger = logging.getLogger("retrainer.operator")
# Trainer failure reasons more precise than the Job's own (which says only "exit 3").
_TRAINER_REASONS = frozenset(
    {Reason.VERSION_CONFLICT, Reason.CORRUPTED_WEIGHTS, Reason.STORAGE_FULL, Reason.HOLDOUT_TOUCHED}
)
# Conditions that say a RetrainJob is stuck, waiting on an outage, or that its promotion needs a
# person (the champion moved, the evaluation does not hold up): posted as Warning Events.
_STUCK_REASONS = frozenset(
    {
        Reason.POD_CREATION_FAILED,
        Reason.POD_UNSCHEDULABLE,
        Reason.IMAGE_PULL_FAILED,
        Reason.ORPHANED_POD_RUNNING,
        Reason.MANIFEST_UNAVAILABLE,
        Reason.OBJECT_STORE_UNAVAILABLE,
        Reason.CHAMPION_UNAVAILABLE,
        Reason.CHAMPION_CHANGED,
        Reason.NOT_EVALUATED,
        Reason.EVIDENCE_UNAVAILABLE,
        Reason.ALLOCATION_UNRECORDED,
    }
)
# How long a finished Job may lack a readable manifest before the RetrainJob fails (MLflow and
# MinIO answered, and there is no manifest).
MANIFEST_GRACE_SECONDS = 300.0


class Locks:
    """One lock per RetrainJob, so two triggers never reconcile the same object at once."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    @contextlib.contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            yield

    def forget(self, key: str) -> None:
        with self._guard:
            self._locks.pop(key, None)


@dataclasses.dataclass
class Deps:
    """What the reconciler talks to; built once in __main__."""

    config: OperatorConfig
    cluster: Cluster
    mlflow: MlflowRest
    store: ObjectStore | None
    locks: Locks = dataclasses.field(default_factory=Locks)
    # Each RetrainJob still going as the watch or our last write showed it (run_memory.py).
    runs: RunMemory = dataclasses.field(default_factory=RunMemory)
    # Training Jobs still going, their pods and FailedCreate Events, as watched (watched.py).
    watched: Watched = dataclasses.field(default_factory=Watched)
    # Where a RetrainJob's line keeps its champion (None: its ModelLine, mirrored in MLflow).
    champions: ChampionFactory | None = None

    def champion_store(self, body: Mapping[str, Any]) -> ChampionStore | None:
        return (self.champions or line_champions(self.cluster, self.mlflow))(body)


@dataclasses.dataclass
class _Step:
    """The status being built, plus what to do besides patching it."""

    status: dict[str, Any]
    generation: int | None
    annotations: dict[str, str] = dataclasses.field(default_factory=dict)
    # The manifest lookup already made this step (a lost Job's), so verifying reuses it.
    found: _Found | None = None
    # This step created the Job: it has no pods to look at yet, and its own event brings the
    # next pass (which does), so the pass ends without listing them.
    created: bool = False

    def cond(self, type_: str, value: bool | None, reason: str, message: str) -> None:
        self.status = set_condition(self.status, type_, value, reason, message, self.generation)

    def fail(self, reason: str, message: str) -> None:
        if get_condition(self.status, RUNNING):
            self.cond(RUNNING, False, reason, "training stopped")
        self.cond(FAILED, True, reason, message)
        self.status.setdefault("completionTime", now_iso())


def _start(
    deps: Deps, body: Mapping[str, Any], step: _Step, used_attempts: int = 0
) -> dict[str, Any] | None:
    """Checks, version, Job: returns the Job, or None when the RetrainJob failed its checks.

    `used_attempts`: pods a lost Job already ran, taken off the new Job's backoffLimit."""
    meta, spec = body["metadata"], body["spec"]
    ns, uid, model = meta["namespace"], meta["uid"], spec["model"]

    recover = recovery.recoverer(deps.cluster, deps.mlflow, ns, spec)
    # The ModelLine read once for the steps below (onepass.py), from this process's memory of
    # it unless the base version is resolved against it (that must see other writers' moves).
    based = (spec.get("baseModel") or {}).get("version") is not None
    line = one_pass(deps.cluster, remembered=not based)
    try:
        # One allocation of a line at a time here, each starting where the last one's write
        # left the line (line_memory.py): a burst of one line's RetrainJobs writes in turn.
        with deps.cluster.lines.hold(ns, model):
            versions.ensure(line, ns, model, recover)
            allocation = versions.find(line, ns, model, uid)
            if allocation is None:
                outcome = checks.preflight(line, body, deps.config)
                if isinstance(outcome, checks.CheckFailure):
                    step.cond(ACCEPTED, False, outcome.reason, outcome.message)
                    step.fail(outcome.reason, outcome.message)
                    return None
                allocation = versions.allocate(
                    line, ns, model, uid, meta["name"], outcome.base_version, recover
                )
    except MlflowError as error:
        # The line's record is lost and its durable evidence cannot be read: numbering or
        # crowning without it could reuse a number or crown an uncompared version.
        message = (
            f"the ModelLine {model!r} lost its record and MLflow, which holds the evidence to "
            f"rebuild it, cannot be read (retrying; nothing allocated): {error}"
        )
        step.cond(ACCEPTED, None, Reason.EVIDENCE_UNAVAILABLE, message)
        return None
    if not _record_allocated(deps, spec, ns, model, allocation.version, step):
        return None
    faults.point(faults.AFTER_ALLOCATION)
    try:
        champion = promotion.champion_version(deps.champion_store(body), ns, model)
    except evaluation.PolicyError as error:  # admission was skipped or older
        step.cond(ACCEPTED, False, Reason.BAD_INPUT, str(error))
        step.fail(Reason.BAD_INPUT, str(error))
        return None
    except ChampionError as error:
        message = f"waiting for the champion to score against: {error}"
        step.cond(ACCEPTED, None, Reason.CHAMPION_UNAVAILABLE, message)
        return None
    try:
        manifest = build_job_spec(
            body, allocation.version, allocation.base_version, deps.config, champion
        )
    except ImageNotAllowed as error:  # preflight was skipped (the uid was already in the ledger)
        step.cond(ACCEPTED, False, Reason.IMAGE_NOT_ALLOWED, str(error))
        step.fail(Reason.IMAGE_NOT_ALLOWED, str(error))
        return None
    if used_attempts:
        limit = int(manifest["spec"].get("backoffLimit", 0))
        manifest["spec"]["backoffLimit"] = max(0, limit - used_attempts)
    job, created = deps.cluster.create_job(manifest)
    faults.point(faults.AFTER_JOB_CREATE)
    if created:
        metrics.RUNS_STARTED.inc()
    step.created = created
    name = manifest["metadata"]["name"]
    owner = ((job.get("metadata") or {}).get("annotations") or {}).get(api.UID_ANNOTATION)
    if owner != uid:
        # Another RetrainJob's Job holds this number: never adopt it, never overwrite it.
        message = (
            f"version {allocation.version} of model line {model!r} belongs to RetrainJob uid "
            f"{owner or 'unknown'} (Job {name}), not to this RetrainJob (uid {uid}); the "
            "version sequence was lost or two operators allocated the same number"
        )
        step.cond(ACCEPTED, False, Reason.VERSION_CONFLICT, message)
        step.fail(Reason.VERSION_CONFLICT, message)
        return None
    step.status["version"] = allocation.version
    step.status["jobName"] = name
    step.status.setdefault(
        "startTime", (job.get("metadata") or {}).get("creationTimestamp") or now_iso()
    )
    base = f" from version {allocation.base_version}" if allocation.base_version else ""
    step.cond(ACCEPTED, True, Reason.JOB_CREATED, f"version {allocation.version}{base}: Job {name}")
    return job


def _record_allocated(
    deps: Deps, spec: Mapping[str, Any], namespace: str, model: str, version: int, step: _Step
) -> bool:
    """The allocation's durable backup in MLflow, written before any Job: were the ModelLine
    lost after a Job that left no other trace, this tag alone keeps the number from reuse.
    False (retried, the version stays this RetrainJob's in the ledger) when it failed."""
    try:
        deps.mlflow.record_allocated(tracking.experiment_name(spec), namespace, model, version)
    except MlflowError as error:
        logger.warning("allocated tag not written model=%s version=%s: %s", model, version, error)
        message = (
            f"version {version} is allocated, but its MLflow backup (the experiment's "
            f"allocated tag) could not be written; the Job starts once it is (retrying): {error}"
        )
        step.cond(ACCEPTED, None, Reason.ALLOCATION_UNRECORDED, message)
        return False
    return True


def _job(
    deps: Deps, body: Mapping[str, Any], step: _Step, seen: Mapping[str, Any] | None = None
) -> dict[str, Any] | None:
    status = step.status
    if status.get("version") is None or not status.get("jobName"):
        return _start(deps, body, step)
    name = status["jobName"]
    if seen is not None and (seen.get("metadata") or {}).get("name") == name:
        job: dict[str, Any] | None = dict(seen)  # as its newest event showed it (workqueue.py)
    else:
        namespace = body["metadata"]["namespace"]
        job = deps.watched.job(namespace, name) or deps.cluster.read_job(namespace, name)
    if job is None:
        if (get_condition(status, COMPLETE) or {}).get("status") == "True":
            # Gone after it completed (TTL) while verification waits: never train again.
            return _COMPLETED
        return _lost_job(deps, body, step)
    # The Job's finalizer comes off once `status` (as stored) records how it ended; a Job
    # deleted before it ended is let go and found lost on the next pass.
    return job if job_outcome.settle(deps.cluster, job, status) else None


# A stand-in for a Job that completed and is gone (TTL, deleted): only verification remains.
_COMPLETED: dict[str, Any] = {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}


def _lost_job(deps: Deps, body: Mapping[str, Any], step: _Step) -> dict[str, Any] | None:
    """The Job vanished before the operator saw it finish (TTL, deleted by hand or with
    `--cascade=orphan`, maybe while the operator was down). Never start a second writer of
    version N: wait for orphaned pods, verify what a finished run left, and only without any
    trace of a result create the Job again, with the retry budget already used taken off."""
    meta, status = body["metadata"], step.status
    name = status["jobName"]
    pods = deps.cluster.list_job_pods(meta["namespace"], name)
    live = progress.live_pods(pods)
    if live:
        message = f"Job {name} was deleted but its pod {', '.join(live)} still runs: waiting"
        step.cond(RUNNING, True, Reason.ORPHANED_POD_RUNNING, message)
        return None
    found = _manifest(deps, body, int(status["version"]), pods)
    if found.manifest is not None:
        step.found = found
        return _COMPLETED
    if found.error:
        step.cond(RUNNING, False, Reason.MANIFEST_UNAVAILABLE, found.error)
        return None
    return _start(deps, body, step, used_attempts=max(0, int(status.get("attempts") or 0) - 1))


@dataclasses.dataclass(frozen=True)
class _Found:
    """The trainer's manifest of this version (None: not found), its run, and why MLflow or
    MinIO could not be asked ("" when they answered)."""

    manifest: dict[str, Any] | None
    run: Any
    error: str


def _manifest(deps: Deps, body: Mapping[str, Any], version: int, pods: list[Any]) -> _Found:
    """The manifest from this version's MLflow run, else from a pod's termination message."""
    meta, spec = body["metadata"], body["spec"]
    raw: bytes | str | None = None
    run = None
    error = ""
    try:
        run = deps.mlflow.find_run(tracking.experiment_name(spec), meta["uid"], version)
        if run is not None:
            raw = deps.mlflow.read_artifact(run, tracking.MANIFEST_ARTIFACT)
    except MlflowError as exc:
        logger.warning("manifest unavailable, will retry: %s", exc)
        error = f"cannot read the manifest from MLflow/MinIO yet (retrying): {exc}"
    manifest = documents.parse_manifest(raw) or documents.parse_manifest(
        progress.termination_message(pods)
    )
    return _Found(manifest, run, error)


def _progress(deps: Deps, body: Mapping[str, Any], step: _Step) -> None:
    """Progress from the MLflow run (best effort: MLflow down only delays it)."""
    spec = body["spec"]
    try:
        run = deps.mlflow.find_run(
            tracking.experiment_name(spec), body["metadata"]["uid"], int(step.status["version"])
        )
    except MlflowError as error:
        logger.info("progress unavailable: %s", error)
        return
    if run is None:
        return
    current = progress.progress_from_run(run.metrics, run.params, spec)
    if current is not None:
        step.status["progress"] = current
    latest = progress.metrics_from_run(run.metrics)
    if latest:
        step.status["metrics"] = latest


def _age_seconds(iso: str | None) -> float:
    if not iso:
        return 0.0
    then = datetime.datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    return (datetime.datetime.now(datetime.UTC) - then).total_seconds()


def _verify(deps: Deps, body: Mapping[str, Any], step: _Step, pods: list[Any]) -> None:
    meta, spec, status = body["metadata"], body["spec"], step.status
    version = int(status["version"])
    found = step.found or _manifest(deps, body, version, pods)
    manifest, run = found.manifest, found.run
    if manifest is None and found.error:
        # MLflow or MinIO down: the copies may all exist; never terminal for an outage.
        step.cond(VERIFIED, None, Reason.MANIFEST_UNAVAILABLE, found.error)
        return
    if manifest is None:
        completed = get_condition(status, COMPLETE) or {}
        waited = _age_seconds(completed.get("lastTransitionTime"))
        if waited < MANIFEST_GRACE_SECONDS:
            step.cond(VERIFIED, None, Reason.VERIFYING, "waiting for the trainer's manifest")
            return
        message = "no manifest.json in the MLflow run nor in the termination message"
        step.cond(VERIFIED, False, Reason.MANIFEST_NOT_FOUND, message)
        step.fail(Reason.MANIFEST_NOT_FOUND, message)
        return
    outcome = verify_manifest(manifest, version, deps.store, meta["uid"])
    status.update(outcome.fields)
    if run is not None:
        mlflow_status = dict(status.get("mlflow") or {})
        mlflow_status.setdefault("runId", run.run_id)
        mlflow_status.setdefault("experimentId", run.experiment_id)
        mlflow_status.setdefault("runUrl", deps.mlflow.run_url(run))
        status["mlflow"] = mlflow_status
        final = progress.progress_from_run(run.metrics, run.params, spec)
        if final is not None:
            status["progress"] = final
    if outcome.transient:
        message = f"re-checking the copies in MinIO (retrying): {outcome.message}"
        step.cond(VERIFIED, None, Reason.OBJECT_STORE_UNAVAILABLE, message)
        return
    if not outcome.verified:
        metrics.VERIFICATION_FAILURES.inc()
        step.cond(VERIFIED, False, Reason.VERIFICATION_FAILED, outcome.message)
        step.fail(Reason.VERIFICATION_FAILED, outcome.message)
        return
    production: Mapping[str, Any] = next(
        (a for a in status["artifacts"] if a.get("name") == layout.PRODUCTION), {}
    )
    model = spec["model"]
    if run is not None and not _tag_verified(deps, run, production, step):
        return
    try:
        record_verified(
            deps.cluster,
            meta["namespace"],
            model,
            version,
            str(production.get("sha256", "")),
            recovery.recoverer(deps.cluster, deps.mlflow, meta["namespace"], spec),
        )
    except MlflowError as error:
        message = f"the line's record is lost and MLflow cannot be read to rebuild it: {error}"
        step.cond(VERIFIED, None, Reason.EVIDENCE_UNAVAILABLE, message)
        return
    checked = len(status["verification"]["checks"])
    step.cond(VERIFIED, True, Reason.VERIFIED, f"version {version}: {checked} checks passed")
    _promote(deps, body, step, version)
    if (get_condition(step.status, PROMOTED) or {}).get("status") != "Unknown":
        step.status.setdefault("completionTime", now_iso())


def record_verified(
    cluster: Cluster,
    namespace: str,
    model: str,
    version: int,
    sha256: str,
    recover: versions.Recover,
) -> None:
    """The line's ledger records `version` verified. The ModelLine is read from this process's
    memory of it, in turn with the line's other writers here, as an allocation does
    (onepass.py, line_memory.py): the mark is a compare-and-set, so a memory another writer
    made stale costs a 409 and a read, and a burst of one line's verifications reads it once.
    A line lost while this version trained gets its record (and champion) back first from
    `recover` (raising MlflowError when it cannot), so a promotion after this compares with the
    champion in force, never with an empty record."""
    line = one_pass(cluster)
    with cluster.lines.hold(namespace, model):
        versions.ensure(line, namespace, model, recover)
        versions.mark_verified(line, namespace, model, version, sha256)


def _tag_verified(deps: Deps, run: Any, production: Mapping[str, Any], step: _Step) -> bool:
    """Tag the version's run as verified (the evidence a lost ModelLine's verified versions
    are rebuilt from) before the ledger says so; False: MLflow refused, retried."""
    try:
        deps.mlflow.set_run_tag(run.run_id, tracking.TAG_VERIFIED, str(production.get("sha256")))
    except MlflowError as error:
        message = f"cannot record the verification in MLflow yet (retrying): {error}"
        step.cond(VERIFIED, None, Reason.MANIFEST_UNAVAILABLE, message)
        return False
    return True


def _promote(deps: Deps, body: Mapping[str, Any], step: _Step, version: int) -> None:
    """Verified: under spec.promotion, the champion moves when the evaluation allows it."""
    meta, spec = body["metadata"], body["spec"]
    store = deps.champion_store(body)
    policy = promotion.policy_of(spec)
    if store is None or policy is None:
        return
    doc = step.status.get("evaluation") or {}
    registered = (spec.get("mlflow") or {}).get("registeredModel")
    outcome = promotion.settle(
        store, policy, doc, meta["namespace"], spec["model"], version, registered
    )
    step.cond(PROMOTED, outcome.value, outcome.reason, outcome.message)
    if outcome.value is not None:
        step.status["mlflow"] = {**(step.status.get("mlflow") or {}), "promoted": outcome.promoted}


def _never_started(job: Mapping[str, Any], seen: list[str]) -> bool:
    """A Job created suspended (a Kueue queue's) and never admitted: no pod of it ever
    existed, so there is none to list. Any sign of one (a start time, a count, an attempt
    recorded) and its pods are listed as always."""
    return queued(job) and not seen


def _observe(deps: Deps, body: Mapping[str, Any], step: _Step, job: Mapping[str, Any]) -> None:
    meta, status = body["metadata"], step.status
    seen_raw = (meta.get("annotations") or {}).get(api.ATTEMPTS_ANNOTATION, "")
    seen = [s for s in seen_raw.split(",") if s]
    # A queue can hold Jobs for hours: their passes list no pods they cannot have.
    if _never_started(job, seen):
        pods: list[dict[str, Any]] = []
    else:
        # As the pod watch showed them when that accounts for every pod the Job counted.
        namespace, name = meta["namespace"], status["jobName"]
        known = deps.watched.pods(namespace, name, job)
        pods = deps.cluster.list_job_pods(namespace, name) if known is None else known
    ids = progress.attempt_ids(pods, seen)
    if ids != sorted(seen):
        step.annotations[api.ATTEMPTS_ANNOTATION] = ",".join(ids)
    status["attempts"] = len(ids)

    observed = progress.observe_job(job)
    if observed.state is JobState.COMPLETE:
        step.cond(RUNNING, False, Reason.TRAINING_COMPLETE, "training pod finished")
        step.cond(COMPLETE, True, Reason.TRAINING_COMPLETE, "training Job complete")
        _verify(deps, body, step, pods)
    elif observed.state is JobState.FAILED:
        raw = progress.termination_message(pods)
        message = progress.failure_message(raw) if raw else ""
        message = message or observed.message or "training Job failed"
        # The trainer's own reason where it is more precise than the Job's.
        reason = documents.failure_reason(raw) if raw else ""
        step.fail(reason if reason in _TRAINER_REASONS else observed.reason, message)
    elif observed.state is JobState.SUSPENDED:
        step.cond(RUNNING, False, Reason.JOB_SUSPENDED, "Job suspended: waiting for admission")
    elif observed.state is JobState.RUNNING or progress.any_pod_running(pods):
        attempt = max(len(ids), 1)
        step.cond(RUNNING, True, Reason.POD_RUNNING, f"training (attempt {attempt})")
        _progress(deps, body, step)
    else:
        _why_pending(deps, body, step, job, pods)


def _why_pending(
    deps: Deps,
    body: Mapping[str, Any],
    step: _Step,
    job: Mapping[str, Any],
    pods: list[Any],
) -> None:
    """A Job that does not run says why, as Running=False with the underlying message:
    pods refused by admission or quota, unschedulable, or an image that cannot be pulled."""
    job_uid = (job.get("metadata") or {}).get("uid")
    # The Job controller's FailedCreate Events, as their watch showed them (watched.py). Once
    # a live pod was created, its own status says why it waits (progress.stuck).
    events = deps.watched.refusals(str(job_uid)) if job_uid else []
    found = progress.stuck(pods, events)
    if found is not None:
        step.cond(RUNNING, False, found.reason, found.message)


def _events(
    deps: Deps, body: Mapping[str, Any], old: Mapping[str, Any], new: Mapping[str, Any]
) -> None:
    """One Event per condition whose status or reason changed."""
    for cond in new.get("conditions") or []:
        before = get_condition(old, cond["type"]) or {}
        if (before.get("status"), before.get("reason")) == (cond["status"], cond.get("reason")):
            continue
        stuck = cond.get("reason") in _STUCK_REASONS
        said = cond["type"] in (VERIFIED, PROMOTED)  # both outcomes of these are news
        if cond["status"] != "True" and not said and not stuck:
            continue  # "stopped running" is implied by the Complete/Failed events
        warning = (
            stuck
            or cond["type"] == FAILED
            or (cond["type"] == VERIFIED and cond["status"] == "False")
        )
        deps.cluster.emit_event(
            body, cond.get("reason") or cond["type"], cond.get("message", ""), warning
        )


def _end_failed_run(deps: Deps, body: Mapping[str, Any], status: Mapping[str, Any]) -> None:
    """A failed version's MLflow run, left RUNNING by a pod the kernel killed (OOM) or that
    died before it could end it, is ended FAILED, so MLflow never shows a version training
    for ever. Best effort: the RetrainJob's Failed condition is the record."""
    version = status.get("version")
    if not isinstance(version, int):
        return
    try:
        run = deps.mlflow.find_run(
            tracking.experiment_name(body["spec"]), body["metadata"]["uid"], version
        )
        if run is not None and run.status == "RUNNING":
            deps.mlflow.fail_run(run.run_id)
    except MlflowError as error:
        logger.warning("failed run not ended version=%s: %s", version, error)


def reconcile(
    deps: Deps,
    namespace: str,
    name: str,
    seen_job: Mapping[str, Any] | None = None,
) -> str | None:
    """Bring RetrainJob namespace/name one step forward; return its phase (None: gone).

    A pass, the first of a new RetrainJob's included, starts from the RetrainJob as the watch
    or our last write left it (`deps.runs`, run_memory.py), writing it only if it is still at
    that copy's resourceVersion; a refused write (409) forgets the copy and the pass runs
    again from a read. What a pass did before its write is idempotent (the allocation found by
    uid, the Job by name), and its Events follow the write.

    `seen_job`: its training Job as the newest Job event showed it, used instead of reading the Job
    (when it is the Job the status names). A newer event brings a newer pass, and what a pass
    does from a Job's state is idempotent (a release of a finalizer already gone finds it gone);
    a Job deleted is read (the event drops the body it left)."""
    key = f"{namespace}/{name}"
    with deps.locks.hold(key), metrics.RECONCILE_SECONDS.time():
        try:
            return _pass(deps, namespace, name, seen_job, remembered=True)
        except RetrainJobChanged:
            deps.runs.forget(namespace, name)
            metrics.RUN_COPY_STALE.inc()
            return _pass(deps, namespace, name, seen_job, remembered=False)


def _pass(
    deps: Deps,
    namespace: str,
    name: str,
    seen_job: Mapping[str, Any] | None,
    remembered: bool,
) -> str | None:
    # The resourceVersion our writes are guarded by: a remembered copy's only.
    guard: str | None = None
    body = deps.runs.recall(namespace, name) if remembered else None
    if body is not None:
        guard = body["metadata"].get("resourceVersion")
    else:
        body = deps.cluster.read_retrainjob(namespace, name)
        if body is not None:
            deps.runs.known(namespace, name, body)
    if body is None:
        deps.locks.forget(f"{namespace}/{name}")
        return None
    old: dict[str, Any] = dict(body.get("status") or {})
    if is_terminal(old):
        return str(old.get("phase"))
    generation = body["metadata"].get("generation")
    step = _Step(dict(old), generation)
    job = _job(deps, body, step, seen_job)
    if step.created:
        step.status.setdefault("attempts", 0)
    elif job is not None:
        _observe(deps, body, step, job)
    new = with_phase(step.status, generation)
    if step.annotations:
        answer = deps.cluster.patch_annotations(namespace, name, step.annotations, guard)
        guard = _remember(deps, namespace, name, answer, guard)
    if new != old:
        faults.point(faults.BEFORE_STATUS_PATCH)
        answer = deps.cluster.patch_status(namespace, name, new, guard)
        _remember(deps, namespace, name, answer, guard)
        _events(deps, body, old, new)
        if new.get("phase") != old.get("phase"):
            _transition(deps, namespace, name, body, old, new)
    return str(new.get("phase"))


def _remember(
    deps: Deps, namespace: str, name: str, answer: bytes, guard: str | None
) -> str | None:
    """Keep our write's answer for the next pass; the guard for a write after it (its
    resourceVersion where this pass's writes are guarded)."""
    version = deps.runs.wrote(namespace, name, answer)
    return version if guard is not None else None


def _transition(
    deps: Deps,
    namespace: str,
    name: str,
    body: Mapping[str, Any],
    old: Mapping[str, Any],
    new: Mapping[str, Any],
) -> None:
    last = max(new.get("conditions") or [{}], key=lambda c: c.get("lastTransitionTime", ""))
    logger.info(
        "transition retrainjob=%s phase=%s->%s version=%s reason=%s",
        f"{namespace}/{name}",
        old.get("phase") or "none",
        new["phase"],
        new.get("version"),
        (get_condition(new, FAILED) or last).get("reason", ""),
    )
    if new["phase"] == "Succeeded":
        metrics.RUNS_SUCCEEDED.inc()
    elif new["phase"] == "Failed":
        reason = (get_condition(new, FAILED) or {}).get("reason", "")
        metrics.RUNS_FAILED.labels(reason=reason).inc()
        _end_failed_run(deps, body, new)
