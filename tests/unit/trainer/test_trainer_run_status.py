"""Once the MLflow run of version N is open, the trainer never leaves it RUNNING: SIGTERM ends
it KILLED, any failure FAILED. The pipeline runs for real on a tmp claim up to training; MLflow
is a fake tracker and the fault is raised from the training step (`pipeline._train`)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, ClassVar

import pytest
from retrainer_contract import layout
from retrainer_trainer import pipeline
from retrainer_trainer.config import Config, parse_spec
from retrainer_trainer.errors import BadInput, CorruptedWeights, Preempted, TrainerError
from retrainer_trainer.tracking import RunRef


class FakeTracker:
    """The part of TrackerProcess the pipeline uses before training, plus how runs ended."""

    started: ClassVar[list[FakeTracker]] = []

    def __init__(self, tracking_uri: str) -> None:
        self.contacted: list[str] = []  # the calls that reach MLflow
        self.ended: list[tuple[str, str]] = []
        self.finished: list[tuple[str, Path]] = []
        self.closed = False
        FakeTracker.started.append(self)

    def __enter__(self) -> FakeTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.closed = True

    def ping(self) -> None:
        self.contacted.append("ping")

    def open_run(self, *args: Any) -> RunRef:
        self.contacted.append("open_run")
        return RunRef("1", "run-1", "file:///nowhere", "", reused=False)

    def log_params(self, run_id: str, params: Any) -> None:
        pass

    def end(self, run_id: str, status: str) -> None:
        self.ended.append((run_id, status))

    def finish(self, run_id: str, manifest: Path) -> None:
        self.finished.append((run_id, manifest))


@pytest.fixture
def config(tmp_path: Path, shapes_dataset: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    shutil.copytree(shapes_dataset, tmp_path / "claim" / "datasets" / "shapes")
    FakeTracker.started = []
    monkeypatch.setattr(pipeline, "TrackerProcess", FakeTracker)
    monkeypatch.setattr(pipeline, "_device", lambda config: "cpu")  # no Ultralytics setup
    spec = {
        "model": "shapes",
        "baseModel": {"architecture": "yolo11n.yaml"},
        "dataset": {"uri": "datasets/shapes"},
    }
    return Config(
        spec=parse_spec(spec),
        version=1,
        storage_root=tmp_path / "claim",
        workdir=tmp_path / "work",
        uid="u1",
        tracking_uri="http://mlflow.invalid",
    )


@pytest.mark.parametrize(
    ("fault", "status"),
    [
        (Preempted(), "KILLED"),
        (TrainerError("MinIO went away"), "FAILED"),
        (BadInput("spec.training.extraArgs: no such argument"), "FAILED"),
        (CorruptedWeights("best.pt does not match its record"), "FAILED"),
        (RuntimeError("CUDA error: an illegal memory access"), "FAILED"),
    ],
    ids=["sigterm", "infrastructure", "bad-input", "corrupted-weights", "crash"],
)
def test_a_run_that_stops_after_its_mlflow_run_opened_ends_that_run(
    config: Config, monkeypatch: pytest.MonkeyPatch, fault: BaseException, status: str
) -> None:
    def training_fails(*args: Any) -> Any:
        raise fault  # fault point: the training step

    monkeypatch.setattr(pipeline, "_train", training_fails)

    with pytest.raises(type(fault)):
        pipeline.run(config)

    (tracker,) = FakeTracker.started
    assert tracker.ended == [("run-1", status)]
    assert not (config.storage_root / "shapes" / "models").exists()


def test_bad_input_found_before_mlflow_opens_no_run(config: Config) -> None:
    shutil.rmtree(config.storage_root / "datasets" / "shapes" / "labels")
    (config.storage_root / "datasets" / "shapes" / "data.yaml").unlink()

    with pytest.raises(BadInput, match=r"data\.yaml not found"):
        pipeline.run(config)

    # The tracker's process was started (it imports MLflow meanwhile), never asked to contact
    # MLflow, and closed.
    assert [(t.contacted, t.closed) for t in FakeTracker.started] == [([], True)]


def test_a_failure_logging_the_params_ends_the_run_failed(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(self: FakeTracker, run_id: str, params: Any) -> None:
        raise RuntimeError("MLflow: INVALID_PARAMETER_VALUE")  # fault point: log_params

    monkeypatch.setattr(FakeTracker, "log_params", refused)

    with pytest.raises(RuntimeError, match="INVALID_PARAMETER_VALUE"):
        pipeline.run(config)

    (tracker,) = FakeTracker.started
    assert tracker.ended == [("run-1", "FAILED")]


def test_a_rerun_of_a_verified_version_completes_its_mlflow_run(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The earlier attempt verified the version and wrote the manifest, then died before the
    # manifest reached MLflow and the run was ended (tests/integration: a real kill).
    done = {"version": 1, "mlflow": {"runId": "run-7"}, "metrics": {}}
    monkeypatch.setattr(pipeline, "_already_done", lambda config, paths, client: done)

    assert pipeline.run(config) is done

    (tracker,) = FakeTracker.started
    paths = layout.VersionPaths.for_version(config.storage_root, "shapes", 1)
    assert tracker.finished == [("run-7", paths.manifest)]
