"""Checkpoints are pickles: a base model's globals are scanned before Ultralytics may load it,
against an allowlist as tight as what real Ultralytics checkpoints contain, and the trainer's
own reads unpickle with weights_only=True. Crafted pickles are scanned, never unpickled."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import pytest
from retrainer_contract import exits
from retrainer_trainer import checkpoints, inputs, picklescan
from retrainer_trainer.config import Config, parse_spec
from retrainer_trainer.errors import BadInput
from trainer_checkpoint_support import save_real_checkpoint

FIELD = "spec.baseModel.uri"


def as_checkpoint(path: Path, pickled: bytes) -> Path:
    """`pickled` where torch.load would read it: archive/data.pkl inside a zip."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickled)
        archive.writestr("archive/version", "3\n")
    return path


class RunsACommand:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (self.command,))


def refused(path: Path) -> list[str]:
    return [u.qualified for u in picklescan.unsafe(picklescan.scan(path))]


def test_a_real_ultralytics_checkpoint_passes_the_scan_and_loads_with_weights_only(
    ultralytics_checkpoint: Path, resumable_checkpoint: Path
) -> None:
    for path in (ultralytics_checkpoint, resumable_checkpoint):
        uses = picklescan.scan(path)
        assert picklescan.unsafe(uses) == []
        assert picklescan.Use("ultralytics.nn.tasks", "DetectionModel", "construct") in uses
        checkpoints.check_base(path, FIELD, "models/base.pt")
    assert checkpoints.epoch_state(ultralytics_checkpoint) == checkpoints.FINISHED
    assert checkpoints.epoch_state(resumable_checkpoint) == checkpoints.RESUMABLE
    loaded = checkpoints.load(resumable_checkpoint)
    assert type(loaded["ema"]).__name__ == "DetectionModel"


def test_the_allowlist_holds_exactly_the_globals_real_checkpoints_use(
    resumable_checkpoint: Path, tmp_path: Path
) -> None:
    used: set[tuple[str, str]] = set()
    for architecture in ("yolov8n.yaml", "yolo11n.yaml", "yolo26n.yaml"):
        path = save_real_checkpoint(architecture, tmp_path / f"{architecture}.pt")
        used |= {(u.module, u.name) for u in picklescan.scan(path)}
    used |= {(u.module, u.name) for u in picklescan.scan(resumable_checkpoint)}
    assert used == set(picklescan.ALLOWED)


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_a_crafted_pickle_calling_os_system_is_refused_and_never_run(
    tmp_path: Path, protocol: int
) -> None:
    marker = tmp_path / "pwned"
    pickled = pickle.dumps({"model": RunsACommand(f"touch {marker}")}, protocol=protocol)
    path = as_checkpoint(tmp_path / "base.pt", pickled)

    with pytest.raises(BadInput) as error:
        checkpoints.check_base(path, FIELD, "s3://models/base.pt")

    message = str(error.value)
    assert message.startswith(f"{FIELD}: s3://models/base.pt is refused")
    assert f"{os.system.__module__}.system (call)" in message
    assert "spec.baseModel.architecture" in message and "YOLO('in.pt').save" in message
    assert error.value.exit_code == exits.BAD_INPUT
    assert not marker.exists()


def test_an_allowed_layer_called_with_arguments_is_refused(tmp_path: Path) -> None:
    # DetectionModel(cfg) would build from the cfg (and eval its activation); real checkpoints
    # only ever construct it without calling __init__.
    pickled = (
        b"\x80\x02cultralytics.nn.tasks\nDetectionModel\n}X\n\x00\x00\x00activation"
        b"X\x04\x00\x00\x00evils\x85R."
    )
    path = as_checkpoint(tmp_path / "base.pt", pickled)
    assert refused(path) == ["ultralytics.nn.tasks.DetectionModel"]


def test_state_set_on_an_allowed_class_itself_is_refused(tmp_path: Path) -> None:
    # BUILD on the class object (not an instance) would setattr on Conv for every model.
    pickled = b"\x80\x02cultralytics.nn.modules.conv\nConv\nN}X\x03\x00\x00\x00actK\x01s\x86b."
    path = as_checkpoint(tmp_path / "base.pt", pickled)
    assert refused(path) == ["<state set on a global>.ultralytics.nn.modules.conv.Conv"]


def test_a_global_named_through_the_memo_is_still_seen(tmp_path: Path) -> None:
    command = RunsACommand("true")
    pickled = pickle.dumps([command, command, RunsACommand("false")], protocol=4)
    assert refused(as_checkpoint(tmp_path / "base.pt", pickled)) == [
        f"{os.system.__module__}.system"
    ]


def test_a_file_that_is_not_a_zip_checkpoint_is_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "base.pt"
    path.write_bytes(pickle.dumps({"epoch": 1}))  # a bare pickle: legacy format, unscannable
    with pytest.raises(BadInput, match=f"{FIELD}: models/base.pt is not a PyTorch checkpoint"):
        checkpoints.check_base(path, FIELD, "models/base.pt")


def test_a_base_model_uri_on_the_claim_is_scanned_before_anything_loads_it(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "pwned"
    as_checkpoint(
        (tmp_path / "claim" / "models").mkdir(parents=True) or tmp_path / "claim/models/base.pt",
        pickle.dumps(RunsACommand(f"touch {marker}"), protocol=2),
    )
    spec = parse_spec(
        {"model": "shapes", "baseModel": {"uri": "models/base.pt"}, "dataset": {"uri": "d"}}
    )
    config = Config(spec=spec, version=1, storage_root=tmp_path / "claim", workdir=tmp_path)

    with pytest.raises(BadInput, match=f"{FIELD}: models/base.pt is refused"):
        inputs.resolve_base(config)
    assert not marker.exists()


def test_the_trainers_own_reads_unpickle_with_weights_only(
    resumable_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    seen: list[Any] = []
    real = torch.load

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("weights_only"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    checkpoints.epoch_state(resumable_checkpoint)
    assert seen == [True]


@pytest.mark.parametrize(
    ("epoch", "planned", "state"),
    [(-1, 4, checkpoints.FINISHED), (3, 4, checkpoints.FINISHED), (2, 4, checkpoints.RESUMABLE)],
)
def test_a_last_pt_saved_at_the_final_epoch_is_finished_not_resumable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, epoch: int, planned: int, state: str
) -> None:
    # Fault point: SIGTERM after the last epoch's save, before Ultralytics' final strip.
    saved = {"epoch": epoch, "train_args": {"epochs": planned}}
    monkeypatch.setattr(checkpoints, "load", lambda path: saved)
    assert checkpoints.epoch_state(tmp_path / "last.pt") == state
