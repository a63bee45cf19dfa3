"""The trainer's evaluation step against the world's MLflow and MinIO: the champion is always
re-scored on the current holdout, its evaluation on an older holdout is kept beside the new one,
and a champion whose production copy no longer matches its metadata is never scored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient
from retrainer_contract import documents, layout
from retrainer_demo import shapes
from retrainer_world.world import World
from test_trainer_support import Claim, run_trainer, spec

pytestmark = pytest.mark.integration

ONE_EPOCH = {"epochs": 1, "imgsz": 64, "batch": 8, "extraArgs": {"workers": 0}}


def promoted_spec(model: str, holdout: str) -> dict[str, Any]:
    return spec(
        model,
        training=ONE_EPOCH,
        mlflow={"experiment": model, "registeredModel": model},
        promotion={"metric": "mAP50", "holdout": {"uri": holdout}},
    )


def evaluation_of(claim: Claim, model: str, version: int) -> dict[str, Any]:
    paths = layout.VersionPaths.for_version(claim.root, model, version)
    evaluation: dict[str, Any] = documents.read_json(paths.metadata)["evaluation"]
    assert documents.read_json(paths.manifest)["evaluation"] == evaluation
    return evaluation


def test_a_new_holdout_rescores_the_champion_and_keeps_both_evaluations(
    world: World, tmp_path: Path
) -> None:
    claim = Claim(world, tmp_path / "claim", tmp_path / "work")
    shapes.generate_dataset(claim.root / "datasets" / "shapes", seed=0)
    shapes.generate_holdout(claim.root / "holdouts" / "a", seed=0, count=6)
    shapes.generate_holdout(claim.root / "holdouts" / "b", seed=1, count=6)
    model = f"eval-{claim.token}"
    v1 = run_trainer(claim.env(promoted_spec(model, "holdouts/a"), 1))
    assert v1.rc == 0, v1.explain()
    v2 = run_trainer(
        claim.env(promoted_spec(model, "holdouts/b"), 2, RETRAINER_CHAMPION_VERSION="1")
    )
    assert v2.rc == 0, v2.explain()

    first, second = evaluation_of(claim, model, 1), evaluation_of(claim, model, 2)
    assert first["decision"] == "NoChampion" and first["holdoutChanged"] is False
    assert second["holdoutSha256"] != first["holdoutSha256"]
    assert second["holdoutChanged"] is True
    assert second["champion"]["version"] == 1
    assert second["champion"]["previous"] == {
        "holdoutSha256": first["holdoutSha256"],
        "metrics": first["challenger"]["metrics"],
    }
    assert second["decision"] in ("Promoted", "Rejected", "NoChampion")
    assert second["decision"] != "NoChampion"
    # Both scores of this comparison are in the challenger's run, with the per-class table.
    run = MlflowClient(world.mlflow_uri).get_run(
        documents.read_json(layout.VersionPaths.for_version(claim.root, model, 2).manifest)[
            "mlflow"
        ]["runId"]
    )
    assert run.data.metrics["holdout.champion.mAP50"] == second["champion"]["metrics"]["mAP50"]
    assert run.data.metrics["holdout.mAP50"] == second["challenger"]["metrics"]["mAP50"]
    # The trainer never moves the champion alias (the operator's, after verification); it marks
    # the latest evaluated version the challenger.
    assert MlflowClient(world.mlflow_uri).get_registered_model(model).aliases == {"challenger": "2"}


def test_a_champion_whose_production_copy_was_altered_is_never_scored(
    world: World, tmp_path: Path
) -> None:
    claim = Claim(world, tmp_path / "claim", tmp_path / "work")
    shapes.generate_dataset(claim.root / "datasets" / "shapes", seed=0)
    shapes.generate_holdout(claim.root / "holdouts" / "a", seed=0, count=6)
    model = f"eval-{claim.token}"
    v1 = run_trainer(claim.env(promoted_spec(model, "holdouts/a"), 1))
    assert v1.rc == 0, v1.explain()
    production = layout.VersionPaths.for_version(claim.root, model, 1).production
    data = bytearray(production.read_bytes())
    data[-10] ^= 0xFF
    production.write_bytes(bytes(data))

    v2 = run_trainer(
        claim.env(promoted_spec(model, "holdouts/a"), 2, RETRAINER_CHAMPION_VERSION="1")
    )
    assert v2.rc == 3, v2.explain()
    assert v2.termination is not None
    error = v2.termination["error"]
    assert error["reason"] == "CorruptedWeights"
    assert "champion v1" in error["message"] and "retrained_v1_metadata.json" in error["message"]
    assert not layout.VersionPaths.for_version(claim.root, model, 2).production.exists()
