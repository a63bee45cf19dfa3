"""What the ModelLine's upkeep (scrub.py, retention.py) shares: the step, its Jobs, its words.

Each line tick the line reconciler calls `scrub.scrub_step` and `retention.retention_step`.
A step may create or delete its Job, but never writes the ModelLine: it returns an
`UpkeepStep` (a status merge patch, a condition, Events), and the reconciler folds it into the
status it patches once (`apply_step`) and posts the Events (`post_events`). Both Jobs run the
`retrainer` command of the operator image next to the claim; the manifest's shape is the
contract's (retrainer_contract.claimjob), shared with the CLI's verify Job, and the reports
they write as termination messages are the contract's too (retrainer_contract.upkeep).

The line tick is also the one pass that reaches every model line on a timer, so it releases
the line's training Jobs that nothing else would (`release_training_jobs`, job_outcome.py):
those whose RetrainJob is gone or terminal and is never reconciled again.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from retrainer_contract import api, claimjob
from retrainer_contract import versions as contract_versions

from retrainer_operator import job_outcome
from retrainer_operator.conditions import SCRUBBED, Reason, set_condition
from retrainer_operator.config import OperatorConfig
from retrainer_operator.kube import Cluster

__all__ = [
    "RETAIN_COMPONENT",
    "SCRUBBED",
    "SCRUB_COMPONENT",
    "Event",
    "Reason",
    "UpkeepStep",
    "apply_step",
    "build_upkeep_job",
    "claim_of",
    "finished_outcome",
    "iso",
    "job_name",
    "parse_time",
    "post_events",
    "release_training_jobs",
    "versions_in",
]

logger = logging.getLogger("retrainer.operator")

# The two upkeep Jobs' component labels; `<component>-<model>` names a line's one Job of each.
SCRUB_COMPONENT = "retrainer-scrub"
RETAIN_COMPONENT = "retrainer-retain"
# On an upkeep Job: when the operator started it (its `now`), to tell a result already
# recorded from a new one without comparing with the apiserver's clock.
STARTED_ANNOTATION = f"{api.GROUP}/started"
# Upkeep Jobs stay this long after finishing if the operator does not delete them first.
_TTL_SECONDS = 3600
_DEADLINE_SECONDS = 3600


@dataclasses.dataclass(frozen=True)
class Event:
    """An Event to post on the ModelLine."""

    reason: str
    message: str
    warning: bool = False


@dataclasses.dataclass(frozen=True)
class UpkeepStep:
    """What one upkeep step decided.

    `patch` is a JSON merge patch of the ModelLine status (None removes a key), `condition`
    (type, status True/False/None, reason, message) a condition to set, `events` to post.
    An empty step changes nothing."""

    patch: dict[str, Any] = dataclasses.field(default_factory=dict)
    condition: tuple[str, bool | None, str, str] | None = None
    events: tuple[Event, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.patch or self.condition or self.events)


def job_name(component: str, model: str) -> str:
    """The line's one Job of `component` (a model line is at most 40 characters)."""
    return f"{component}-{model}"


def versions_in(text: Any) -> set[int]:
    """The version numbers of a ranges field of the status ("1-40,42")."""
    return set(contract_versions.expand_ranges(str(text or "")))


def iso(when: datetime.datetime) -> str:
    """RFC 3339 in UTC, second precision (as Kubernetes writes times)."""
    return when.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: Any) -> datetime.datetime | None:
    """An RFC 3339 time from the status, or None when absent or unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def _merge(target: dict[str, Any], patch: Mapping[str, Any]) -> None:
    """RFC 7386: nested objects merge, None removes, anything else replaces."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping):
            sub = target.get(key)
            if not isinstance(sub, dict):
                sub = target[key] = {}
            _merge(sub, value)
        else:
            target[key] = copy.deepcopy(value)


