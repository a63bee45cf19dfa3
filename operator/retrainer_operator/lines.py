"""The line reconciler: from a ModelLine and the cluster, the runs to start and its status.

Called on every change of a ModelLine and on a timer (handlers.py), with `now` from the clock
(clock.py, which tests set). It decides the schedule's due slot (schedule.py), counts the
corrections (triggers.py), starts at most one RetrainJob per slot or per set of corrections
under a deterministic name (so a restarted operator finds it, never a second one), trims the
line's finished RetrainJobs to the history limits, and merge-patches the fields it owns. The
sequence itself (status.ledger and the fields derived from it) is versions.py's, written
under optimistic concurrency; this module never writes it.

What a pass costs is bounded for a thousand lines: the namespace's RetrainJobs are listed once
for all its lines (`_runs_of`, reused for half a line interval and amended when this module
creates or deletes one), nothing is written when nothing changed, the corrections are counted
in memory between changes of the count (`_polled`), and a schedule's next slot is an alarm
(clock.alarm) rather than the next tick, so a slot starts within a second of its time.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from retrainer_contract import api
from retrainer_contract import versions as contract_versions

from retrainer_operator import (
    champion_sync,
    clock,
    faults,
    job_outcome,
    line_idle,
    line_status,
    recovery,
    retention,
    schedule,
    scrub,
    triggers,
    upkeep,
    versions,
)
from retrainer_operator.conditions import (
    CHAMPION_IN_SYNC,
    Reason,
    get_condition,
    is_terminal,
    set_condition,
)
from retrainer_operator.mlflow_rest import MlflowError

__all__ = ["READY", "Outcome", "history_to_delete", "reconcile_line", "run_body"]

logger = logging.getLogger("retrainer.operator")

READY = "Ready"
# Status fields versions.py owns: the line reconciler never patches them.
_LEDGER_FIELDS = frozenset(
    {"ledger", "latestVersion", "latestVerified", "verifiedVersions", "versions", "champion"}
)
SCHEDULE = "schedule"
CORRECTIONS = "corrections"
# A slot's pass runs this long after the slot (the decision reads the clock to the second).
_SLOT_DELAY = datetime.timedelta(seconds=0.1)
# Fields of a RetrainJob a line pass reads (history, activity, the champion's spec).
_RUN_META = ("name", "namespace", "uid", "creationTimestamp", "ownerReferences", "labels")
_RUN_STATUS = ("phase", "completionTime", "version")


def _iso(value: datetime.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass
class Outcome:
    """The status fields this reconcile sets and the Events it posts."""

    status: dict[str, Any]
    events: list[tuple[str, str, bool]] = dataclasses.field(default_factory=list)
    created: list[str] = dataclasses.field(default_factory=list)
    # The RetrainJobs created, as the apiserver returned them.
    made: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    # Set when the pass found nothing to do: the line's next tick may skip it (line_idle.py).
    quiet: line_idle.Quiet | None = None


def run_body(
    line: Mapping[str, Any], trigger: str, key: str, slot: datetime.datetime | None = None
) -> dict[str, Any]:
    """The RetrainJob the line starts for one trigger event: its template with `model` set,
    the line's corrections folder when the template names none, owned by the line."""
    meta = line["metadata"]
    spec_in = line.get("spec") or {}
    spec = copy.deepcopy(dict(spec_in.get("template") or {}))
    spec["model"] = meta["name"]
    watched = spec_in.get(CORRECTIONS) or {}
    if watched.get("uri") and "corrections" not in spec:
        spec["corrections"] = {"uri": watched["uri"]}
    annotations = {api.SCHEDULED_TIME_ANNOTATION: _iso(slot) or ""} if slot else {}
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {
            "name": api.run_name(meta["name"], trigger, key),
            "namespace": meta["namespace"],
            "labels": {
                api.LABEL_MANAGED_BY: api.MANAGED_BY,
                api.LABEL_MODEL: meta["name"],
                api.LABEL_TRIGGER: trigger,
            },
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": api.API_VERSION,
                    "kind": api.LINE_KIND,
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": False,
                }
            ],
        },
        "spec": spec,
    }


def _owned_by(obj: Mapping[str, Any], line: Mapping[str, Any]) -> bool:
    uid = line["metadata"]["uid"]
    return any(
        ref.get("uid") == uid for ref in (obj.get("metadata") or {}).get("ownerReferences") or []
    )


