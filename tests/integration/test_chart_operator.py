"""The chart's own operator Deployment carries a RetrainJob to Succeeded with the chart's RBAC.

Both pods run as real containers from the images `make images` built (the pod runner's
container mode: podman + runc), in a namespace that enforces the restricted Pod Security
Standard: the operator from the operator image with its ServiceAccount's projected token (so
it has exactly the permissions the chart grants: if a rule were missing, the run could not
reach Succeeded), the trainer from the trainer image as uid 10001 with a read-only root
filesystem, writing the claim through the pod's fsGroup. No other operator runs during this
test.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from chart_support import CHART
from container_support import container_namespace, image_values
from kubernetes import client
from operator_support import condition, create, jobs_of, retrainjob, upload_dataset, wait_for
from operator_support import wait_phase as wait_retrainjob_phase

pytestmark = pytest.mark.integration

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


def _operator_pod_running(kube: Any, namespace: str, release: str) -> bool:
    pods = client.CoreV1Api(kube).list_namespaced_pod(
        namespace, label_selector=f"app.kubernetes.io/instance={release}"
    )
    return any(
        "operator" in pod.metadata.name
        and any(c.state.running is not None for c in pod.status.container_statuses or [])
        for pod in pods.items
    )


def _logs(world: Any, namespace: str) -> str:
    """Every container log of the namespace's pods, for a failure message."""
    folder = Path(world.state) / "logs" / "pods"
    return "\n".join(
        f"--- {path.name}\n{path.read_text()[-3000:]}"
        for path in sorted(folder.glob(f"{namespace}_*.log"))
    )


def test_chart_operator_with_only_chart_rbac_carries_a_retrainjob_to_verified_success(
    helm: Callable[..., subprocess.CompletedProcess[str]],
    world: Any,
    kube: Any,
    namespace: str,
    crd: str,
    tmp_path: Path,
) -> None:
    release = "rt-" + namespace[-12:].strip("-")
    container_namespace(kube, namespace)
    dataset = upload_dataset(world, tmp_path, f"{namespace}/shapes", train=8, val=4)
    helm(
        "install", release, str(CHART), "--namespace", namespace,
        "--set", f"watchNamespaces[0]={namespace}",
        "--set", "storage.create=true",
        "--set", "storage.size=1Gi",
        "--set", f"mlflow.trackingUri={world.mlflow_uri}",
        "--set", f"s3.endpoint={world.minio_endpoint}",
        "--set", "progressInterval=2",
        "--set", "logFormat=plain",
        *image_values(),
    )  # fmt: skip
    try:
        wait_for(
            "the chart's operator pod to run",
            lambda: _operator_pod_running(kube, namespace, release),
            timeout=120,
        )
        body = retrainjob("via-chart", dataset)
        body["spec"]["training"]["epochs"] = 1
        create(kube, namespace, body)
        done = wait_retrainjob_phase(kube, namespace, "via-chart", ("Succeeded", "Failed"), 420)

        assert done["status"]["phase"] == "Succeeded", (done["status"], _logs(world, namespace))
        assert done["status"]["version"] == 1
        assert condition(done, "Verified")["status"] == "True"
        names = {a["name"] for a in done["status"]["artifacts"]}
        assert {"production", "quickAccess", "trainingRun", "metadata", "mlflow"} <= names
        (job,) = jobs_of(kube, namespace, "via-chart")
        assert job.spec.template.spec.service_account_name == "retrainer-trainer"
    finally:
        helm("uninstall", release, "--namespace", namespace, check=False)
