"""What MLflow records about version N beyond its metrics: its datasets, its logged model's
tags and params, its registered version's tags and description, the model's requirements.

Pure functions of what the trainer already knows (the config, the dataset metadata, the
holdout, the evaluation document); tracking.py writes them. Kept apart so the words a user
reads in MLflow can be checked without a server.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata as distributions
from typing import TYPE_CHECKING, Any

from retrainer_contract import layout, tracking

from retrainer_trainer.config import Config

if TYPE_CHECKING:  # annotations only: both import the pipeline's adapters
    from retrainer_trainer.holdout import Holdout
    from retrainer_trainer.inputs import BaseModel

__all__ = [
    "MODEL_TYPE",
    "DatasetRef",
    "VersionFacts",
    "datasets_of",
    "description",
    "facts_of",
    "requirements",
]

# The logged model's type in MLflow's model list.
MODEL_TYPE = "ultralytics-yolo"
# Ultralytics' own predict threshold, the loaded model's default.
PREDICT_CONF = 0.25
# What loading the model needs besides MLflow (which MLflow adds, pinned, itself).
REQUIRED = ("ultralytics", "torch", "torchvision")


@dataclass(frozen=True)
class DatasetRef:
    """One dataset of a version's run: its role (the context tag), where it is, its sha256."""

    name: str
    context: str
    uri: str
    sha256: str
    profile: Mapping[str, Any] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return tracking.dataset_digest(self.sha256)

    @property
    def source_type(self) -> str:
        """MLflow's source type: the UI links an `s3` source, and shows a `local` one's URI."""
        return "s3" if self.uri.startswith("s3://") else "local"

    @property
    def source(self) -> str:
        return json.dumps({"uri": self.uri})

    def profile_json(self) -> str:
        return json.dumps({"sha256": self.sha256, **self.profile}, sort_keys=True)


def _uri(config: Config, uri: str) -> str:
    """A spec URI as a user finds it: `s3://...` as is, a claim path as `pvc://<claim>/...`."""
    if "://" in uri:
        return uri
    return layout.pvc_uri(config.claim_name, uri)


def _name(uri: str) -> str:
    """A dataset's name in MLflow: the last part of its URI (`s3://b/datasets/shapes/` ->
    `shapes`)."""
    parts = [p for p in uri.split("://", 1)[-1].split("/") if p]
    return parts[-1] if parts else uri


def datasets_of(
    config: Config, metadata: Mapping[str, Any], holdout: Holdout | None
) -> list[DatasetRef]:
    """The training dataset, the corrections (when given) and the holdout (under
    spec.promotion), by the sha256 the lineage and the evaluation record."""
    spec = config.spec
    splits = metadata.get("splits") or {}
    found = [
        DatasetRef(
            _name(spec.dataset_uri),
            tracking.CONTEXT_TRAINING,
            _uri(config, spec.dataset_uri),
            str(metadata["datasetSha256"]),
            {
                "classes": list(metadata.get("names") or []),
                **{
                    f"{split}Samples": counts.get("samples")
                    for split, counts in sorted(splits.items())
                    if isinstance(counts, Mapping)
                },
            },
        )
    ]
    if spec.corrections_uri and metadata.get("correctionsSha256"):
        found.append(
            DatasetRef(
                _name(spec.corrections_uri),
                tracking.CONTEXT_CORRECTIONS,
                _uri(config, spec.corrections_uri),
                str(metadata["correctionsSha256"]),
                {"applied": metadata.get("correctionsApplied", 0)},
            )
        )
    if holdout is not None and spec.promotion is not None:
        found.append(
            DatasetRef(
                _name(spec.promotion.holdout_uri),
                tracking.CONTEXT_EVALUATION,
                _uri(config, spec.promotion.holdout_uri),
                holdout.sha256,
                {"classes": list(holdout.names), "images": holdout.images},
            )
        )
    return found


