"""Every version a first-class MLflow model, against the world's MLflow and MinIO: the real
trainer trains v1 of a line under spec.promotion, then MLflow is asked what a user would see.
The run has its three datasets (by digest and role) and its logged model; the registered
version was made from that model, with Retrainer's tags, a description of the decision and the
`challenger` alias; the run keeps a handful of tags; and `mlflow.pyfunc.load_model` gives a
model that finds boxes in a generated shapes image. A rerun adds no second model or version.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow.entities import LoggedModelStatus
from mlflow.tracking import MlflowClient
from mlflow.tracking._tracking_service import utils as tracking_utils
from retrainer_contract import documents, layout, tracking
from retrainer_demo import shapes
from retrainer_trainer import pyfunc_model
from retrainer_world.world import World
from test_trainer_support import Claim, Run, run_trainer, spec

pytestmark = pytest.mark.integration


@dataclass
class Trained:
    claim: Claim
    model: str
    env: dict[str, str]
    first: Run
    manifest: dict[str, Any]
    client: MlflowClient

    @property
    def paths(self) -> layout.VersionPaths:
        return layout.VersionPaths.for_version(self.claim.root, self.model, 1)


@pytest.fixture(scope="module")
def trained(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    claim = Claim(world, tmp_path_factory.mktemp("claim"), tmp_path_factory.mktemp("work"))
    shapes.generate_dataset(claim.root / "datasets" / "shapes", seed=3)
    shapes.write_corrections(claim.root / "corrections" / "b1", seed=3)
    shapes.generate_holdout(claim.root / "holdouts" / "shapes", seed=3, count=4)
    model = f"mlmodel-{claim.token}"
    body = spec(
        model,
        corrections={"uri": "corrections/b1"},
        mlflow={"experiment": model, "registeredModel": model},
        promotion={"metric": "mAP50", "holdout": {"uri": "holdouts/shapes"}},
    )
    env = claim.env(body, 1)
    first = run_trainer(env)
    assert first.rc == 0, first.explain()
    paths = layout.VersionPaths.for_version(claim.root, model, 1)
    client = MlflowClient(world.mlflow_uri, world.mlflow_uri)
    yield Trained(claim, model, env, first, documents.read_json(paths.manifest), client)


def logged_model_id(trained: Trained) -> str:
    run = trained.client.get_run(trained.manifest["mlflow"]["runId"])
    (output,) = run.outputs.model_outputs
    return str(output.model_id)


def test_the_run_has_its_three_datasets_by_digest_and_role(trained: Trained) -> None:
    run = trained.client.get_run(trained.manifest["mlflow"]["runId"])
    lineage, evaluation = trained.manifest["lineage"], trained.manifest["evaluation"]

    found = {
        {t.key: t.value for t in i.tags}[tracking.TAG_DATASET_CONTEXT]: i.dataset
        for i in run.inputs.dataset_inputs
    }

    assert {context: d.digest for context, d in found.items()} == {
        tracking.CONTEXT_TRAINING: tracking.dataset_digest(lineage["datasetSha256"]),
        tracking.CONTEXT_CORRECTIONS: tracking.dataset_digest(lineage["correctionsSha256"]),
        tracking.CONTEXT_EVALUATION: tracking.dataset_digest(evaluation["holdoutSha256"]),
    }
    assert '"pvc://models/datasets/shapes"' in found[tracking.CONTEXT_TRAINING].source
    assert lineage["datasetSha256"] in found[tracking.CONTEXT_TRAINING].profile
    experiment = trained.client.get_experiment(run.info.experiment_id)
    assert experiment.tags[tracking.TAG_EXPERIMENT_KIND] == tracking.EXPERIMENT_KIND_TRAINING


def test_the_version_is_a_logged_model_of_its_run_tied_to_its_holdout_scores(
    trained: Trained,
) -> None:
    run_id = trained.manifest["mlflow"]["runId"]
    weights = {a["name"]: a["sha256"] for a in trained.manifest["artifacts"]}

    model = trained.client.get_logged_model(logged_model_id(trained))

    assert model.source_run_id == run_id and model.name == f"{trained.model}-v1"
    assert model.status == LoggedModelStatus.READY
    assert model.tags[tracking.TAG_SHA256] == weights[layout.PRODUCTION]
    assert model.params["epochs"] == "2"
    assert model.params["datasetSha256"] == trained.manifest["lineage"]["datasetSha256"]
    holdout = trained.manifest["evaluation"]["holdoutSha256"]
    scores = {(m.key, m.dataset_digest) for m in model.metrics or []}
    assert ("holdout.mAP50", tracking.dataset_digest(holdout)) in scores
    assert ("mAP50", None) in scores or ("mAP50", "") in scores  # the last epoch's


def test_the_registered_version_comes_from_the_logged_model_with_tags_and_the_decision(
    trained: Trained,
) -> None:
    registered = trained.manifest["mlflow"]["registeredModelVersion"]
    evaluation = trained.manifest["evaluation"]
    weights = {a["name"]: a["sha256"] for a in trained.manifest["artifacts"]}

    version = trained.client.get_model_version(trained.model, registered)

    assert version.source == f"models:/{logged_model_id(trained)}"
    assert version.run_id == trained.manifest["mlflow"]["runId"]
    assert version.tags[tracking.TAG_VERSION] == "1"
    assert version.tags[tracking.TAG_SHA256] == weights[layout.PRODUCTION]
    assert version.tags[tracking.TAG_DECISION] == evaluation["decision"] == "NoChampion"
    assert version.tags[tracking.TAG_RETRAINJOB] == trained.env["RETRAINER_NAME"]
    assert f"Decision: {evaluation['decision']}" in version.description
    assert evaluation["reason"] in version.description
    # The trainer names the latest evaluated version; the champion is the operator's alias.
    aliases = {
        k: str(v) for k, v in trained.client.get_registered_model(trained.model).aliases.items()
    }
    assert aliases == {tracking.CHALLENGER_ALIAS: registered}


def test_the_run_keeps_a_handful_of_tags_and_one_record_of_its_uploads(
    trained: Trained, world: World
) -> None:
    run = trained.client.get_run(trained.manifest["mlflow"]["runId"])

    mine = sorted(k for k in run.data.tags if k.startswith("retrainer."))

    assert len(mine) <= 8, mine
    assert not [k for k in mine if k.startswith(tracking.TAG_SHA_PREFIX)]
    bucket, prefix = layout.parse_s3_uri(run.info.artifact_uri)
    stored = world.minio_client().get_object(bucket, f"{prefix}/{tracking.UPLOADS_ARTIFACT}")
    record = json.loads(stored.read())
    weights = {a["name"]: a for a in trained.manifest["artifacts"]}
    entry = record["artifacts"]["models/retrained_v1.pt"]
    assert entry == {
        "sha256": weights[layout.MLFLOW]["sha256"],
        "bytes": weights[layout.MLFLOW]["size"],
    }
    assert tracking.MANIFEST_ARTIFACT in record["artifacts"]


@pytest.fixture
def fluent(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """This process as a user's: MLflow's fluent client on the world, MinIO's credentials."""
    for key, value in world.env().items():
        if key.startswith(("MLFLOW_", "AWS_")):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    monkeypatch.setattr(tracking_utils, "_tracking_uri", None)
    mlflow.set_tracking_uri(world.mlflow_uri)