def history_to_delete(runs: list[Mapping[str, Any]], line: Mapping[str, Any]) -> list[str]:
    """Names of the line's own finished RetrainJobs beyond spec.historyLimits, oldest first.
    RetrainJobs a person applied are never the line's to delete."""
    limits = (line.get("spec") or {}).get("historyLimits") or {}
    keep = {"Succeeded": int(limits.get("succeeded", 3)), "Failed": int(limits.get("failed", 1))}
    doomed: list[str] = []
    for phase, limit in keep.items():
        finished = [
            r for r in runs if _owned_by(r, line) and (r.get("status") or {}).get("phase") == phase
        ]
        finished.sort(
            key=lambda r: (
                (r.get("status") or {}).get("completionTime") or "",
                r["metadata"].get("creationTimestamp") or "",
            ),
            reverse=True,
        )
        doomed += [r["metadata"]["name"] for r in finished[limit:]]
    return sorted(doomed)


_runs: clock.Shared[dict[str, list[dict[str, Any]]]] = clock.Shared()
_polled_guard = threading.Lock()
# (namespace, line) -> when this process last counted the line's corrections (the clock's time).
_polled: dict[tuple[str, str], datetime.datetime] = {}


def _slim_run(run: Mapping[str, Any]) -> dict[str, Any]:
    meta, status = run.get("metadata") or {}, run.get("status") or {}
    conditions = [
        {k: c[k] for k in ("type", "status", "reason") if k in c}
        for c in status.get("conditions") or []
    ]
    return {
        "metadata": {k: meta[k] for k in _RUN_META if k in meta},
        "spec": run.get("spec") or {},
        "status": {**{k: status[k] for k in _RUN_STATUS if k in status}, "conditions": conditions},
    }


def _runs_of(deps: Any, namespace: str, name: str) -> tuple[float, list[Mapping[str, Any]]]:
    """The RetrainJobs of line `name` (what a pass reads of them), from one listing of the
    namespace shared by all its lines for half a line interval, and when that listing was
    started (monotonic)."""

    def listing() -> dict[str, list[dict[str, Any]]]:
        by_line: dict[str, list[dict[str, Any]]] = {}
        for run in deps.cluster.list_retrainjobs(namespace):
            model = str((run.get("spec") or {}).get("model") or "")
            by_line.setdefault(model, []).append(_slim_run(run))
        return by_line

    max_age = float(getattr(deps.config, "line_interval", 10.0)) / 2
    started, by_line = _runs.reading((deps.cluster, namespace), max_age, listing)
    return started, list(by_line.get(name, []))


def _changed_runs(
    deps: Any, namespace: str, name: str, created: list[dict[str, Any]], deleted: list[str]
) -> None:
    """This pass created or deleted RetrainJobs of line `name`: the shared listing shows it
    at once (the others of the namespace are still at most half an interval old)."""

    def change(by_line: dict[str, list[dict[str, Any]]]) -> None:
        gone = {*deleted, *(r["metadata"]["name"] for r in created)}
        kept = [r for r in by_line.get(name, []) if r["metadata"].get("name") not in gone]
        by_line[name] = kept + [_slim_run(r) for r in created]

    _runs.amend((deps.cluster, namespace), change)


