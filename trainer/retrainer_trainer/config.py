"""The trainer's whole input, read once from the environment into frozen dataclasses.

The operator passes the RetrainJob spec verbatim plus what it resolved; the names, defaults
and checks of that environment are the contract's (retrainer_contract.env, docs/contract.md).
Everything downstream takes a `Config` and never reads os.environ, so the pipeline can be
driven from tests with plain values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from retrainer_contract import env as trainer_env
from retrainer_contract import evaluation, tracking

from retrainer_trainer.errors import BadInput

__all__ = ["Config", "Promotion", "Spec", "Training", "from_env", "parse_spec"]

# Arguments Retrainer owns; extraArgs must not smuggle them in (the CRD says the same).
MANAGED_ARGS = frozenset(
    {"data", "model", "epochs", "imgsz", "batch", "patience", "seed", "device", "project",
     "name", "resume", "val"}
)  # fmt: skip
MODEL_PATTERN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class Training:
    epochs: int = 10
    imgsz: int = 640
    batch: int = 16
    patience: int = 50
    seed: int = 0
    extra_args: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


# spec.promotion: the policy the new version is judged by on the pinned holdout.
Promotion = evaluation.Policy


@dataclass(frozen=True)
class Spec:
    """The parts of RetrainJob.spec the trainer uses."""

    model: str
    dataset_uri: str
    base_version: str | None = None
    base_uri: str | None = None
    base_architecture: str | None = None
    corrections_uri: str | None = None
    training: Training = field(default_factory=Training)
    gpus: int = 0
    experiment: str = ""
    registered_model: str | None = None
    promotion: Promotion | None = None

    @property
    def base_label(self) -> str:
        """How the base model is named in lineage: `v3`, the URI, or the architecture."""
        if self.base_version is not None:
            return f"v{self.base_version}" if self.base_version.isdigit() else self.base_version
        return self.base_uri or self.base_architecture or ""


@dataclass(frozen=True)
class Config:
    spec: Spec
    version: int
    storage_root: Path
    workdir: Path
    name: str = ""
    namespace: str = ""
    uid: str = ""
    claim_name: str = trainer_env.DEFAULT_CLAIM_NAME
    resolved_base_version: int | None = None
    # The champion to score against on the holdout (RETRAINER_CHAMPION_VERSION; None: none).
    champion_version: int | None = None
    termination_path: Path | None = None
    dataset_cache_max_bytes: int = trainer_env.quantity_bytes(
        trainer_env.DEFAULT_DATASET_CACHE_MAX_SIZE
    )
    fetch_concurrency: int = trainer_env.DEFAULT_DATASET_FETCH_CONCURRENCY
    tracking_uri: str = ""
    s3_endpoint: str = ""
    # Credentials stay out of repr() so a logged Config never leaks them.
    access_key: str = field(default="", repr=False)
    secret_key: str = field(default="", repr=False)


def _int(obj: Mapping[str, Any], key: str, default: int, where: str, minimum: int) -> int:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BadInput(f"{where}.{key} must be an integer >= {minimum}, got {value!r}")
    return value


def _obj(obj: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = obj.get(key) or {}
    if not isinstance(value, Mapping):
        raise BadInput(f"{where}.{key} must be an object, got {type(value).__name__}")
    return value


def parse_spec(raw: Mapping[str, Any]) -> Spec:
    """Validate the spec fields the trainer relies on; defaults as in the CRD."""
    model = raw.get("model")
    if not isinstance(model, str) or not MODEL_PATTERN.match(model):
        raise BadInput(f"spec.model must be a DNS-1123 label such as shapes, got {model!r}")
    base = _obj(raw, "baseModel", "spec")
    chosen = [k for k in ("version", "uri", "architecture") if base.get(k)]
    if len(chosen) != 1:
        raise BadInput(
            "spec.baseModel must set exactly one of version, uri or architecture "
            f"(got {chosen or 'none'}); for example baseModel.architecture: yolo11n.yaml"
        )
    dataset = _obj(raw, "dataset", "spec")
    if not isinstance(dataset.get("uri"), str) or not dataset["uri"]:
        raise BadInput("spec.dataset.uri is required (s3://bucket/prefix or datasets/<name>)")
    corrections = _obj(raw, "corrections", "spec")
    t = _obj(raw, "training", "spec")
    extra = _obj(t, "extraArgs", "spec.training")
    managed = sorted(MANAGED_ARGS & set(extra))
    if managed:
        raise BadInput(f"spec.training.extraArgs must not set {managed}: use spec.training fields")
    batch = t.get("batch", 16)
    if batch == 0 or isinstance(batch, bool) or not isinstance(batch, int) or batch < -1:
        raise BadInput(f"spec.training.batch must be -1 (auto) or at least 1, got {batch!r}")
    training = Training(
        epochs=_int(t, "epochs", 10, "spec.training", 1),
        imgsz=_int(t, "imgsz", 640, "spec.training", 32),
        batch=batch,
        patience=_int(t, "patience", 50, "spec.training", 0),
        seed=_int(t, "seed", 0, "spec.training", 0),
        extra_args=MappingProxyType(dict(extra)),
    )
    mlflow = _obj(raw, "mlflow", "spec")
    promo = _obj(raw, "promotion", "spec")
    promotion = None
    if promo:
        if not mlflow.get("registeredModel"):
            raise BadInput("spec.promotion needs spec.mlflow.registeredModel")
        try:
            promotion = evaluation.Policy.from_spec(promo)
        except evaluation.PolicyError as error:
            raise BadInput(str(error)) from error
    return Spec(
        model=model,
        dataset_uri=str(dataset["uri"]),
        base_version=str(base["version"]) if base.get("version") else None,
        base_uri=base.get("uri") or None,
        base_architecture=base.get("architecture") or None,
        corrections_uri=corrections.get("uri") or None,
        training=training,
        gpus=_int(_obj(raw, "resources", "spec"), "gpus", 0, "spec.resources", 0),
        experiment=tracking.experiment_name(raw),
        registered_model=mlflow.get("registeredModel") or None,
        promotion=promotion,
    )


def from_env(env: Mapping[str, str]) -> Config:
    """Build the Config from the pod's environment (the contract's names and defaults)."""
    try:
        told = trainer_env.read(env)
    except trainer_env.EnvError as error:
        raise BadInput(str(error)) from error
    termination = told.termination_message_path
    return Config(
        spec=parse_spec(told.spec),
        version=told.version,
        storage_root=Path(told.storage_root),
        workdir=Path(told.workdir),
        name=told.name,
        namespace=told.namespace,
        uid=told.uid,
        claim_name=told.claim_name,
        resolved_base_version=told.base_version,
        champion_version=told.champion_version,
        termination_path=Path(termination) if termination else None,
        dataset_cache_max_bytes=trainer_env.quantity_bytes(told.dataset_cache_max_size),
        fetch_concurrency=told.dataset_fetch_concurrency,
        tracking_uri=told.tracking_uri,
        s3_endpoint=told.s3_endpoint,
        access_key=told.access_key,
        secret_key=told.secret_key,
    )
