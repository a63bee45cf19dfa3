"""The operator's checks and version ledger, exercised without training (fast).

A Kueue queue name makes the training Job start suspended; with no Kueue in the world it stays
suspended, so these tests see allocation and Job creation without running the trainer.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client
from operator_support import (
    condition,
    create,
    event_reasons,
    get,
    jobs_of,
    operator_in_prepared_namespace,
    retrainjob,
    running_operator,
    versions_ledger,
    wait_accepted,
    wait_for,
    wait_phase,
)
from retrainer_world.world import World

pytestmark = pytest.mark.integration

QUEUED = {"scheduling": {"queueName": "nowhere"}}


def test_twenty_retrainjobs_at_once_get_versions_1_to_20_each_once(
    world: World, namespace: str, kube: client.ApiClient, crd: object, tmp_path: Path
) -> None:
    names = [f"burst-{i:02d}" for i in range(20)]
    with operator_in_prepared_namespace(world, kube, namespace, tmp_path) as operator:
        for name in names:
            create(kube, namespace, retrainjob(name, "s3://datasets/none", **QUEUED))
        objs = wait_accepted(kube, namespace, names, 120, operator)
    versions = sorted(o["status"]["version"] for o in objs)
    assert versions == list(range(1, 21))
    jobs = client.BatchV1Api(kube).list_namespaced_job(namespace).items
    assert sorted(j.metadata.name for j in jobs) == sorted(f"retrain-shapes-v{v}" for v in versions)
    for obj in objs:
        status = obj["status"]
        assert status["jobName"] == f"retrain-shapes-v{status['version']}"
        assert status["phase"] == "Pending"
    assert versions_ledger(kube, namespace, "shapes")["next"] == "21"


def test_base_version_latest_without_a_verified_version_fails_without_a_job(
    world: World, namespace: str, kube: client.ApiClient, crd: object, tmp_path: Path
) -> None:
    with operator_in_prepared_namespace(world, kube, namespace, tmp_path) as operator:
        create(
            kube,
            namespace,
            retrainjob("from-latest", "s3://datasets/none", baseModel={"version": "latest"}),
        )
        obj = wait_phase(kube, namespace, "from-latest", ("Failed",), 60, operator)
    failed = condition(obj, "Failed")
    assert failed["reason"] == "BaseModelNotFound"
    assert "latest" in failed["message"]
    assert condition(obj, "Accepted")["status"] == "False"
    assert "version" not in obj["status"]
    assert jobs_of(kube, namespace, "from-latest") == []
    assert "BaseModelNotFound" in event_reasons(kube, namespace, "from-latest")


def test_a_missing_claim_fails_naming_the_claim_and_the_fix(
    world: World, namespace: str, kube: client.ApiClient, crd: object, tmp_path: Path
) -> None:
    with running_operator(world, namespace, tmp_path) as operator:
        create(
            kube,
            namespace,
            retrainjob("no-claim", "s3://datasets/none", storage={"claimName": "absent"}),
        )
        obj = wait_phase(kube, namespace, "no-claim", ("Failed",), 60, operator)
    failed = condition(obj, "Failed")
    assert failed["reason"] == "ClaimNotFound"
    assert "'absent'" in failed["message"]
    assert "spec.storage.claimName" in failed["message"]
    assert jobs_of(kube, namespace, "no-claim") == []


def test_reapplying_the_same_manifest_changes_nothing(
    world: World,
    namespace: str,
    kube: client.ApiClient,
    kubectl: object,
    crd: object,
    tmp_path: Path,
) -> None:
    import json

    manifest = json.dumps(retrainjob("again", "s3://datasets/none", **QUEUED))
    with operator_in_prepared_namespace(world, kube, namespace, tmp_path) as operator:
        kubectl("apply", "-n", namespace, "-f", "-", input=manifest)  # type: ignore[operator]
        first = wait_for(
            "accepted",
            lambda: (
                (o := get(kube, namespace, "again"))
                and condition(o, "Accepted").get("status") == "True"
                and o
            ),
            60,
            operator,
        )
        out = kubectl("apply", "-n", namespace, "-f", "-", input=manifest)  # type: ignore[operator]
        assert "unchanged" in out.stdout
        # A restart re-examines everything: still the same version, Job and status.
        operator.kill()
        operator.start()
        wait_for(
            "operator resumed",
            lambda: f"first pass retrainjob={namespace}/again " in operator.log_path.read_text(),
            60,
            operator,
        )
        second = get(kube, namespace, "again")
    assert second["status"]["version"] == first["status"]["version"] == 1
    assert second["status"]["conditions"] == first["status"]["conditions"]
    assert len(jobs_of(kube, namespace, "again")) == 1
    assert versions_ledger(kube, namespace, "shapes")["next"] == "2"
