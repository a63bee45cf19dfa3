"""No number is handed out, and no Job started, without the durable evidence behind it.

Two fault points, each MLflow frozen (SIGSTOP): a RetrainJob of a line whose record must be
rebuilt from MLflow waits (`EvidenceUnavailable`) and allocates nothing; a RetrainJob whose
allocation cannot be backed up in MLflow (the experiment's allocated tag) starts no Job until
it is (`AllocationUnrecorded`). Jobs stay suspended (a Kueue queue name, no Kueue): no training.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from operator_support import (
    condition,
    create,
    frozen,
    get,
    jobs_of,
    mlflow_json,
    operator_in_prepared_namespace,
    retrainjob,
    versions_ledger,
    wait_accepted,
    wait_for,
)
from retrainer_contract import tracking
from retrainer_world.world import World

pytestmark = pytest.mark.integration

QUEUED = {"scheduling": {"queueName": "nowhere"}}


def accepted_reason(kube: client.ApiClient, namespace: str, name: str) -> str | None:
    obj = get(kube, namespace, name)
    return str(condition(obj, "Accepted").get("reason")) if obj.get("status") else None


def ledger_or_none(kube: client.ApiClient, namespace: str) -> dict[str, str]:
    """The line's ledger ({} when the ModelLine does not even exist)."""
    try:
        return versions_ledger(kube, namespace, "shapes")
    except ApiException as error:
        if error.status == 404:
            return {}
        raise


def allocated_tags(world: World, namespace: str) -> dict[str, str]:
    found = mlflow_json(world, "/api/2.0/mlflow/experiments/get-by-name?experiment_name=shapes")
    tags = {t["key"]: t["value"] for t in found["experiment"].get("tags") or []}
    return {
        k: v for k, v in tags.items() if k.startswith(tracking.allocated_tag(namespace, "shapes"))
    }


def test_a_lost_line_allocates_nothing_while_mlflow_is_down_and_says_why(
    world: World, namespace: str, kube: client.ApiClient, crd: object, tmp_path: Path
) -> None:
    with operator_in_prepared_namespace(world, kube, namespace, tmp_path) as operator:
        with frozen(world, "mlflow"):
            create(kube, namespace, retrainjob("waits", "s3://datasets/none", **QUEUED))
            wait_for(
                "Accepted=Unknown EvidenceUnavailable",
                lambda: accepted_reason(kube, namespace, "waits") == "EvidenceUnavailable" or None,
                90,
                operator,
            )
            waiting = get(kube, namespace, "waits")
            assert condition(waiting, "Accepted")["status"] == "Unknown"
            assert "version" not in waiting["status"]
            assert jobs_of(kube, namespace, "waits") == []
            assert "next" not in ledger_or_none(kube, namespace)
        (obj,) = wait_accepted(kube, namespace, ["waits"], 120, operator)
    assert obj["status"]["version"] == 1
    assert len(jobs_of(kube, namespace, "waits")) == 1


def test_an_allocation_whose_mlflow_backup_fails_starts_no_job_until_it_is_written(
    world: World, namespace: str, kube: client.ApiClient, crd: object, tmp_path: Path
) -> None:
    with operator_in_prepared_namespace(world, kube, namespace, tmp_path) as operator:
        create(kube, namespace, retrainjob("first", "s3://datasets/none", **QUEUED))
        wait_accepted(kube, namespace, ["first"], 120, operator)
        with frozen(world, "mlflow"):
            create(kube, namespace, retrainjob("second", "s3://datasets/none", **QUEUED))
            wait_for(
                "Accepted=Unknown AllocationUnrecorded",
                lambda: (
                    accepted_reason(kube, namespace, "second") == "AllocationUnrecorded" or None
                ),
                90,
                operator,
            )
            message = condition(get(kube, namespace, "second"), "Accepted")["message"]
            assert "version 2 is allocated" in message
            assert jobs_of(kube, namespace, "second") == []
        (obj,) = wait_accepted(kube, namespace, ["second"], 120, operator)
    assert obj["status"]["version"] == 2
    assert len(jobs_of(kube, namespace, "second")) == 1
    assert tracking.allocated_tag(namespace, "shapes", 2) in allocated_tags(world, namespace)