def _schedule_step(
    cluster: Any,
    line: Mapping[str, Any],
    now: datetime.datetime,
    active: Callable[[], bool],
    out: Outcome,
) -> tuple[bool, str] | None:
    """The schedule's due slot, if any, started, skipped or recorded. `active()` (whether a run
    of the line is active: a listing) is asked only when a Forbid slot is due."""
    spec_schedule = (line.get("spec") or {}).get("schedule")
    status = line.get("status") or {}
    if not spec_schedule:
        out.status["nextRunTime"] = None
        return None
    since = schedule.parse_time(status.get("lastScheduleTime")) or schedule.parse_time(
        line["metadata"].get("creationTimestamp")
    )
    try:
        decision = schedule.decide(spec_schedule, now, since or now, False)
        forbid = str(spec_schedule.get("concurrencyPolicy") or schedule.FORBID) == schedule.FORBID
        if decision.action == schedule.STARTED and forbid and active():
            decision = schedule.decide(spec_schedule, now, since or now, True)
    except schedule.ScheduleError as error:
        out.status["nextRunTime"] = None
        return False, str(error)
    out.status["nextRunTime"] = _iso(decision.next_run)
    if decision.slot is None:
        return None
    key = schedule.slot_key(decision.slot)
    if decision.action == schedule.STARTED:
        name = _start(cluster, line, SCHEDULE, key, decision.slot, out)
        out.events.append(("RunStarted", f"slot {_iso(decision.slot)}: RetrainJob {name}", False))
    elif decision.action == schedule.SKIPPED:
        out.events.append(
            (
                "SlotSkipped",
                f"slot {_iso(decision.slot)} skipped: a run of the line is active "
                "(concurrencyPolicy Forbid)",
                False,
            )
        )
    elif decision.action == schedule.RESYNCED:
        out.events.append(
            (
                "ScheduleResynced",
                f"lastScheduleTime was after the next slot (the clock stepped back): resumed "
                f"from slot {_iso(decision.slot)}, nothing started for it",
                True,
            )
        )
    elif decision.action == schedule.MISSED:
        out.events.append(
            (
                "SlotMissed",
                f"slot {_iso(decision.slot)} missed by more than startingDeadlineSeconds "
                f"({spec_schedule.get('startingDeadlineSeconds')}s): not started",
                True,
            )
        )
    out.status["lastScheduleTime"] = _iso(decision.slot)
    return None


def _start(
    cluster: Any,
    line: Mapping[str, Any],
    trigger: str,
    key: str,
    slot: datetime.datetime | None,
    out: Outcome,
) -> str:
    body = run_body(line, trigger, key, slot)
    made, created = cluster.create_retrainjob(body)
    faults.point(faults.AFTER_RUN_CREATE)
    name = str(body["metadata"]["name"])
    if created:
        out.created.append(name)
        out.made.append(made)
    out.status["lastRunName"] = name
    return name


def _corrections_checked(
    key: tuple[str, str], status: Mapping[str, Any]
) -> datetime.datetime | None:
    """When the line's corrections were last counted: here since the last change of the count,
    else as its status records it."""
    with _polled_guard:
        polled = _polled.get(key)
    recorded = schedule.parse_time(status.get("correctionsCheckTime"))
    return max((t for t in (polled, recorded) if t is not None), default=None)


def _corrections_step(
    deps: Any,
    line: Mapping[str, Any],
    now: datetime.datetime,
    active: Callable[[], bool],
    out: Outcome,
    runs: Callable[[], list[Mapping[str, Any]]],
) -> None:
    watched = (line.get("spec") or {}).get(CORRECTIONS)
    status = line.get("status") or {}
    meta = line["metadata"]
    key = (meta["namespace"], meta["name"])
    if not watched:
        out.status["pendingCorrections"] = None
        return
    checked = _corrections_checked(key, status)
    interval = float(watched.get("pollIntervalSeconds", 300))
    if checked is not None and 0 <= (now - checked).total_seconds() < interval:
        return
    if deps.store is None:
        return
    try:
        waiting = triggers.pending(deps.store, deps.mlflow, line)
    except Exception as error:  # MlflowError, OSError, minio's S3Error: the count is unknown
        out.events.append(("CorrectionsUncounted", f"corrections not counted: {error}", True))
        return
    with _polled_guard:
        _polled[key] = now
    if len(waiting) != status.get("pendingCorrections"):
        # Written when the count changes: an idle line's polls write nothing.
        out.status["pendingCorrections"] = len(waiting)
        out.status["correctionsCheckTime"] = _iso(now)
    if len(waiting) >= int(watched["minNew"]) and not active():
        name = api.run_name(meta["name"], CORRECTIONS, triggers.fingerprint(waiting))
        if name == status.get("lastRunName") or any(r["metadata"]["name"] == name for r in runs()):
            return  # this set of corrections has its run (maybe failed: not retried)
        name = _start(deps.cluster, line, CORRECTIONS, triggers.fingerprint(waiting), None, out)
        out.events.append(
            (
                "RunStarted",
                f"{len(waiting)} new corrections (minNew {watched['minNew']}): RetrainJob {name}",
                False,
            )
        )


