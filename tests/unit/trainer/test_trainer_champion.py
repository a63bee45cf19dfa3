"""The champion the trainer scores against: named by the operator, trusted only as recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from retrainer_contract import integrity, layout
from retrainer_trainer import evaluate
from retrainer_trainer.config import Config, Spec
from retrainer_trainer.errors import BadInput, CorruptedWeights


def config(root: Path, champion: int | None) -> Config:
    spec = Spec(model="shapes", dataset_uri="datasets/shapes", base_architecture="yolo11n.yaml")
    return Config(spec, 3, root, root / "work", champion_version=champion)


def store_version(root: Path, version: int, weights: bytes, recorded: str | None = None) -> None:
    paths = layout.VersionPaths.for_version(root, "shapes", version)
    paths.models_dir.mkdir(parents=True, exist_ok=True)
    paths.production.write_bytes(weights)
    sha = recorded or integrity.sha256_file(paths.production)[0]
    metadata = {"version": version, "weights": {"sha256": sha, "size": len(weights)}}
    paths.metadata.write_text(json.dumps(metadata))


def test_without_a_champion_there_is_nothing_to_score(tmp_path: Path) -> None:
    assert evaluate.champion(config(tmp_path, None)) is None


def test_a_champion_missing_from_the_claim_is_bad_input_naming_it(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match=r"champion v2: .*retrained_v2\.pt or its metadata file"):
        evaluate.champion(config(tmp_path, 2))


def test_a_champion_whose_bytes_differ_from_its_metadata_is_never_scored(tmp_path: Path) -> None:
    store_version(tmp_path, 2, b"weights", recorded="0" * 64)
    with pytest.raises(CorruptedWeights, match=r"not 0000.* as its metadata file"):
        evaluate.champion(config(tmp_path, 2))


def test_the_per_class_table_lists_both_versions_in_mlflow_table_form() -> None:
    doc = {
        "challenger": {"version": 3, "perClass": {"circle": {"mAP50_95": 0.5}}},
        "champion": {"version": 2, "perClass": {"circle": {"mAP50_95": 0.4}}},
    }
    table = evaluate.per_class_table(doc)
    assert table["columns"] == ["role", "version", "class", "precision", "recall", "mAP50",
                                "mAP50_95"]  # fmt: skip
    assert table["data"] == [
        ["challenger", 3, "circle", None, None, None, 0.5],
        ["champion", 2, "circle", None, None, None, 0.4],
    ]
