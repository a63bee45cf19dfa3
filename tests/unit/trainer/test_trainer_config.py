"""The trainer reads its whole input from the environment (docs/contract.md)."""

from __future__ import annotations

import json

import pytest
from retrainer_contract.exits import BAD_INPUT as EXIT_BAD_INPUT
from retrainer_trainer.config import from_env
from retrainer_trainer.errors import BadInput

SPEC = {
    "model": "shapes",
    "baseModel": {"version": "latest"},
    "dataset": {"uri": "datasets/shapes"},
}


def env(spec: dict[str, object] | None = None, **extra: str) -> dict[str, str]:
    return {
        "RETRAINER_SPEC": json.dumps(spec or SPEC),
        "RETRAINER_VERSION": "2",
        "RETRAINER_BASE_VERSION": "1",
        "AWS_SECRET_ACCESS_KEY": "hunter2",
        **extra,
    }


def test_defaults_match_the_crd() -> None:
    config = from_env(env())
    assert config.version == 2 and config.resolved_base_version == 1
    assert config.spec.training.epochs == 10 and config.spec.training.imgsz == 640
    assert config.spec.experiment == "shapes" and config.spec.gpus == 0
    assert str(config.storage_root) == "/var/lib/retrainer"
    assert config.spec.base_label == "latest"


def test_secrets_never_appear_in_the_config_repr() -> None:
    assert "hunter2" not in repr(from_env(env()))


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({**SPEC, "baseModel": {}}, "spec.baseModel"),
        ({**SPEC, "model": "Bad_Name"}, "spec.model"),
        ({**SPEC, "training": {"epochs": 0}}, "spec.training.epochs"),
        ({**SPEC, "training": {"extraArgs": {"epochs": 3}}}, "spec.training.extraArgs"),
        ({**SPEC, "promotion": {"metric": "mAP50", "minimum": 0.5}}, "spec.promotion"),
        (
            {**SPEC, "mlflow": {"registeredModel": "m"}, "promotion": {"metric": "mAP50"}},
            "spec.promotion.holdout.uri is required",
        ),
        (
            {
                **SPEC,
                "mlflow": {"registeredModel": "m"},
                "promotion": {"metric": "mAP50", "holdout": {"uri": "h"}, "minImprovement": -1},
            },
            "spec.promotion.minImprovement",
        ),
    ],
)
def test_bad_spec_is_bad_input_naming_the_field(spec: dict[str, object], field: str) -> None:
    with pytest.raises(BadInput) as error:
        from_env(env(spec))
    assert field in str(error.value) and error.value.exit_code == EXIT_BAD_INPUT


def test_the_promotion_policy_and_the_champion_are_read() -> None:
    spec = {
        **SPEC,
        "mlflow": {"registeredModel": "m"},
        "promotion": {
            "metric": "mAP50_95",
            "holdout": {"uri": "datasets/h"},
            "minRelativeImprovement": 0.05,
            "classFloors": {"circle": 0.3},
        },
    }
    config = from_env({**env(spec), "RETRAINER_CHAMPION_VERSION": "1"})
    policy = config.spec.promotion
    assert policy is not None and policy.holdout_uri == "datasets/h"
    assert (policy.min_relative_improvement, dict(policy.class_floors)) == (0.05, {"circle": 0.3})
    assert config.champion_version == 1


def test_missing_version_is_bad_input() -> None:
    with pytest.raises(BadInput, match="RETRAINER_VERSION"):
        from_env({"RETRAINER_SPEC": json.dumps(SPEC)})
