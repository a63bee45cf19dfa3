"""The chart's replicas and leader election as rendered: with the Lease (the default) the
operator rolls without Recreate, reads its Lease settings and pod identity from its env (the
operator's own config parser accepts them), and may touch only its Lease, in the release
namespace; without it, one replica with Recreate, and more are refused.

These need helm (the world's) but no running operator; test_operator_replicas.py runs two.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pytest
from chart_support import CHART, HelmRunner, find, render, values_file_args
from retrainer_operator.config import OperatorConfig

pytestmark = pytest.mark.integration

LEASE_RULES = [
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "resourceNames": ["retrainer-operator"],
        "verbs": ["get", "update"],
    },
]


def operator_deployment(objects: list[dict[str, Any]]) -> Mapping[str, Any]:
    (deployment,) = find(objects, "Deployment", name="retrainer-operator")
    return deployment


def container_env(deployment: Mapping[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {env["name"]: env.get("value", env.get("valueFrom")) for env in container["env"]}


def test_two_replicas_roll_with_a_standby_first_and_read_their_lease_from_env(
    helm: HelmRunner,
) -> None:
    deployment = operator_deployment(render(helm, "--set", "replicaCount=2"))
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    env = container_env(deployment)
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    # What the operator makes of it, with the downward API filled in.
    plain = {name: value for name, value in env.items() if isinstance(value, str)}
    config = OperatorConfig.from_env(
        {**plain, "POD_NAME": "retrainer-operator-5d9f-abcde", "POD_NAMESPACE": "retrainer-system"}
    )
    assert config.leader_election
    assert (config.lease_namespace, config.lease_name) == ("retrainer-system", "retrainer-operator")
    assert config.leader_identity.startswith("retrainer-operator-5d9f-abcde_")
    assert (
        config.lease_duration_seconds,
        config.lease_renew_deadline_seconds,
        config.lease_retry_period_seconds,
    ) == (15, 10.0, 2.0)


@pytest.mark.parametrize("values", [None, "namespaced"])
def test_the_operator_may_touch_only_its_lease_in_the_release_namespace(
    helm: HelmRunner, values: str | None
) -> None:
    objects = render(helm, *values_file_args(values))
    (role,) = find(objects, "Role", name="retrainer-operator-leader")
    assert role["metadata"]["namespace"] == "retrainer-system"
    assert role["rules"] == LEASE_RULES
    (binding,) = find(objects, "RoleBinding", name="retrainer-operator-leader")
    assert binding["roleRef"]["name"] == "retrainer-operator-leader"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "retrainer-operator", "namespace": "retrainer-system"}
    ]
    leases = [
        rule
        for obj in find(objects, "Role") + find(objects, "ClusterRole")
        for rule in obj["rules"]
        if "leases" in rule["resources"]
    ]
    assert leases == LEASE_RULES, "leases granted beyond the release namespace's Role"


def test_a_lease_name_value_names_the_lease_and_its_rule(helm: HelmRunner) -> None:
    objects = render(helm, "--set", "leaderElection.leaseName=ops-leader")
    assert container_env(operator_deployment(objects))["RETRAINER_LEASE_NAME"] == "ops-leader"
    (role,) = find(objects, "Role", name="retrainer-operator-leader")
    assert role["rules"][1]["resourceNames"] == ["ops-leader"]


def test_without_leader_election_one_replica_is_recreated_and_no_lease_is_granted(
    helm: HelmRunner,
) -> None:
    objects = render(helm, "--set", "leaderElection.enabled=false")
    deployment = operator_deployment(objects)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert not {"RETRAINER_LEADER_ELECTION", "POD_NAME"} & set(container_env(deployment))
    assert find(objects, "Role", name="retrainer-operator-leader") == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--set", "replicaCount=2", "--set", "leaderElection.enabled=false"],
            r"replicaCount above 1 needs leaderElection.enabled",
        ),
        (["--set", "replicaCount=0"], r"replicaCount"),
        (["--set", "leaderElection.renewDeadlineSeconds=15"], r"renewDeadlineSeconds"),
        (["--set", "leaderElection.retryPeriodSeconds=10"], r"retryPeriodSeconds"),
        (["--set", "leaderElection.peering=true"], r"additional propert.*peering"),
    ],
)
def test_replica_values_that_would_let_two_operators_reconcile_are_refused(
    helm: HelmRunner, args: list[str], message: str
) -> None:
    result = helm("template", "retrainer", str(CHART), *args, check=False)
    assert result.returncode != 0
    assert re.search(message, result.stderr, re.IGNORECASE | re.DOTALL), result.stderr


def test_two_replicas_pass_the_apiservers_validation(
    helm: HelmRunner, namespace: str, crd: str
) -> None:
    # Server-side dry run: the real apiserver validates the Deployment, Role and RoleBinding.
    release = "rp-" + namespace[-12:].strip("-")
    result = helm(
        "install",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--dry-run=server",
        "--set",
        "replicaCount=2",
        "--set",
        "s3.secretName=chart-s3",
    )
    assert "kind: Lease" not in result.stdout  # the operator creates it, not the chart
    assert re.search(r"name: \S+-operator-leader", result.stdout)