def apply_step(
    status: Mapping[str, Any],
    step: UpkeepStep,
    generation: int | None = None,
    now: str | None = None,
) -> dict[str, Any]:
    """A copy of `status` with the step's patch merged and its condition set."""
    new = copy.deepcopy(dict(status))
    _merge(new, step.patch)
    if step.condition is not None:
        type_, value, reason, message = step.condition
        new = set_condition(new, type_, value, reason, message, generation, now)
    return new


def post_events(cluster: Cluster, line: Mapping[str, Any], step: UpkeepStep) -> None:
    """Post the step's Events on the ModelLine (failures are logged, never raised)."""
    for event in step.events:
        cluster.emit_event(line, event.reason, event.message, event.warning, kind=api.LINE_KIND)


def release_training_jobs(
    cluster: Cluster, line: Mapping[str, Any], runs: Sequence[Mapping[str, Any]] | None = None
) -> None:
    """Take the finalizer off the line's training Jobs whose outcome is recorded or whose
    RetrainJob is gone (best effort: a failure is logged and tried again next tick). `runs`:
    the line's RetrainJobs as the caller's pass listed them, so the sweep reads none again."""
    namespace, model = line["metadata"]["namespace"], line["metadata"]["name"]
    owners = None if runs is None else {str(r["metadata"]["name"]): r for r in runs}
    try:
        job_outcome.sweep(cluster, namespace, model, owners)
    except Exception as error:  # ApiException (RBAC without `patch jobs`), connection errors
        logger.warning("training Jobs of %s/%s not released: %s", namespace, model, error)


def claim_of(line: Mapping[str, Any], config: OperatorConfig) -> str:
    """The line's claim: spec.template.storage.claimName, else the operator's."""
    template = (line.get("spec") or {}).get("template") or {}
    return str((template.get("storage") or {}).get("claimName") or config.claim_name)


def build_upkeep_job(
    line: Mapping[str, Any],
    config: OperatorConfig,
    *,
    name: str,
    component: str,
    args: Sequence[str],
    read_only: bool,
    with_s3: bool,
    now: datetime.datetime,
    env: Sequence[Mapping[str, Any]] = (),
    service_account: str | None = None,
) -> dict[str, Any]:
    """An upkeep Job of the line: `retrainer <args>` in the operator image, owned by the line.

    `env`: more of the container's environment; `service_account`: the identity of a Job that
    reads the API (retention re-reads the champion), None for one that never does."""
    meta = line["metadata"]
    labels = {
        api.LABEL_NAME: component,
        api.LABEL_MANAGED_BY: api.MANAGED_BY,
        api.LABEL_MODEL: meta["name"],
    }
    job = claimjob.build(
        name=name,
        namespace=meta["namespace"],
        labels=labels,
        image=config.operator_image,
        args=args,
        claim=claim_of(line, config),
        read_only=read_only,
        env=[
            *(claimjob.s3_env(config.s3_endpoint, config.s3_secret_name) if with_s3 else ()),
            *env,
        ],
        ttl_seconds=_TTL_SECONDS,
        active_deadline_seconds=_DEADLINE_SECONDS,
        security_context=config.trainer_security_context,
        pod_security_context=config.trainer_pod_security_context,
        service_account=service_account,
    )
    job["metadata"]["annotations"] = {STARTED_ANNOTATION: iso(now)}
    job["metadata"]["ownerReferences"] = [
        {
            "apiVersion": api.API_VERSION,
            "kind": api.LINE_KIND,
            "name": meta["name"],
            "uid": meta["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    return job


def finished_outcome(cluster: Cluster, job: Mapping[str, Any]) -> tuple[int | None, str]:
    """A finished Job's (exit code, termination message); (None, why) without a finished pod."""
    meta = job["metadata"]
    state = claimjob.terminated(cluster.list_job_pods(meta["namespace"], meta["name"]))
    if state is None:
        return None, f"Job {meta['name']} ended {claimjob.result(job)} without a finished pod"
    code = state.get("exitCode")
    return (int(code) if isinstance(code, int) else None), str(state.get("message") or "")
