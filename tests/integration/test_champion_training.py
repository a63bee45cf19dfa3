"""A lost ModelLine never crowns an uncompared model, with real training end to end.

The issue's scenario: v1 (the first version) and v2 (clearly better) are promoted; then the
ModelLine and v2's RetrainJob are deleted (a GitOps prune of old runs), and a weak from-scratch
RetrainJob arrives. Before, the rebuilt line had no champion: the weak version was crowned
(NoChampion) and the alias moved to it. Now the line comes back with v2 as champion (from the
alias and the run tags) and the weak version is Rejected against it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from operator_support import (
    GROUP,
    PLURAL,
    TRAIN_TIMEOUT,
    VERSION,
    condition,
    create,
    get_line,
    operator_in_prepared_namespace,
    upload_dataset,
    wait_finished,
    wait_for,
)
from retrainer_contract import api
from retrainer_world.world import World
from test_promotion import GOOD_EPOCHS, SIZE, TRAIN, alias_run, holdout, promoted_job

pytestmark = pytest.mark.integration

__all__ = ["holdout"]  # the fixture, shared with test_promotion


def test_a_deleted_modelline_comes_back_with_its_champion_and_a_worse_version_is_rejected(
    world: World,
    namespace: str,
    kube: client.ApiClient,
    crd: object,
    tmp_path: Path,
    holdout: str,
) -> None:
    dataset = upload_dataset(world, tmp_path, f"{namespace}/shapes", train=TRAIN, size=SIZE)
    registered = namespace
    custom = client.CustomObjectsApi(kube)
    with operator_in_prepared_namespace(world, kube, namespace, tmp_path) as operator:
        create(kube, namespace, promoted_job("first", dataset, holdout, registered, 1))
        wait_finished(kube, namespace, "first", operator)
        better = promoted_job(
            "better", dataset, holdout, registered, GOOD_EPOCHS, baseModel={"version": "latest"}
        )
        create(kube, namespace, better)
        second = wait_finished(kube, namespace, "better", operator, timeout=2 * TRAIN_TIMEOUT)
        assert condition(second, "Promoted")["reason"] == "Promoted", second["status"]
        v2_run = alias_run(world, registered)

        # The record is lost: the ModelLine and v2's RetrainJob are pruned.
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "better")
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, api.LINE_PLURAL, "shapes")

        def line_gone() -> bool | None:
            try:
                get_line(kube, namespace, "shapes")
            except ApiException as error:
                return True if error.status == 404 else None
            return None

        wait_for("the ModelLine deleted", line_gone, 60, operator)
        create(kube, namespace, promoted_job("worse", dataset, holdout, registered, 1))
        third = wait_finished(kube, namespace, "worse", operator)
        line = get_line(kube, namespace, "shapes")

    assert third["status"]["version"] == 3  # numbering went on
    evaluation = third["status"]["evaluation"]
    assert evaluation["champion"]["version"] == 2, evaluation
    assert evaluation["decision"] == "Rejected", evaluation
    promoted = condition(third, "Promoted")
    assert (promoted["status"], promoted["reason"]) == ("False", "Rejected")
    assert alias_run(world, registered) == v2_run  # production still loads v2
    champion = line["status"]["champion"]
    assert (champion["version"], champion["previous"]) == (2, 1)
    assert line["status"]["latestVerified"] == 3
    assert line["status"]["verifiedVersions"] == "1-3"
