"""The pinned holdout: checked, hashed, never touched by corrections (matched by content)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from retrainer_demo import shapes
from retrainer_trainer import dataset, holdout
from retrainer_trainer.errors import BadInput, HoldoutTouched


@pytest.fixture
def pinned(tmp_path: Path) -> Path:
    return shapes.generate_holdout(tmp_path / "holdout", seed=0, count=4)


def working_copy(root: Path, tmp_path: Path) -> Path:
    return dataset.make_working_copy(dataset.load(root), tmp_path / "work")


def test_the_holdout_is_copied_hashed_and_counted(pinned: Path, tmp_path: Path) -> None:
    loaded = holdout.load(pinned, shapes.NAMES, tmp_path / "h")
    assert loaded.images == 4
    assert loaded.sha256 == dataset.tree_sha256(pinned)
    assert len(list((tmp_path / "h" / "images" / "val").glob("*.png"))) == 4
    assert len(list((tmp_path / "h" / "labels" / "val").glob("*.txt"))) == 4
    again = holdout.load(pinned, shapes.NAMES, tmp_path / "h")
    assert again.sha256 == loaded.sha256


def test_a_holdout_with_other_classes_is_refused_naming_the_field(
    pinned: Path, tmp_path: Path
) -> None:
    with pytest.raises(BadInput, match=r"spec\.promotion\.holdout\.uri: .*differ"):
        holdout.load(pinned, ("cat", "dog", "bird"), tmp_path / "h")


def test_corrections_away_from_the_holdout_pass(
    shapes_dataset: Path, shapes_corrections: Path, pinned: Path, tmp_path: Path
) -> None:
    loaded = holdout.load(pinned, shapes.NAMES, tmp_path / "h")
    holdout.check_corrections(shapes_corrections, working_copy(shapes_dataset, tmp_path), loaded)


def test_a_corrections_image_that_is_a_holdout_image_is_refused_naming_the_file(
    shapes_dataset: Path, pinned: Path, tmp_path: Path
) -> None:
    loaded = holdout.load(pinned, shapes.NAMES, tmp_path / "h")
    fixes = tmp_path / "fixes"
    (fixes / "images" / "train").mkdir(parents=True)
    (fixes / "labels" / "train").mkdir(parents=True)
    shutil.copyfile(pinned / "images" / "holdout_0002.png", fixes / "images" / "train" / "x.png")
    (fixes / "labels" / "train" / "x.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    with pytest.raises(HoldoutTouched) as refused:
        holdout.check_corrections(fixes, working_copy(shapes_dataset, tmp_path), loaded)
    assert refused.value.reason == "HoldoutTouched"
    assert "corrections file images/train/x.png is holdout image images/holdout_0002.png" in str(
        refused.value
    )


def test_relabelling_a_dataset_image_that_is_also_in_the_holdout_is_refused(
    shapes_dataset: Path, pinned: Path, tmp_path: Path
) -> None:
    # The dataset leaked a holdout image as train_0003.png; a correction relabels it.
    shutil.copyfile(
        pinned / "images" / "holdout_0001.png",
        shapes_dataset / "images" / "train" / "train_0003.png",
    )
    loaded = holdout.load(pinned, shapes.NAMES, tmp_path / "h")
    fixes = tmp_path / "fixes"
    (fixes / "labels" / "train").mkdir(parents=True)
    (fixes / "labels" / "train" / "train_0003.txt").write_text("1 0.5 0.5 0.2 0.2\n")
    log = [{"image": "train/train_0003.png", "action": "replace"}]
    (fixes / "corrections.json").write_text(json.dumps(log))
    with pytest.raises(HoldoutTouched) as refused:
        holdout.check_corrections(fixes, working_copy(shapes_dataset, tmp_path), loaded)
    text = str(refused.value)
    assert (
        "corrections file labels/train/train_0003.txt changes images/train/train_0003.png" in text
    )
    assert "holdout image images/holdout_0001.png" in text
    assert "corrections file corrections.json changes" in text
