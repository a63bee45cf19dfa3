"""The champion the trainer scores against: named by the operator, trusted only as recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from retrainer_contract import integrity, layout
from retrainer_demo import shapes
from retrainer_trainer import evaluate
from retrainer_trainer.config import Config, Spec, parse_spec
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


# ---- the champion's classes are the holdout's and the dataset's, in order -----------------------

REORDERED = ("square", "circle", "triangle")


@pytest.fixture(scope="module")
def shapes_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real Ultralytics checkpoint whose model predicts the shapes classes, in their order."""
    import torch
    from trainer_checkpoint_support import save_real_checkpoint

    path = save_real_checkpoint("yolo11n.yaml", tmp_path_factory.mktemp("w") / "shapes.pt")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    ckpt["model"].names = dict(enumerate(shapes.NAMES))
    torch.save(ckpt, path)
    return path.read_bytes()


def test_the_champion_knows_its_classes_and_passes_when_they_match(
    tmp_path: Path, shapes_checkpoint: bytes
) -> None:
    store_version(tmp_path, 2, shapes_checkpoint)
    current = evaluate.champion(config(tmp_path, 2))
    assert current is not None and current.names == shapes.NAMES
    evaluate.check_classes(current, shapes.NAMES, shapes.NAMES)


def test_reordered_classes_fail_naming_each_field_and_both_class_lists(
    tmp_path: Path, shapes_checkpoint: bytes
) -> None:
    store_version(tmp_path, 2, shapes_checkpoint)
    current = evaluate.champion(config(tmp_path, 2))
    assert current is not None

    with pytest.raises(BadInput) as refused:
        evaluate.check_classes(current, REORDERED, REORDERED)

    message = str(refused.value)
    assert message.startswith("spec.promotion.holdout.uri, spec.dataset.uri: classes differ")
    champion = "['circle', 'square', 'triangle']"
    assert refused.value.problems == [
        f"spec.promotion.holdout.uri: the holdout's classes {list(REORDERED)} differ from "
        f"champion v2's {champion}",
        f"spec.dataset.uri: the dataset's classes {list(REORDERED)} differ from champion v2's "
        f"{champion}",
    ]


def test_a_class_mismatch_fails_before_mlflow_and_before_training(
    tmp_path: Path, shapes_checkpoint: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    from retrainer_trainer import pipeline

    claim = tmp_path / "claim"
    names = "".join(f"  {i}: {n}\n" for i, n in enumerate(REORDERED))  # a reordered data.yaml
    dataset = shapes.generate_dataset(claim / "datasets" / "shapes", seed=1, train=4, val=2)
    held = shapes.generate_holdout(claim / "holdouts" / "a", seed=0, count=2)
    for folder, splits in (
        (dataset, "train: images/train\nval: images/val\n"),
        (held, "val: images\n"),
    ):
        (folder / "data.yaml").write_text(f"{splits}names:\n{names}")
    store_version(claim, 1, shapes_checkpoint)

    def never(*args: object) -> object:
        raise AssertionError("reached after the class check")

    class NeverContacted:  # the tracker's process starts early; MLflow is never asked
        def __init__(self, tracking_uri: str) -> None:
            pass

        def __enter__(self) -> NeverContacted:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        ping = open_run = never

    monkeypatch.setattr(pipeline, "TrackerProcess", NeverContacted)
    monkeypatch.setattr(pipeline, "_train", never)
    monkeypatch.setattr(pipeline, "_device", lambda config: "cpu")
    spec = {
        "model": "shapes",
        "baseModel": {"architecture": "yolo11n.yaml"},
        "dataset": {"uri": "datasets/shapes"},
        "mlflow": {"registeredModel": "shapes"},
        "promotion": {"metric": "mAP50", "holdout": {"uri": "holdouts/a"}},
    }
    cfg = Config(parse_spec(spec), 2, claim, tmp_path / "work", champion_version=1)

    with pytest.raises(BadInput, match=r"^spec\.promotion\.holdout\.uri, spec\.dataset\.uri: "):
        pipeline.run(cfg)
