"""The shapes generator is deterministic and its corrections fix exactly its noisy labels."""

from __future__ import annotations

from pathlib import Path

from retrainer_demo import shapes
from retrainer_trainer import dataset


def test_same_seed_gives_the_same_bytes_and_another_seed_does_not(tmp_path: Path) -> None:
    a = dataset.tree_sha256(shapes.generate_dataset(tmp_path / "a", seed=3, train=4, val=2))
    b = dataset.tree_sha256(shapes.generate_dataset(tmp_path / "b", seed=3, train=4, val=2))
    c = dataset.tree_sha256(shapes.generate_dataset(tmp_path / "c", seed=4, train=4, val=2))
    assert a == b != c


def test_corrections_restore_the_true_labels(tmp_path: Path) -> None:
    noisy = shapes.generate_dataset(tmp_path / "noisy", seed=2, train=4, val=2, noisy=2)
    clean = shapes.generate_dataset(tmp_path / "clean", seed=2, train=4, val=2, noisy=0)
    fixes = shapes.write_corrections(tmp_path / "fixes", seed=2, noisy=2)
    for stem in ("train_0000", "train_0001"):
        label = f"labels/train/{stem}.txt"
        assert (noisy / label).read_text() != (clean / label).read_text()
        assert (fixes / label).read_text() == (clean / label).read_text()
    assert (fixes / "images" / "train" / "added_0000.png").is_file()
