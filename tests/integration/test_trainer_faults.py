"""Verified means verified: faults in a version's own files, injected between two real runs of
the trainer (a subprocess with the env contract, the world's MinIO and MLflow). A corrupted
best.pt of a verified version is never published again: it is restored from a copy with the
recorded sha256. A last.pt truncated while training was interrupted is never resumed from and
never deleted: the run folder's content is moved aside and the version trains again. A base
model whose pickle would run code is refused before anything loads it. A pod killed in
Ultralytics' final phase (both weights rewritten in place) is finished from its sealed save.
"""

from __future__ import annotations

import os
import pickle
import signal
import zipfile
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient
from retrainer_contract import documents, faults, integrity, layout
from retrainer_demo import shapes
from retrainer_trainer import checkpoints, runfolder
from retrainer_world.world import World
from test_trainer_support import TINY, Claim, run_trainer, spec

pytestmark = pytest.mark.integration


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def sha(path: Path) -> str:
    return integrity.sha256_file(path)[0]


def claim_with_shapes(world: World, tmp_path: Path) -> Claim:
    claim = Claim(world, tmp_path / "claim", tmp_path / "work")
    shapes.generate_dataset(claim.root / "datasets" / "shapes", seed=3)
    return claim


def test_a_pod_killed_in_ultralytics_final_phase_is_finished_from_its_sealed_save_not_retrained(
    world: World, tmp_path: Path
) -> None:
    # Killed (SIGKILL, like a lost node) at the final validation: both weights files are
    # stripped in place by then, so neither matches the last epoch's record.
    claim = claim_with_shapes(world, tmp_path)
    model = f"final-{claim.token}"
    env = claim.env(spec(model, mlflow={"experiment": f"final-{claim.token}"}), 1)

    first = run_trainer({**env, faults.ENV: faults.TRAINER_FINAL_VALIDATION})
    assert first.rc == -signal.SIGKILL, first.explain()
    paths = layout.VersionPaths.for_version(claim.root, model, 1)
    record = runfolder.read_record(paths)
    assert record is not None and record.sealed and not record.finished
    assert sha(paths.last_checkpoint) != record.files["last.pt"].sha256
    assert not paths.production.exists()

    second = run_trainer(env)
    assert second.rc == 0, second.explain()
    assert second.named("train.state")[0]["checkpoint"] == "finished"
    assert second.named("weights.final_save_restored"), second.explain()
    assert second.named("train.start") == [] and second.named("run.moved_aside") == []
    assert second.named("train.final_phase_finished")
    assert sha(paths.production) == sha(paths.training_run)
    ckpt = checkpoints.load(paths.production)
    assert ckpt["epoch"] == -1 and ckpt.get("optimizer") is None, "stripped as Ultralytics does"
    assert not (paths.run_dir / runfolder.FINAL_SAVE).exists()

    mlflow = MlflowClient(world.mlflow_uri)
    (run_id,) = {e["runId"] for e in first.named("mlflow.run") + second.named("mlflow.run")}
    steps = sorted(m.step for m in mlflow.get_metric_history(run_id, "epoch"))
    assert steps == [1, 2], "each epoch trained and logged once"


def test_a_corrupted_best_pt_of_a_verified_version_comes_back_with_its_recorded_sha256(
    world: World, tmp_path: Path
) -> None:
    claim = claim_with_shapes(world, tmp_path)
    model = f"faults-best-{claim.token}"
    env = claim.env(spec(model, mlflow={"experiment": model}), 1)
    first = run_trainer(env)
    assert first.rc == 0, first.explain()
    paths = layout.VersionPaths.for_version(claim.root, model, 1)
    original = documents.read_json(paths.manifest)
    recorded = {a["name"]: a["sha256"] for a in original["artifacts"]}[layout.TRAINING_RUN]

    # The fault: best.pt and the production copy rot, the quick-access copy is lost; only the
    # MLflow copy in MinIO still has the recorded bytes.
    flip_a_byte(paths.training_run)
    flip_a_byte(paths.production)
    paths.quick_access.unlink()
    corrupted = sha(paths.training_run)

    again = run_trainer(env)

    assert again.rc == 0, again.explain()
    manifest = documents.read_json(paths.manifest)
    assert manifest["verification"]["verified"] is True
    weights = {a["name"]: a["sha256"] for a in manifest["artifacts"] if a["name"] != "metadata"}
    assert set(weights.values()) == {recorded}, "verified with the weights as trained, only"
    for path in (paths.training_run, paths.production, paths.quick_access):
        assert sha(path) == recorded
    mlflow_copy = next(a for a in manifest["artifacts"] if a["name"] == layout.MLFLOW)
    bucket, key = layout.parse_s3_uri(mlflow_copy["uri"])
    assert integrity.sha256_object(world.minio_client(), bucket, key)[0] == recorded
    (mismatch,) = again.named("weights.mismatch")
    assert mismatch["sha256"] == corrupted and mismatch["recorded"] == recorded
    (repaired,) = again.named("weights.repaired")
    assert repaired["source"] == layout.MLFLOW and repaired["sha256"] == recorded
    assert not again.named("epoch") and not again.named("train.start"), "nothing retrained"
    assert not [e for e in again.named("upload") if e["artifact"].endswith(".pt")]
    run = MlflowClient(world.mlflow_uri).get_run(manifest["mlflow"]["runId"])
    assert run.info.status == "FINISHED"


