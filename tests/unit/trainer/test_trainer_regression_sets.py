"""Which regression sets a version is judged on, and how an unreadable one is carried."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from retrainer_contract import evaluation, gates, layout
from retrainer_demo import shapes
from retrainer_trainer import datacache, regression
from retrainer_trainer.config import Config, Spec

HOLDOUT = "datasets/holdout-2026"


def config(root: Path, champion: int | None, **promotion: Any) -> Config:
    policy = evaluation.Policy.from_spec(
        {"metric": "mAP50", "holdout": {"uri": HOLDOUT}, **promotion}
    )
    spec = Spec(
        model="shapes",
        dataset_uri="datasets/shapes",
        base_architecture="yolo11n.yaml",
        promotion=policy,
    )
    return Config(spec, 3, root, root / "work", champion_version=champion)


def champion_judged_on(root: Path, version: int, evaluation_doc: dict[str, Any]) -> None:
    paths = layout.VersionPaths.for_version(root, "shapes", version)
    paths.models_dir.mkdir(parents=True, exist_ok=True)
    paths.metadata.write_text(json.dumps({"version": version, "evaluation": evaluation_doc}))


def test_without_a_champion_no_set_is_read(tmp_path: Path) -> None:
    cfg = config(tmp_path, None, regressionSets=[{"uri": "datasets/night"}])
    assert regression.wanted(cfg) == ()


def test_the_champions_holdouts_follow_the_spec_sets_each_naming_its_field(
    tmp_path: Path,
) -> None:
    champion_judged_on(
        tmp_path,
        2,
        {
            "holdoutUri": "datasets/holdout-2025",
            "regressionSets": [
                {"uri": "datasets/holdout-2024", "tolerance": 0.01, "origin": "previousHoldout"},
                {"uri": "datasets/retired-spec-set", "tolerance": 0.0, "origin": "spec"},
            ],
        },
    )
    cfg = config(
        tmp_path, 2, regressionSets=[{"uri": "datasets/night"}], previousHoldoutTolerance=0.03
    )
    found = [(s.uri, s.origin, s.tolerance, field) for s, field in regression.wanted(cfg)]
    assert found == [
        ("datasets/night", "spec", 0.0, "spec.promotion.regressionSets[0].uri"),
        (
            "datasets/holdout-2025",
            "previousHoldout",
            0.03,
            "previous holdout datasets/holdout-2025 (spec.promotion.keepPreviousHoldouts)",
        ),
        (
            "datasets/holdout-2024",
            "previousHoldout",
            0.01,
            "previous holdout datasets/holdout-2024 (spec.promotion.keepPreviousHoldouts)",
        ),
    ]
    assert [
        s.uri for s, _ in regression.wanted(config(tmp_path, 2, keepPreviousHoldouts=False))
    ] == []


def test_a_champion_without_a_readable_metadata_file_adds_no_holdout(tmp_path: Path) -> None:
    paths = layout.VersionPaths.for_version(tmp_path, "shapes", 2)
    paths.models_dir.mkdir(parents=True)
    paths.metadata.write_text("{not json")
    assert regression.wanted(config(tmp_path, 2)) == ()


def test_sets_are_copied_and_a_missing_one_carries_why(tmp_path: Path) -> None:
    claim = tmp_path / "claim"
    shapes.generate_holdout(claim / "datasets" / "night", seed=3, count=4)
    champion_judged_on(claim, 2, {"holdoutUri": "datasets/gone"})
    cfg = config(claim, 2, regressionSets=[{"uri": "datasets/night", "tolerance": 0.02}])
    cache = datacache.Cache(claim, 1 << 30)
    loaded = regression.load(cfg, cache, shapes.NAMES)
    assert [(x.set.uri, x.error == "") for x in loaded] == [
        ("datasets/night", True),
        ("datasets/gone", False),
    ]
    night, gone = loaded
    assert night.copy is not None and night.copy.images == 4 and len(night.copy.sha256) == 64
    assert night.copy.data_yaml.is_file()
    assert "datasets/gone" in gone.error and "not found" in gone.error
    assert gone.copy is None and gone.set.origin == gates.ORIGIN_PREVIOUS_HOLDOUT


def test_a_set_with_other_classes_cannot_be_compared_and_says_so(tmp_path: Path) -> None:
    claim = tmp_path / "claim"
    night = shapes.generate_holdout(claim / "datasets" / "night", seed=3, count=2)
    (night / "data.yaml").write_text("val: images\nnames:\n  0: cat\n  1: dog\n  2: bird\n")
    champion_judged_on(claim, 2, {})
    cfg = config(claim, 2, regressionSets=[{"uri": "datasets/night"}])
    (only,) = regression.load(cfg, datacache.Cache(claim, 1 << 30), shapes.NAMES)
    assert only.copy is None
    assert "spec.promotion.regressionSets[0].uri" in only.error and "classes" in only.error
