"""Recovering a model line's version sequence from durable evidence when its ledger is lost.

The ledger (the ModelLine's status) is the fast path, but it is not the only record of which
numbers were handed out: every version leaves a Job (label retrainer.dev/version), a RetrainJob
status, an MLflow run tagged with its version, and the experiment's allocated-version tag
(written at each allocation, even for a version that never trains); MLflow never deletes them.
When the ledger is missing, the next number starts above the highest of them, so a number with
evidence is never handed out again. The champion record is rebuilt in the same write from its
MLflow mirrors (the alias, the runs' champion tags) and the verified versions from the runs'
verified tags, so a re-applied ModelLine shows the same LATEST and CHAMPION, and the next
version is compared with the champion in force, never crowned as the line's first. (The
claim's own folders are the trainer's last line: it
refuses a version folder owned by another RetrainJob, see
retrainer_trainer.store.claim_version.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from retrainer_contract import api, layout, tracking

from retrainer_operator import champion_mirror
from retrainer_operator.conditions import SUCCEEDED, VERIFIED
from retrainer_operator.mlflow_rest import MlflowRest

__all__ = [
    "EvidenceClient",
    "recover",
    "recoverer",
    "verified_in",
    "versions_in",
]


class EvidenceClient(Protocol):
    """The cluster reads recovery needs (kube.Cluster implements them)."""

    def list_jobs(self, namespace: str, label_selector: str) -> list[dict[str, Any]]: ...

    def list_retrainjobs(self, namespace: str) -> list[dict[str, Any]]: ...


def versions_in(
    model: str, jobs: Iterable[Mapping[str, Any]], retrainjobs: Iterable[Mapping[str, Any]]
) -> list[int]:
    """Version numbers the Jobs' labels and the RetrainJobs' statuses of `model` record."""
    found = []
    for job in jobs:
        labels = (job.get("metadata") or {}).get("labels") or {}
        value = str(labels.get(api.LABEL_VERSION, ""))
        if labels.get(api.LABEL_MODEL) == model and value.isdigit():
            found.append(int(value))
    for obj in retrainjobs:
        version = (obj.get("status") or {}).get("version")
        if (obj.get("spec") or {}).get("model") == model and isinstance(version, int):
            found.append(version)
    return found


def verified_in(model: str, retrainjobs: Iterable[Mapping[str, Any]]) -> dict[int, tuple[str, str]]:
    """Versions of `model` whose RetrainJob says Succeeded and Verified=True: version ->
    (production sha256, RetrainJob name)."""
    found: dict[int, tuple[str, str]] = {}
    for obj in retrainjobs:
        status = obj.get("status") or {}
        version = status.get("version")
        if (obj.get("spec") or {}).get("model") != model or not isinstance(version, int):
            continue
        verified = any(
            c.get("type") == VERIFIED and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        if status.get("phase") != SUCCEEDED or not verified:
            continue
        production: Mapping[str, Any] = next(
            (a for a in status.get("artifacts") or [] if a.get("name") == layout.PRODUCTION), {}
        )
        found[version] = (str(production.get("sha256", "")), str(obj["metadata"].get("name", "")))
    return found


def recover(
    cluster: EvidenceClient,
    mlflow: MlflowRest,
    namespace: str,
    model: str,
    experiment: str,
    spec: Mapping[str, Any] | None = None,
) -> tuple[int, dict[int, tuple[str, str]], dict[str, Any] | None]:
    """What a rebuilt ledger starts from: the highest version with any evidence, the versions
    known verified (the cluster's RetrainJobs, else the runs' verified tags), and the champion
    record rebuilt from its MLflow mirrors (champion_mirror.evidence; `spec`, the RetrainJob's
    or the template, names where the alias may live). MLflow errors propagate."""
    spec = spec or {}
    registered = (spec.get("mlflow") or {}).get("registeredModel")
    alias = (spec.get("promotion") or {}).get("alias")
    found = champion_mirror.evidence(mlflow, namespace, model, experiment, registered, alias)
    jobs = cluster.list_jobs(namespace, f"{api.LABEL_MODEL}={model}")
    retrainjobs = cluster.list_retrainjobs(namespace)
    numbers = versions_in(model, jobs, retrainjobs)
    numbers += [found.highest, mlflow.allocated(experiment, namespace, model)]
    verified = {**found.verified, **verified_in(model, retrainjobs)}
    return max(numbers, default=0), verified, found.champion


def recoverer(
    cluster: EvidenceClient, mlflow: MlflowRest, namespace: str, spec: Mapping[str, Any]
) -> Callable[[], tuple[int, dict[int, tuple[str, str]], dict[str, Any] | None]]:
    """`recover` for the line of `spec` (a RetrainJob's spec, or a template with `model`),
    deferred: the ledger calls it only when the record is lost."""
    model = str(spec["model"])

    def run() -> tuple[int, dict[int, tuple[str, str]], dict[str, Any] | None]:
        return recover(cluster, mlflow, namespace, model, tracking.experiment_name(spec), spec)

    return run
