"""The Kopf layer: the only module importing kopf. Each handler reads, calls, returns.

All decisions live in `reconcile` and `lines`; handlers only route watch events to them,
each kind through a work queue with threads of its own (workqueue.py): a RetrainJob this
process sees for the first time (a new one, or every one at a start or a takeover), a
ModelLine seen for the first time or with a changed spec (first_sight.py), and any change of
a training Job (found by our labels, mapped to its RetrainJob by the owner reference; a queue
of its own, so Job events never hold up the first pass of a new RetrainJob). Every handler is
an async event handler of microseconds: Kopf's per-object workers never hold an object while
its pass waits for a thread. The ticker covers progress and retries; ModelLines tick from one
clock (line_ticks.py).
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Mapping
from typing import Any

import kopf
from retrainer_contract import api

from retrainer_operator import clock, lines, reconcile
from retrainer_operator.conditions import TERMINAL_PHASES
from retrainer_operator.config import OperatorConfig
from retrainer_operator.first_sight import FirstSight, line_mark, run_mark
from retrainer_operator.line_idle import IdleLines
from retrainer_operator.line_ticks import LineTicks
from retrainer_operator.ticker import Ticker
from retrainer_operator.watched import ended
from retrainer_operator.workqueue import WorkQueue

__all__ = ["build_registry", "run", "settings_for"]

logger = logging.getLogger("retrainer.operator")


def _owner(meta: Mapping[str, Any]) -> str | None:
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == api.KIND and ref.get("apiVersion", "").startswith(api.GROUP + "/"):
            return str(ref.get("name"))
    return None


# Threads of the first-pass queue (new RetrainJobs), of the Job-event queue, of the line-pass
# queue (a line created, changed or resumed) and of the ModelLine clock. A pass mostly waits
# on the apiserver and MLflow, so threads, not CPU, bound how many new RetrainJobs a second
# get their Job.
FIRST_PASS_WORKERS = 32
QUEUE_WORKERS = 8
LINE_PASS_WORKERS = 8
LINE_WORKERS = 4
# Kopf's executor runs only the login, startup and cleanup handlers: the others are async.
HANDLER_WORKERS = 2
# Every thread that calls the apiserver (plus the progress ticker and the clock's alarm).
THREADS = FIRST_PASS_WORKERS + QUEUE_WORKERS + LINE_PASS_WORKERS + LINE_WORKERS + 2
# The handlers that only note an event (its success is not worth a log line per event).
EVENT_HANDLERS = (
    "retrainjob_job_event",
    "training_pod_seen",
    "pod_refusal_seen",
    "retrainjob_seen",
    "modelline_seen",
)
# Kopf's per-object workers: how many at once (per watch: per namespace and kind), and how
# long one waits for its object's next event.
WORKER_LIMIT = 128
WORKER_IDLE_SECONDS = 0.5


def _job_state(job: Mapping[str, Any]) -> str:
    """What of a training Job a pass acts on: its status, whether it is being deleted, and
    whether it is suspended (not its finalizers, labels or annotations)."""
    meta = job.get("metadata") or {}
    spec = job.get("spec") or {}
    seen = [job.get("status"), meta.get("deletionTimestamp"), spec.get("suspend")]
    return json.dumps(seen, sort_keys=True, default=str)


def _slim_job(job: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a Job's body without what no pass reads and most of its size: the pod
    template (passes read the Job's status, metadata and spec flags; they build a Job anew
    from the RetrainJob) and the managed fields. Under a burst a few thousand Jobs' bodies
    wait in the queue at once."""
    meta = {k: v for k, v in (job.get("metadata") or {}).items() if k != "managedFields"}
    spec = {k: v for k, v in (job.get("spec") or {}).items() if k != "template"}
    slim = {**job, "metadata": meta, "spec": spec}
    return copy.deepcopy(slim)


