"""Corrections replace, add and delete labelled images in the working copy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from retrainer_trainer import corrections, dataset
from retrainer_trainer.errors import BadInput


def working_copy(root: Path, tmp_path: Path) -> tuple[Path, tuple[str, ...]]:
    layout = dataset.load(root)
    return dataset.make_working_copy(layout, tmp_path / "work"), layout.names


def test_corrections_fix_the_noisy_labels_and_add_an_image(
    shapes_dataset: Path, shapes_corrections: Path, tmp_path: Path
) -> None:
    work, names = working_copy(shapes_dataset, tmp_path)
    wrong = (work / "labels" / "train" / "train_0000.txt").read_text()
    applied = corrections.apply(shapes_corrections, work, names)
    assert [(c.image, c.action) for c in applied] == [
        ("train_0000.png", "replace"), ("train_0001.png", "replace"), ("added_0000.png", "add"),
    ]  # fmt: skip
    fixed = (work / "labels" / "train" / "train_0000.txt").read_text()
    assert (
        fixed == (shapes_corrections / "labels" / "train" / "train_0000.txt").read_text() != wrong
    )
    assert (work / "images" / "train" / "added_0000.png").is_file()
    assert dataset.counts(work, names)["train"]["samples"] == 7
    doc = corrections.applied_document(applied, "abc")
    assert doc["count"] == 3 and doc["totals"] == {"add": 1, "replace": 2, "delete": 0}
    assert doc["applied"][0]["author"] == "reviewer@example.com"


def test_labels_without_a_log_are_inferred_and_delete_needs_the_log(
    shapes_dataset: Path, tmp_path: Path
) -> None:
    work, names = working_copy(shapes_dataset, tmp_path)
    source = tmp_path / "c"
    (source / "labels" / "train").mkdir(parents=True)
    (source / "labels" / "train" / "train_0002.txt").write_text("2 0.5 0.5 0.2 0.2\n")
    (source / "corrections.json").write_text(
        json.dumps([{"image": "val/val_0001.png", "action": "delete", "author": "a", "time": "t"}])
    )
    applied = corrections.apply(source, work, names)
    assert sorted((c.split, c.image, c.action) for c in applied) == [
        ("train", "train_0002.png", "replace"), ("val", "val_0001.png", "delete"),
    ]  # fmt: skip
    assert not (work / "images" / "val" / "val_0001.png").exists()
    assert not (work / "labels" / "val" / "val_0001.txt").exists()


def test_bad_correction_label_and_unknown_image_are_reported_together(
    shapes_dataset: Path, tmp_path: Path
) -> None:
    work, names = working_copy(shapes_dataset, tmp_path)
    source = tmp_path / "c"
    (source / "labels" / "train").mkdir(parents=True)
    (source / "labels" / "train" / "train_0002.txt").write_text("9 0.5 0.5 0.2 0.2\n")
    (source / "labels" / "train" / "nowhere.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    with pytest.raises(BadInput) as error:
        corrections.apply(source, work, names)
    problems = "\n".join(error.value.problems)
    assert "corrections: labels/train/train_0002.txt:1: class id 9 out of range" in problems
    assert "labels/train/nowhere.txt has no image train/nowhere.*" in problems
    # Nothing was applied: the working copy still has the original label.
    assert (work / "labels" / "train" / "train_0002.txt").read_text() == (
        shapes_dataset / "labels" / "train" / "train_0002.txt"
    ).read_text()


def test_unknown_action_in_the_log_is_reported(shapes_dataset: Path, tmp_path: Path) -> None:
    work, names = working_copy(shapes_dataset, tmp_path)
    source = tmp_path / "c"
    source.mkdir()
    (source / "corrections.json").write_text(
        json.dumps([{"image": "train/x.png", "action": "zap"}])
    )
    with pytest.raises(BadInput, match="entry 0: action 'zap' must be one of add, replace, delete"):
        corrections.apply(source, work, names)
