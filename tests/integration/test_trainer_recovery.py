"""What the next attempt finds after a trainer died or failed, against the world's MinIO and
MLflow (the trainer a subprocess with the env contract, as in the pod):

- killed (SIGKILL at the named point `trainer-manifest-written`) after the manifest reached the
  claim but before MLflow had it: the rerun uploads the manifest and ends the run FINISHED;
- a failure logging the params: the run is ended FAILED, never left RUNNING;
- a champion whose classes are ordered otherwise than the (reordered) dataset and holdout:
  exit 3 before any training or MLflow run, naming both fields and both class lists;
- the claim mounted at another path, with a planted label cache that runs code when unpickled
  in the working tree: the tree is reused, the cache is removed and never loaded.

One version (v1, one epoch) is trained for the module; the other tests build on its claim.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient
from retrainer_contract import documents, faults, layout, tracking
from retrainer_demo import shapes
from retrainer_world.world import World
from test_trainer_support import TINY, Claim, Run, run_trainer, spec

pytestmark = pytest.mark.integration

ONE_EPOCH = {**TINY, "epochs": 1}


@dataclass
class Killed:
    """v1 of a line, killed after its manifest was written (models/ and the manifest stored)."""

    claim: Claim
    model: str
    body: dict[str, Any]
    first: Run

    @property
    def paths(self) -> layout.VersionPaths:
        return layout.VersionPaths.for_version(self.claim.root, self.model, 1)


@pytest.fixture(scope="module")
def killed(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Killed]:
    claim = Claim(world, tmp_path_factory.mktemp("claim"), tmp_path_factory.mktemp("work"))
    shapes.generate_dataset(claim.root / "datasets" / "shapes", seed=7, train=8, val=4)
    model = f"recover-{claim.token}"
    body = spec(model, training=ONE_EPOCH, mlflow={"experiment": model})
    env = claim.env(body, 1)
    first = run_trainer({**env, faults.ENV: faults.TRAINER_MANIFEST_WRITTEN})
    yield Killed(claim, model, body, first)


def run_status(world: World, run_id: str) -> tuple[str, list[str]]:
    """The run's status and the artifacts at its root (listed in MinIO, where MLflow keeps
    them: this process has no S3 credentials for MLflow's own client)."""
    info = MlflowClient(world.mlflow_uri).get_run(run_id).info
    bucket, prefix = layout.parse_s3_uri(info.artifact_uri)
    listed = world.minio_client().list_objects(bucket, prefix=f"{prefix}/")
    return info.status, [o.object_name[len(prefix) + 1 :].rstrip("/") for o in listed]


def test_a_rerun_completes_the_mlflow_run_of_a_version_killed_after_its_manifest(
    killed: Killed, world: World, tmp_path: Path
) -> None:
    assert killed.first.rc < 0, killed.first.explain()  # SIGKILL, like an OOM kill
    manifest = documents.read_json(killed.paths.manifest)
    run_id = manifest["mlflow"]["runId"]
    status, artifacts = run_status(world, run_id)
    assert status == "RUNNING" and "manifest.json" not in artifacts, "the window the kill left"

    again = run_trainer(killed.claim.env(killed.body, 1))

    assert again.rc == 0, again.explain()
    assert again.named("done.already") and not again.named("train.start")
    status, artifacts = run_status(world, run_id)
    assert status == "FINISHED" and "manifest.json" in artifacts
    artifacts_at = MlflowClient(world.mlflow_uri).get_run(run_id).info.artifact_uri
    bucket, prefix = layout.parse_s3_uri(artifacts_at)
    stored = world.minio_client().get_object(bucket, f"{prefix}/manifest.json").read()
    assert stored == killed.paths.manifest.read_bytes()

    third = run_trainer(killed.claim.env(killed.body, 1))
    assert third.rc == 0, third.explain()
    assert "manifest.json" in [e["artifact"] for e in third.named("upload.skip")]
    assert run_status(world, run_id)[0] == "FINISHED"


