"""Retention (opt-in): remove old versions' claim copies, keep what production may need.

A claim fills up: every version is three weight copies and a run folder. With spec.retention
set, the operator keeps the claim copies of the newest `keepLast` verified versions, the
champion and its predecessor (the target of a rollback), and lists every other verified
version's copies as removable (status.retention.removable). Unverified versions (training, or
failed) are never touched. With dryRun (the default) that list is all; otherwise the operator
runs `retrainer retain MODEL N...` in a Job (`retrainer-retain-<model>`, the operator image,
the claim mounted read-write; at most once per RETRY), which removes exactly the contract's
retention paths (retrainer_contract.upkeep: production copy, quick-access copy, run folder).
The metadata file stays and MLflow is never touched: a removed version can still be read from
its run.

The champion can move after the Job was built (a promotion, a rollback): the Job runs as
retrainer_contract.claimjob.UPKEEP_SERVICE_ACCOUNT and re-reads the ModelLine's champion and
previous right before removing, and never removes their copies (they come back `protected`).

status.retention.removable stays small whatever the number of versions: the URIs of the
first REMOVABLE_SHOWN pending versions, then one line counting the rest with their ranges.
A retention Job never runs beside the line's scrub Job: each waits for the other.

`retention_plan` is the pure rule; `retention_step` is one idempotent step for the line
reconciler, like scrub.scrub_step.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

from retrainer_contract import claimjob, layout
from retrainer_contract import upkeep as reports
from retrainer_contract.versions import format_ranges

from retrainer_operator import upkeep
from retrainer_operator.config import OperatorConfig
from retrainer_operator.kube import Cluster
from retrainer_operator.upkeep import Event, Reason, UpkeepStep

__all__ = [
    "REMOVABLE_SHOWN",
    "RETRY",
    "job_name",
    "removable_listing",
    "removable_uris",
    "retention_plan",
    "retention_step",
]

# A removal Job starts at most once per RETRY (counted from status.retention.time), so a path
# that cannot be removed is retried calmly, not on every tick.
RETRY = datetime.timedelta(minutes=10)
# Versions whose claim copies status.retention.removable names one by one; the rest are counted.
REMOVABLE_SHOWN = 10
# Characters of version ranges the counting line of status.retention.removable may hold.
_RANGES_SHOWN = 256


def job_name(model: str) -> str:
    """The line's one retention Job (a model line is at most 40 characters)."""
    return upkeep.job_name(upkeep.RETAIN_COMPONENT, model)


def retention_plan(
    verified_versions: Iterable[int], keep_last: int, champion: int | None, previous: int | None
) -> tuple[list[int], list[int]]:
    """(kept, removable) among the verified versions: the newest `keep_last`, the champion and
    its predecessor are kept; every other verified version is removable. Both sorted."""
    verified = sorted(set(verified_versions))
    newest = verified[-keep_last:] if keep_last > 0 else []
    keep = set(newest) | {v for v in (champion, previous) if v is not None}
    kept = [v for v in verified if v in keep]
    return kept, [v for v in verified if v not in keep]


def removable_uris(claim: str, model: str, versions: Iterable[int]) -> list[str]:
    """The pvc:// URIs of the claim copies retention removes for `versions`."""
    uris: list[str] = []
    for version in versions:
        paths = layout.VersionPaths.for_version(PurePosixPath("/"), model, version)
        uris += [paths.uri(claim, path) for path in reports.retention_paths(paths)]
    return uris


def removable_listing(claim: str, model: str, pending: Sequence[int]) -> list[str]:
    """status.retention.removable, bounded: the URIs of the first REMOVABLE_SHOWN `pending`
    versions, then (when there are more) one line counting the others, with their ranges."""
    ordered = sorted(pending)
    listing = removable_uris(claim, model, ordered[:REMOVABLE_SHOWN])
    rest = ordered[REMOVABLE_SHOWN:]
    if rest:
        ranges, cut = reports.bounded_ranges(rest, _RANGES_SHOWN)
        copies = len(rest) * len(listing) // max(1, len(ordered[:REMOVABLE_SHOWN]))
        tail = f",... ({cut} more)" if cut else ""
        listing.append(f"and {copies} more claim copies of {len(rest)} versions: {ranges}{tail}")
    return listing


