"""End to end with real training: the operator, the pod runner and the real trainer (CPU).

Each test trains a tiny generated dataset (16 train / 8 val images, 64 px, 2-4 epochs) and
checks what the operator recorded against what really exists on the claim and in MinIO.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest
from kubernetes import client
from operator_support import (
    GROUP,
    LINE_PLURAL,
    PLURAL,
    TRAIN_TIMEOUT,
    VERSION,
    assert_verified_version,
    condition,
    create,
    event_reasons,
    get,
    jobs_of,
    mlflow_json,
    operator_in_prepared_namespace,
    pods_of,
    retrainjob,
    run_of_uid,
    storage_root,
    upload_dataset,
    versions_ledger,
    wait_finished,
    wait_for,
    wait_phase,
    wait_training_complete,
)
from retrainer_contract import layout
from retrainer_world.world import World

pytestmark = pytest.mark.integration


@pytest.fixture
def dataset(world: World, tmp_path: Path, namespace: str) -> str:
    return upload_dataset(world, tmp_path, f"{namespace}/shapes")


def test_a_run_succeeds_as_version_1_and_a_run_from_latest_becomes_version_2(
    world: World,
    namespace: str,
    kube: client.ApiClient,
    crd: object,
    tmp_path: Path,
    dataset: str,
) -> None:
    with operator_in_prepared_namespace(world, kube, namespace, tmp_path) as operator:
        create(kube, namespace, retrainjob("first", dataset))
        first = wait_finished(kube, namespace, "first", operator)
        create(kube, namespace, retrainjob("second", dataset, baseModel={"version": "latest"}))
        second = wait_finished(kube, namespace, "second", operator)

    assert_verified_version(world, namespace, first, 1)
    assert first["status"]["jobName"] == "retrain-shapes-v1"
    assert first["status"]["attempts"] == 1
    assert first["status"]["progress"] == {"epoch": 2, "epochs": 2, "text": "2/2"}
    reasons = event_reasons(kube, namespace, "first")
    # Each transition once (Events carry second-precision times: compare without order).
    assert sorted(reasons) == sorted(
        ["JobCreated", "PodRunning", "TrainingComplete", "AllLocationsVerified"]
    )

    assert_verified_version(world, namespace, second, 2)
    assert second["status"]["lineage"]["baseVersion"] == 1
    assert len(jobs_of(kube, namespace, "first")) == len(jobs_of(kube, namespace, "second")) == 1
    ledger = versions_ledger(kube, namespace, "shapes")
    assert ledger["next"] == "3"


def test_a_namespace_enforcing_restricted_pod_security_trains_to_succeeded(
    world: World,
    namespace: str,
    kube: client.ApiClient,
    crd: object,
    tmp_path: Path,
    dataset: str,
) -> None:
    core = client.CoreV1Api(kube)
    core.patch_namespace(
        namespace,
        {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}},
    )
    # The apiserver's own admission enforces it: a pod without a security context is refused.
    plain = {
        "metadata": {"name": "plain"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["true"]}]},
    }
    with pytest.raises(client.ApiException) as refused:
        core.create_namespaced_pod(namespace, plain)
    assert refused.value.status == 403 and "violates PodSecurity" in str(refused.value.body)

    with operator_in_prepared_namespace(world, kube, namespace, tmp_path) as operator:
        create(kube, namespace, retrainjob("hardened", dataset))
        hardened = wait_finished(kube, namespace, "hardened", operator)

    assert_verified_version(world, namespace, hardened, 1)


def test_a_lost_version_sequence_continues_above_every_trained_version(
    world: World,
    namespace: str,
    kube: client.ApiClient,
    crd: object,
    tmp_path: Path,
    dataset: str,
) -> None:
    """Ledger deleted after v1 with v1's RetrainJob and Job gone (MLflow still remembers v1),
    then deleted again after v1 and v2: numbering goes on at 2, then 3, never reusing a run."""
    custom, batch = client.CustomObjectsApi(kube), client.BatchV1Api(kube)
    with operator_in_prepared_namespace(world, kube, namespace, tmp_path) as operator:
        create(kube, namespace, retrainjob("first", dataset))
        first = wait_finished(kube, namespace, "first", operator)
        assert_verified_version(world, namespace, first, 1)
        first_run = first["status"]["mlflow"]["runId"]

        # Fault: every Kubernetes record of version 1 is removed, the ModelLine included.
        custom.delete_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, "first", propagation_policy="Foreground"
        )
        wait_for(
            "v1's RetrainJob and Job to be gone",
            lambda: (
                not jobs_of(kube, namespace, "first")
                and not any(
                    j.metadata.name == "retrain-shapes-v1"
                    for j in batch.list_namespaced_job(namespace).items
                )
                and not custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)[
                    "items"
                ]
            ),
            120,
            operator,
        )
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, LINE_PLURAL, "shapes")

        create(kube, namespace, retrainjob("second", dataset))
        second = wait_finished(kube, namespace, "second", operator)

        # Fault again, after v1 and v2: only the ModelLine goes; v2's RetrainJob and Job remain.
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, LINE_PLURAL, "shapes")
        # The rebuilt ledger knows v2 is verified (its RetrainJob says so): `latest` resolves.
        create(kube, namespace, retrainjob("third", dataset, baseModel={"version": "latest"}))
        third = wait_finished(kube, namespace, "third", operator)

    assert_verified_version(world, namespace, second, 2)
    assert second["status"]["mlflow"]["runId"] != first_run
    assert_verified_version(world, namespace, third, 3)
    assert third["status"]["lineage"]["baseVersion"] == 2
    runs = {first_run, second["status"]["mlflow"]["runId"], third["status"]["mlflow"]["runId"]}
    assert len(runs) == 3, "a run was reused"
    assert versions_ledger(kube, namespace, "shapes")["next"] == "4"
    # Version 1 on the claim is still version 1, owned by the first RetrainJob.
    v1 = layout.VersionPaths.for_version(storage_root(world, namespace), "shapes", 1)
    recorded = json.loads(v1.owner.read_text())["retrainJob"]
    assert recorded["uid"] == first["metadata"]["uid"]
    assert json.loads(v1.metadata.read_text())["retrainJob"]["uid"] == first["metadata"]["uid"]


def test_operator_killed_at_three_moments_still_makes_one_job_and_the_right_status(
    world: World,
    namespace: str,
    kube: client.ApiClient,
    crd: object,
    tmp_path: Path,
    dataset: str,
) -> None:
    with operator_in_prepared_namespace(world, kube, namespace, tmp_path) as operator:
        # Moment 1: while the RetrainJob is being accepted (checks, version, Job).
        create(
            kube,
            namespace,
            retrainjob(
                "crashy",
                dataset,
                training={"epochs": 3, "imgsz": 64, "batch": 4, "extraArgs": {"workers": 0}},
            ),
        )
        time.sleep(0.8)
        operator.kill()
        operator.start()
        # Moment 2: while the pod trains.
        wait_phase(kube, namespace, "crashy", ("Running",), TRAIN_TIMEOUT, operator)
        operator.kill()
        # Moment 3: training finishes while the operator is down; it verifies on restart.
        wait_training_complete(kube, namespace, "crashy", TRAIN_TIMEOUT)
        operator.start()
        obj = wait_finished(kube, namespace, "crashy", operator, timeout=120)

    assert_verified_version(world, namespace, obj, 1)
    assert len(jobs_of(kube, namespace, "crashy")) == 1
    assert obj["status"]["attempts"] == 1
    assert versions_ledger(kube, namespace, "shapes")["next"] == "2"


def test_a_bad_label_fails_naming_the_file_without_retries(
    world: World,
    namespace: str,
    kube: client.ApiClient,
    crd: object,
    tmp_path: Path,
) -> None:
    from retrainer_demo import shapes

    folder = shapes.generate_dataset(tmp_path / "bad")
    (folder / "labels" / "train" / "train_0003.txt").write_text("7 0.5 0.5 0.2 0.2\n")
    shapes.upload_folder(world.minio_client(), "datasets", f"{namespace}/bad", folder)
    with operator_in_prepared_namespace(world, kube, namespace, tmp_path) as operator:
        create(
            kube,
            namespace,
            retrainjob("bad-label", f"s3://datasets/{namespace}/bad", retry={"backoffLimit": 3}),
        )
        obj = wait_finished(kube, namespace, "bad-label", operator)

    failed = condition(obj, "Failed")
    assert obj["status"]["phase"] == "Failed"
    assert failed["reason"] == "BadInput"
    assert "train_0003" in failed["message"]
    assert obj["status"]["attempts"] == 1
    assert len(pods_of(kube, namespace, obj["status"]["jobName"])) == 1
    assert "BadInput" in event_reasons(kube, namespace, "bad-label")


def test_an_evicted_pod_is_retried_without_using_the_backoff_limit_and_resumes(
    world: World,
    namespace: str,
    kube: client.ApiClient,
    crd: object,
    tmp_path: Path,
    dataset: str,
) -> None:
    core = client.CoreV1Api(kube)
    # Enough epochs (each well under a second here) that the eviction lands mid-training, not
    # in Ultralytics' final phase after the last epoch.
    epochs = 20
    with operator_in_prepared_namespace(world, kube, namespace, tmp_path) as operator:
        create(
            kube,
            namespace,
            retrainjob(
                "evicted",
                dataset,
                retry={"backoffLimit": 0},
                training={"epochs": epochs, "imgsz": 64, "batch": 4, "extraArgs": {"workers": 0}},
            ),
        )
        wait_for(
            "an epoch done",
            lambda: (
                ((get(kube, namespace, "evicted").get("status") or {}).get("progress") or {}).get(
                    "epoch", 0
                )
                >= 1
            ),
            TRAIN_TIMEOUT,
            operator,
        )
        job_name = get(kube, namespace, "evicted")["status"]["jobName"]
        (pod,) = [p for p in pods_of(kube, namespace, job_name) if p.status.phase == "Running"]
        core.create_namespaced_pod_eviction(
            pod.metadata.name,
            namespace,
            {"metadata": {"name": pod.metadata.name, "namespace": namespace}},
        )
        obj = wait_finished(kube, namespace, "evicted", operator)

    assert_verified_version(world, namespace, obj, 1)
    assert obj["status"]["attempts"] == 2
    job = client.BatchV1Api(kube).read_namespaced_job(job_name, namespace)
    assert not job.status.failed  # the eviction did not count against backoffLimit 0
    # Resumed from last.pt: every epoch was logged once, in one MLflow run.
    run_id = obj["status"]["mlflow"]["runId"]
    history = mlflow_json(
        world, f"/api/2.0/mlflow/metrics/get-history?run_id={run_id}&metric_key=epoch"
    )["metrics"]
    values = [m["value"] for m in history]
    assert sorted(values) == sorted(set(values))
    assert max(values) == epochs


def test_an_object_corrupted_in_minio_before_verification_fails_verification(
    world: World,
    namespace: str,
    kube: client.ApiClient,
    crd: object,
    tmp_path: Path,
    dataset: str,
) -> None:
    with operator_in_prepared_namespace(world, kube, namespace, tmp_path) as operator:
        create(kube, namespace, retrainjob("corrupt", dataset))
        wait_phase(kube, namespace, "corrupt", ("Running",), TRAIN_TIMEOUT, operator)
        operator.kill()  # hold verification back while we corrupt the object
        wait_training_complete(kube, namespace, "corrupt", TRAIN_TIMEOUT)
        run = run_of_uid(world, get(kube, namespace, "corrupt")["metadata"]["uid"])
        bucket, key = layout.parse_s3_uri(layout.mlflow_weights_uri(run["info"]["artifact_uri"], 1))
        import io

        junk = hashlib.sha256(b"junk").digest() * 100
        world.minio_client().put_object(bucket, key, io.BytesIO(junk), len(junk))
        operator.start()
        obj = wait_finished(kube, namespace, "corrupt", operator, timeout=120)

    assert obj["status"]["phase"] == "Failed"
    failed = condition(obj, "Failed")
    assert failed["reason"] == "VerificationFailed"
    assert "mlflow" in failed["message"]
    assert condition(obj, "Verified")["status"] == "False"
    assert obj["status"]["verification"]["verified"] is False
    bad = [c for c in obj["status"]["verification"]["checks"] if not c["ok"]]
    assert [(c["name"], c["by"]) for c in bad] == [("mlflow", "operator")]
