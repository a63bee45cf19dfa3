"""The working dataset is links, never copies: built once per content, reused by the next
version, rebuilt when a source is no longer the file it linked, and corrections never write
through a link into the dataset."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from retrainer_contract import layout
from retrainer_trainer import config, inputs, preparation, worktree
from retrainer_trainer.datacache import Cache


def claim_config(claim: Path, version: int, corrections: str | None = None) -> config.Config:
    raw = {
        "model": "shapes",
        "baseModel": {"architecture": "yolo11n.yaml"},
        "dataset": {"uri": "datasets/shapes"},
        **({"corrections": {"uri": corrections}} if corrections else {}),
    }
    return config.Config(
        spec=config.parse_spec(raw),
        version=version,
        storage_root=claim,
        workdir=claim.parent / f"work-v{version}",
    )


def prepare(claim: Path, version: int, corrections: str | None = None) -> preparation.Prepared:
    cfg = claim_config(claim, version, corrections)
    cfg.workdir.mkdir(parents=True, exist_ok=True)
    cache = Cache(claim, cfg.dataset_cache_max_bytes)
    resolved = inputs.Inputs(
        dataset=worktree.scan_folder(claim / "datasets" / "shapes", "datasets/shapes"),
        corrections=(
            worktree.scan_folder(claim / corrections, corrections) if corrections else None
        ),
        base=inputs.BaseModel("yolo11n.yaml", "yolo11n.yaml"),
    )
    try:
        return preparation.prepare_data(cfg, resolved, cache)
    finally:
        cache.close()  # this "trainer" is done: its tree is no longer held


def claim_with(shapes_dataset: Path, tmp_path: Path) -> Path:
    claim = tmp_path / "claim"
    shutil.copytree(shapes_dataset, claim / "datasets" / "shapes")
    return claim


def test_the_working_tree_links_the_dataset_and_the_workdir_holds_no_image(
    shapes_dataset: Path, tmp_path: Path
) -> None:
    claim = claim_with(shapes_dataset, tmp_path)
    prep = prepare(claim, 1)

    tree = prep.data_yaml.parent
    assert tree.parent == layout.dataset_cache_dir(claim) / "trees"
    source = claim / "datasets" / "shapes" / "images" / "train" / "train_0000.png"
    linked = tree / "images" / "train" / "train_0000.png"
    assert linked.stat().st_ino == source.stat().st_ino, "a hardlink, not a copy"
    assert sorted(p.name for p in claim_config(claim, 1).workdir.iterdir()) == [
        layout.CORRECTIONS_APPLIED,
        layout.DATASET_METADATA,
    ]
    assert "path:" not in prep.data_yaml.read_text(), "nothing of the mount is recorded"
    assert prep.metadata["splits"]["train"]["samples"] == 6


def test_the_next_version_on_unchanged_data_reuses_the_tree_and_its_label_cache(
    shapes_dataset: Path, tmp_path: Path
) -> None:
    claim = claim_with(shapes_dataset, tmp_path)
    first = prepare(claim, 1)
    label_cache = first.data_yaml.parent / "labels" / "train.cache"
    label_cache.write_bytes(b"what Ultralytics wrote")  # as a training run leaves it

    second = prepare(claim, 2)

    assert second.data_yaml == first.data_yaml and label_cache.read_bytes().startswith(b"what")
    assert second.metadata == {**first.metadata}
    assert (
        json.loads((claim.parent / "work-v2" / layout.DATASET_METADATA).read_text())[
            "datasetSha256"
        ]
        == (first.metadata["datasetSha256"])
    )


def test_a_source_file_replaced_by_another_inode_rebuilds_the_tree(
    shapes_dataset: Path, tmp_path: Path
) -> None:
    claim = claim_with(shapes_dataset, tmp_path)
    first = prepare(claim, 1)
    image = claim / "datasets" / "shapes" / "images" / "val" / "val_0000.png"
    data = image.read_bytes()
    image.unlink()
    image.write_bytes(data)  # the same bytes (same sha256), a new inode

    second = prepare(claim, 2)

    linked = second.data_yaml.parent / "images" / "val" / "val_0000.png"
    assert linked.stat().st_ino == image.stat().st_ino
    assert second.data_yaml == first.data_yaml, "the same content keeps the same tree name"


def test_corrections_write_their_labels_and_never_through_a_link_into_the_dataset(
    shapes_dataset: Path, shapes_corrections: Path, tmp_path: Path
) -> None:
    claim = claim_with(shapes_dataset, tmp_path)
    shutil.copytree(shapes_corrections, claim / "corrections" / "b1")
    original = claim / "datasets" / "shapes" / "labels" / "train" / "train_0000.txt"
    before = original.read_text()

    prep = prepare(claim, 1, "corrections/b1")

    tree = prep.data_yaml.parent
    corrected = tree / "labels" / "train" / "train_0000.txt"
    wanted = (claim / "corrections" / "b1" / "labels" / "train" / "train_0000.txt").read_text()
    assert corrected.read_text() == wanted != before
    assert original.read_text() == before and corrected.stat().st_ino != original.stat().st_ino
    untouched = tree / "labels" / "train" / "train_0003.txt"
    assert untouched.stat().st_ino == original.with_name("train_0003.txt").stat().st_ino
    assert prep.applied["count"] == 3 and prep.metadata["correctionsSha256"]
    assert os.stat(tree / "images" / "train" / "added_0000.png").st_nlink >= 2


def test_the_trees_record_of_its_files_is_what_it_holds_without_reading_it_back(
    shapes_dataset: Path, tmp_path: Path
) -> None:
    claim = claim_with(shapes_dataset, tmp_path)
    # An image without a label: linked alone.
    (claim / "datasets" / "shapes" / "labels" / "train" / "train_0001.txt").unlink()
    tree = prepare(claim, 1).data_yaml.parent

    marker = json.loads((tree / worktree.MARKER).read_text(encoding="utf-8"))

    held = sorted(
        p.relative_to(tree).as_posix()
        for p in tree.rglob("*")
        if p.is_file() and p.name != worktree.MARKER and p.suffix != ".cache"
    )
    assert marker["linked"] == held
    assert "images/train/train_0001.png" in held and "labels/train/train_0001.txt" not in held