def build_registry(
    deps: reconcile.Deps, ticker: Ticker, line_interval: float = 10.0
) -> kopf.OperatorRegistry:
    """A registry with the operator's handlers bound to `deps` and `ticker`."""
    registry = kopf.OperatorRegistry()

    def queued_step(key: Any, seen_job: Any) -> str | None:
        """A pass for a RetrainJob (key: namespace, name), from its Job's newest event if any."""
        namespace, name = key
        ticker.track(namespace, name)  # first: a pass that raises is tried again
        phase = reconcile.reconcile(deps, namespace, name, seen_job)
        if phase is None or phase in TERMINAL_PHASES:
            ticker.untrack(namespace, name)
        return phase

    def first_step(key: Any, _: Any) -> None:
        phase = queued_step(key, None)
        # One line per RetrainJob this process took on (a start or takeover re-examined it).
        logger.info("first pass retrainjob=%s/%s phase=%s", key[0], key[1], phase)

    # New RetrainJobs, and every one at a start or a takeover, in the order the watch saw them.
    runs_sighted = FirstSight()
    first_passes = WorkQueue(first_step, FIRST_PASS_WORKERS)
    job_events = WorkQueue(queued_step, QUEUE_WORKERS)

    @kopf.on.login(id="retrainjob_login", registry=registry)
    def retrainjob_login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # A custom registry has no default login: use the in-cluster account or KUBECONFIG.
        info = kopf.login_with_service_account(**kwargs)
        return info or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.startup(id="retrainjob_startup", registry=registry)
    def retrainjob_startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        # Bookkeeping in annotations: the CRD's status schema would prune Kopf's fields.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=api.GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=api.GROUP, key="last-handled-configuration"
        )
        settings.persistence.finalizer = api.FINALIZER
        # We post our own Events per transition; Kopf's per-handler ones only on problems.
        settings.posting.level = logging.WARNING
        settings.execution.max_workers = HANDLER_WORKERS
        # Bound the per-object workers (per watch, so per namespace: first_sight.py).
        settings.queueing.worker_limit = WORKER_LIMIT
        # A per-object worker keeps its slot this long after its object's last event (Kopf's
        # default: 5 s, which would cap a burst at worker_limit / 5 s new RetrainJobs a second).
        settings.queueing.idle_timeout = WORKER_IDLE_SECONDS
        ticker.start()

    @kopf.on.cleanup(id="retrainjob_cleanup", registry=registry)
    def retrainjob_cleanup(**_: Any) -> None:
        ticker.stop()
        first_passes.stop()
        job_events.stop()
        line_passes.stop()
        line_ticks.stop()

    # Stable ids: Kopf's log lines name them, and the log filter (EVENT_HANDLERS) matches them.
    @kopf.on.event(
        "batch",
        "v1",
        "jobs",
        labels={api.LABEL_MANAGED_BY: api.MANAGED_BY},
        id="retrainjob_job_event",
        registry=registry,
    )
    async def retrainjob_job_event(
        namespace: str | None,
        meta: Mapping[str, Any],
        body: Mapping[str, Any],
        type: str,
        **_: Any,
    ) -> None:
        owner = _owner(meta)
        if not namespace or owner is None:
            return
        if type == "DELETED":
            deps.watched.job_seen(namespace, str(meta.get("name")), None)
            job_events.forget((namespace, owner))
            return
        slim = _slim_job(body)
        deps.watched.job_seen(namespace, str(meta.get("name")), slim)
        # Async: a handful of microseconds on Kopf's loop (a sync handler would wait for a
        # thread of Kopf's executor; a Job's Complete once waited there behind a burst's first
        # passes). The pass starts from the Job as this event showed it, not from another read
        # of it (a read per Job event was the most frequent request of a burst after the
        # RetrainJob's); an event that changed nothing a pass looks at brings none.
        # A Job that ended goes first: its pass verifies and finishes a RetrainJob.
        job_events.add((namespace, owner), slim, _job_state(body), ended(body))

    @kopf.on.event("v1", "events", id="pod_refusal_seen", registry=registry)
    async def pod_refusal_seen(body: Mapping[str, Any], type: str, **_: Any) -> None:
        # The Job controller's FailedCreate Events only (settings_for): why a Job has no pod.
        deps.watched.refusal_seen(body, type == "DELETED")

    @kopf.on.event(
        "v1",
        "pods",
        labels={api.LABEL_NAME: api.TRAINER_NAME},
        id="training_pod_seen",
        registry=registry,
    )
    async def training_pod_seen(
        namespace: str | None, body: Mapping[str, Any], type: str, **_: Any
    ) -> None:
        # Kept for the passes (watched.py); a pod's change brings no pass: its Job's does.
        if namespace:
            deps.watched.pod_seen(namespace, body, type == "DELETED")

    # What the watches said of each line and its runs, and which lines' last pass did nothing.
    idle = IdleLines()

    def line_step(namespace: str | None, name: str) -> bool:
        """One pass over the line; False when it is gone."""
        if not namespace:
            return False
        with deps.locks.hold(f"{api.LINE_PLURAL}/{namespace}/{name}"):
            outcome = lines.reconcile_line(deps, namespace, name)
        idle.record(namespace, name, None if outcome is None else outcome.quiet)
        return outcome is not None

    def line_tick(namespace: str, name: str) -> bool:
        """A tick's pass, unless nothing changed since the line's last pass did nothing."""
        if idle.quiet(namespace, name, clock.now()):
            return True
        return line_step(namespace, name)

    # Time-driven work (schedule slots, corrections polls, history) every line_interval.
    line_ticks = LineTicks(line_tick, line_interval, LINE_WORKERS)

    def queued_line_step(key: Any, _: Any) -> None:
        """A line's pass when it is created, its spec changes or the operator starts."""
        namespace, name = key
        line_ticks.track(namespace, name)  # first, so a pass that raises is tried again
        if not line_step(namespace, name):
            line_ticks.untrack(namespace, name)

    lines_sighted = FirstSight()
    line_passes = WorkQueue(queued_line_step, LINE_PASS_WORKERS)

    @kopf.on.event(api.GROUP, api.VERSION, api.LINE_PLURAL, id="modelline_seen", registry=registry)
    async def modelline_seen(
        namespace: str | None, name: str, meta: Mapping[str, Any], type: str, **_: Any
    ) -> None:
        if not namespace:
            return
        seen = None if type == "DELETED" else meta
        idle.seen(namespace, name, None if seen is None else seen.get("resourceVersion"))
        if lines_sighted.first(namespace, name, line_mark(seen)):
            line_passes.add((namespace, name))

    @kopf.on.event(api.GROUP, api.VERSION, api.PLURAL, id="retrainjob_seen", registry=registry)
    async def retrainjob_seen(
        namespace: str | None,
        name: str,
        spec: Mapping[str, Any],
        body: Mapping[str, Any],
        type: str,
        **_: Any,
    ) -> None:
        if not namespace:
            return
        seen = None if type == "DELETED" else body
        # Where the RetrainJob's next pass starts (run_memory.py).
        deps.runs.seen(namespace, name, seen)
        if runs_sighted.first(namespace, name, run_mark(seen)):
            first_passes.add((namespace, name))
        # Any change of a run (created, progressed, ended, deleted) may give its line work.
        if spec.get("model"):
            idle.runs_changed(namespace, str(spec["model"]))

    return registry