@dataclass(frozen=True)
class VersionFacts:
    """Who trained version N, from what: the logged model's and the registry's words."""

    model: str
    version: int
    retrainjob: str
    namespace: str
    uid: str
    base: str
    imgsz: int
    lineage: Mapping[str, str]  # datasetSha256, correctionsSha256, baseSha256, holdoutSha256
    champion_alias: str | None = None  # spec.promotion.alias: never the challenger's too

    @property
    def name(self) -> str:
        """The logged model's name: the run's (`shapes-v3`)."""
        return tracking.run_name(self.model, self.version)

    def model_tags(self, sha256: str) -> dict[str, str]:
        """The logged model's tags: the run's identity, its weights, its RetrainJob."""
        return {
            **tracking.run_tags(self.uid, self.namespace, self.model, self.version, self.base),
            tracking.TAG_SHA256: sha256,
            tracking.TAG_RETRAINJOB: self.retrainjob,
        }

    def registry_tags(self, sha256: str, evaluation: Mapping[str, Any] | None) -> dict[str, str]:
        """The registered version's tags: version, weights, decision, RetrainJob."""
        decision = str((evaluation or {}).get("decision") or tracking.DECISION_NONE)
        return {
            tracking.TAG_VERSION: str(self.version),
            tracking.TAG_SHA256: sha256,
            tracking.TAG_DECISION: decision,
            tracking.TAG_RETRAINJOB: self.retrainjob,
            tracking.TAG_NAMESPACE: self.namespace,
        }

    def model_config(self) -> dict[str, Any]:
        """The pyfunc model's settings (pyfunc_model.py), each one a user may override when
        loading (MLflow takes no key the model was not logged with): Ultralytics' default
        confidence, the version's training image size, the device Ultralytics picks."""
        return {"conf": PREDICT_CONF, "imgsz": self.imgsz, "device": ""}


def facts_of(
    config: Config, base: BaseModel, metadata: Mapping[str, Any], holdout: Holdout | None
) -> VersionFacts:
    """The facts of the version `config` trains from `base` on the dataset of `metadata`."""
    lineage = {
        "datasetSha256": str(metadata.get("datasetSha256") or ""),
        "correctionsSha256": str(metadata.get("correctionsSha256") or ""),
        "baseSha256": base.sha256 or "",
        **({"holdoutSha256": holdout.sha256} if holdout is not None else {}),
    }
    promotion = config.spec.promotion
    return VersionFacts(
        model=config.spec.model,
        version=config.version,
        retrainjob=config.name,
        namespace=config.namespace,
        uid=config.uid or f"{config.namespace}/{config.name}",
        base=base.label,
        imgsz=config.spec.training.imgsz,
        lineage={k: v for k, v in lineage.items() if v},
        champion_alias=promotion.alias if promotion is not None else None,
    )


def description(facts: VersionFacts, evaluation: Mapping[str, Any] | None) -> str:
    """The registered version's description: what the decision was, and why."""
    where = f"{facts.namespace}/{facts.retrainjob}" if facts.namespace else facts.retrainjob
    who = (
        f"Retrainer version {facts.version} of model line {facts.model}, trained by "
        f"RetrainJob {where} from {facts.base}."
    )
    if not evaluation:
        return (
            f"{who} Decision: {tracking.DECISION_NONE} (no spec.promotion: it was not evaluated "
            "on a holdout and is never promoted automatically)."
        )
    holdout = str(evaluation.get("holdoutSha256") or "")[:12]
    scored = (
        f"scored on holdout {evaluation.get('holdoutUri', '')} (sha256 {holdout}…, "
        f"{evaluation.get('holdoutImages', '?')} images) by {evaluation.get('metric', '')}"
    )
    return (
        f"{who} Decision: {evaluation.get('decision', '')}, {scored}: "
        f"{evaluation.get('reason', '')}. The operator moves the champion alias only after "
        "every copy of the version verified."
    )


def requirements() -> list[str]:
    """The model's pip requirements: the installed ultralytics, torch and torchvision, pinned
    (a local build label such as `+cu130` dropped: the index serves the plain version)."""
    pins = []
    for name in REQUIRED:
        try:
            version = distributions.version(name)
        except distributions.PackageNotFoundError:
            continue
        pins.append(f"{name}=={version.split('+', 1)[0]}")
    return pins
