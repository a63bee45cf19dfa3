"""Faults injected at named points, against the real world: every outcome is a condition.

Each test injects one fault where it names it (a ResourceQuota, a node selector no node has, a
SIGKILLed operator, a SIGSTOPped MLflow or MinIO server, a Job deleted with its pods orphaned,
a second operator) and checks that the RetrainJob either says why it waits, within a bound, or
reaches the right end: never a silent hang, never a second writer of a version, never a
terminal failure for an outage while every copy exists. docs/reliability.md lists them.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from operator_support import (
    GROUP,
    PLURAL,
    TRAIN_TIMEOUT,
    VERSION,
    assert_verified_version,
    condition,
    create,
    frozen,
    get,
    jobs_of,
    mlflow_json,
    operator_in_prepared_namespace,
    pods_of,
    retrainjob,
    running_operator,
    storage_root,
    upload_dataset,
    versions_ledger,
    wait_accepted,
    wait_finished,
    wait_for,
    wait_phase,
    wait_training_complete,
)
from retrainer_contract import layout
from retrainer_world.world import World

pytestmark = pytest.mark.integration

# The bound within which a stuck RetrainJob must say why (the promise).
SURFACE_SECONDS = 60


@pytest.fixture
def dataset(world: World, tmp_path: Path, namespace: str) -> str:
    return upload_dataset(world, tmp_path, f"{namespace}/shapes")


def reason_of(obj: dict[str, Any], type_: str) -> str:
    return str(condition(obj, type_).get("reason", ""))


def wait_reason(
    kube: client.ApiClient,
    namespace: str,
    name: str,
    type_: str,
    reason: str,
    timeout: float,
    operator: Any,
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        obj = get(kube, namespace, name)
        return obj if reason_of(obj, type_) == reason else None

    found: dict[str, Any] = wait_for(f"{name}: {type_} reason {reason}", probe, timeout, operator)
    return found


def test_pods_refused_by_a_quota_surface_within_a_minute_and_training_follows_once_lifted(
    world: World,
    namespace: str,
    kube: client.ApiClient,
    crd: object,
    tmp_path: Path,
    dataset: str,
) -> None:
    core = client.CoreV1Api(kube)
    quota = {"metadata": {"name": "no-pods"}, "spec": {"hard": {"pods": "0"}}}
    core.create_namespaced_resource_quota(namespace, quota)
    with operator_in_prepared_namespace(world, kube, namespace, tmp_path) as operator:
        create(kube, namespace, retrainjob("quota", dataset))
        obj = wait_reason(
            kube, namespace, "quota", "Running", "PodCreationFailed", SURFACE_SECONDS, operator
        )
        running = condition(obj, "Running")
        assert running["status"] == "False" and "exceeded quota" in running["message"]
        assert obj["status"]["phase"] == "Pending"

        core.delete_namespaced_resource_quota("no-pods", namespace)
        done = wait_finished(kube, namespace, "quota", operator)

    assert_verified_version(world, namespace, done, 1)


def test_a_pod_no_node_can_take_surfaces_as_unschedulable_within_a_minute(
    world: World, namespace: str, kube: client.ApiClient, crd: object, tmp_path: Path
) -> None:
    nowhere = {"scheduling": {"nodeSelector": {"retrainer.dev/test-no-such-node": "true"}}}
    with operator_in_prepared_namespace(world, kube, namespace, tmp_path) as operator:
        create(kube, namespace, retrainjob("nowhere", "s3://datasets/none", **nowhere))
        obj = wait_reason(
            kube, namespace, "nowhere", "Running", "PodUnschedulable", SURFACE_SECONDS, operator
        )
    running = condition(obj, "Running")
    assert running["status"] == "False" and "node" in running["message"]
    assert obj["status"]["phase"] == "Pending"


def test_mlflow_down_across_the_end_of_training_with_ttl_0_waits_then_verifies(
    world: World,
    namespace: str,
    kube: client.ApiClient,
    crd: object,
    tmp_path: Path,
    dataset: str,
) -> None:
    """The operator is down when training ends, the Job is deleted at once (TTL 0) and its
    pods removed, and MLflow is stopped: nothing is left to read but MLflow, and no copy is
    missing. The Job itself stays, deleting, under the operator's finalizer until its outcome
    is recorded, so it is never mistaken for a lost Job and trained again."""
    with operator_in_prepared_namespace(world, kube, namespace, tmp_path) as operator:
        create(kube, namespace, retrainjob("ttl", dataset, ttlSecondsAfterFinished=0))
        wait_phase(kube, namespace, "ttl", ("Running",), TRAIN_TIMEOUT, operator)
        operator.kill()  # fault point 1: no operator when training ends
        wait_for(
            "the finished Job deleted by TTL 0 and its pods removed",
            lambda: (
                all(j.metadata.deletion_timestamp for j in jobs_of(kube, namespace, "ttl"))
                and not pods_of(kube, namespace, "retrain-shapes-v1")
            ),
            TRAIN_TIMEOUT,
        )
        with frozen(world, "mlflow"):  # fault point 2: MLflow frozen
            operator.start()
            obj = wait_reason(
                kube, namespace, "ttl", "Verified", "ManifestUnavailable", 90, operator
            )
            assert obj["status"]["phase"] != "Failed"
            assert pods_of(kube, namespace, "retrain-shapes-v1") == [], "trained again"
        done = wait_finished(kube, namespace, "ttl", operator, timeout=180)
        wait_for("the Job released", lambda: jobs_of(kube, namespace, "ttl") == [], 60, operator)

    assert_verified_version(world, namespace, done, 1)
    assert jobs_of(kube, namespace, "ttl") == []
    assert versions_ledger(kube, namespace, "shapes")["next"] == "2"


def test_minio_down_after_training_waits_then_verifies(
    world: World,
    namespace: str,
    kube: client.ApiClient,
    crd: object,
    tmp_path: Path,
    dataset: str,
) -> None:
    with operator_in_prepared_namespace(world, kube, namespace, tmp_path) as operator:
        create(kube, namespace, retrainjob("minio", dataset))
        wait_phase(kube, namespace, "minio", ("Running",), TRAIN_TIMEOUT, operator)
        operator.kill()  # fault point 1: verification held back until MinIO is down
        wait_training_complete(kube, namespace, "minio", TRAIN_TIMEOUT)
        with frozen(world, "minio"):  # fault point 2: MinIO frozen after training
            operator.start()
            obj = wait_reason(
                kube, namespace, "minio", "Verified", "ObjectStoreUnavailable", 90, operator
            )
            assert condition(obj, "Verified")["status"] == "Unknown"
            assert obj["status"]["phase"] == "Verifying"
        done = wait_finished(kube, namespace, "minio", operator, timeout=180)

    assert_verified_version(world, namespace, done, 1)


def test_a_job_deleted_with_its_pod_orphaned_never_gets_a_second_writer(
    world: World,
    namespace: str,
    kube: client.ApiClient,
    crd: object,
    tmp_path: Path,
    dataset: str,
) -> None:
    longer = {"training": {"epochs": 4, "imgsz": 64, "batch": 4, "extraArgs": {"workers": 0}}}
    batch = client.BatchV1Api(kube)
    with operator_in_prepared_namespace(world, kube, namespace, tmp_path) as operator:
        create(kube, namespace, retrainjob("orphan", dataset, **longer))
        wait_phase(kube, namespace, "orphan", ("Running",), TRAIN_TIMEOUT, operator)
        # Fault point: the Job goes, its running pod stays (kubectl delete --cascade=orphan).
        batch.delete_namespaced_job("retrain-shapes-v1", namespace, propagation_policy="Orphan")
        obj = wait_reason(
            kube, namespace, "orphan", "Running", "OrphanedPodRunning", SURFACE_SECONDS, operator
        )
        assert "still runs" in condition(obj, "Running")["message"]
        done = wait_finished(kube, namespace, "orphan", operator)

    assert_verified_version(world, namespace, done, 1)
    assert jobs_of(kube, namespace, "orphan") == [], "a second Job was created"
    pods = pods_of(kube, namespace, "retrain-shapes-v1")
    assert len(pods) == 1 and pods[0].status.phase == "Succeeded"


def test_two_operators_at_once_give_each_retrainjob_its_own_version_and_one_job(
    world: World, namespace: str, kube: client.ApiClient, crd: object, tmp_path: Path
) -> None:
    queued = {"scheduling": {"queueName": "nowhere"}}  # Jobs stay suspended: no training
    names = [f"twin-{i}" for i in range(8)]
    for log_dir in ("a", "b"):
        (tmp_path / log_dir).mkdir()
    with (
        operator_in_prepared_namespace(world, kube, namespace, tmp_path / "a") as first,
        running_operator(world, namespace, tmp_path / "b"),
    ):
        for name in names:
            create(kube, namespace, retrainjob(name, "s3://datasets/none", **queued))
        objs = wait_accepted(kube, namespace, names, 120, first)
    versions = sorted(o["status"]["version"] for o in objs)
    assert versions == list(range(1, 9))
    jobs = client.BatchV1Api(kube).list_namespaced_job(namespace).items
    assert sorted(j.metadata.name for j in jobs) == sorted(f"retrain-shapes-v{v}" for v in versions)
    owners = {j.metadata.annotations["retrainer.dev/uid"] for j in jobs}
    assert owners == {o["metadata"]["uid"] for o in objs}
    assert all(o["status"]["phase"] == "Pending" for o in objs)
    assert versions_ledger(kube, namespace, "shapes")["next"] == "9"


def test_a_version_whose_job_belongs_to_another_retrainjob_is_a_version_conflict(
    world: World, namespace: str, kube: client.ApiClient, crd: object, tmp_path: Path
) -> None:
    """Fault point: version 1's Job already exists, owned by another uid, and nothing else
    records version 1 (no ledger, no labels, no run): the 409 must not be adopted."""
    foreign = {
        "metadata": {"name": "retrain-shapes-v1", "annotations": {"retrainer.dev/uid": "other"}},
        "spec": {
            "suspend": True,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "busybox", "command": ["true"]}],
                }
            },
        },
    }
    client.BatchV1Api(kube).create_namespaced_job(namespace, foreign)
    with operator_in_prepared_namespace(world, kube, namespace, tmp_path) as operator:
        create(kube, namespace, retrainjob("late", "s3://datasets/none"))
        obj = wait_phase(kube, namespace, "late", ("Failed",), 60, operator)
    failed = condition(obj, "Failed")
    assert failed["reason"] == "VersionConflict"
    assert "uid other" in failed["message"] and obj["metadata"]["uid"] in failed["message"]
    job = client.BatchV1Api(kube).read_namespaced_job("retrain-shapes-v1", namespace)
    assert job.metadata.annotations["retrainer.dev/uid"] == "other", "the Job was taken over"
    assert "version" not in obj["status"]


def runs_of(world: World, uid: str) -> list[dict[str, Any]]:
    """The MLflow runs tagged with RetrainJob `uid` (none before the experiment exists)."""
    try:
        experiment = mlflow_json(
            world, "/api/2.0/mlflow/experiments/get-by-name?experiment_name=shapes"
        )["experiment"]["experiment_id"]
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return []
        raise
    found: list[dict[str, Any]] = mlflow_json(
        world,
        "/api/2.0/mlflow/runs/search",
        {"experiment_ids": [experiment], "filter": f"tags.`retrainer.uid` = '{uid}'"},
    ).get("runs", [])
    return found


def test_a_retrainjob_deleted_mid_run_keeps_its_version_folder_and_ends_its_run(
    world: World,
    namespace: str,
    kube: client.ApiClient,
    crd: object,
    tmp_path: Path,
    dataset: str,
) -> None:
    # Far more epochs than it will get: the deletion lands while it trains.
    longer = {
        "training": {
            "epochs": 300,
            "patience": 300,
            "imgsz": 64,
            "batch": 4,
            "extraArgs": {"workers": 0},
        }
    }
    with operator_in_prepared_namespace(world, kube, namespace, tmp_path) as operator:
        uid = create(kube, namespace, retrainjob("doomed", dataset, **longer))["metadata"]["uid"]
        wait_for(
            "the first epoch logged",
            lambda: (get(kube, namespace, "doomed").get("status") or {}).get("progress"),
            TRAIN_TIMEOUT,
            operator,
        )
        # Fault point: the RetrainJob is deleted while it trains (its Job and pod follow).
        client.CustomObjectsApi(kube).delete_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, "doomed"
        )
        wait_for(
            "the training pod gone",
            lambda: not pods_of(kube, namespace, "retrain-shapes-v1"),
            120,
            operator,
        )
    (run,) = runs_of(world, uid)
    assert run["info"]["status"] in ("KILLED", "FAILED"), run["info"]["status"]
    folder = layout.VersionPaths.for_version(storage_root(world, namespace), "shapes", 1)
    assert json.loads(folder.owner.read_text())["retrainJob"]["uid"] == uid
    assert folder.run_dir.is_dir()
    assert versions_ledger(kube, namespace, "shapes")["next"] == "2"


@pytest.mark.parametrize("point", ["after-allocation", "after-job-create", "before-status-patch"])
def test_an_operator_killed_at_each_window_converges_to_one_version_and_one_job(
    point: str, world: World, namespace: str, kube: client.ApiClient, crd: object, tmp_path: Path
) -> None:
    queued = {"scheduling": {"queueName": "nowhere"}}  # the Job stays suspended: no training
    with operator_in_prepared_namespace(
        world, kube, namespace, tmp_path, RETRAINER_FAULT_POINT=point
    ) as operator:
        uid = create(kube, namespace, retrainjob("window", "s3://datasets/none", **queued))[
            "metadata"
        ]["uid"]
        proc = operator.proc
        assert proc is not None
        wait_for(f"the operator to die at {point}", lambda: proc.poll() is not None, 60)
        assert proc.returncode == -signal.SIGKILL, operator.logs()[-2000:]
        del operator.extra_env["RETRAINER_FAULT_POINT"]
        operator.start()
        obj = wait_reason(kube, namespace, "window", "Accepted", "JobCreated", 60, operator)
    assert obj["status"]["version"] == 1
    assert obj["status"]["jobName"] == "retrain-shapes-v1"
    jobs = client.BatchV1Api(kube).list_namespaced_job(namespace).items
    assert [j.metadata.name for j in jobs] == ["retrain-shapes-v1"]
    assert jobs[0].metadata.annotations["retrainer.dev/uid"] == uid
    assert versions_ledger(kube, namespace, "shapes")["next"] == "2"


@contextlib.contextmanager
def small_claim(path: Path, size: str) -> Iterator[None]:
    """Fault point: the claim's folder becomes a size-limited filesystem (tmpfs, as root)."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_claim_fails_at_once_as_storage_full_naming_the_fix(
    world: World,
    namespace: str,
    kube: client.ApiClient,
    crd: object,
    tmp_path: Path,
    dataset: str,
) -> None:
    with operator_in_prepared_namespace(world, kube, namespace, tmp_path) as operator:
        wait_for(
            "the claim bound",
            lambda: (
                client.CoreV1Api(kube)
                .read_namespaced_persistent_volume_claim("retrainer-models", namespace)
                .status.phase
                == "Bound"
            ),
            60,
            operator,
        )
        # Room for the ownership record and Ultralytics' first files, not for any weights.
        with small_claim(storage_root(world, namespace), "1m"):
            create(kube, namespace, retrainjob("full", dataset))
            obj = wait_finished(kube, namespace, "full", operator)
    failed = condition(obj, "Failed")
    assert obj["status"]["phase"] == "Failed" and failed["reason"] == "StorageFull", failed
    assert "grow it" in failed["message"]
    assert obj["status"]["attempts"] == 1, "retried although retrying cannot help"
