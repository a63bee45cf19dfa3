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

`retention_plan` is the pure rule; `retention_step` is one idempotent step for the line
reconciler, like scrub.scrub_step.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath
from typing import Any

from retrainer_contract import claimjob, layout
from retrainer_contract import upkeep as reports
from retrainer_contract.versions import format_ranges, parse_ranges

from retrainer_operator import upkeep
from retrainer_operator.config import OperatorConfig
from retrainer_operator.kube import Cluster
from retrainer_operator.upkeep import Event, Reason, UpkeepStep

__all__ = ["RETRY", "job_name", "removable_uris", "retention_plan", "retention_step"]

# A removal Job starts at most once per RETRY (counted from status.retention.time), so a path
# that cannot be removed is retried calmly, not on every tick.
RETRY = datetime.timedelta(minutes=10)


def job_name(model: str) -> str:
    """The line's one retention Job (a model line is at most 40 characters)."""
    return f"retrainer-retain-{model}"


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


def _versions(text: Any) -> set[int]:
    return {n for low, high in parse_ranges(str(text or "")) for n in range(low, high + 1)}


def _result_step(
    claim: str,
    model: str,
    last: Mapping[str, Any],
    exit_code: int | None,
    message: str,
    now: datetime.datetime,
) -> UpkeepStep:
    """The status patch and Events for a finished retention Job (pure)."""
    try:
        report = reports.parse_retain_report(message)
    except ValueError as error:
        why = f"the retention Job (exit code {exit_code}) left no report: {error}"
        return UpkeepStep(events=(Event(Reason.RETENTION_FAILED, why, warning=True),))
    gone = {int(v) for v in report["versions"]}
    removed = _versions(last.get("removed")) | gone
    still = [u for u in last.get("removable") or [] if _uri_version(u) not in gone]
    patch = {
        "retention": {
            "removed": format_ranges(removed),
            "removable": still,
            "time": upkeep.iso(now),
        }
    }
    events: list[Event] = []
    if gone:
        text = (
            f"removed the claim copies of versions {format_ranges(gone)} of {model} "
            f"({report['removed']} paths on {claim}); metadata files and MLflow kept"
        )
        events.append(Event(Reason.CLAIM_COPIES_REMOVED, text))
    if report["failed"] or report.get("omitted"):
        failed = "; ".join(f"{f.get('path')}: {f.get('error')}" for f in report["failed"][:3])
        text = f"retention could not remove every copy (exit code {exit_code}): {failed}"
        events.append(Event(Reason.RETENTION_FAILED, text, warning=True))
    return UpkeepStep(patch, events=tuple(events))


def _uri_version(uri: str) -> int | None:
    """The version a removable URI belongs to (retrained_vN.pt or retrain_vN)."""
    for part in reversed(PurePosixPath(uri).parts):
        for prefix in ("retrained_v", "retrain_v"):
            digits = part.removeprefix(prefix).removesuffix(".pt")
            if part.startswith(prefix) and digits.isdigit():
                return int(digits)
    return None


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
    job = cluster.read_job(namespace, name)
    if job is not None:
        if claimjob.result(job) is None:
            return UpkeepStep()
        exit_code, message = upkeep.finished_outcome(cluster, job)
        cluster.delete_job(namespace, name)
        return _result_step(claim, model, last, exit_code, message, now)
    champion = status.get("champion") or {}
    kept, removable = retention_plan(
        verified_versions, int(spec["keepLast"]), champion.get("version"), champion.get("previous")
    )
    removed = _versions(last.get("removed"))
    pending = [v for v in removable if v not in removed]
    wanted = {"kept": format_ranges(kept), "removable": removable_uris(claim, model, pending)}
    dry_run = spec.get("dryRun", True) is not False
    if dry_run or not pending:
        if all(last.get(k) == v for k, v in wanted.items()):
            return UpkeepStep()
        return UpkeepStep({"retention": {**wanted, "time": upkeep.iso(now)}})
    ran = upkeep.parse_time(last.get("time"))
    if ran is not None and now - ran < RETRY:
        return UpkeepStep()
    manifest = upkeep.build_upkeep_job(
        line,
        config,
        name=name,
        component="retrainer-retain",
        args=["retain", model, *map(str, pending), "--root", claimjob.MOUNT_PATH],
        read_only=False,
        with_s3=False,
        now=now,
    )
    if not cluster.create_job(manifest)[1]:
        return UpkeepStep()  # the last one is still being deleted: next tick
    text = f"Job {name} removes the claim copies of versions {format_ranges(pending)} of {model}"
    return UpkeepStep(
        {"retention": {**wanted, "time": upkeep.iso(now)}},
        events=(Event(Reason.RETENTION_STARTED, text),),
    )
