"""Dataset validation reports every problem with its file and line, before any training."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest
import yaml
from retrainer_contract import exits
from retrainer_trainer import dataset
from retrainer_trainer.errors import BadInput, TrainerError


def problems_of(root: Path, work: Path) -> list[str]:
    with pytest.raises(BadInput) as error:
        dataset.make_working_copy(dataset.load(root), work)
    assert error.value.exit_code == 3
    return error.value.problems


def test_generated_dataset_copies_and_counts(shapes_dataset: Path, tmp_path: Path) -> None:
    layout = dataset.load(shapes_dataset)
    assert layout.names == ("circle", "square", "triangle")
    work = dataset.make_working_copy(layout, tmp_path / "work")
    counts = dataset.counts(work, layout.names)
    assert counts["train"]["samples"] == 6 and counts["val"]["samples"] == 3
    per_class = counts["train"]["classes"]
    assert sum(c["instances"] for c in per_class.values()) == counts["train"]["instances"] > 0
    written = yaml.safe_load((work / "data.yaml").read_text())
    assert "path" not in written, "no mount recorded: train and val resolve beside data.yaml"
    assert (written["train"], written["val"]) == ("images/train", "images/val")


def test_missing_data_yaml_is_reported(shapes_dataset: Path) -> None:
    (shapes_dataset / "data.yaml").unlink()
    with pytest.raises(BadInput, match=r"data\.yaml not found"):
        dataset.load(shapes_dataset)


def test_class_id_out_of_range_names_file_and_line(shapes_dataset: Path, tmp_path: Path) -> None:
    label = shapes_dataset / "labels" / "train" / "train_0003.txt"
    label.write_text(label.read_text() + "7 0.5 0.5 0.1 0.1\n")
    line = len(label.read_text().splitlines())
    problems = problems_of(shapes_dataset, tmp_path / "work")
    assert problems == [
        f"labels/train/train_0003.txt:{line}: class id 7 out of range "
        "(data.yaml names has 3 classes: 0..2)"
    ]


def test_unnormalised_box_and_corrupt_image_are_both_reported(
    shapes_dataset: Path, tmp_path: Path
) -> None:
    (shapes_dataset / "labels" / "val" / "val_0000.txt").write_text("0 12 0.5 0.1 0.1\n")
    (shapes_dataset / "images" / "train" / "train_0001.png").write_bytes(b"\x89PNG not really")
    problems = problems_of(shapes_dataset, tmp_path / "work")
    assert any(
        p.startswith("labels/val/val_0000.txt:1: coordinates must be normalised") for p in problems
    )
    assert any(p.startswith("images/train/train_0001.png: not a decodable image") for p in problems)


def test_tree_sha256_is_stable_and_sees_one_changed_byte(shapes_dataset: Path) -> None:
    before = dataset.tree_sha256(shapes_dataset)
    assert dataset.tree_sha256(shapes_dataset) == before
    label = shapes_dataset / "labels" / "train" / "train_0002.txt"
    label.write_text(label.read_text().replace("0.", "1.", 1))
    assert dataset.tree_sha256(shapes_dataset) != before


@pytest.mark.parametrize(
    "code", [errno.EIO, errno.ENOSPC, errno.EACCES], ids=["EIO", "ENOSPC", "EACCES"]
)
def test_an_os_error_while_reading_an_image_is_infrastructure_not_bad_input(
    shapes_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    import PIL.Image

    def unreadable(*args: Any, **kwargs: Any) -> Any:
        raise OSError(code, "the disk said no")  # fault point: PIL opening the image

    monkeypatch.setattr(PIL.Image, "open", unreadable)

    with pytest.raises(TrainerError) as error:
        dataset.make_working_copy(dataset.load(shapes_dataset), tmp_path / "work")

    assert not isinstance(error.value, BadInput) and error.value.exit_code == exits.INFRA
    assert "images/train/train_0000.png" in str(error.value) and "the disk said no" in str(
        error.value
    )


def test_an_os_error_while_reading_the_file_itself_is_infrastructure(
    shapes_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = shapes_dataset / "images" / "val" / "val_0001.png"
    real = dataset.read_file

    def eio_on_one(path: Path) -> bytes:
        if path == broken:  # fault point: reading one image's bytes
            raise OSError(errno.EIO, "Input/output error", str(path))
        return real(path)

    monkeypatch.setattr(dataset, "read_file", eio_on_one)

    with pytest.raises(TrainerError, match="Input/output error") as error:
        dataset.make_working_copy(dataset.load(shapes_dataset), tmp_path / "work")

    assert error.value.exit_code == exits.INFRA and "images/val/val_0001.png" in str(error.value)


def test_a_truncated_image_that_reads_fine_stays_bad_input(
    shapes_dataset: Path, tmp_path: Path
) -> None:
    image = shapes_dataset / "images" / "train" / "train_0002.png"
    image.write_bytes(image.read_bytes()[:40])

    problems = problems_of(shapes_dataset, tmp_path / "work")

    assert [p.split(":")[0] for p in problems] == ["images/train/train_0002.png"]
    assert "not a decodable image" in problems[0]
