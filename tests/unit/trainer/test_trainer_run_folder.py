"""A rerun reuses a run folder's weights only when they match what was recorded when they were
written, and never deletes anything because a read failed: faults are injected at the loader
(`torch.load`) or by truncating and flipping bytes, and Ultralytics is replaced by a fake that
records what it was asked to train."""

from __future__ import annotations

import errno
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from retrainer_contract import documents, exits, integrity, layout
from retrainer_trainer import runfolder, store, training
from retrainer_trainer.config import Training
from retrainer_trainer.errors import BadInput, CorruptedWeights, TrainerError


class FakeYOLO:
    """Stands in for ultralytics.YOLO: records each training and writes finished weights."""

    calls: ClassVar[list[tuple[str, dict[str, Any]]]] = []
    weights: ClassVar[Path]

    def __init__(self, source: str) -> None:
        self.source = source
        self.callbacks: dict[str, list[Callable[[Any], None]]] = {}

    def add_callback(self, event: str, callback: Callable[[Any], None]) -> None:
        self.callbacks.setdefault(event, []).append(callback)

    def train(self, **kwargs: Any) -> None:
        FakeYOLO.calls.append((self.source, kwargs))
        if kwargs.get("resume"):
            folder = Path(self.source).parent
        else:
            folder = Path(kwargs["project"]) / kwargs["name"] / "weights"
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("best.pt", "last.pt"):
            shutil.copyfile(FakeYOLO.weights, folder / name)
        for callback in self.callbacks.get("on_train_end", []):
            callback(None)


@pytest.fixture
def fake_yolo(monkeypatch: pytest.MonkeyPatch, ultralytics_checkpoint: Path) -> Iterator[type]:
    import ultralytics

    FakeYOLO.calls = []
    FakeYOLO.weights = ultralytics_checkpoint
    monkeypatch.setattr(ultralytics, "YOLO", FakeYOLO)
    yield FakeYOLO


def owned_run(tmp_path: Path) -> layout.VersionPaths:
    paths = layout.VersionPaths.for_version(tmp_path / "claim", "shapes", 1)
    store.claim_version(paths, documents.owner(uid="u1", name="job", namespace="ns"))
    return paths


