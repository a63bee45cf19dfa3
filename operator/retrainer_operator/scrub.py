"""The scrub of a model line: re-verify every kept version's copies at an interval.

Bits rot and people copy files by hand; a version verified when it was made may not be intact
a year later. With spec.scrub.intervalSeconds set, the operator runs `retrainer verify MODEL
--all` (the CLI in the operator image, the claim mounted read-only, MinIO credentials from the
namespace's Secret) in a Job named `retrainer-scrub-<model>` once per interval, measured from
the end of the last scrub (status.scrub.time). Its report (retrainer_contract.upkeep) becomes
status.scrub (time, checked, problems) and the condition `Scrubbed`: True `CopiesIntact`, or
False `CopyChanged` / `CopyMissing` naming the version and location, with a Warning Event.

The Job is told which versions must be on the claim (retrainer_contract.upkeep.VERSIONS_ENV:
status.verifiedVersions less status.retention.removed), so a version whose production copy,
or every claim copy, was deleted is checked and reported missing instead of not being seen.
A scrub never runs beside the line's retention Job (each waits for the other), and a problem
of a version that retention removed since the scrub started is not damage: it is dropped.

`scrub_step` is one idempotent step for the line reconciler, with the time passed in (`now`),
so tests drive the interval without waiting for it.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Any

from retrainer_contract import claimjob
from retrainer_contract import upkeep as reports
from retrainer_contract.versions import format_ranges

from retrainer_operator import upkeep
from retrainer_operator.config import OperatorConfig
from retrainer_operator.kube import Cluster
from retrainer_operator.upkeep import Event, Reason, UpkeepStep

__all__ = ["due", "expected_versions", "job_name", "result_step", "scrub_step"]

_SHOWN = 3


def job_name(model: str) -> str:
    """The line's one scrub Job (a model line is at most 40 characters)."""
    return upkeep.job_name(upkeep.SCRUB_COMPONENT, model)


def expected_versions(status: Mapping[str, Any]) -> list[int]:
    """The versions that must be on the claim: verified (the ledger) and not removed by
    retention. The scrub checks each of them, whatever copy is left."""
    removed = upkeep.versions_in((status.get("retention") or {}).get("removed"))
    return sorted(upkeep.versions_in(status.get("verifiedVersions")) - removed)


def due(scrub_spec: Mapping[str, Any], last: Mapping[str, Any], now: datetime.datetime) -> bool:
    """True when no scrub finished yet or the last one is intervalSeconds old."""
    finished = upkeep.parse_time(last.get("time"))
    interval = datetime.timedelta(seconds=int(scrub_spec.get("intervalSeconds") or 0))
    return finished is None or now - finished >= interval


def _recorded(last: Mapping[str, Any], job: Mapping[str, Any]) -> bool:
    """True when status.scrub already holds this Job's result (it finished after it started)."""
    annotations = (job.get("metadata") or {}).get("annotations") or {}
    started = upkeep.parse_time(annotations.get(upkeep.STARTED_ANNOTATION))
    finished = upkeep.parse_time(last.get("time"))
    return finished is not None and (started is None or started <= finished)


def _problem_message(problems: list[dict[str, Any]], checked: int, omitted: int) -> str:
    shown = "; ".join(reports.problem_text(p) for p in problems[:_SHOWN])
    more = len(problems) - _SHOWN + omitted
    tail = f"; and {more} more (status.scrub.problems)" if more > 0 else ""
    return f"{len(problems) + omitted} copies did not verify in {checked} versions: {shown}{tail}"


