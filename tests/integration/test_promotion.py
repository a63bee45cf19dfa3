"""Promotion on evidence, end to end: the operator, the pod runner, the real trainer (CPU),
MLflow's registry and MinIO. Versions are scored with their champion on a pinned holdout;
the alias moves only on Promoted (or the first version's NoChampion) and a verified version.

The chain trains three versions in one namespace: v1 weak (one epoch: the first version, no
champion), v2 from v1 trained longer (clearly better: promoted), v3 weak again from scratch
(clearly worse than v2: rejected, the numbers in the message, the alias left on v2).
"""

from __future__ import annotations

import hashlib
import io
import shutil
import urllib.error
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from operator_support import (
    TRAIN_TIMEOUT,
    condition,
    create,
    event_reasons,
    get,
    get_line,
    mlflow_json,
    operator_in_prepared_namespace,
    retrainjob,
    run_of_uid,
    upload_dataset,
    upload_folder,
    wait_finished,
    wait_phase,
    wait_training_complete,
)
from retrainer_contract import layout
from retrainer_demo import shapes
from retrainer_world.world import World

pytestmark = pytest.mark.integration

# Enough data and epochs for v2 to score clearly above a one-epoch model (which scores 0),
# small enough for CPU: 128 images of 64 px, 15 epochs reach mAP50-95 ~0.5 in ~30 s.
TRAIN, SIZE, IMGSZ = 128, 64, 64
GOOD_EPOCHS = 15
FAST = {"workers": 0, "warmup_epochs": 1, "mosaic": 0.0, "optimizer": "AdamW", "lr0": 0.003}


def promoted_job(
    name: str, dataset: str, holdout: str, registered: str, epochs: int, **spec: Any
) -> dict[str, Any]:
    return retrainjob(
        name,
        dataset,
        training={"epochs": epochs, "imgsz": IMGSZ, "batch": 16, "extraArgs": FAST},
        mlflow={"registeredModel": registered},
        promotion={"metric": "mAP50", "holdout": {"uri": holdout}},
        **spec,
    )


def alias_run(world: World, registered: str) -> str | None:
    """The run the champion alias points at (None: no alias, or not even a registered model)."""
    try:
        answer = mlflow_json(world, f"/api/2.0/mlflow/registered-models/get?name={registered}")[
            "registered_model"
        ]
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise
    aliases = {a["alias"]: a["version"] for a in answer.get("aliases") or []}
    if "champion" not in aliases:
        return None
    found = mlflow_json(
        world,
        f"/api/2.0/mlflow/model-versions/get?name={registered}&version={aliases['champion']}",
    )
    run_id: str = found["model_version"]["run_id"]
    return run_id


@pytest.fixture
def holdout(world: World, tmp_path: Path, namespace: str) -> str:
    folder = shapes.generate_holdout(tmp_path / "holdout", seed=0, count=16, size=SIZE)
    return upload_folder(world, folder, f"{namespace}/holdout")


def champion_of(kube: client.ApiClient, namespace: str) -> dict[str, Any]:
    """status.champion of the line's ModelLine ({}: none)."""
    line = get_line(kube, namespace, "shapes")
    return dict((line.get("status") or {}).get("champion") or {})