def _result_step(
    model: str,
    removed: set[int],
    exit_code: int | None,
    message: str,
    now: datetime.datetime,
) -> tuple[UpkeepStep, set[int]]:
    """The status patch and Events for a finished retention Job (pure), and every version
    whose copies are now removed."""
    try:
        report = reports.parse_retain_report(message)
    except ValueError as error:
        why = f"the retention Job (exit code {exit_code}) left no report: {error}"
        return UpkeepStep(events=(Event(Reason.RETENTION_FAILED, why, warning=True),)), removed
    gone = set(report["versions"])
    now_removed = removed | gone
    patch = {"retention": {"removed": format_ranges(now_removed), "time": upkeep.iso(now)}}
    events: list[Event] = []
    if gone or report.get("protected"):
        events.append(Event(Reason.CLAIM_COPIES_REMOVED, _removed_text(model, report, gone)))
    if report["failed"] or report.get("omitted"):
        failed = "; ".join(f"{f.get('path')}: {f.get('error')}" for f in report["failed"][:3])
        text = f"retention could not remove every copy (exit code {exit_code}): {failed}"
        events.append(Event(Reason.RETENTION_FAILED, text, warning=True))
    return UpkeepStep(patch, events=tuple(events)), now_removed


def _removed_text(model: str, report: Mapping[str, Any], gone: set[int]) -> str:
    """What a retention Job removed, and what it kept because the champion moved to it."""
    ranges, cut = reports.bounded_ranges(gone, _RANGES_SHOWN)
    shown = f"{ranges},... ({cut} more)" if cut else ranges
    text = (
        f"removed the claim copies of versions {shown or 'none'} of {model} "
        f"({report['removed']} paths); metadata files and MLflow kept"
    )
    if report.get("protected"):
        text += (
            f"; kept versions {format_ranges(report['protected'])}: the champion or its "
            "previous when retention re-read the line just before removing"
        )
    return text


def _listing(claim: str, model: str, kept: list[int], pending: list[int]) -> dict[str, Any]:
    """status.retention's kept ranges and bounded removable listing."""
    return {"kept": format_ranges(kept), "removable": removable_listing(claim, model, pending)}


def _scrubbing(cluster: Cluster, namespace: str, model: str) -> bool:
    """True while the line's scrub Job exists: it reads the copies retention would remove."""
    return cluster.read_job(namespace, upkeep.job_name(upkeep.SCRUB_COMPONENT, model)) is not None


def retention_step(
    cluster: Cluster,
    line: Mapping[str, Any],
    config: OperatorConfig,
    verified_versions: Iterable[int],
    now: datetime.datetime,
) -> UpkeepStep:
    """One retention step for ModelLine `line` at `now`, given the line's verified versions
    (from its ledger): list what may go, or remove it, or record what a Job removed."""
    spec = (line.get("spec") or {}).get("retention")
    if not spec:
        return UpkeepStep()
    namespace, model = line["metadata"]["namespace"], line["metadata"]["name"]
    status = line.get("status") or {}
    last: dict[str, Any] = dict(status.get("retention") or {})
    claim = upkeep.claim_of(line, config)
    name = job_name(model)
    champion = status.get("champion") or {}
    kept, removable = retention_plan(
        verified_versions, int(spec["keepLast"]), champion.get("version"), champion.get("previous")
    )
    removed = upkeep.versions_in(last.get("removed"))
    job = cluster.read_job(namespace, name)
    if job is not None:
        if claimjob.result(job) is None:
            return UpkeepStep()
        exit_code, message = upkeep.finished_outcome(cluster, job)
        cluster.delete_job(namespace, name)
        done, removed = _result_step(model, removed, exit_code, message, now)
        if not done.patch:
            return done
        pending = [v for v in removable if v not in removed]
        listing = _listing(claim, model, kept, pending)
        return UpkeepStep({"retention": {**done.patch["retention"], **listing}}, events=done.events)
    pending = [v for v in removable if v not in removed]
    wanted = _listing(claim, model, kept, pending)
    dry_run = spec.get("dryRun", True) is not False
    if dry_run or not pending:
        if all(last.get(k) == v for k, v in wanted.items()):
            return UpkeepStep()
        return UpkeepStep({"retention": {**wanted, "time": upkeep.iso(now)}})
    ran = upkeep.parse_time(last.get("time"))
    if (ran is not None and now - ran < RETRY) or _scrubbing(cluster, namespace, model):
        return UpkeepStep()
    manifest = upkeep.build_upkeep_job(
        line,
        config,
        name=name,
        component=upkeep.RETAIN_COMPONENT,
        args=[
            "retain",
            model,
            format_ranges(pending),
            "--root",
            claimjob.MOUNT_PATH,
            "--namespace",
            namespace,
        ],
        read_only=False,
        with_s3=False,
        now=now,
        service_account=claimjob.UPKEEP_SERVICE_ACCOUNT,
    )
    if not cluster.create_job(manifest)[1]:
        return UpkeepStep()  # the last one is still being deleted: next tick
    ranges, cut = reports.bounded_ranges(pending, _RANGES_SHOWN)
    more = f",... ({cut} more)" if cut else ""
    text = f"Job {name} removes the claim copies of versions {ranges}{more} of {model}"
    return UpkeepStep(
        {"retention": {**wanted, "time": upkeep.iso(now)}},
        events=(Event(Reason.RETENTION_STARTED, text),),
    )