def result_step(
    last: Mapping[str, Any],
    exit_code: int | None,
    message: str,
    now: datetime.datetime,
    removed: Iterable[int] = (),
) -> UpkeepStep:
    """The status patch, condition and Events for a finished scrub Job's result (pure).

    `removed`: versions whose claim copies retention has removed; their problems are dropped."""
    try:
        report = reports.parse_scrub_report(message)
    except ValueError as error:
        why = f"the scrub Job (exit code {exit_code}) left no report: {error}"
        return UpkeepStep(
            patch={"scrub": {"time": upkeep.iso(now), "jobName": None}},
            condition=(upkeep.SCRUBBED, None, Reason.SCRUB_FAILED, why),
            events=(Event(Reason.SCRUB_FAILED, why, warning=True),),
        )
    gone = set(removed)
    problems = [dict(p) for p in report["problems"] if p.get("version") not in gone]
    checked = int(report["checked"])
    patch = {
        "scrub": {
            "time": upkeep.iso(now),
            "checked": checked,
            "problems": [reports.problem_text(p) for p in problems],
            "jobName": None,
        }
    }
    if not problems:
        text = f"{checked} versions checked: every copy intact"
        quiet = not last.get("problems") and last.get("time")
        events = () if quiet else (Event(Reason.COPIES_INTACT, text),)
        return UpkeepStep(patch, (upkeep.SCRUBBED, True, Reason.COPIES_INTACT, text), events)
    kinds = {p.get("kind") for p in problems}
    text = _problem_message(problems, checked, int(report.get("omitted") or 0))
    if kinds <= {reports.UNREADABLE}:
        # Nothing found wrong with a copy: some could not be read (MinIO down, credentials).
        unknown = (upkeep.SCRUBBED, None, Reason.COPY_UNREADABLE, text)
        return UpkeepStep(patch, unknown, (Event(Reason.COPY_UNREADABLE, text, warning=True),))
    missing_only = kinds <= {reports.MISSING, reports.UNREADABLE}
    reason = Reason.COPY_MISSING if missing_only else Reason.COPY_CHANGED
    return UpkeepStep(
        patch, (upkeep.SCRUBBED, False, reason, text), (Event(reason, text, warning=True),)
    )


def scrub_step(
    cluster: Cluster, line: Mapping[str, Any], config: OperatorConfig, now: datetime.datetime
) -> UpkeepStep:
    """One scrub step for ModelLine `line` at time `now`: start a due scrub, or record a
    finished one; an empty step when there is nothing to do (or spec.scrub is unset)."""
    scrub_spec = (line.get("spec") or {}).get("scrub")
    if not scrub_spec:
        return UpkeepStep()
    namespace, model = line["metadata"]["namespace"], line["metadata"]["name"]
    status = line.get("status") or {}
    last: dict[str, Any] = dict(status.get("scrub") or {})
    name = job_name(model)
    job = cluster.read_job(namespace, name)
    if job is not None:
        if claimjob.result(job) is None:  # still running
            running = UpkeepStep({"scrub": {"jobName": name}})
            return UpkeepStep() if last.get("jobName") == name else running
        if _recorded(last, job):
            cluster.delete_job(namespace, name)
            return UpkeepStep()
        exit_code, message = upkeep.finished_outcome(cluster, job)
        removed = upkeep.versions_in((status.get("retention") or {}).get("removed"))
        return result_step(last, exit_code, message, now, removed)
    if not due(scrub_spec, last, now):
        # A Job that vanished before its result was read (TTL, deleted by hand): forget it.
        return UpkeepStep({"scrub": {"jobName": None}}) if last.get("jobName") else UpkeepStep()
    if cluster.read_job(namespace, upkeep.job_name(upkeep.RETAIN_COMPONENT, model)) is not None:
        return UpkeepStep()  # retention is removing copies: scrub once it is done
    expected = {"name": reports.VERSIONS_ENV, "value": format_ranges(expected_versions(status))}
    manifest = upkeep.build_upkeep_job(
        line,
        config,
        name=name,
        component=upkeep.SCRUB_COMPONENT,
        args=["verify", model, "--all", "--root", claimjob.MOUNT_PATH],
        read_only=True,
        with_s3=True,
        now=now,
        env=[expected],
    )
    if not cluster.create_job(manifest)[1]:
        return UpkeepStep()  # the last one is still being deleted: next tick
    started = Event(Reason.SCRUB_STARTED, f"Job {name} re-verifies every version of {model}")
    return UpkeepStep({"scrub": {"jobName": name}}, events=(started,))
