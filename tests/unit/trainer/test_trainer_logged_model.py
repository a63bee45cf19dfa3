"""The tracker against a local MLflow store (sqlite and a folder: no server, no network): a
version's run gets its datasets, a logged model of its weights that `mlflow.pyfunc` loads and
runs, a registered version made from that model with its tags, description and the challenger
alias, and a handful of tags; a rerun finds all of it again and uploads nothing twice."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from mlflow.tracking._tracking_service import utils as tracking_utils
from retrainer_contract import tracking
from retrainer_demo import shapes
from retrainer_trainer import pyfunc_model
from retrainer_trainer.mlflow_record import DatasetRef, VersionFacts
from retrainer_trainer.tracking import RunRef, Tracker

HOLDOUT = DatasetRef("shapes-holdout", tracking.CONTEXT_EVALUATION, "s3://h/shapes", "c" * 64)
DATASETS = [
    DatasetRef("shapes", tracking.CONTEXT_TRAINING, "pvc://models/datasets/shapes", "a" * 64),
    DatasetRef("b1", tracking.CONTEXT_CORRECTIONS, "s3://c/b1", "b" * 64, {"applied": 2}),
    HOLDOUT,
]
FACTS = VersionFacts(
    model="shapes",
    version=1,
    retrainjob="shapes-b1",
    namespace="team-a",
    uid="u-1",
    base="yolo11n.yaml",
    imgsz=64,
    lineage={"datasetSha256": "a" * 64},
    champion_alias="champion",
)
EVALUATION = {"decision": "NoChampion", "reason": "there is no champion yet", "metric": "mAP50"}


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A sqlite store; artifacts under tmp_path (the default root is relative to the cwd). The
    fluent client's URI, which log_model sets, is put back afterwards."""
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setattr(tracking_utils, "_tracking_uri", None)
    yield uri


def events(capsys: pytest.CaptureFixture[str], name: str) -> list[dict[str, Any]]:
    lines = capsys.readouterr().out.splitlines()
    found = [json.loads(line) for line in lines if line.startswith("{")]
    return [e for e in found if e.get("event") == name]


def aliases(client: MlflowClient) -> dict[str, str]:
    return {k: str(v) for k, v in client.get_registered_model("shapes").aliases.items()}


def train_once(tracker: Tracker, weights: Path) -> tuple[RunRef, str, str]:
    """What the pipeline does with MLflow for one version: the run id, model id and version."""
    run = tracker.open_run("shapes", "u-1", "team-a", "shapes", 1, "yolo11n.yaml")
    tracker.log_datasets(run.run_id, DATASETS)
    for epoch in (1, 2):
        tracker.log_metrics(run.run_id, epoch, {"mAP50": 0.1 * epoch, "epoch": epoch})
    tracker.upload(run.run_id, weights, "models")
    model = tracker.log_model(run, weights, FACTS)
    with tracker.scoring(model):
        tracker.log_metrics(run.run_id, 0, {"holdout.mAP50": 0.5, "holdout.champion.mAP50": 0.4})
    version = tracker.register("shapes", run.run_id, model, EVALUATION)
    return run, model.model_id, version


