"""A label cache Retrainer did not record is never unpickled: Ultralytics `np.load`s any
`labels/*.cache` it finds (allow_pickle=True), so a planted one would run code in the trainer.

The working tree is the real one (`cache_sharing_support.prepare`); Ultralytics is a stand-in
whose training does what Ultralytics' trainer does first: build the train and val datasets
with Ultralytics' own dataset code, which loads (or writes) the label caches. The planted cache
writes a marker file when unpickled.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cache_sharing_support import prepare
from retrainer_contract import documents, integrity, layout
from retrainer_demo import shapes
from retrainer_trainer import holdout, labelcache, store, training
from retrainer_trainer.config import Training


class Payload:
    """Unpickled, it runs `exec(code)`: what a planted cache can do."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (self.code,))


def plant(cache: Path, marker: Path) -> None:
    """A .npy Ultralytics would load: an object array whose pickle writes `marker`."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    with cache.open("wb") as handle:
        np.save(handle, np.array(Payload(f"open({str(marker)!r}, 'w').write('ran')"), dtype=object))


def build_datasets(data_yaml: Path) -> None:
    """Ultralytics' own dataset building for both splits: reads (or writes) each label cache."""
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset

    data = check_det_dataset(str(data_yaml), autodownload=False)
    for split in ("train", "val"):
        build_yolo_dataset(get_cfg(overrides={"imgsz": 64}), data[split], 4, data, mode="val")


class FakeYOLO:
    """ultralytics.YOLO with a training that only builds its datasets, then ends as one."""

    def __init__(self, source: str) -> None:
        self.callbacks: dict[str, list[Callable[[Any], None]]] = {}

    def add_callback(self, event: str, callback: Callable[[Any], None]) -> None:
        self.callbacks.setdefault(event, []).append(callback)

    def train(self, **kwargs: Any) -> None:
        build_datasets(Path(kwargs["data"]))
        for callback in self.callbacks.get("on_pretrain_routine_end", []):
            callback(None)
        folder = Path(kwargs["project"]) / kwargs["name"] / "weights"
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("best.pt", "last.pt"):
            (folder / name).write_bytes(FakeYOLO.weights.read_bytes())
        for callback in self.callbacks.get("on_train_end", []):
            callback(None)

    weights: Path


@pytest.fixture
def fake_yolo(monkeypatch: pytest.MonkeyPatch, ultralytics_checkpoint: Path) -> Iterator[None]:
    import ultralytics

    FakeYOLO.weights = ultralytics_checkpoint
    monkeypatch.setattr(ultralytics, "YOLO", FakeYOLO)
    yield


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A working tree on the claim, as the dataset step leaves it."""
    folder = shapes.generate_dataset(tmp_path / "shapes", seed=6, train=4, val=2)
    cache, prep, _ = prepare(tmp_path / "claim", folder, "shapes", max_bytes=10**9)
    cache.close()
    return prep.data_yaml.parent


def train_on(tree: Path, tmp_path: Path, version: int = 1) -> None:
    paths = layout.VersionPaths.for_version(tmp_path / "claim", "shapes", version)
    store.claim_version(paths, documents.owner(uid="u1", name="job", namespace="ns"))
    training.train(
        data_yaml=tree / "data.yaml",
        base_model="yolo11n.yaml",
        paths=paths,
        training=Training(epochs=1, imgsz=64),
        device="cpu",
        on_epoch=lambda epoch, epochs, metrics: None,
    )


def test_a_planted_label_cache_is_never_unpickled_by_training(
    fake_yolo: None, tree: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "code-ran"
    plant(tree / "labels" / "train.cache", marker)

    train_on(tree, tmp_path)

    assert not marker.exists(), "the planted cache was unpickled"
    recorded = json.loads((tree / labelcache.RECORD).read_text())
    assert sorted(recorded) == ["labels/train.cache", "labels/val.cache"], "rebuilt, recorded"
    assert labelcache.safe(tree / "labels" / "train.cache")


def test_a_recorded_cache_is_kept_and_one_replaced_afterwards_is_removed(
    fake_yolo: None, tree: Path, tmp_path: Path
) -> None:
    train_on(tree, tmp_path)
    assert labelcache.scrub(tree) == [], "what Ultralytics wrote and Retrainer recorded stays"

    marker = tmp_path / "code-ran"
    plant(tree / "labels" / "val.cache", marker)
    assert labelcache.scrub(tree) == ["labels/val.cache"]
    assert not marker.exists() and (tree / "labels" / "train.cache").is_file()


def test_a_forged_record_does_not_make_a_code_running_cache_loadable(
    tree: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "code-ran"
    planted = tree / "labels" / "train.cache"
    plant(planted, marker)
    forged = {"labels/train.cache": integrity.sha256_file(planted)[0]}
    (tree / labelcache.RECORD).write_text(json.dumps(forged))

    assert not labelcache.safe(planted)
    assert labelcache.scrub(tree) == ["labels/train.cache"]
    build_datasets(tree / "data.yaml")
    assert not marker.exists()


def test_the_holdout_copy_is_scrubbed_before_validation(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import ultralytics

    pinned = holdout.load(
        shapes.generate_holdout(tmp_path / "holdout", seed=0, count=2),
        shapes.NAMES,
        tmp_path / "work" / "holdout",
    )
    marker = tmp_path / "code-ran"
    plant(pinned.data_yaml.parent / "labels" / "val.cache", marker)

    class Validator:
        def __init__(self, source: str) -> None:
            pass

        def add_callback(self, event: str, fn: Any) -> None:
            pass  # validate keeps the per-image matches through a callback

        def val(self, **kwargs: Any) -> None:
            build_datasets(Path(kwargs["data"]))
            raise RuntimeError("scored")  # the rest of validation is not this test's

    monkeypatch.setattr(ultralytics, "YOLO", Validator)
    with pytest.raises(RuntimeError, match="scored"):
        training.validate(
            weights=tmp_path / "w.pt",
            data_yaml=pinned.data_yaml,
            imgsz=64,
            conf=0.001,
            iou=0.7,
            device="cpu",
            save_dir=tmp_path / "work" / "evaluation" / "challenger",
        )
    assert not marker.exists()