def test_the_first_version_becomes_champion_a_better_one_is_promoted_and_a_worse_one_rejected(
    world: World,
    namespace: str,
    kube: client.ApiClient,
    crd: object,
    tmp_path: Path,
    holdout: str,
) -> None:
    dataset = upload_dataset(world, tmp_path, f"{namespace}/shapes", train=TRAIN, size=SIZE)
    registered = namespace
    with operator_in_prepared_namespace(world, kube, namespace, tmp_path) as operator:
        create(kube, namespace, promoted_job("first", dataset, holdout, registered, 1))
        first = wait_finished(kube, namespace, "first", operator)
        v1_alias = alias_run(world, registered)
        v1_line = champion_of(kube, namespace)
        better = promoted_job(
            "better", dataset, holdout, registered, GOOD_EPOCHS, baseModel={"version": "latest"}
        )
        create(kube, namespace, better)
        second = wait_finished(kube, namespace, "better", operator, timeout=2 * TRAIN_TIMEOUT)
        v2_alias = alias_run(world, registered)
        v2_line = champion_of(kube, namespace)
        create(kube, namespace, promoted_job("worse", dataset, holdout, registered, 1))
        third = wait_finished(kube, namespace, "worse", operator)
        v3_alias = alias_run(world, registered)
        v3_line = champion_of(kube, namespace)

    # v1: the line's first version; no champion to compare with; it becomes the champion.
    assert first["status"]["phase"] == "Succeeded", first["status"]
    v1 = first["status"]["evaluation"]
    assert v1["decision"] == "NoChampion" and "champion" not in v1
    assert condition(first, "Promoted")["status"] == "True"
    assert condition(first, "Promoted")["reason"] == "NoChampion"
    assert v1_alias == first["status"]["mlflow"]["runId"]
    # The ModelLine holds the champion people read (CHAMPION, mAP50-95 columns).
    assert v1_line["version"] == 1 and v1_line["reason"] == "Promoted"
    assert v1_line["metrics"] == pytest.approx(v1["challenger"]["metrics"])
    assert (v2_line["version"], v2_line["previous"]) == (2, 1)
    assert v3_line == v2_line  # rejected: the champion did not move
    assert first["status"]["mlflow"]["promoted"] is True
    assert len(v1["holdoutSha256"]) == 64 and v1["holdoutImages"] == 16

    # v2: scored with v1 on the same holdout, clearly better: promoted, the alias moves.
    v2 = second["status"]["evaluation"]
    assert second["status"]["phase"] == "Succeeded", second["status"]
    assert v2["decision"] == "Promoted", v2["reason"]
    assert v2["champion"]["version"] == 1
    assert v2["holdoutSha256"] == v1["holdoutSha256"] and v2["holdoutChanged"] is False
    assert v2["challenger"]["metrics"]["mAP50"] > v2["champion"]["metrics"]["mAP50"]
    # The champion was re-scored, bit for bit the same model on the same data: same numbers.
    assert v2["champion"]["metrics"] == v1["challenger"]["metrics"]
    assert v2["challenger"]["perClass"], v2
    assert condition(second, "Promoted")["reason"] == "Promoted"
    assert v2_alias == second["status"]["mlflow"]["runId"]

    # v3: worse than v2: rejected with both numbers in the message; the alias stays on v2.
    v3 = third["status"]["evaluation"]
    assert third["status"]["phase"] == "Succeeded", third["status"]
    assert v3["decision"] == "Rejected"
    assert v3["champion"]["version"] == 2
    promoted = condition(third, "Promoted")
    assert (promoted["status"], promoted["reason"]) == ("False", "Rejected")
    ours, theirs = v3["challenger"]["metrics"]["mAP50"], v3["champion"]["metrics"]["mAP50"]
    assert f"mAP50 {ours:.4f}" in promoted["message"]
    assert f"champion v2 {theirs:.4f}" in promoted["message"]
    assert v3_alias == v2_alias
    assert third["status"]["mlflow"]["promoted"] is False
    assert "Rejected" in event_reasons(kube, namespace, "worse")
    assert "Promoted" in event_reasons(kube, namespace, "better")

    # The evidence is kept with the version: metadata file and MLflow run.
    run_id = third["status"]["mlflow"]["runId"]
    run = mlflow_json(world, f"/api/2.0/mlflow/runs/get?run_id={run_id}")["run"]
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    assert metrics["holdout.mAP50"] == pytest.approx(ours)
    assert metrics["holdout.champion.mAP50"] == pytest.approx(theirs)


def test_a_corrections_file_touching_the_holdout_fails_naming_the_file(
    world: World,
    namespace: str,
    kube: client.ApiClient,
    crd: object,
    tmp_path: Path,
    holdout: str,
) -> None:
    dataset = upload_dataset(world, tmp_path, f"{namespace}/shapes")
    pinned = shapes.generate_holdout(tmp_path / "pinned", seed=0, count=16, size=SIZE)
    fixes = shapes.write_corrections(tmp_path / "fixes", seed=0)
    shutil.copyfile(pinned / "images" / "holdout_0003.png", fixes / "images" / "train" / "h.png")
    (fixes / "labels" / "train" / "h.txt").write_text("0 0.5 0.5 0.3 0.3\n")
    corrections = upload_folder(world, fixes, f"{namespace}/fixes")
    body = promoted_job(
        "touching", dataset, holdout, namespace, 1, corrections={"uri": corrections}
    )
    with operator_in_prepared_namespace(world, kube, namespace, tmp_path) as operator:
        create(kube, namespace, body)
        obj = wait_finished(kube, namespace, "touching", operator)

    failed = condition(obj, "Failed")
    assert obj["status"]["phase"] == "Failed"
    assert failed["reason"] == "HoldoutTouched"
    assert "images/train/h.png is holdout image images/holdout_0003.png" in failed["message"]
    assert alias_run(world, namespace) is None


def test_an_unverified_version_is_never_promoted(
    world: World,
    namespace: str,
    kube: client.ApiClient,
    crd: object,
    tmp_path: Path,
    holdout: str,
) -> None:
    dataset = upload_dataset(world, tmp_path, f"{namespace}/shapes")
    with operator_in_prepared_namespace(world, kube, namespace, tmp_path) as operator:
        create(kube, namespace, promoted_job("unverified", dataset, holdout, namespace, 1))
        wait_phase(kube, namespace, "unverified", ("Running",), TRAIN_TIMEOUT, operator)
        operator.kill()  # hold verification back while the MinIO copy is corrupted
        wait_training_complete(kube, namespace, "unverified", TRAIN_TIMEOUT)
        run = run_of_uid(world, get(kube, namespace, "unverified")["metadata"]["uid"])
        artifact_uri = run["info"]["artifact_uri"]
        bucket, key = layout.parse_s3_uri(layout.mlflow_weights_uri(artifact_uri, 1))
        junk = hashlib.sha256(b"junk").digest() * 100
        world.minio_client().put_object(bucket, key, io.BytesIO(junk), len(junk))
        operator.start()
        obj = wait_finished(kube, namespace, "unverified", operator, timeout=120)

    assert condition(obj, "Failed")["reason"] == "VerificationFailed"
    # The trainer's decision was NoChampion (the first version, promoteFirstVersion): not enough.
    assert obj["status"]["evaluation"]["decision"] == "NoChampion"
    assert condition(obj, "Promoted") == {}
    assert alias_run(world, namespace) is None
    assert champion_of(kube, namespace) == {}
