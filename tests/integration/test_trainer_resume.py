"""Preemption: SIGTERM in the middle of training, then the next pod resumes from last.pt and
keeps logging into the same MLflow run (the world's real MLflow, dataset on the claim). A
SIGTERM that lands after Ultralytics wrote last.pt but before the trainer recorded it waits
for the record (preemption.py): the next pod resumes instead of training from epoch 1."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient
from retrainer_contract import layout
from retrainer_demo import shapes
from retrainer_world.world import World
from test_trainer_support import TINY, Claim, run_trainer, spec

pytestmark = pytest.mark.integration


def four_epochs(
    world: World, tmp_path: Path, name: str, seed: int
) -> tuple[Claim, str, dict[str, str]]:
    """A claim with a generated dataset, and the env of v1 of line `name`: 4 epochs."""
    claim = Claim(world, tmp_path / "claim", tmp_path / "work")
    shapes.generate_dataset(claim.root / "datasets" / "shapes", seed=seed)
    model = f"{name}-{claim.token}"
    body = spec(model, training={**TINY, "epochs": 4}, mlflow={"experiment": model})
    return claim, model, claim.env(body, 1)


def test_sigterm_during_epoch_2_of_4_resumes_from_the_checkpoint_in_one_mlflow_run(
    world: World, tmp_path: Path
) -> None:
    claim, model, env = four_epochs(world, tmp_path, "resume", seed=5)

    def in_epoch_2(event: dict[str, Any]) -> bool:
        return event.get("event") == "epoch" and event.get("epoch") == 1

    first = run_trainer(env, stop_when=in_epoch_2)
    assert first.rc == 143, first.explain()
    paths = layout.VersionPaths.for_version(claim.root, model, 1)
    assert paths.last_checkpoint.is_file()
    assert not paths.production.exists(), "nothing goes to models/ for an unfinished version"
    assert first.termination == {
        "error": {"reason": "Preempted", "message": "SIGTERM received", "exitCode": 143}
    }

    second = run_trainer(env)
    assert second.rc == 0, second.explain()
    assert second.named("train.state")[0]["checkpoint"] == "resumable"
    assert second.named("train.start")[0]["resume"] is True
    assert [e["epoch"] for e in second.named("epoch")] == [2, 3, 4]
    assert paths.production.is_file()

    mlflow = MlflowClient(world.mlflow_uri)
    run_ids = {e["runId"] for e in first.named("mlflow.run") + second.named("mlflow.run")}
    assert len(run_ids) == 1
    (run_id,) = run_ids
    steps = sorted(m.step for m in mlflow.get_metric_history(run_id, "epoch"))
    assert steps == [1, 2, 3, 4]
    experiment = mlflow.get_experiment_by_name(model)
    assert experiment is not None
    assert len(mlflow.search_runs([experiment.experiment_id])) == 1


# The hook: the trainer's record of epoch 2's save (runfolder.record), entered right after
# Ultralytics wrote that epoch's last.pt; the process sends itself SIGTERM there, before the
# record is written, as a kubelet evicting the pod at that moment would.
SIGTERM_AT_THE_SECOND_SAVE = """
import os, signal, sys
from retrainer_trainer import runfolder
original = runfolder.record
saves = []
def record(paths, *, finished, sealed=False):
    saves.append(finished)
    if len(saves) == 2:
        os.kill(os.getpid(), signal.SIGTERM)
    original(paths, finished=finished, sealed=sealed)
runfolder.record = record
from retrainer_trainer.__main__ import main
sys.exit(main())
"""


def test_sigterm_between_writing_last_pt_and_recording_it_resumes_after_that_epoch(
    world: World, tmp_path: Path
) -> None:
    _, _, env = four_epochs(world, tmp_path, "resume-save", seed=6)

    first = run_trainer(env, command=[sys.executable, "-c", SIGTERM_AT_THE_SECOND_SAVE])

    assert first.rc == 143, first.explain()
    assert [e["epoch"] for e in first.named("epoch")] == [1, 2], "held until epoch 2 was logged"
    second = run_trainer(env)
    assert second.rc == 0, second.explain()
    assert second.named("run.moved_aside") == [], "last.pt matched its record"
    assert second.named("train.state")[0]["checkpoint"] == "resumable"
    assert [e["epoch"] for e in second.named("epoch")] == [3, 4]
    (run_id,) = {e["runId"] for e in first.named("mlflow.run") + second.named("mlflow.run")}
    steps = sorted(
        m.step for m in MlflowClient(world.mlflow_uri).get_metric_history(run_id, "epoch")
    )
    assert steps == [1, 2, 3, 4], "each epoch trained and logged once"
