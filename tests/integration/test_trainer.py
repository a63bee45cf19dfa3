"""The trainer end to end against the world's real MinIO and MLflow: v1 from an architecture
with the dataset in MinIO, v2 from `latest` with corrections on the claim, then a corrupted
copy that verification catches and a rerun repairs. The trainer runs as a subprocess with the
env contract, as in the pod. Tests in this module build on each other's versions, in order.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient
from retrainer_contract import documents, integrity, layout
from retrainer_demo import shapes
from retrainer_world.world import World
from test_trainer_support import Claim, Run, run_trainer, spec

pytestmark = pytest.mark.integration


@dataclass
class Line:
    """One model line under test: its claim, names in MLflow, and the v1 run."""

    claim: Claim
    model: str
    experiment: str
    registered: str
    v1: Run

    @property
    def v1_spec(self) -> dict[str, Any]:
        return line_spec(self.model, self.experiment, self.registered, self.claim.token)


def line_spec(model: str, experiment: str, registered: str, token: str) -> dict[str, Any]:
    return spec(
        model,
        dataset={"uri": f"s3://datasets/trainer-{token}/shapes"},
        mlflow={"experiment": experiment, "registeredModel": registered},
        promotion={"metric": "mAP50", "holdout": {"uri": "holdouts/shapes"}},
    )


@pytest.fixture(scope="module")
def line(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Line]:
    claim = Claim(world, tmp_path_factory.mktemp("claim"), tmp_path_factory.mktemp("work"))
    source = tmp_path_factory.mktemp("source")
    shapes.generate_dataset(source / "shapes", seed=0)
    shapes.upload_folder(
        world.minio_client(), "datasets", f"trainer-{claim.token}/shapes", source / "shapes"
    )
    shapes.write_corrections(claim.root / "corrections" / "b1", seed=0)
    shapes.generate_holdout(claim.root / "holdouts" / "shapes", seed=0, count=6)
    model = f"shapes-{claim.token}"
    experiment, registered = f"trainer-{claim.token}", f"shapes-{claim.token}"
    v1 = run_trainer(claim.env(line_spec(model, experiment, registered, claim.token), 1))
    yield Line(claim, model, experiment, registered, v1)


def manifest_of(line: Line, version: int) -> dict[str, Any]:
    paths = layout.VersionPaths.for_version(line.claim.root, line.model, version)
    return documents.read_json(paths.manifest)


def test_v1_lands_in_four_locations_with_one_sha256(line: Line, world: World) -> None:
    assert line.v1.rc == 0, line.v1.explain()
    manifest = manifest_of(line, 1)
    by_name = {a["name"]: a for a in manifest["artifacts"]}
    assert list(by_name) == ["production", "quickAccess", "trainingRun", "metadata", "mlflow"]
    weights = {by_name[n]["sha256"] for n in ("production", "quickAccess", "trainingRun", "mlflow")}
    assert len(weights) == 1
    paths = layout.VersionPaths.for_version(line.claim.root, line.model, 1)
    for path in (paths.production, paths.quick_access, paths.training_run):
        assert integrity.sha256_file(path)[0] in weights
    bucket, key = layout.parse_s3_uri(by_name["mlflow"]["uri"])
    assert key.endswith("/artifacts/models/retrained_v1.pt")
    assert integrity.sha256_object(world.minio_client(), bucket, key)[0] in weights
    assert manifest["verification"]["verified"] is True
    assert {c["name"] for c in manifest["verification"]["checks"] if c["ok"]} == set(by_name)
    assert set(manifest["metrics"]) == {"precision", "recall", "mAP50", "mAP50_95"}
    assert line.v1.termination is not None and line.v1.termination["version"] == 1


def test_v1_metadata_describes_weights_dataset_and_lineage(line: Line) -> None:
    paths = layout.VersionPaths.for_version(line.claim.root, line.model, 1)
    metadata = documents.read_json(paths.metadata)
    assert metadata["model"] == line.model and metadata["version"] == 1
    assert metadata["weights"]["sha256"] == integrity.sha256_file(paths.production)[0]
    assert metadata["lineage"]["baseModel"] == "yolo11n.yaml"
    assert metadata["lineage"]["trainSamples"] == 16 and metadata["lineage"]["valSamples"] == 8
    assert metadata["dataset"]["splits"]["train"]["instances"] > 0
    assert metadata["training"]["epochs"] == 2
    assert (
        metadata["locations"]["production"] == f"pvc://models/{line.model}/models/retrained_v1.pt"
    )


def test_v1_mlflow_run_has_params_epoch_metrics_and_artifacts_in_minio(
    line: Line, world: World
) -> None:
    mlflow = MlflowClient(world.mlflow_uri)
    run_id = manifest_of(line, 1)["mlflow"]["runId"]
    run = mlflow.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["epochs"] == "2" and run.data.tags["retrainer.version"] == "1"
    history = mlflow.get_metric_history(run_id, "mAP50")
    assert sorted(m.step for m in history) == [1, 2]
    assert sorted(m.value for m in mlflow.get_metric_history(run_id, "epoch")) == [1.0, 2.0]
    minio = world.minio_client()
    root = run.info.artifact_uri  # s3://mlflow/<experiment>/<run>/artifacts
    bucket, prefix = layout.parse_s3_uri(root)
    keys = {
        o.object_name[len(prefix) + 1 :]
        for o in minio.list_objects(bucket, prefix=f"{prefix}/", recursive=True)
    }
    for expected in ("models/retrained_v1.pt", "retraining_dataset_metadata.json",
                     "corrections_applied.json", "data.yaml", "manifest.json"):  # fmt: skip
        assert expected in keys
    assert any(k.startswith("plots/") and k.endswith(".png") for k in keys)
    stored = json.loads(minio.get_object(bucket, f"{prefix}/manifest.json").read())
    assert stored["verification"]["verified"] is True
    # Each weight file went up exactly once (Ultralytics' own MLflow callback is off).
    uploads = [e["artifact"] for e in line.v1.named("upload")]
    assert uploads.count("models/retrained_v1.pt") == 1
    assert not any(k.startswith("weights/") for k in keys)
    # Registered, but the alias (the champion) is the operator's to move, after verification.
    assert mlflow.search_model_versions(f"name='{line.registered}'")[0].run_id == run_id
    # The trainer marks it the evaluated challenger; never the champion.
    assert mlflow.get_registered_model(line.registered).aliases == {"challenger": "1"}
    # The holdout evaluation: v1 is the line's first version, scored on the pinned holdout.
    assert manifest_of(line, 1)["evaluation"]["decision"] == "NoChampion"
    assert "holdout.mAP50" in run.data.metrics
    assert {"evaluation/per_class_ap.json", "evaluation/evaluation.json"} <= keys
    assert "evaluation/challenger/confusion_matrix.png" in keys


def test_v2_from_latest_trains_on_corrected_labels_and_records_lineage(
    line: Line, world: World
) -> None:
    v2_spec = {
        **line.v1_spec,
        "baseModel": {"version": "latest"},
        "corrections": {"uri": "corrections/b1"},
        "training": {**line.v1_spec["training"], "epochs": 1},
    }
    env = line.claim.env(v2_spec, 2, base_version=1)
    v2 = run_trainer(env)
    assert v2.rc == 0, v2.explain()
    manifest = manifest_of(line, 2)
    lineage = manifest["lineage"]
    v1_sha = integrity.sha256_file(
        layout.VersionPaths.for_version(line.claim.root, line.model, 1).production
    )[0]
    assert lineage["baseModel"] == "v1" and lineage["baseVersion"] == 1
    assert lineage["baseSha256"] == v1_sha
    assert lineage["correctionsApplied"] == 3 and lineage["trainSamples"] == 17
    assert lineage["correctionsSha256"]
    corrected = line.claim.root / "corrections" / "b1" / "labels" / "train" / "train_0000.txt"
    # The working tree is on the claim (the dataset cache), named by its content.
    (ready,) = v2.named("dataset.ready")
    trained_on = Path(ready["tree"]) / "labels" / "train" / "train_0000.txt"
    assert trained_on.read_text() == corrected.read_text()
    (fetched,) = v2.named("dataset.fetch.done")
    assert fetched["fetchedBytes"] == 0 and fetched["cachedFiles"] == fetched["files"]
    run = MlflowClient(world.mlflow_uri).get_run(manifest["mlflow"]["runId"])
    bucket, prefix = layout.parse_s3_uri(run.info.artifact_uri)
    stored = world.minio_client().get_object(bucket, f"{prefix}/corrections_applied.json")
    applied = json.loads(stored.read())
    assert applied["count"] == 3 and applied["totals"]["replace"] == 2
    assert manifest["mlflow"]["runId"] != manifest_of(line, 1)["mlflow"]["runId"]


def test_flipped_byte_is_reported_and_a_rerun_repairs_it_without_retraining(
    line: Line, world: World
) -> None:
    paths = layout.VersionPaths.for_version(line.claim.root, line.model, 1)
    manifest = manifest_of(line, 1)
    data = bytearray(paths.quick_access.read_bytes())
    data[len(data) // 2] ^= 0x01
    paths.quick_access.write_bytes(bytes(data))
    checks = integrity.check_artifacts(
        manifest["artifacts"], storage_root=line.claim.root, client=world.minio_client(), by="test"
    )
    assert [c["name"] for c in checks if not c["ok"]] == ["quickAccess"]
    assert "sha256 mismatch" in next(c["message"] for c in checks if not c["ok"])

    again = run_trainer(line.claim.env(line.v1_spec, 1))
    assert again.rc == 0, again.explain()
    assert again.named("manifest.stale")[0]["failed"] == ["quickAccess"]
    assert again.named("train.state")[0]["checkpoint"] == "finished"
    assert not again.named("epoch")
    # MLflow already holds these exact weights (tagged sha256): no second upload.
    assert "models/retrained_v1.pt" in [e["artifact"] for e in again.named("upload.skip")]
    assert not [e for e in again.named("upload") if e["artifact"].endswith(".pt")]
    repaired = manifest_of(line, 1)
    fixed = integrity.check_artifacts(
        repaired["artifacts"], storage_root=line.claim.root, client=world.minio_client(), by="test"
    )
    assert all(c["ok"] for c in fixed)
    # Same weights as before the corruption: the copy was restored, nothing was retrained.
    assert repaired["artifacts"][0]["sha256"] == manifest["artifacts"][0]["sha256"]
    runs = MlflowClient(world.mlflow_uri).search_runs(
        [manifest["mlflow"]["experimentId"]],
        filter_string=f"tags.`retrainer.version` = '1' and tags.`retrainer.model` = '{line.model}'",
    )
    assert len(runs) == 1


def test_a_verified_version_is_never_trained_again(line: Line) -> None:
    before = integrity.sha256_file(
        layout.VersionPaths.for_version(line.claim.root, line.model, 1).production
    )
    again = run_trainer(line.claim.env(line.v1_spec, 1))
    assert again.rc == 0, again.explain()
    assert again.named("done.already") and not again.named("train.start")
    after = integrity.sha256_file(
        layout.VersionPaths.for_version(line.claim.root, line.model, 1).production
    )
    assert before == after