def test_a_last_pt_truncated_during_an_interrupted_training_is_moved_aside_not_resumed(
    world: World, tmp_path: Path
) -> None:
    claim = claim_with_shapes(world, tmp_path)
    model = f"faults-last-{claim.token}"
    env = claim.env(spec(model, training={**TINY, "epochs": 3}, mlflow={"experiment": model}), 1)

    def after_epoch_1(event: dict[str, Any]) -> bool:
        return event.get("event") == "epoch" and event.get("epoch") == 1

    first = run_trainer(env, stop_when=after_epoch_1)
    assert first.rc == 143, first.explain()
    (run_id,) = {e["runId"] for e in first.named("mlflow.run")}
    mlflow = MlflowClient(world.mlflow_uri)
    assert mlflow.get_run(run_id).info.status == "KILLED", "a preempted run is not left RUNNING"

    # The fault: the pod was killed while Ultralytics wrote last.pt.
    paths = layout.VersionPaths.for_version(claim.root, model, 1)
    data = paths.last_checkpoint.read_bytes()
    paths.last_checkpoint.write_bytes(data[: len(data) // 3])
    truncated = sha(paths.last_checkpoint)
    owner = paths.owner.read_text()

    again = run_trainer(env)

    assert again.rc == 0, again.explain()
    (moved,) = again.named("run.moved_aside")
    aside = Path(moved["to"])
    assert aside.parent == paths.train_dir and aside.name.startswith("retrain_v1.unreadable-")
    assert sha(aside / "weights" / "last.pt") == truncated, "the bytes are kept, not deleted"
    assert (aside / "results.csv").is_file()
    assert paths.owner.read_text() == owner, "version 1 keeps its owner throughout"
    assert again.named("train.state")[0]["checkpoint"] == "none"
    assert again.named("train.start")[0]["resume"] is False
    assert [e["epoch"] for e in again.named("epoch")] == [1, 2, 3]
    assert documents.read_json(paths.manifest)["verification"]["verified"] is True
    assert {e["runId"] for e in again.named("mlflow.run")} == {run_id}
    assert mlflow.get_run(run_id).info.status == "FINISHED"


class RunsACommand:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (self.command,))


def test_a_base_model_whose_pickle_would_run_code_exits_3_before_anything_loads_it(
    world: World, tmp_path: Path
) -> None:
    claim = claim_with_shapes(world, tmp_path)
    marker = tmp_path / "pwned"
    base = claim.root / "models" / "base.pt"
    base.parent.mkdir(parents=True)
    with zipfile.ZipFile(base, "w") as archive:  # a complete archive, as torch.load reads one
        archive.writestr("archive/data.pkl", pickle.dumps(RunsACommand(f"touch {marker}")))
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/version", "3\n")
    model = f"faults-base-{claim.token}"

    result = run_trainer(claim.env(spec(model, baseModel={"uri": "models/base.pt"}), 1))

    assert not marker.exists(), "the pickled command never ran"
    assert result.rc == 3, result.explain()
    (failed,) = result.named("failed")
    assert failed["message"].startswith("spec.baseModel.uri: models/base.pt is refused")
    assert f"{os.system.__module__}.system (call)" in failed["message"]
    assert not result.named("mlflow.run")
