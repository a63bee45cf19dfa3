"""The trainer's whole input, read once from the environment into frozen dataclasses.

The operator passes the RetrainJob spec verbatim as RETRAINER_SPEC plus what it resolved
(docs/contract.md). Everything downstream takes a `Config` and never reads os.environ, so the
pipeline can be driven from tests with plain values.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

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


@dataclass(frozen=True)
class Promotion:
    metric: str
    minimum: float
    alias: str = "champion"


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
    claim_name: str = "models"
    resolved_base_version: int | None = None
    termination_path: Path | None = None
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
        if promo.get("metric") not in ("precision", "recall", "mAP50", "mAP50_95"):
            raise BadInput("spec.promotion.metric must be precision, recall, mAP50 or mAP50_95")
        if not mlflow.get("registeredModel"):
            raise BadInput("spec.promotion needs spec.mlflow.registeredModel")
        promotion = Promotion(
            str(promo["metric"]),
            float(promo.get("minimum", 0)),
            str(promo.get("alias") or "champion"),
        )
    return Spec(
        model=model,
        dataset_uri=str(dataset["uri"]),
        base_version=str(base["version"]) if base.get("version") else None,
        base_uri=base.get("uri") or None,
        base_architecture=base.get("architecture") or None,
        corrections_uri=corrections.get("uri") or None,
        training=training,
        gpus=_int(_obj(raw, "resources", "spec"), "gpus", 0, "spec.resources", 0),
        experiment=str(mlflow.get("experiment") or model),
        registered_model=mlflow.get("registeredModel") or None,
        promotion=promotion,
    )


def from_env(env: Mapping[str, str]) -> Config:
    """Build the Config from the pod's environment (names in docs/contract.md)."""
    raw_spec = env.get("RETRAINER_SPEC", "")
    if not raw_spec:
        raise BadInput("RETRAINER_SPEC is not set: it must hold the RetrainJob spec as JSON")
    try:
        spec_obj = json.loads(raw_spec)
    except json.JSONDecodeError as error:
        raise BadInput(f"RETRAINER_SPEC is not valid JSON: {error}") from error
    if not isinstance(spec_obj, dict):
        raise BadInput("RETRAINER_SPEC must be a JSON object (the RetrainJob spec)")
    version_text = env.get("RETRAINER_VERSION", "")
    if not version_text.isdigit() or int(version_text) < 1:
        raise BadInput(f"RETRAINER_VERSION must be a positive integer, got {version_text!r}")
    base_text = env.get("RETRAINER_BASE_VERSION", "")
    if base_text and not base_text.isdigit():
        raise BadInput(f"RETRAINER_BASE_VERSION must be an integer, got {base_text!r}")
    termination = env.get("RETRAINER_TERMINATION_MESSAGE_PATH", "")
    return Config(
        spec=parse_spec(spec_obj),
        version=int(version_text),
        storage_root=Path(env.get("RETRAINER_STORAGE_ROOT") or "/var/lib/retrainer"),
        workdir=Path(env.get("RETRAINER_WORKDIR") or "/tmp/retrainer"),
        name=env.get("RETRAINER_NAME", ""),
        namespace=env.get("RETRAINER_NAMESPACE", ""),
        uid=env.get("RETRAINER_UID", ""),
        claim_name=env.get("RETRAINER_CLAIM_NAME") or "models",
        resolved_base_version=int(base_text) if base_text else None,
        termination_path=Path(termination) if termination else None,
        tracking_uri=env.get("MLFLOW_TRACKING_URI", ""),
        s3_endpoint=env.get("MLFLOW_S3_ENDPOINT_URL", ""),
        access_key=env.get("AWS_ACCESS_KEY_ID", ""),
        secret_key=env.get("AWS_SECRET_ACCESS_KEY", ""),
    )