def with_weights(
    paths: layout.VersionPaths,
    *,
    last: Path,
    best: Path | None = None,
    finished: bool = False,
    sealed: bool = False,
) -> None:
    """Weights as a pod left them, recorded (or sealed) right after they were written."""
    paths.last_checkpoint.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(last, paths.last_checkpoint)
    if best is not None:
        shutil.copyfile(best, paths.training_run)
    if sealed:
        runfolder.seal(paths)
    else:
        runfolder.record(paths, finished=finished)


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` with its sha256."""
    return {
        p.relative_to(folder).as_posix(): integrity.sha256_file(p)[0]
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def train(paths: layout.VersionPaths, **kwargs: Any) -> training.TrainResult:
    return training.train(
        data_yaml=paths.root / "data.yaml",
        base_model="yolo11n.yaml",
        paths=paths,
        training=Training(epochs=2, imgsz=64),
        device="cpu",
        on_epoch=lambda epoch, epochs, metrics: None,
        **kwargs,
    )


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def aside_folders(paths: layout.VersionPaths) -> list[Path]:
    return sorted(paths.train_dir.glob(f"{paths.run_name}.unreadable-*"))


# ---- nothing is deleted on a read error --------------------------------------------------------


def eio(*args: Any, **kwargs: Any) -> Any:
    raise OSError(errno.EIO, "Input/output error")


def out_of_memory(*args: Any, **kwargs: Any) -> Any:
    raise MemoryError()


def newer_ultralytics(*args: Any, **kwargs: Any) -> Any:
    raise ModuleNotFoundError("No module named 'ultralytics.nn.modules.gone'")


@pytest.mark.parametrize("fault", [eio, out_of_memory, newer_ultralytics])
@pytest.mark.parametrize("recorded", [True, False], ids=["recorded", "unrecorded"])
def test_a_failed_read_of_last_pt_deletes_nothing_and_is_an_infrastructure_error(
    tmp_path: Path,
    resumable_checkpoint: Path,
    fake_yolo: type,
    monkeypatch: pytest.MonkeyPatch,
    fault: Callable[..., Any],
    recorded: bool,
) -> None:
    import torch

    paths = owned_run(tmp_path)
    with_weights(paths, last=resumable_checkpoint, best=resumable_checkpoint)
    if not recorded:
        (paths.run_dir / runfolder.RECORD).unlink()
    before = snapshot(paths.run_dir)
    monkeypatch.setattr(torch, "load", fault)  # fault point: the checkpoint loader

    with pytest.raises(TrainerError) as error:
        train(paths)

    assert not isinstance(error.value, BadInput) and error.value.exit_code == exits.INFRA
    assert "nothing was moved or deleted" in str(error.value)
    assert snapshot(paths.run_dir) == before
    assert aside_folders(paths) == [] and FakeYOLO.calls == []


def test_an_eio_while_hashing_last_pt_deletes_nothing(
    tmp_path: Path, resumable_checkpoint: Path, fake_yolo: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = owned_run(tmp_path)
    with_weights(paths, last=resumable_checkpoint)
    before = snapshot(paths.run_dir)
    monkeypatch.setattr(integrity, "file_chunks", eio)  # fault point: reading bytes to hash

    with pytest.raises(TrainerError, match="Input/output error") as error:
        train(paths)

    monkeypatch.undo()  # the disk recovers
    assert error.value.exit_code == exits.INFRA
    assert snapshot(paths.run_dir) == before and FakeYOLO.calls == []


def test_a_truncated_last_pt_is_moved_aside_with_its_bytes_and_training_starts_over(
    tmp_path: Path, resumable_checkpoint: Path, fake_yolo: type
) -> None:
    paths = owned_run(tmp_path)
    with_weights(paths, last=resumable_checkpoint, best=resumable_checkpoint)
    truncate(paths.last_checkpoint)  # a pod killed while Ultralytics wrote it
    before = snapshot(paths.run_dir)

    result = train(paths)

    (aside,) = aside_folders(paths)
    moved = {name: sha for name, sha in before.items() if name != layout.OWNER}
    assert snapshot(aside) == moved, "every byte is kept, under the new name"
    assert json.loads(paths.owner.read_text())["retrainJob"]["uid"] == "u1"
    ((source, kwargs),) = FakeYOLO.calls
    assert source == "yolo11n.yaml" and not kwargs.get("resume")
    assert result.trained and not result.resumed


def test_a_truncated_last_pt_that_nothing_recorded_is_moved_aside_not_deleted(
    tmp_path: Path, resumable_checkpoint: Path, fake_yolo: type
) -> None:
    paths = owned_run(tmp_path)
    with_weights(paths, last=resumable_checkpoint)
    (paths.run_dir / runfolder.RECORD).unlink()  # a run folder from before records
    truncate(paths.last_checkpoint)
    truncated = integrity.sha256_file(paths.last_checkpoint)[0]

    train(paths)

    (aside,) = aside_folders(paths)
    assert integrity.sha256_file(aside / "weights" / "last.pt")[0] == truncated
    assert FakeYOLO.calls[0][0] == "yolo11n.yaml"


def test_a_last_pt_with_one_flipped_byte_is_not_resumed(
    tmp_path: Path, resumable_checkpoint: Path, fake_yolo: type
) -> None:
    paths = owned_run(tmp_path)
    with_weights(paths, last=resumable_checkpoint, best=resumable_checkpoint)
    flip_a_byte(paths.last_checkpoint)  # still loads: only its record can tell

    train(paths)

    assert len(aside_folders(paths)) == 1
    assert FakeYOLO.calls[0][0] == "yolo11n.yaml" and not FakeYOLO.calls[0][1].get("resume")


def test_a_last_pt_that_matches_its_record_is_resumed(
    tmp_path: Path, resumable_checkpoint: Path, fake_yolo: type
) -> None:
    paths = owned_run(tmp_path)
    with_weights(paths, last=resumable_checkpoint, best=resumable_checkpoint)

    result = train(paths)

    ((source, kwargs),) = FakeYOLO.calls
    assert source == str(paths.last_checkpoint) and kwargs["resume"] is True
    assert result.resumed and aside_folders(paths) == []
    recorded = runfolder.read_record(paths)
    assert recorded is not None and recorded.finished
    assert recorded.files["best.pt"].sha256 == integrity.sha256_file(paths.training_run)[0]


# ---- repairs trust recorded hashes, not files --------------------------------------------------


def test_a_finished_run_whose_best_pt_matches_its_record_is_reused_without_training(
    tmp_path: Path, ultralytics_checkpoint: Path, fake_yolo: type
) -> None:
    paths = owned_run(tmp_path)
    with_weights(paths, last=ultralytics_checkpoint, best=ultralytics_checkpoint, finished=True)

    result = train(paths)

    assert not result.trained and FakeYOLO.calls == []


def test_a_corrupted_best_pt_of_a_finished_run_is_never_reused(
    tmp_path: Path, ultralytics_checkpoint: Path, fake_yolo: type
) -> None:
    paths = owned_run(tmp_path)
    with_weights(paths, last=ultralytics_checkpoint, best=ultralytics_checkpoint, finished=True)
    recorded = integrity.sha256_file(paths.training_run)[0]
    flip_a_byte(paths.training_run)
    corrupted = integrity.sha256_file(paths.training_run)[0]

    with pytest.raises(CorruptedWeights) as error:
        train(paths)  # no copy to restore from

    message = str(error.value)
    assert str(paths.training_run) in message and recorded in message and corrupted in message
    assert error.value.exit_code == exits.BAD_INPUT and error.value.reason == "CorruptedWeights"
    assert integrity.sha256_file(paths.training_run)[0] == corrupted, "nothing was overwritten"
    assert FakeYOLO.calls == []


def test_a_corrupted_best_pt_is_reused_once_restored_from_a_copy_with_the_recorded_hash(
    tmp_path: Path, ultralytics_checkpoint: Path, fake_yolo: type
) -> None:
    paths = owned_run(tmp_path)
    with_weights(paths, last=ultralytics_checkpoint, best=ultralytics_checkpoint, finished=True)
    recorded = integrity.sha256_file(paths.training_run)[0]
    flip_a_byte(paths.training_run)
    asked: list[runfolder.Plan] = []

    def restore(plan: runfolder.Plan) -> bool:
        asked.append(plan)
        shutil.copyfile(ultralytics_checkpoint, paths.training_run)
        return True

    result = train(paths, restore=restore)

    (plan,) = asked
    assert plan.best is not None and plan.best.sha256 == recorded
    assert plan.actual != recorded and plan.recorded_in == runfolder.RECORD
    assert not result.trained and FakeYOLO.calls == []
    assert integrity.sha256_file(paths.training_run)[0] == recorded


def test_a_stored_version_without_a_record_is_judged_by_its_manifest(
    tmp_path: Path, ultralytics_checkpoint: Path, fake_yolo: type
) -> None:
    paths = owned_run(tmp_path)
    with_weights(paths, last=ultralytics_checkpoint, best=ultralytics_checkpoint, finished=True)
    (paths.run_dir / runfolder.RECORD).unlink()  # stored before records existed
    sha, size = integrity.sha256_file(paths.training_run)
    artifact = {"name": layout.TRAINING_RUN, "uri": "pvc://m/x", "sha256": sha, "size": size}
    store.atomic_write_json(paths.manifest, {"version": 1, "artifacts": [artifact]})
    flip_a_byte(paths.training_run)

    with pytest.raises(CorruptedWeights, match=sha):
        train(paths)
    assert FakeYOLO.calls == []


# ---- a pod stopped in Ultralytics' final phase -------------------------------------------------


def checkpoint_fields(path: Path) -> tuple[Any, Any]:
    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    return ckpt.get("epoch"), ckpt.get("optimizer")


def assert_finished_from_the_sealed_save(paths: layout.VersionPaths) -> None:
    assert FakeYOLO.calls == [] and aside_folders(paths) == []
    recorded = runfolder.read_record(paths)
    assert recorded is not None and recorded.finished and not recorded.sealed
    for name, path in (("best.pt", paths.training_run), ("last.pt", paths.last_checkpoint)):
        assert recorded.files[name].sha256 == integrity.sha256_file(path)[0]
        assert checkpoint_fields(path) == (-1, None), f"{name}: stripped as Ultralytics does"
    assert not (paths.run_dir / runfolder.FINAL_SAVE).exists()


def test_weights_rewritten_by_the_final_phase_are_put_back_from_the_sealed_save_and_finished(
    tmp_path: Path, resumable_checkpoint: Path, ultralytics_checkpoint: Path, fake_yolo: type
) -> None:
    paths = owned_run(tmp_path)
    with_weights(paths, last=resumable_checkpoint, best=resumable_checkpoint, sealed=True)
    # The final phase stripped last.pt in place, and was stopped half-way through best.pt.
    shutil.copyfile(ultralytics_checkpoint, paths.last_checkpoint)
    truncate(paths.training_run)

    result = train(paths)

    assert not result.trained and result.resumed
    assert_finished_from_the_sealed_save(paths)


def test_a_sealed_save_stopped_before_the_final_phase_is_finished_without_training(
    tmp_path: Path, resumable_checkpoint: Path, fake_yolo: type
) -> None:
    # Sealed at epoch 4 of 4 or at an early stop: never resumed, whatever last.pt's epoch says.
    paths = owned_run(tmp_path)
    with_weights(paths, last=resumable_checkpoint, best=resumable_checkpoint, sealed=True)

    train(paths)

    assert_finished_from_the_sealed_save(paths)


def test_a_sealed_copy_that_does_not_match_its_record_is_never_put_back(
    tmp_path: Path, resumable_checkpoint: Path, ultralytics_checkpoint: Path, fake_yolo: type
) -> None:
    paths = owned_run(tmp_path)
    with_weights(paths, last=resumable_checkpoint, best=resumable_checkpoint, sealed=True)
    shutil.copyfile(ultralytics_checkpoint, paths.training_run)
    flip_a_byte(paths.run_dir / runfolder.FINAL_SAVE / "best.pt")

    train(paths)

    (aside,) = aside_folders(paths)
    assert (aside / runfolder.FINAL_SAVE / "best.pt").is_file(), "kept for a person to look at"
    assert FakeYOLO.calls[0][0] == "yolo11n.yaml" and not FakeYOLO.calls[0][1].get("resume")