def _rebuild(deps: Any, line: Mapping[str, Any]) -> str | None:
    """A re-applied (or new) ModelLine gets its sequence, verified versions and champion back
    from the durable evidence now, not at its next RetrainJob, so `kubectl get modelline`
    shows the same LATEST and CHAMPION. Returns why it could not (MLflow down), else None."""
    if "next" in versions.data_of(line):
        return None
    meta = line["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    spec = {**dict((line.get("spec") or {}).get("template") or {}), "model": name}
    recover = recovery.recoverer(deps.cluster, deps.mlflow, namespace, spec)
    try:
        versions.ensure(deps.cluster, namespace, name, recover)
    except MlflowError as error:
        return (
            "the line's record is being rebuilt from its evidence, but MLflow cannot be read "
            f"(retrying; nothing is allocated or crowned meanwhile): {error}"
        )
    return None


def _with_champion_sync(
    status: dict[str, Any], sync: Any, generation: int | None
) -> dict[str, Any]:
    if sync is None:
        return status
    return set_condition(
        status, CHAMPION_IN_SYNC, sync.value, sync.reason, sync.message, generation
    )


def _upkeep(
    deps: Any,
    line: Mapping[str, Any],
    status: dict[str, Any],
    now: datetime.datetime,
    runs: list[Mapping[str, Any]],
) -> tuple[dict[str, Any], list[upkeep.UpkeepStep]]:
    """Scrub and retention (scrub.py, retention.py) folded into `status`; first, the line's
    training Jobs nothing else will release (their RetrainJob gone or terminal) are released."""
    upkeep.release_training_jobs(deps.cluster, line, runs)
    generation = line["metadata"].get("generation")
    verified = contract_versions.expand_ranges(str(status.get("verifiedVersions") or ""))
    steps = [
        scrub.scrub_step(deps.cluster, line, deps.config, now),
        retention.retention_step(deps.cluster, line, deps.config, verified, now),
    ]
    for step in steps:
        status = upkeep.apply_step(status, step, generation)
    return status, steps


def _write(
    cluster: Any,
    line: Mapping[str, Any],
    status: Mapping[str, Any],
    sync: Any,
) -> bool:
    """Write the fields this reconciler owns over the line as it is now (line_status.update:
    the ledger and the champion, written meanwhile by others, are kept as read), and the
    registered model the mirror found into a champion record that lacks it. Nothing at all
    (False) when they are what `line` (read this pass) already holds."""
    owned = {k: v for k, v in status.items() if k not in _LEDGER_FIELDS}

    def change(fresh: Mapping[str, Any]) -> tuple[dict[str, Any], None]:
        current = dict(fresh.get("status") or {})
        new = {**{k: v for k, v in current.items() if k in _LEDGER_FIELDS}, **owned}
        record = current.get("champion") or {}
        found = getattr(sync, "registered_model", None)
        if found and record.get("version") and not record.get("registeredModel"):
            new["champion"] = {**record, "registeredModel": found, "alias": sync.alias}
        return new, None

    if not line_status.merge_patch(dict(line.get("status") or {}), change(line)[0]):
        return False
    namespace, name = line["metadata"]["namespace"], line["metadata"]["name"]
    line_status.update(cluster, namespace, name, change)
    return True


def _quiet(
    deps: Any,
    line: Mapping[str, Any],
    status: Mapping[str, Any],
    now: datetime.datetime,
    runs_listed_at: float,
    active: bool,
) -> line_idle.Quiet | None:
    """What lets the line's next ticks skip it, after a pass that did nothing (None: the line
    has work a tick must look at: a run (`active`) or a training Job still going, an upkeep
    Job, a champion to check at the next pass)."""
    spec = line.get("spec") or {}
    meta = line["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    if spec.get("scrub") or spec.get("retention"):
        return None  # their Jobs come and go with no event of the line or of its runs
    if active or job_outcome.held(deps.cluster, namespace, name) != []:
        return None
    left = champion_sync.next_check(namespace, name, deps.config.champion_sync_interval)
    if left <= 0:
        return None
    due = [now + line_idle.RECHECK, now + datetime.timedelta(seconds=left)]
    upcoming = schedule.parse_time(status.get("nextRunTime"))
    if spec.get("schedule") and upcoming is not None:
        due.append(upcoming)
    watched = spec.get(CORRECTIONS)
    if watched and deps.store is not None:
        checked = _corrections_checked((namespace, name), status)
        if checked is None:
            return None
        interval = float(watched.get("pollIntervalSeconds", 300))
        due.append(checked + datetime.timedelta(seconds=interval))
    resource_version = str(meta.get("resourceVersion") or "")
    return line_idle.Quiet(resource_version, runs_listed_at, now, min(due))


def _forget(namespace: str, name: str) -> None:
    champion_sync.forget(namespace, name)
    clock.alarm().cancel((api.LINE_PLURAL, namespace, name))
    with _polled_guard:
        _polled.pop((namespace, name), None)


def _at_slot(deps: Any, namespace: str, name: str) -> None:
    """The pass an alarm runs at a schedule's slot, under the line's lock (handlers.line_step's)."""
    with deps.locks.hold(f"{api.LINE_PLURAL}/{namespace}/{name}"):
        reconcile_line(deps, namespace, name)


def _wake_at_next_slot(deps: Any, namespace: str, name: str, status: Mapping[str, Any]) -> None:
    """An alarm at the line's next slot (none while suspended, or on a test's clock)."""
    key = (api.LINE_PLURAL, namespace, name)
    upcoming = schedule.parse_time(status.get("nextRunTime"))
    if upcoming is None or clock.faked() or not hasattr(deps, "locks"):
        clock.alarm().cancel(key)
        return
    clock.alarm().set(key, upcoming + _SLOT_DELAY, lambda: _at_slot(deps, namespace, name))


def reconcile_line(
    deps: Any, namespace: str, name: str, now: datetime.datetime | None = None
) -> Outcome | None:
    """One pass over ModelLine `namespace`/`name`; returns what it did (None: no such line)."""
    cluster = deps.cluster
    line = cluster.read_modelline(namespace, name)
    if line is None:
        _forget(namespace, name)
        return None
    unrebuilt = _rebuild(deps, line)
    if unrebuilt is None and "next" not in versions.data_of(line):
        line = cluster.read_modelline(namespace, name) or line
    now = now or clock.now()
    out = Outcome(status={})
    listed: list[tuple[float, list[Mapping[str, Any]]]] = []

    def runs() -> list[Mapping[str, Any]]:
        if not listed:
            listed.append(_runs_of(deps, namespace, name))
        return listed[0][1]

    def active() -> bool:
        return bool(out.created) or any(not is_terminal(r.get("status") or {}) for r in runs())

    problem = _schedule_step(cluster, line, now, active, out)
    _corrections_step(deps, line, now, active, out, runs)
    doomed = history_to_delete(runs(), line)
    for run_name in doomed:
        cluster.delete_retrainjob(namespace, run_name)
    if doomed or out.created:
        _changed_runs(deps, namespace, name, out.made, doomed)
    generation = line["metadata"].get("generation")
    current = dict(line.get("status") or {})
    status = {k: v for k, v in {**current, **out.status}.items() if v is not None}
    status, steps = _upkeep(deps, line, status, now, runs())
    sync = champion_sync.step(deps, line, runs()) if unrebuilt is None else None
    status = _with_champion_sync(status, sync, generation)
    if unrebuilt is not None:
        problem = (False, unrebuilt)
        reason = Reason.EVIDENCE_UNAVAILABLE
    else:
        reason = Reason.INVALID_SCHEDULE
    if problem is not None:
        status = set_condition(status, READY, False, reason, problem[1], generation)
    else:
        status = set_condition(
            status, READY, True, Reason.LINE_READY, "the spec is usable", generation
        )
    status["observedGeneration"] = generation
    wrote = _write(cluster, line, status, sync)
    _wake_at_next_slot(deps, namespace, name, status)
    idle = not (wrote or problem or out.created or doomed or out.events or any(steps))
    if idle and listed:
        out.quiet = _quiet(deps, line, status, now, listed[0][0], active())
    for step in steps:
        upkeep.post_events(cluster, line, step)
    before = get_condition(current, READY) or {}
    if problem is not None and before.get("status") != "False":
        out.events.append((reason, problem[1], True))
    for reason, message, warning in out.events:
        cluster.emit_event(line, reason, message, warning)
        logger.info("line event line=%s/%s reason=%s message=%s", namespace, name, reason, message)
    return out
