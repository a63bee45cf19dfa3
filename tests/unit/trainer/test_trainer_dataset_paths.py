"""Every folder a data.yaml names stays inside the dataset: `train: /etc`, `val: ../elsewhere`,
an absolute `path:` or a symlink out of the dataset is bad input (exit 3) naming the spec field,
the data.yaml key and the fix, found before anything is listed, linked or trained (it crashed
with exit 1 before, and the Job retried it until its backoffLimit)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from retrainer_contract import exits
from retrainer_demo import shapes
from retrainer_trainer import dataset, holdout
from retrainer_trainer.errors import BadInput
from retrainer_trainer.fetch import SourceFile


def rewrite(root: Path, **changes: object) -> None:
    data = yaml.safe_load((root / "data.yaml").read_text())
    data.update(changes)
    (root / "data.yaml").write_text(yaml.safe_dump(data))


@pytest.fixture
def elsewhere(tmp_path: Path, shapes_dataset: Path) -> Path:
    """A YOLO folder beside the dataset, with images: readable, and not the dataset's."""
    folder = tmp_path / "elsewhere"
    shutil.copytree(shapes_dataset / "images" / "val", folder / "images" / "val")
    return folder


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("train", "/etc"),
        ("val", "../elsewhere/images/val"),
        ("test", "/etc"),
        ("train", ["images/train", "/etc"]),
    ],
    ids=["train-absolute", "val-dotdot", "test-absolute", "list"],
)
def test_a_data_yaml_path_outside_the_dataset_is_bad_input_naming_field_key_and_fix(
    shapes_dataset: Path, elsewhere: Path, tmp_path: Path, key: str, value: object
) -> None:
    rewrite(shapes_dataset, **{key: value})

    with pytest.raises(BadInput) as refused:
        dataset.make_working_copy(dataset.load(shapes_dataset), tmp_path / "work")

    message = str(refused.value)
    assert refused.value.exit_code == exits.BAD_INPUT
    assert message.startswith(f"spec.dataset.uri: data.yaml in {shapes_dataset} says {key}: ")
    assert "outside the dataset folder" in message
    assert f"e.g. {key}: images/{key}" in message
    assert not (tmp_path / "work").exists(), "refused before anything was linked"


@pytest.mark.parametrize("value", ["/etc", "..", "../datasets/shapes"])
def test_an_authors_path_outside_the_dataset_is_ignored_and_splits_read_beside_data_yaml(
    shapes_dataset: Path, tmp_path: Path, value: str
) -> None:
    # Ultralytics-style datasets carry their author's `path:` (../datasets/x): here the dataset
    # is where it was fetched, so that path names nothing of it; the splits stay inside.
    rewrite(shapes_dataset, path=value)
    layout = dataset.load(shapes_dataset)
    assert all(
        folder.resolve().is_relative_to(shapes_dataset.resolve())
        for folders in layout.splits.values()
        for folder in folders
    )


def test_train_etc_in_an_s3_dataset_is_bad_input_not_a_crash(
    shapes_dataset: Path, tmp_path: Path
) -> None:
    # An s3:// dataset's files are known from the cache (fetch.py): this path crashed with a
    # ValueError (exit 1, retried) placing /etc below the dataset.
    rewrite(shapes_dataset, train="/etc")
    known = {
        p.relative_to(shapes_dataset).as_posix(): SourceFile(str(p), "0" * 64, p.stat().st_size)
        for p in shapes_dataset.rglob("*")
        if p.is_file()
    }

    with pytest.raises(BadInput, match=r"^spec\.dataset\.uri: .* says train: '/etc'") as refused:
        dataset.make_working_copy(dataset.load(shapes_dataset), tmp_path / "work", known)

    assert refused.value.exit_code == exits.BAD_INPUT


def test_a_split_folder_that_is_a_symlink_out_of_the_dataset_is_bad_input(
    shapes_dataset: Path, elsewhere: Path
) -> None:
    shutil.rmtree(shapes_dataset / "images" / "val")
    (shapes_dataset / "images" / "val").symlink_to(elsewhere / "images" / "val")

    with pytest.raises(BadInput, match=r"spec\.dataset\.uri: .* says val: 'images/val', which "):
        dataset.load(shapes_dataset)


def test_paths_that_stay_inside_the_dataset_are_read_as_before(
    shapes_dataset: Path, tmp_path: Path
) -> None:
    rewrite(shapes_dataset, path=".", train="./images/train", val="images/../images/val")

    layout = dataset.load(shapes_dataset)
    work = dataset.make_working_copy(layout, tmp_path / "work")

    assert layout.splits["val"] == (shapes_dataset / "images" / "val",)
    assert dataset.counts(work, layout.names)["val"]["samples"] == 3


def test_a_holdout_whose_images_are_outside_it_is_bad_input_naming_its_field(
    tmp_path: Path,
) -> None:
    pinned = shapes.generate_holdout(tmp_path / "holdout", seed=0, count=2)
    rewrite(pinned, val="/etc")

    with pytest.raises(BadInput, match=r"^spec\.promotion\.holdout\.uri: .* says val: '/etc'"):
        holdout.load(pinned, shapes.NAMES, tmp_path / "h")