def test_the_registered_version_loads_with_pyfunc_and_finds_boxes(
    trained: Trained, fluent: None, tmp_path: Path
) -> None:
    registered = trained.manifest["mlflow"]["registeredModelVersion"]
    images = sorted(
        (shapes.generate_holdout(tmp_path / "new", seed=9, count=2) / "images").glob("*")
    )
    # As the operator would once the version verified and was promoted.
    trained.client.set_registered_model_alias(trained.model, "champion", registered)

    for uri in (f"models:/{trained.model}/{registered}", f"models:/{trained.model}@champion"):
        # A 2-epoch model is unsure of everything: a low threshold shows it finds boxes.
        model = mlflow.pyfunc.load_model(uri, model_config={"conf": 0.0001})
        found = model.predict([str(p) for p in images])

        assert tuple(found.columns) == pyfunc_model.COLUMNS
        assert len(found) > 0, uri
        assert set(found["image"]) <= {str(p) for p in images}
        assert set(found["class_name"]) <= set(shapes.NAMES)
        assert ((found["x2"] > found["x1"]) & (found["y2"] > found["y1"])).all()
    requirements = mlflow.pyfunc.get_model_dependencies(f"models:/{trained.model}/{registered}")
    pins = Path(requirements).read_text()
    assert "ultralytics==" in pins and "torch==" in pins


def test_a_rerun_finds_the_model_and_the_version_again_and_uploads_no_weights(
    trained: Trained,
) -> None:
    # A flipped byte in the quick-access copy: the rerun repairs it without retraining.
    data = bytearray(trained.paths.quick_access.read_bytes())
    data[len(data) // 2] ^= 0x01
    trained.paths.quick_access.write_bytes(bytes(data))

    again = run_trainer(trained.env)

    assert again.rc == 0, again.explain()
    assert again.named("manifest.stale") and not again.named("epoch")
    assert not [e for e in again.named("upload") if e["artifact"].endswith(".pt")]
    assert not again.named("mlflow.logged_model") and again.named("mlflow.register_found")
    run = trained.client.get_run(trained.manifest["mlflow"]["runId"])
    assert len(run.outputs.model_outputs) == 1
    assert len(trained.client.search_logged_models([run.info.experiment_id])) == 1
    assert len(trained.client.search_model_versions(f"name='{trained.model}'")) == 1