PARAMS_REFUSED = """
import sys
from retrainer_trainer import tracker_process
def refused(self, run_id, params):
    raise RuntimeError("MLflow refused the params (fault test)")
# the hook: the point where the params are logged (the tracker's process then ends the run)
tracker_process.TrackerProcess.log_params = refused
from retrainer_trainer.__main__ import main
sys.exit(main())
"""


def test_a_failure_logging_the_params_ends_the_run_failed(killed: Killed, world: World) -> None:
    env = killed.claim.env(killed.body, 2)

    result = run_trainer(env, command=[sys.executable, "-c", PARAMS_REFUSED])

    assert result.rc == 1, result.explain()
    assert "MLflow refused the params" in result.stdout
    client = MlflowClient(world.mlflow_uri)
    experiment = client.get_experiment_by_name(killed.model)
    assert experiment is not None
    query = tracking.run_filter(env["RETRAINER_UID"], 2)
    (run,) = client.search_runs([experiment.experiment_id], filter_string=query)
    assert run.info.status == "FAILED"


def reorder(data_yaml: Path, names: tuple[str, ...]) -> None:
    """The same data.yaml with its class names in another order (the labels unchanged)."""
    data = yaml.safe_load(data_yaml.read_text())
    data["names"] = dict(enumerate(names))
    data_yaml.write_text(yaml.safe_dump(data))


def test_a_champion_with_other_class_order_fails_before_training_naming_both_fields(
    killed: Killed,
) -> None:
    root = killed.claim.root
    reordered = ("square", "circle", "triangle")
    shutil.copytree(root / "datasets" / "shapes", root / "datasets" / "reordered")
    reorder(root / "datasets" / "reordered" / "data.yaml", reordered)
    shapes.generate_holdout(root / "holdouts" / "reordered", seed=0, count=4)
    reorder(root / "holdouts" / "reordered" / "data.yaml", reordered)
    body = spec(
        killed.model,
        dataset={"uri": "datasets/reordered"},
        training=ONE_EPOCH,
        mlflow={"experiment": killed.model, "registeredModel": killed.model},
        promotion={"metric": "mAP50", "holdout": {"uri": "holdouts/reordered"}},
    )

    result = run_trainer(killed.claim.env(body, 3, RETRAINER_CHAMPION_VERSION="1"))

    assert result.rc == 3, result.explain()
    (failed,) = result.named("failed")
    assert failed["message"].startswith("spec.promotion.holdout.uri, spec.dataset.uri: ")
    assert "['square', 'circle', 'triangle']" in failed["message"]
    assert "champion v1's ['circle', 'square', 'triangle']" in failed["message"]
    assert not result.named("train.start") and not result.named("mlflow.run")


class Payload:
    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (self.code,))


def test_the_claim_mounted_elsewhere_reuses_the_tree_and_never_loads_a_planted_label_cache(
    killed: Killed, world: World, tmp_path: Path
) -> None:
    assert killed.first.named("train.start"), killed.first.explain()
    (ready,) = killed.first.named("dataset.ready")
    elsewhere = tmp_path / "mounted-elsewhere"
    tree = elsewhere / Path(ready["tree"]).relative_to(killed.claim.root)
    marker = tmp_path / "code-ran"
    # The same volume, mounted at another path: the path it was built under is gone.
    killed.claim.root.rename(elsewhere)
    try:
        with (tree / "labels" / "train.cache").open("wb") as handle:
            code = f"open({str(marker)!r}, 'w').write('ran')"
            np.save(handle, np.array(Payload(code), dtype=object))
        claim = Claim(world, elsewhere, tmp_path / "work", token=killed.claim.token)
        result = run_trainer(claim.env(killed.body, 4))
    finally:
        elsewhere.rename(killed.claim.root)

    assert result.rc == 0, result.explain()
    (again,) = result.named("dataset.ready")
    assert again["reused"] and again["tree"] == str(tree)
    assert not marker.exists(), "the planted label cache was unpickled"
    (removed,) = result.named("labelcache.removed")
    assert "labels/train.cache" in removed["caches"]