def test_a_version_is_a_logged_model_with_its_datasets_registered_from_it(
    store: str,
    tmp_path: Path,
    ultralytics_checkpoint: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    weights = shutil.copy(ultralytics_checkpoint, tmp_path / "retrained_v1.pt")
    run, model_id, version = train_once(Tracker(store), Path(weights))
    client = MlflowClient(store, store)

    experiment = client.get_experiment(run.experiment_id)
    assert experiment.tags[tracking.TAG_EXPERIMENT_KIND] == tracking.EXPERIMENT_KIND_TRAINING
    stored = client.get_run(run.run_id)
    inputs = {
        i.dataset.name: (
            {t.key: t.value for t in i.tags}[tracking.TAG_DATASET_CONTEXT],
            i.dataset.digest,
            json.loads(i.dataset.source)["uri"],
        )
        for i in stored.inputs.dataset_inputs
    }
    assert inputs == {d.name: (d.context, d.sha256[:32], d.uri) for d in DATASETS}
    assert [o.model_id for o in stored.outputs.model_outputs] == [model_id]
    assert stored.outputs.model_outputs[0].step == 2, "the model of the last epoch"
    # Few tags on the run: what the uploads were is one artifact, not a tag per artifact.
    mine = [k for k in stored.data.tags if k.startswith("retrainer.")]
    assert len(mine) <= 8 and not [k for k in mine if k.startswith(tracking.TAG_SHA_PREFIX)]
    record = json.loads(
        Path(
            client.download_artifacts(run.run_id, tracking.UPLOADS_ARTIFACT, str(tmp_path))
        ).read_text()
    )
    assert record["artifacts"]["models/retrained_v1.pt"]["bytes"] == Path(weights).stat().st_size

    model = client.get_logged_model(model_id)
    assert model.status.to_int() == model.status.READY.to_int()
    assert model.source_run_id == run.run_id and model.name == "shapes-v1"
    assert (
        model.tags[tracking.TAG_SHA256] == record["artifacts"]["models/retrained_v1.pt"]["sha256"]
    )
    assert model.params["datasetSha256"] == "a" * 64
    metrics = {(m.key, m.dataset_name, m.dataset_digest) for m in model.metrics or []}
    assert ("holdout.mAP50", HOLDOUT.name, HOLDOUT.digest) in metrics
    assert ("mAP50", None, None) in metrics  # the last epoch's
    assert not [m for m in metrics if m[0].startswith("holdout.champion.")], "not this model's"

    registered = client.get_model_version("shapes", version)
    assert registered.source == f"models:/{model_id}" and registered.run_id == run.run_id
    assert registered.tags[tracking.TAG_DECISION] == "NoChampion"
    assert registered.tags[tracking.TAG_VERSION] == "1"
    assert registered.tags[tracking.TAG_RETRAINJOB] == "shapes-b1"
    assert "Decision: NoChampion" in registered.description
    assert "there is no champion yet" in registered.description
    assert aliases(client) == {tracking.CHALLENGER_ALIAS: version}

    loaded = mlflow.pyfunc.load_model(f"models:/shapes@{tracking.CHALLENGER_ALIAS}")
    image = sorted((shapes.generate_holdout(tmp_path / "h", count=1) / "images").rglob("*.png"))
    detections = loaded.predict([str(image[0])])
    assert tuple(detections.columns) == pyfunc_model.COLUMNS
    assert set(detections["image"]) <= {str(image[0])}

    # A rerun (a new pod): the same run, model and version; the weights are not uploaded again.
    capsys.readouterr()
    again_run, again_model, again_version = train_once(Tracker(store), Path(weights))
    assert (again_run.run_id, again_model, again_version) == (run.run_id, model_id, version)
    assert [e["artifact"] for e in events(capsys, "upload.skip")] == ["models/retrained_v1.pt"]
    assert len(client.search_logged_models([run.experiment_id])) == 1
    assert len(client.get_run(run.run_id).outputs.model_outputs) == 1


def test_a_later_version_keeps_the_challenger_from_an_earlier_one_finishing_late(
    store: str, tmp_path: Path, ultralytics_checkpoint: Path
) -> None:
    tracker = Tracker(store)
    client = MlflowClient(store, store)
    versions = {}
    for number in (2, 1):  # v2 evaluated first, then v1 (trained beside it) finishes
        run = tracker.open_run("shapes", f"u-{number}", "team-a", "shapes", number, "v0")
        weights = shutil.copy(ultralytics_checkpoint, tmp_path / f"retrained_v{number}.pt")
        facts = dataclasses.replace(FACTS, version=number, uid=f"u-{number}")
        model = tracker.log_model(run, Path(weights), facts)
        versions[number] = tracker.register("shapes", run.run_id, model, EVALUATION)

    assert aliases(client) == {tracking.CHALLENGER_ALIAS: versions[2]}
