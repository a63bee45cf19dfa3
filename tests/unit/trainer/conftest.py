"""Fixtures for the trainer's unit tests: a generated shapes dataset, real Ultralytics weights."""

from __future__ import annotations

from pathlib import Path

import pytest
from retrainer_demo import shapes
from trainer_checkpoint_support import save_real_checkpoint


@pytest.fixture
def shapes_dataset(tmp_path: Path) -> Path:
    return shapes.generate_dataset(tmp_path / "shapes", seed=1, train=6, val=3)


@pytest.fixture
def shapes_corrections(tmp_path: Path) -> Path:
    return shapes.write_corrections(tmp_path / "corrections", seed=1)


@pytest.fixture(scope="session")
def ultralytics_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real Ultralytics checkpoint of yolo11n (finished: no epoch, no optimizer)."""
    return save_real_checkpoint("yolo11n.yaml", tmp_path_factory.mktemp("weights") / "yolo11n.pt")


@pytest.fixture(scope="session")
def resumable_checkpoint(ultralytics_checkpoint: Path) -> Path:
    """The same model as a checkpoint in the middle of training (epoch 3, not stripped)."""
    import torch
    from ultralytics.utils import IterableSimpleNamespace

    ckpt = torch.load(ultralytics_checkpoint, map_location="cpu", weights_only=False)
    ckpt.update({"epoch": 3, "ema": ckpt.pop("model"), "model": None, "optimizer": {}})
    ckpt["ema"].args = IterableSimpleNamespace(epochs=4, imgsz=64)  # as Ultralytics' trainer
    path = ultralytics_checkpoint.with_name("resumable.pt")
    torch.save(ckpt, path)
    return path
