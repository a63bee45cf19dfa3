"""What a user reads about a version in MLflow, built without a server: its datasets (role,
source, digest), the registered version's tags and description, the model's requirements."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from retrainer_contract import tracking
from retrainer_trainer import mlflow_record
from retrainer_trainer.config import Config, parse_spec
from retrainer_trainer.holdout import Holdout
from retrainer_trainer.inputs import BaseModel

DATASET_SHA = "a" * 64
CORRECTIONS_SHA = "b" * 64
HOLDOUT_SHA = "c" * 64
METADATA = {
    "datasetUri": "s3://datasets/shapes/",
    "datasetSha256": DATASET_SHA,
    "correctionsUri": "corrections/b1",
    "correctionsSha256": CORRECTIONS_SHA,
    "correctionsApplied": 3,
    "names": ["circle", "square", "triangle"],
    "splits": {"train": {"samples": 40}, "val": {"samples": 10}},
}
HOLDOUT = Holdout(Path("/w/holdout/data.yaml"), HOLDOUT_SHA, 6, {}, ("circle", "square"))


def config(**spec: Any) -> Config:
    raw = {
        "model": "shapes",
        "baseModel": {"version": "latest"},
        "dataset": {"uri": "s3://datasets/shapes/"},
        "corrections": {"uri": "corrections/b1"},
        "training": {"imgsz": 96},
        "mlflow": {"registeredModel": "shapes"},
        **spec,
    }
    return Config(
        spec=parse_spec(raw),
        version=3,
        storage_root=Path("/claim"),
        workdir=Path("/work"),
        name="shapes-b3",
        namespace="team-a",
        uid="u-3",
        claim_name="models",
    )


PROMOTED = {"promotion": {"metric": "mAP50", "holdout": {"uri": "holdouts/shapes"}}}


def test_the_three_datasets_carry_their_role_source_and_sha256() -> None:
    found = mlflow_record.datasets_of(config(**PROMOTED), METADATA, HOLDOUT)

    assert [(d.context, d.name, d.uri) for d in found] == [
        (tracking.CONTEXT_TRAINING, "shapes", "s3://datasets/shapes/"),
        (tracking.CONTEXT_CORRECTIONS, "b1", "pvc://models/corrections/b1"),
        (tracking.CONTEXT_EVALUATION, "shapes", "pvc://models/holdouts/shapes"),
    ]
    assert [d.sha256 for d in found] == [DATASET_SHA, CORRECTIONS_SHA, HOLDOUT_SHA]
    # MLflow keeps 36 characters of a digest: the sha256's prefix, the whole one in the profile.
    assert [d.digest for d in found] == [
        s[:32] for s in (DATASET_SHA, CORRECTIONS_SHA, HOLDOUT_SHA)
    ]
    assert [d.source_type for d in found] == ["s3", "local", "local"]
    assert json.loads(found[0].source) == {"uri": "s3://datasets/shapes/"}
    assert json.loads(found[0].profile_json()) == {
        "sha256": DATASET_SHA,
        "classes": ["circle", "square", "triangle"],
        "trainSamples": 40,
        "valSamples": 10,
    }
    assert json.loads(found[1].profile_json())["applied"] == 3
    assert json.loads(found[2].profile_json())["images"] == 6


def test_without_corrections_or_promotion_only_the_training_dataset_is_logged() -> None:
    plain = config(corrections={})
    metadata = {**METADATA, "correctionsUri": "", "correctionsSha256": ""}

    found = mlflow_record.datasets_of(plain, metadata, None)

    assert [d.context for d in found] == [tracking.CONTEXT_TRAINING]


def facts(**spec: Any) -> mlflow_record.VersionFacts:
    base = BaseModel("/claim/shapes/models/retrained_v2.pt", "v2", 2, "d" * 64)
    holdout = HOLDOUT if "promotion" in spec else None
    return mlflow_record.facts_of(config(**spec), base, METADATA, holdout)


def test_the_logged_model_is_named_like_the_run_and_tagged_with_its_weights() -> None:
    version = facts(**PROMOTED)

    assert version.name == "shapes-v3"
    tags = version.model_tags("e" * 64)
    assert tags[tracking.TAG_SHA256] == "e" * 64
    assert tags[tracking.TAG_RETRAINJOB] == "shapes-b3"
    assert tags[tracking.TAG_VERSION] == "3" and tags[tracking.TAG_UID] == "u-3"
    assert version.lineage == {
        "datasetSha256": DATASET_SHA,
        "correctionsSha256": CORRECTIONS_SHA,
        "baseSha256": "d" * 64,
        "holdoutSha256": HOLDOUT_SHA,
    }
    assert version.model_config() == {"conf": 0.25, "imgsz": 96, "device": ""}
    assert version.champion_alias == "champion"


def test_an_unevaluated_version_is_registered_with_decision_none() -> None:
    version = facts()

    tags = version.registry_tags("e" * 64, None)

    assert tags == {
        tracking.TAG_VERSION: "3",
        tracking.TAG_SHA256: "e" * 64,
        tracking.TAG_DECISION: tracking.DECISION_NONE,
        tracking.TAG_RETRAINJOB: "shapes-b3",
        tracking.TAG_NAMESPACE: "team-a",
    }
    text = mlflow_record.description(version, None)
    assert "Retrainer version 3 of model line shapes" in text
    assert "RetrainJob team-a/shapes-b3 from v2" in text
    assert "Decision: none" in text and "no spec.promotion" in text


def test_an_evaluated_version_says_what_was_decided_and_why() -> None:
    version = facts(**PROMOTED)
    evaluation = {
        "holdoutUri": "holdouts/shapes",
        "holdoutSha256": HOLDOUT_SHA,
        "holdoutImages": 6,
        "metric": "mAP50",
        "decision": "Rejected",
        "reason": "mAP50 0.41 is 0.03 below champion v2's 0.44",
    }

    assert version.registry_tags("e" * 64, evaluation)[tracking.TAG_DECISION] == "Rejected"
    text = mlflow_record.description(version, evaluation)
    assert "Decision: Rejected" in text
    assert "mAP50 0.41 is 0.03 below champion v2's 0.44" in text
    assert "holdouts/shapes" in text and HOLDOUT_SHA[:12] in text and "6 images" in text


def test_the_requirements_pin_the_installed_ultralytics_and_torch_without_a_local_label(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    installed = {"ultralytics": "8.4.190", "torch": "2.15.0+cu132"}

    def version(name: str) -> str:
        if name not in installed:
            raise mlflow_record.distributions.PackageNotFoundError(name)
        return installed[name]

    monkeypatch.setattr(mlflow_record.distributions, "version", version)

    assert mlflow_record.requirements() == ["ultralytics==8.4.190", "torch==2.15.0"]


def test_experiments_open_in_the_model_training_view() -> None:
    assert tracking.experiment_tags() == {"mlflow.experimentKind": "custom_model_development"}