def settings_for(config: OperatorConfig) -> kopf.OperatorSettings:
    """Kopf's settings before any watch starts (the startup handler adds the rest).

    Watching named namespaces, the chart grants nothing cluster-wide: Kopf's scan of all
    namespaces and CRDs would be Forbidden and retried with backoff for about a minute before
    it falls back to the named namespaces, and a new leader would reconcile nothing meanwhile
    (every start, every takeover). The named namespaces are all there is to serve."""
    settings = kopf.OperatorSettings()
    settings.scanning.disabled = not config.clusterwide
    # The apiserver sends only our Jobs and the training pods: the handlers' label filters
    # are Kopf's, client-side, and Kopf keeps a memory of every object its watch lists.
    settings.watching.label_selectors["batch", "v1", "jobs"] = (
        f"{api.LABEL_MANAGED_BY}={api.MANAGED_BY}"
    )
    settings.watching.label_selectors["v1", "pods"] = f"{api.LABEL_NAME}={api.TRAINER_NAME}"
    settings.watching.field_selectors["v1", "events"] = "reason=FailedCreate"
    return settings


def run(deps: reconcile.Deps, ticker: Ticker, config: OperatorConfig) -> None:
    """Run Kopf standalone until stopped. No Kopf peering: with two replicas, the caller holds
    the leader Lease (leader.py) before calling this, and its ticker starts only in here."""
    kopf.run(
        settings=settings_for(config),
        registry=build_registry(deps, ticker, config.line_interval),
        standalone=True,
        clusterwide=config.clusterwide,
        namespaces=list(config.namespaces),
        liveness_endpoint=(
            f"http://0.0.0.0:{config.health_port}/healthz" if config.health_port else None
        ),
    )
