"""A training Job's outcome is recorded before the Job may go (its finalizer), against the real
world: the TTL controller, the garbage collector and the Job controller do the deleting.

Runs carry a Kueue queue name, so their Job is created suspended (no Kueue here) and the test
decides when it runs: after the operator is down (fault point: operator SIGKILLed), as Kueue
would admit it. The line tick runs every second (RETRAINER_LINE_INTERVAL=1): it releases the
Jobs of RetrainJobs that are finished or gone.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from operator_support import (
    GROUP,
    PLURAL,
    VERSION,
    condition,
    create,
    events_of,
    get,
    jobs_of,
    operator_in_prepared_namespace,
    retrainjob,
    wait_accepted,
    wait_finished,
    wait_for,
)
from retrainer_contract import api
from retrainer_demo import shapes
from retrainer_world.world import World

pytestmark = pytest.mark.integration

QUEUED = {"scheduling": {"queueName": "nowhere"}}
FAST = {"RETRAINER_LINE_INTERVAL": "1"}
JOB = "retrain-shapes-v1"


def bad_label_dataset(world: World, tmp_path: Path, namespace: str) -> str:
    """A dataset the trainer refuses at once (exit 3, BadInput): a failure without training."""
    folder = shapes.generate_dataset(tmp_path / "bad")
    (folder / "labels" / "train" / "train_0003.txt").write_text("7 0.5 0.5 0.2 0.2\n")
    shapes.upload_folder(world.minio_client(), "datasets", f"{namespace}/bad", folder)
    return f"s3://datasets/{namespace}/bad"


def read_job(kube: client.ApiClient, namespace: str) -> Any:
    try:
        return client.BatchV1Api(kube).read_namespaced_job(JOB, namespace)
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise


def pods_created(kube: client.ApiClient, namespace: str) -> int:
    """How many pods the Job controller created for Jobs named JOB, gone ones included."""
    events = events_of(kube, namespace, JOB, kind="Job")
    return sum(e.count or 1 for e in events if e.reason == "SuccessfulCreate")


def gone_or_replaced(kube: client.ApiClient, namespace: str, uid: str) -> bool:
    job = read_job(kube, namespace)
    return job is None or job.metadata.uid != uid


def failed_and_removed_by_ttl(kube: client.ApiClient, namespace: str) -> bool:
    """The Job failed and the TTL controller deleted it (gone, or held by a finalizer)."""
    job = read_job(kube, namespace)
    return job is None or job.metadata.deletion_timestamp is not None


def test_a_job_that_failed_while_the_operator_was_down_and_was_removed_by_ttl_runs_once(
    world: World, namespace: str, kube: client.ApiClient, crd: object, tmp_path: Path
) -> None:
    dataset = bad_label_dataset(world, tmp_path, namespace)
    spec = {**QUEUED, "ttlSecondsAfterFinished": 0, "retry": {"backoffLimit": 0}}
    with operator_in_prepared_namespace(world, kube, namespace, tmp_path, **FAST) as operator:
        create(kube, namespace, retrainjob("once", dataset, **spec))
        wait_accepted(kube, namespace, ["once"], 120, operator)
        operator.kill()  # fault point: no operator from here until the Job is gone

        client.BatchV1Api(kube).patch_namespaced_job(JOB, namespace, {"spec": {"suspend": False}})
        wait_for(
            "the Job failed and deleted by its TTL",
            lambda: failed_and_removed_by_ttl(kube, namespace),
            300,
        )
        assert get(kube, namespace, "once")["status"]["phase"] != "Failed"  # not recorded yet

        operator.start()
        done = wait_finished(kube, namespace, "once", operator, timeout=120)
        wait_for("the Job released and gone", lambda: read_job(kube, namespace) is None, 60)
        time.sleep(5)  # several progress intervals and line ticks: nothing starts again

    failed = condition(done, "Failed")
    assert done["status"]["phase"] == "Failed", done["status"]
    assert failed["reason"] == "BadInput", failed
    assert jobs_of(kube, namespace, "once") == [], "a second Job was created"
    assert pods_created(kube, namespace) == 1, "the version trained twice"


def test_a_deleted_retrainjob_or_a_job_deleted_by_hand_never_leaves_a_job_hanging(
    world: World, namespace: str, kube: client.ApiClient, crd: object, tmp_path: Path
) -> None:
    custom = client.CustomObjectsApi(kube)
    batch = client.BatchV1Api(kube)
    with operator_in_prepared_namespace(world, kube, namespace, tmp_path, **FAST) as operator:
        create(kube, namespace, retrainjob("by-hand", "s3://datasets/none", **QUEUED))
        wait_accepted(kube, namespace, ["by-hand"], 120, operator)
        first = read_job(kube, namespace)
        assert api.JOB_FINALIZER in (first.metadata.finalizers or [])

        batch.delete_namespaced_job(JOB, namespace)  # fault point: deleted by hand
        wait_for(
            "the deleted Job gone (a new one may replace it)",
            lambda: gone_or_replaced(kube, namespace, first.metadata.uid),
            60,
            operator,
        )

        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "by-hand")
        wait_for(  # fault point: its RetrainJob deleted; the garbage collector deletes the Job
            "the Job of the deleted RetrainJob gone",
            lambda: read_job(kube, namespace) is None,
            60,
            operator,
        )
