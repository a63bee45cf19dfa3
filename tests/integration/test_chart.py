"""The Helm chart as rendered: it lints, renders what config.md fixes (names, env, RBAC,
labels) for the defaults and each value file, rejects bad values with a message naming them,
documents and types every value, and carries an exact copy of the CRD.

These need helm but no cluster; test_chart_install.py covers the chart in the real world.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest
import yaml
from chart_support import (
    CHART,
    ROOT,
    VALUES_DIR,
    HelmRunner,
    find,
    render,
    values_file_args,
)
from retrainer_operator.config import POD_SECURITY_CONTEXT, SECURITY_CONTEXT, OperatorConfig

pytestmark = pytest.mark.integration

VALUE_FILES = [None, *sorted(p.stem for p in VALUES_DIR.glob("*.yaml"))]
SECRET = "minio-credentials"
LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
)
# (apiGroup, resource) -> verbs: the operator's needs as config.md lists them.
NAMESPACED_NEEDS = {
    ("retrainer.dev", "retrainjobs"): {"get", "list", "watch", "patch", "create", "delete"},
    ("retrainer.dev", "retrainjobs/status"): {"get", "patch", "update"},
    ("retrainer.dev", "modellines"): {"get", "list", "watch", "create", "patch"},
    ("retrainer.dev", "modellines/status"): {"get", "patch", "update"},
    # patch: the finalizer on training Jobs (kept until their outcome is recorded).
    ("batch", "jobs"): {"get", "list", "watch", "create", "delete", "patch"},
    ("", "pods"): {"get", "list", "watch"},
    ("", "events"): {"create", "patch", "list", "watch"},
    ("events.k8s.io", "events"): {"create", "patch", "list", "watch"},
    ("", "persistentvolumeclaims"): {"get"},
    ("", "secrets"): {"get"},
}
# Cluster-wide: the same, plus namespace and CRD discovery. No ConfigMap rights anywhere: the
# version sequence lives in each ModelLine's status.
CLUSTER_NEEDS = {
    **NAMESPACED_NEEDS,
    ("", "namespaces"): {"list", "watch"},
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch", "get"},
}


def rules_granted(rules: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], set[str]]:
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


def config_map_data(objects: Sequence[Mapping[str, Any]]) -> Mapping[str, str]:
    (config,) = find(objects, "ConfigMap")
    data: Mapping[str, str] = config["data"]
    return data


# -- rendering, no cluster needed -------------------------------------------------------


@pytest.mark.parametrize("values", VALUE_FILES)
def test_chart_lints_clean_with_defaults_and_each_values_file(
    helm: HelmRunner, values: str
) -> None:
    result = helm("lint", "--strict", str(CHART), *values_file_args(values))
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("values", VALUE_FILES)
def test_every_rendered_object_carries_the_recommended_labels(
    helm: HelmRunner, values: str
) -> None:
    objects = render(helm, *values_file_args(values))
    for obj in objects:
        if obj["kind"] == "CustomResourceDefinition":
            continue  # a verbatim copy of crds/, labelled there
        labels = obj["metadata"].get("labels", {})
        missing = [label for label in LABELS if label not in labels]
        assert missing == [], f"{obj['kind']}/{obj['metadata']['name']} lacks {missing}"


def test_defaults_render_the_operator_config_with_the_documented_defaults(helm: HelmRunner) -> None:
    objects = render(helm)
    data = config_map_data(objects)
    # The security contexts travel as JSON: the chart's defaults are the operator's own.
    assert json.loads(data.pop("RETRAINER_TRAINER_POD_SECURITY_CONTEXT")) == POD_SECURITY_CONTEXT
    assert json.loads(data.pop("RETRAINER_TRAINER_SECURITY_CONTEXT")) == SECURITY_CONTEXT
    assert data == {
        "RETRAINER_TRAINER_IMAGE": "ghcr.io/retrainer/trainer:0.1.0",
        "RETRAINER_OPERATOR_IMAGE": "ghcr.io/retrainer/operator:0.1.0",
        "RETRAINER_CLAIM_NAME": "retrainer-models",
        "RETRAINER_STORAGE_ROOT": "/var/lib/retrainer",
        "RETRAINER_MLFLOW_TRACKING_URI": "http://retrainer-mlflow:5000",
        "RETRAINER_S3_ENDPOINT": "http://retrainer-minio:9000",
        "RETRAINER_S3_SECRET_NAME": SECRET,
        "RETRAINER_NAMESPACES": "",
        "RETRAINER_TRAINER_SERVICE_ACCOUNT": "retrainer-trainer",
        "RETRAINER_ALLOWED_TRAINER_IMAGES": "ghcr.io/retrainer/trainer",
        "RETRAINER_TRAINER_ACTIVE_DEADLINE_SECONDS": "86400",
        "RETRAINER_TRAINER_WORKDIR_SIZE_LIMIT": "50Gi",
        "RETRAINER_DATASET_CACHE_MAX_SIZE": "100Gi",
        "RETRAINER_DATASET_FETCH_CONCURRENCY": "16",
        "RETRAINER_METRICS_PORT": "8080",
        "RETRAINER_HEALTH_PORT": "8081",
        "RETRAINER_PROGRESS_INTERVAL": "10",
        "RETRAINER_LINE_INTERVAL": "10",
        "RETRAINER_CHAMPION_SYNC_INTERVAL": "300",
        "RETRAINER_LOG_FORMAT": "json",
    }
    (trainer_sa,) = find(objects, "ServiceAccount", name="retrainer-trainer")
    assert trainer_sa["automountServiceAccountToken"] is False
    # Namespaced rights: only leader election's (leases, release namespace) and the upkeep
    # identity's (get ModelLines, for retention's champion re-read); no ConfigMap rights.
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]) for r in find(objects, "Role")}
    assert roles == {
        ("retrainer-system", "retrainer-operator-leader"),
        ("retrainer-system", "retrainer-upkeep"),
    }
    assert find(objects, "PersistentVolumeClaim") == []
    assert find(objects, "Secret") == []


def test_operator_deployment_is_single_hardened_and_probed(helm: HelmRunner) -> None:
    (deployment,) = find(render(helm), "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    # Leader election (on by default): the new pod stands by until the old one lets go.
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "retrainer-operator"
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["image"] == "ghcr.io/retrainer/operator:0.1.0"
    assert container["securityContext"] == {
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    # A rolling update waits for the successor to answer before it stops an old replica.
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}
    assert container["envFrom"] == [{"configMapRef": {"name": "retrainer-operator"}}]
    credentials = {
        env["name"]: env["valueFrom"]["secretKeyRef"]
        for env in container["env"]
        if "secretKeyRef" in (env.get("valueFrom") or {})
    }
    assert credentials == {
        "AWS_ACCESS_KEY_ID": {"name": SECRET, "key": "accessKey"},
        "AWS_SECRET_ACCESS_KEY": {"name": SECRET, "key": "secretKey"},
    }
    assert container["resources"]["limits"]["memory"]


def test_cluster_wide_mode_grants_exactly_the_documented_needs(helm: HelmRunner) -> None:
    objects = render(helm)
    (role,) = find(objects, "ClusterRole")
    assert rules_granted(role["rules"]) == CLUSTER_NEEDS
    (secret_rule,) = [rule for rule in role["rules"] if "secrets" in rule["resources"]]
    assert secret_rule["resourceNames"] == [SECRET]
    (binding,) = find(objects, "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "retrainer-operator", "namespace": "retrainer-system"}
    ]


def test_every_rbac_rule_is_commented(helm: HelmRunner) -> None:
    for values in ([], values_file_args("namespaced")):
        text = helm(
            "template", "retrainer", str(CHART), "--show-only", "templates/rbac.yaml", *values
        ).stdout
        lines = text.splitlines()
        rule_starts = [i for i, line in enumerate(lines) if line.strip().startswith("- apiGroups")]
        assert rule_starts
        for i in rule_starts:
            assert lines[i - 1].strip().startswith("#"), f"uncommented rule: {lines[i]}"


def test_namespaced_mode_grants_roles_only_in_the_watched_namespaces(helm: HelmRunner) -> None:
    objects = render(helm, *values_file_args("namespaced"))
    assert find(objects, "ClusterRole") == [] and find(objects, "ClusterRoleBinding") == []
    # The leader-election Role (leases only) lives in the release namespace.
    roles = [
        r
        for r in find(objects, "Role")
        if r["metadata"]["name"] not in ("retrainer-operator-leader", "retrainer-upkeep")
    ]
    assert sorted(role["metadata"]["namespace"] for role in roles) == ["team-a", "team-b"]
    for role in roles:
        assert rules_granted(role["rules"]) == NAMESPACED_NEEDS
    bindings = [
        b
        for b in find(objects, "RoleBinding")
        if b["metadata"]["name"] not in ("retrainer-operator-leader", "retrainer-upkeep")
    ]
    assert {b["subjects"][0]["namespace"] for b in bindings} == {"retrainer-system"}
    assert config_map_data(objects)["RETRAINER_NAMESPACES"] == "team-a,team-b"
    provisioned = {"retrainer-system", "team-a", "team-b"}
    trainer_sas = find(objects, "ServiceAccount", name="retrainer-trainer")
    assert {sa["metadata"]["namespace"] for sa in trainer_sas} == provisioned
    claims = find(objects, "PersistentVolumeClaim", name="retrainer-models")
    assert {claim["metadata"]["namespace"] for claim in claims} == provisioned
    assert all(c["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep" for c in claims)


def test_bundled_mode_points_the_operator_at_the_bundled_services(helm: HelmRunner) -> None:
    objects = render(helm, *values_file_args("bundled"))
    data = config_map_data(objects)
    assert (
        data["RETRAINER_MLFLOW_TRACKING_URI"] == "http://retrainer-mlflow.retrainer-system.svc:5000"
    )
    assert data["RETRAINER_S3_ENDPOINT"] == "http://retrainer-minio.retrainer-system.svc:9000"
    deployments = {d["metadata"]["name"] for d in find(objects, "Deployment")}
    assert deployments == {"retrainer-operator", "retrainer-minio", "retrainer-mlflow"}
    services = {s["metadata"]["name"] for s in find(objects, "Service")}
    assert services == {"retrainer-metrics", "retrainer-minio", "retrainer-mlflow"}
    (secret,) = find(objects, "Secret", name=SECRET)
    assert set(secret["data"]) == {"accessKey", "secretKey"}
    (monitor,) = find(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    (mlflow,) = find(objects, "Deployment", name="retrainer-mlflow")
    pod = mlflow["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert "--default-artifact-root=s3://mlflow" in args
    # The project's own MLflow image (boto3 inside), serving the S3 artifacts itself, and
    # answering the Service's names (MLflow 3 refuses unknown Host headers).
    images = {c["image"] for c in pod["containers"] + pod.get("initContainers", [])}
    assert images == {"ghcr.io/retrainer/mlflow:0.1.0"}
    assert "--serve-artifacts" in args and "--artifacts-destination=s3://mlflow" in args
    (hosts,) = [a for a in args if a.startswith("--allowed-hosts=")]
    assert "retrainer-mlflow.retrainer-system.svc" in hosts.split("=", 1)[1].split(",")


def test_external_values_reach_the_operator_config(helm: HelmRunner) -> None:
    objects = render(helm, *values_file_args("external"))
    data = config_map_data(objects)
    assert data["RETRAINER_TRAINER_IMAGE"] == "registry.example.com/mlops/retrainer-trainer:0.1.0"
    assert data["RETRAINER_CLAIM_NAME"] == "shared-models"
    assert data["RETRAINER_STORAGE_ROOT"] == "/models"
    assert data["RETRAINER_MLFLOW_TRACKING_URI"] == "https://mlflow.example.com"
    assert data["RETRAINER_S3_ENDPOINT"] == "https://s3.example.com"
    assert data["RETRAINER_S3_SECRET_NAME"] == "mlops-s3"
    assert data["RETRAINER_LOG_FORMAT"] == "plain"
    # The allowlist follows the trainer image's repository unless listed.
    assert (
        data["RETRAINER_ALLOWED_TRAINER_IMAGES"] == "registry.example.com/mlops/retrainer-trainer"
    )
    (role,) = find(objects, "ClusterRole")
    (secret_rule,) = [rule for rule in role["rules"] if "secrets" in rule["resources"]]
    assert secret_rule["resourceNames"] == ["mlops-s3"]


def test_trainer_policy_values_reach_the_operator_config(helm: HelmRunner) -> None:
    data = config_map_data(
        render(
            helm,
            "--set",
            "trainer.allowedImages={ghcr.io/retrainer/trainer,registry.example.com/mlops/}",
            "--set",
            "trainer.activeDeadlineSeconds=3600",
            "--set",
            "trainer.workdirSizeLimit=200Gi",
            "--set",
            "trainer.datasetCache.maxSize=2Ti",
            "--set",
            "trainer.datasetCache.fetchConcurrency=64",
        )
    )
    assert data["RETRAINER_ALLOWED_TRAINER_IMAGES"] == (
        "ghcr.io/retrainer/trainer,registry.example.com/mlops/"
    )
    assert data["RETRAINER_TRAINER_ACTIVE_DEADLINE_SECONDS"] == "3600"
    assert data["RETRAINER_TRAINER_WORKDIR_SIZE_LIMIT"] == "200Gi"
    # What the chart renders, the operator accepts.
    config = OperatorConfig.from_env(data)
    assert config.allowed_trainer_images == (
        "ghcr.io/retrainer/trainer",
        "registry.example.com/mlops/",
    )
    assert config.trainer_active_deadline_seconds == 3600
    assert config.trainer_workdir_size_limit == "200Gi"
    assert (config.dataset_cache_max_size, config.dataset_fetch_concurrency) == ("2Ti", 64)
    assert OperatorConfig.from_env(config_map_data(render(helm))).allowed_trainer_images == (
        "ghcr.io/retrainer/trainer",
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--set", "trainer.activeDeadlineSeconds=30"],
            r"trainer.activeDeadlineSeconds",
        ),
        (
            ["--set", "trainer.workdirSizeLimit=50GB"],
            r"trainer.workdirSizeLimit",
        ),
        (
            ["--set", "trainer.workdirSizeLimit=0"],
            r"trainer.workdirSizeLimit",
        ),
        (
            ["--set", "trainer.datasetCache.maxSize=100GB"],
            r"trainer.datasetCache.maxSize|datasetCache/maxSize",
        ),
        (
            ["--set", "trainer.datasetCache.fetchConcurrency=0"],
            r"fetchConcurrency",
        ),
        (
            ["--set", "trainer.allowedImages={ghcr.io/retrainer/trainer:0.1.0}"],
            r"trainer.allowedImages",
        ),
        (["--set", "logFormat=yaml"], r"logFormat.*(json|plain)"),
        (["--set", "replicas=2"], r"additional propert.*replicas"),
        (["--set", "watchNamespaces[0]=Team_A"], r"watchNamespaces"),
        (["--set", "metrics.port=80000"], r"metrics/port|metrics\.port"),
        (["--set", "s3.credentials.create=true"], r"s3\.credentials\.accessKey"),
    ],
)
def test_bad_value_is_rejected_with_a_message_naming_it(
    helm: HelmRunner, args: list[str], message: str
) -> None:
    result = helm("template", "retrainer", str(CHART), *args, check=False)
    assert result.returncode != 0
    assert re.search(message, result.stderr, re.IGNORECASE | re.DOTALL), result.stderr


# -- files, no helm needed -----------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["retrainer.dev_retrainjobs.yaml", "retrainer.dev_modellines.yaml"]
)
def test_chart_crd_is_an_exact_copy_of_the_source_crd(name: str) -> None:
    source = (ROOT / "crds" / name).read_text()
    copy = (CHART / "crds" / name).read_text()
    assert copy == source, "charts/retrainer/crds/ drifted from crds/: run `make crds-sync`"


def documented_keys(text: str) -> dict[tuple[str, ...], bool]:
    """Each mapping key of values.yaml by path -> whether a comment line sits right above it."""
    keys: dict[tuple[str, ...], bool] = {}
    stack: list[tuple[int, str]] = []
    commented = False
    for line in text.splitlines():
        stripped = line.strip()
        match = re.match(r"^( *)([A-Za-z][A-Za-z0-9_]*):", line)
        if stripped.startswith("#"):
            commented = True
            continue
        if match:
            indent = len(match.group(1))
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, match.group(2)))
            keys[tuple(key for _, key in stack)] = commented
        commented = False
    return keys


def schema_node(schema: Mapping[str, Any], path: Sequence[str]) -> Mapping[str, Any] | None:
    node: Mapping[str, Any] | None = schema
    for key in path:
        if node is None or "properties" not in node:
            return None
        node = node["properties"].get(key)
    return node


def test_every_value_is_documented_and_typed_by_a_strict_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    keys = documented_keys((CHART / "values.yaml").read_text())
    for path, commented in keys.items():
        parent = schema_node(schema, path[:-1])
        if parent is None or "properties" not in parent:
            continue  # inside a Kubernetes object passed through as is (securityContext, ...)
        dotted = ".".join(path)
        assert path[-1] in parent["properties"], f"{dotted} is not in values.schema.json"
        assert parent.get("additionalProperties") is False, f"{dotted}'s parent allows any key"
        assert commented, f"{dotted} has no comment in values.yaml"
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def schema_paths(node: Mapping[str, Any], prefix: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        for key, child in node.get("properties", {}).items():
            yield (*prefix, key)
            yield from schema_paths(child, (*prefix, key))

    for path in schema_paths(schema, ()):
        node: Any = values
        for key in path:
            assert isinstance(node, dict) and key in node, f"schema has {'.'.join(path)}"
            node = node[key]
