"""The Ultralytics adapter's pure parts: devices, arguments, metric names, checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
from retrainer_contract import layout
from retrainer_trainer import checkpoints, runfolder, training
from retrainer_trainer.errors import BadInput


def test_gpus_choose_the_device() -> None:
    assert training.device_for(0) == "cpu"
    assert training.device_for(1) == 0
    assert training.device_for(4) == [0, 1, 2, 3]


def test_extra_args_strings_become_numbers_and_unknown_ones_are_bad_input() -> None:
    assert training.coerce_args({"lr0": "0.02", "mosaic": "0", "cos_lr": "true"}) == {
        "lr0": 0.02, "mosaic": 0, "cos_lr": True,
    }  # fmt: skip
    with pytest.raises(BadInput, match=r"spec\.training\.extraArgs"):
        training.coerce_args({"not_an_arg": 1})


def test_ultralytics_metric_names_map_to_the_contract() -> None:
    raw = {"metrics/precision(B)": 0.5, "metrics/mAP50-95(B)": 0.25, "val/box_loss": 3.0}
    assert training.standard_metrics(raw) == {"precision": 0.5, "mAP50_95": 0.25}


def test_a_truncated_checkpoint_is_not_a_checkpoint_and_an_empty_run_folder_trains_anew(
    tmp_path: Path,
) -> None:
    (tmp_path / "last.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(checkpoints.NotACheckpoint, match="not a PyTorch zip checkpoint"):
        checkpoints.epoch_state(tmp_path / "last.pt")
    paths = layout.VersionPaths.for_version(tmp_path, "shapes", 1)
    assert runfolder.assess(paths) == runfolder.Plan(runfolder.NONE)


def test_results_csv_rows_become_epoch_metrics(tmp_path: Path) -> None:
    (tmp_path / "results.csv").write_text(
        "epoch,time,metrics/precision(B),metrics/recall(B),metrics/mAP50(B),metrics/mAP50-95(B)\n"
        "1,2.0,0.1,0.2,0.3,0.4\n2,4.0,0.5,0.6,0.7,0.8\n"
    )
    rows = training.read_results_csv(tmp_path)
    assert rows[1] == {"epoch": 2.0, "precision": 0.5, "recall": 0.6, "mAP50": 0.7, "mAP50_95": 0.8}
