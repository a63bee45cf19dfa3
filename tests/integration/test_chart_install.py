"""The chart in the real world: it installs, and its RBAC lets the operator do what it needs
and nothing more (proved with `kubectl auth can-i` and with the operator ServiceAccount's own
token); upgrades and uninstalls leave the CRD, RetrainJobs and models claims in place.

The namespace's pods run as containers from the images `make images` built, under the
restricted Pod Security Standard, as in test_chart_operator.py; nothing here waits for them.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from chart_support import (
    CHART,
    HelmRunner,
    fullname,
    operator_kubeconfig,
    operator_service_account,
    values_file_args,
)
from container_support import container_namespace, image_values

pytestmark = pytest.mark.integration

SECRET = "minio-credentials"
RETRAINJOB = """
apiVersion: retrainer.dev/v1alpha1
kind: RetrainJob
metadata:
  name: kept
spec:
  model: shapes
  baseModel:
    architecture: yolo11n.yaml
  dataset:
    uri: datasets/shapes
"""

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


def release_for(namespace: str) -> str:
    return "rt-" + namespace[-12:].strip("-")


@pytest.fixture
def installed(
    helm: HelmRunner, namespace: str, crd: str, kube: Any
) -> Iterator[Callable[..., str]]:
    """Installs the chart into the test namespace on demand; uninstalls it afterwards.

    The `crd` fixture serves the CRD from crds/ first, so helm finds it and leaves it alone.
    """
    release = release_for(namespace)
    container_namespace(kube, namespace)

    def install(*value_args: str) -> str:
        helm(
            "install", release, str(CHART), "--namespace", namespace,
            *image_values(), *value_args,
        )  # fmt: skip
        return release

    yield install
    helm("uninstall", release, "--namespace", namespace, check=False)


@pytest.fixture
def other_namespace(kubectl: Kubectl, namespace: str) -> Iterator[str]:
    """A second namespace, for the watched namespace of the namespaced mode."""
    name = f"{namespace[:50]}-w"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def can_i(kubectl: Kubectl, user: str, verb: str, resource: str, *args: str) -> bool:
    result = kubectl("auth", "can-i", verb, resource, f"--as={user}", *args, check=False)
    answer = str(result.stdout).strip().splitlines()[-1] if result.stdout else ""
    assert answer in {"yes", "no"}, f"kubectl auth can-i answered {result!r}"
    return answer == "yes"


@pytest.mark.parametrize("values", ["bundled", "external"])
def test_values_file_manifests_pass_the_apiservers_validation(
    helm: HelmRunner, namespace: str, crd: str, values: str
) -> None:
    # Server-side dry run: the real apiserver validates every object, nothing is created.
    # The ServiceMonitor is left out: the world has no prometheus-operator CRDs.
    install = ["install", release_for(namespace), str(CHART), "--namespace", namespace]
    # Another Secret name: the namespace fixture made minio-credentials, not helm.
    overrides = ["--set", "metrics.serviceMonitor.enabled=false", "--set", "s3.secretName=chart-s3"]
    result = helm(*install, "--dry-run=server", *values_file_args(values), *overrides)
    assert "kubectl apply -f examples/cpu-minimal.yaml" in result.stdout


def test_install_lets_the_operator_do_what_it_needs_everywhere(
    installed: Callable[..., str], namespace: str, kubectl: Kubectl
) -> None:
    release = installed("--set", "storage.create=true")
    user = f"system:serviceaccount:{namespace}:{operator_service_account(release)}"
    elsewhere = ["-n", "default"]
    for verb in ("get", "list", "watch", "patch"):
        assert can_i(kubectl, user, verb, "retrainjobs.retrainer.dev", *elsewhere), verb
    for verb in ("get", "patch", "update"):
        assert can_i(
            kubectl, user, verb, "retrainjobs.retrainer.dev", "--subresource=status", *elsewhere
        ), verb
    allowed = [
        ("create", "jobs.batch"),
        ("watch", "jobs.batch"),
        ("watch", "pods"),
        ("create", "events"),
        ("patch", "events.events.k8s.io"),
        ("get", "persistentvolumeclaims"),
        ("get", f"secrets/{SECRET}"),
    ]
    for verb, resource in allowed:
        assert can_i(kubectl, user, verb, resource, *elsewhere), (verb, resource)
    # The version sequence lives in ModelLine status: no ConfigMap rights anywhere.
    assert can_i(kubectl, user, "create", "modellines.retrainer.dev", *elsewhere)
    for verb in ("update", "patch"):
        assert can_i(
            kubectl, user, verb, "modellines.retrainer.dev", "--subresource=status", *elsewhere
        ), verb
    for verb in ("create", "update"):
        for where in (namespace, "default", "kube-system"):
            assert not can_i(kubectl, user, verb, "configmaps", "-n", where), (verb, where)
    assert can_i(kubectl, user, "list", "namespaces")
    assert can_i(kubectl, user, "watch", "customresourcedefinitions.apiextensions.k8s.io")
    claim = kubectl("get", "pvc", "retrainer-models", "-n", namespace, "-o", "name")
    assert claim.stdout.strip() == "persistentvolumeclaim/retrainer-models"


def test_install_denies_other_secrets_claim_deletion_and_cluster_admin(
    installed: Callable[..., str], namespace: str, kubectl: Kubectl
) -> None:
    release = installed()
    user = f"system:serviceaccount:{namespace}:{operator_service_account(release)}"
    denied = [
        ("get", "secrets/other-secret", namespace),
        ("list", "secrets", namespace),
        ("watch", "secrets", "default"),
        ("delete", "persistentvolumeclaims", namespace),
        ("create", "persistentvolumeclaims", namespace),
        ("create", "pods", namespace),
        ("update", "retrainjobs.retrainer.dev", namespace),
        ("update", "modellines.retrainer.dev", namespace),
        ("delete", "modellines.retrainer.dev", namespace),
        ("delete", "configmaps", namespace),
    ]
    for verb, resource, where in denied:
        assert not can_i(kubectl, user, verb, resource, "-n", where), (verb, resource, where)
    cluster_denied = [
        ("*", "*"),
        ("delete", "namespaces"),
        ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
        ("escalate", "clusterroles.rbac.authorization.k8s.io"),
        ("impersonate", "users"),
        ("create", "customresourcedefinitions.apiextensions.k8s.io"),
        ("list", "nodes"),
    ]
    for verb, resource in cluster_denied:
        assert not can_i(kubectl, user, verb, resource), (verb, resource)
    trainer = f"system:serviceaccount:{namespace}:retrainer-trainer"
    for verb, resource in [("get", f"secrets/{SECRET}"), ("list", "pods"), ("create", "jobs")]:
        assert not can_i(kubectl, trainer, verb, resource, "-n", namespace), (verb, resource)


def test_namespaced_install_confines_the_operator_to_its_watched_namespaces(
    installed: Callable[..., str], namespace: str, other_namespace: str, kubectl: Kubectl
) -> None:
    release = installed("--set", f"watchNamespaces[0]={other_namespace}")
    user = f"system:serviceaccount:{namespace}:{operator_service_account(release)}"
    watched = ["-n", other_namespace]
    for verb, resource in [
        ("get", f"secrets/{SECRET}"),
        ("create", "jobs.batch"),
        ("patch", "retrainjobs.retrainer.dev"),
        ("create", "modellines.retrainer.dev"),
        ("create", "events"),
    ]:
        assert can_i(kubectl, user, verb, resource, *watched), (verb, resource)
    for where in (namespace, "default"):
        for verb, resource in [
            ("get", f"secrets/{SECRET}"),
            ("create", "jobs.batch"),
            ("list", "retrainjobs.retrainer.dev"),
        ]:
            assert not can_i(kubectl, user, verb, resource, "-n", where), (verb, resource, where)
    assert not can_i(kubectl, user, "list", "namespaces")
    assert not can_i(kubectl, user, "watch", "customresourcedefinitions.apiextensions.k8s.io")
    accounts = kubectl(
        "get", "serviceaccount", "retrainer-trainer", "-n", other_namespace, "-o", "json"
    )
    assert json.loads(accounts.stdout)["automountServiceAccountToken"] is False


def test_upgrade_and_uninstall_keep_the_crd_retrainjobs_and_models_claim(
    installed: Callable[..., str], helm: HelmRunner, namespace: str, kubectl: Kubectl
) -> None:
    release = installed("--set", "storage.create=true")
    kubectl("apply", "-n", namespace, "-f", "-", input=RETRAINJOB)
    config = f"{fullname(release)}-operator"

    def config_value(key: str) -> str:
        result = kubectl("get", "configmap", config, "-n", namespace, "-o", "json")
        return str(json.loads(result.stdout)["data"][key])

    assert config_value("RETRAINER_PROGRESS_INTERVAL") == "10"
    upgrade = ["upgrade", release, str(CHART), "--namespace", namespace, "--reuse-values"]
    helm(*upgrade, "--set", "progressInterval=30")
    assert config_value("RETRAINER_PROGRESS_INTERVAL") == "30"
    kubectl("get", "retrainjob", "kept", "-n", namespace)

    helm("uninstall", release, "--namespace", namespace)
    kubectl("get", "crd", "retrainjobs.retrainer.dev")
    kept = kubectl("get", "retrainjob", "kept", "-n", namespace, "-o", "json")
    assert json.loads(kept.stdout)["spec"]["model"] == "shapes"
    kubectl("get", "pvc", "retrainer-models", "-n", namespace)
    gone = kubectl("get", "configmap", config, "-n", namespace, check=False)
    assert gone.returncode != 0
    roles = kubectl("get", "clusterrole", f"{fullname(release)}-operator", check=False)
    assert roles.returncode != 0


def test_operator_token_from_chart_support_acts_with_exactly_the_chart_rbac(
    installed: Callable[..., str],
    namespace: str,
    world: Any,
    kube: Any,
    tmp_path: Path,
) -> None:
    release = installed()
    config = operator_kubeconfig(kube, namespace, release, tmp_path / "operator.kubeconfig")
    assert config.stat().st_mode & 0o777 == 0o600

    def as_operator(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(world.bin_dir / "kubectl"), f"--kubeconfig={config}", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )

    assert as_operator("get", "retrainjobs", "-n", namespace).returncode == 0
    own = as_operator("get", "secret", SECRET, "-n", namespace, "-o", "name")
    assert own.stdout.strip() == f"secret/{SECRET}"
    for denied in (
        ["get", "secrets", "-n", namespace],
        ["delete", "pvc", "anything", "-n", namespace],
        ["get", "clusterroles"],
    ):
        result = as_operator(*denied)
        assert result.returncode != 0 and "forbidden" in result.stderr.lower(), denied
