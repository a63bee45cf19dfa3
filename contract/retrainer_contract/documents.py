"""The shapes of the documents that cross from the trainer to the operator and the CLI.

- the manifest of version N (run folder, MLflow run, termination message): the CRD's status
  fields `version`, `metrics`, `artifacts`, `verification`, `mlflow`, `lineage`;
- lineage: what version N was trained from;
- the metadata file `models/retrained_vN_metadata.json`;
- the failure document the trainer leaves as its termination message.

The trainer builds them with the functions here and the operator and CLI parse them here, so
a field renamed on one side is renamed on the other.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "CORRUPTED_WEIGHTS",
    "HOLDOUT_TOUCHED",
    "STORAGE_FULL",
    "TERMINATION_LIMIT",
    "VERSION_CONFLICT",
    "compact",
    "failure",
    "failure_reason",
    "failure_text",
    "lineage",
    "manifest",
    "metadata",
    "owner",
    "owner_uid",
    "parse_manifest",
    "read_json",
]

# Kubernetes keeps at most 4 KiB of a termination message.
TERMINATION_LIMIT = 4096

# Failure reasons the trainer writes into its failure document and the operator shows as they
# are, because they say more than the Job's own "exit code 3".
VERSION_CONFLICT = "VersionConflict"
CORRUPTED_WEIGHTS = "CorruptedWeights"
STORAGE_FULL = "StorageFull"
# A corrections file changes an image of the pinned holdout (spec.promotion.holdout).
HOLDOUT_TOUCHED = "HoldoutTouched"


def owner(*, uid: str, name: str, namespace: str) -> dict[str, str]:
    """Who owns version N: the RetrainJob (uid first) that was given the number.

    The same shape is the ownership record on the claim, `retrainJob` in the metadata file and
    in the manifest; a version has one owner everywhere.
    """
    return {"uid": uid, "name": name, "namespace": namespace}


def owner_uid(document: Mapping[str, Any]) -> str:
    """The owner uid a metadata file or manifest records ("" when it records none)."""
    recorded = document.get("retrainJob")
    return str(recorded.get("uid") or "") if isinstance(recorded, Mapping) else ""


def lineage(
    *,
    base_label: str,
    base_version: int | None,
    base_sha256: str,
    dataset: Mapping[str, Any],
) -> dict[str, Any]:
    """status.lineage: the base model, and the dataset and corrections by sha256 and count.

    `dataset` is the retraining dataset metadata (DATASET_METADATA) the trainer wrote.
    """
    return {
        "baseModel": base_label,
        **({"baseVersion": base_version} if base_version else {}),
        "baseSha256": base_sha256,
        "datasetSha256": dataset["datasetSha256"],
        "correctionsSha256": dataset["correctionsSha256"],
        "trainSamples": dataset["splits"]["train"]["samples"],
        "valSamples": dataset["splits"]["val"]["samples"],
        "correctionsApplied": dataset["correctionsApplied"],
    }


def metadata(
    *,
    model: str,
    version: int,
    retrainjob: Mapping[str, str],
    created_at: str,
    weights: Mapping[str, Any],
    metrics: Mapping[str, float],
    lineage: Mapping[str, Any],
    training: Mapping[str, Any],
    dataset: Mapping[str, Any],
    mlflow: Mapping[str, Any],
    locations: Mapping[str, str],
    evaluation: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """models/retrained_vN_metadata.json: version, training, sample counts, time, metrics,
    and, under spec.promotion, the holdout evaluation (retrainer_contract.evaluation)."""
    return {
        "model": model,
        "version": version,
        "retrainJob": dict(retrainjob),
        "createdAt": created_at,
        "weights": {"sha256": weights["sha256"], "size": weights["size"]},
        "metrics": dict(metrics),
        "lineage": dict(lineage),
        "training": dict(training),
        "dataset": dict(dataset),
        "mlflow": dict(mlflow),
        "locations": dict(locations),
        **({"evaluation": dict(evaluation)} if evaluation else {}),
    }


def manifest(
    *,
    version: int,
    retrainjob: Mapping[str, str] | None = None,
    metrics: Mapping[str, float],
    artifacts: list[Any],
    verification: Mapping[str, Any],
    mlflow: Mapping[str, Any],
    lineage: Mapping[str, Any],
    evaluation: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest of version N: what the operator copies into the RetrainJob status, plus
    its owner (`retrainJob`), which the operator compares with the RetrainJob it verifies."""
    return {
        "version": version,
        **({"retrainJob": dict(retrainjob)} if retrainjob else {}),
        "metrics": dict(metrics),
        "artifacts": artifacts,
        "verification": dict(verification),
        "mlflow": dict(mlflow),
        "lineage": dict(lineage),
        **({"evaluation": dict(evaluation)} if evaluation else {}),
    }


def parse_manifest(raw: bytes | str | None) -> dict[str, Any] | None:
    """The manifest JSON object, or None when absent or not a manifest."""
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict) or "version" not in data:
        return None
    return data


def _size(document: Mapping[str, Any]) -> int:
    return len(json.dumps(document, separators=(",", ":")).encode())


def compact(document: Mapping[str, Any], limit: int = TERMINATION_LIMIT) -> dict[str, Any]:
    """The manifest, minus detail the operator can read from MLflow, under `limit` bytes."""
    doc: dict[str, Any] = json.loads(json.dumps(document))
    steps = [
        lambda d: [s.pop("perClass", None) for s in _evaluated(d)],
        lambda d: [
            c.pop("message", None)
            for c in d.get("verification", {}).get("checks", [])
            if c.get("ok")
        ],
        lambda d: [a.pop("uri", None) for a in d.get("artifacts", [])],
        lambda d: d.get("verification", {}).pop("checks", None),
        lambda d: d.pop("lineage", None),
        lambda d: d.pop("artifacts", None),
    ]
    for step in steps:
        if _size(doc) <= limit:
            break
        step(doc)
    return doc


def _evaluated(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    evaluation = document.get("evaluation") or {}
    return [
        evaluation[k] for k in ("challenger", "champion") if isinstance(evaluation.get(k), dict)
    ]


def failure(reason: str, message: str, exit_code: int) -> dict[str, Any]:
    """The trainer's termination message on failure."""
    return {"error": {"reason": reason, "message": message[:3000], "exitCode": exit_code}}


def failure_reason(raw: str) -> str:
    """The reason of a failure document ("" for anything else, such as a log tail)."""
    try:
        data = json.loads(raw)
    except ValueError:
        return ""
    error = data.get("error") if isinstance(data, dict) else None
    return str(error.get("reason") or "") if isinstance(error, dict) else ""


def failure_text(raw: str) -> str:
    """`reason: message` from a failure document; anything else (a log tail) as it is."""
    try:
        data = json.loads(raw)
    except ValueError:
        return raw
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return raw
    reason, message = str(error.get("reason") or ""), str(error.get("message") or "")
    return f"{reason}: {message}" if reason and message else message or reason or raw


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`; ValueError when it is not one."""
    with path.open(encoding="utf-8") as handle:
        data = json.load(handle)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data
