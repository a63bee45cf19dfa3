"""The local world works as a cluster and as storage: the apiserver is ready and serves batch
Jobs, RBAC decides for ServiceAccounts, helm installs charts, MinIO stores objects, and MLflow
writes run artifacts into MinIO. Jobs themselves are tested in test_jobs.py.
"""

from __future__ import annotations

import base64
import io
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import mlflow
import pytest
from kubernetes import client
from retrainer_world import procs
from retrainer_world.world import World

pytestmark = pytest.mark.integration

HELLO_CHART = Path(__file__).resolve().parent / "charts" / "hello"


def test_apiserver_reports_ready(kubectl: Any) -> None:
    assert kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"


def test_every_component_is_healthy(world: World) -> None:
    health = world.health()
    assert {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"} <= set(health)
    assert {"minio", "mlflow"} <= set(health)
    assert all(health.values()), health


def test_batch_jobs_are_served(kubectl: Any) -> None:
    names = kubectl("api-resources", "--api-group=batch", "-o", "name").stdout.split()
    assert "jobs.batch" in names


def test_the_kube_client_talks_to_the_world_as_admin(kube: client.ApiClient) -> None:
    items = client.CoreV1Api(kube).list_namespace().items
    namespaces = {ns.metadata.name for ns in items if ns.metadata}
    assert {"default", "kube-system"} <= namespaces


def test_a_test_namespace_carries_the_minio_credentials(
    world: World, kube: client.ApiClient, namespace: str
) -> None:
    secret = client.CoreV1Api(kube).read_namespaced_secret("minio-credentials", namespace)
    decoded = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
    assert decoded == {"accessKey": world.minio_access_key, "secretKey": world.minio_secret_key}


def test_rbac_lets_a_service_account_do_only_what_its_role_grants(
    kubectl: Any, namespace: str
) -> None:
    kubectl("create", "serviceaccount", "reader", "-n", namespace)
    kubectl(
        "create", "role", "read-configmaps", "--verb=get,list", "--resource=configmaps",
        "-n", namespace,
    )  # fmt: skip
    kubectl(
        "create", "rolebinding", "reader-reads", "--role=read-configmaps",
        f"--serviceaccount={namespace}:reader", "-n", namespace,
    )  # fmt: skip
    who = f"--as=system:serviceaccount:{namespace}:reader"

    def can_i(verb: str, resource: str) -> str:
        out = kubectl("auth", "can-i", verb, resource, who, "-n", namespace, check=False)
        return out.stdout.strip()

    assert can_i("list", "configmaps") == "yes"
    assert can_i("delete", "configmaps") == "no"
    assert can_i("list", "secrets") == "no"


def test_helm_installs_and_uninstalls_a_chart(helm: Any, kubectl: Any, namespace: str) -> None:
    helm("install", "greeter", str(HELLO_CHART), "-n", namespace, "--wait", "--timeout=60s")
    greeting = kubectl(
        "get", "configmap", "greeter-hello", "-n", namespace, "-o", "jsonpath={.data.greeting}"
    ).stdout
    assert greeting == "hello from the local world"
    assert "greeter" in helm("list", "-n", namespace, "-q").stdout.split()

    helm("uninstall", "greeter", "-n", namespace, "--wait", "--timeout=60s")
    gone = kubectl("get", "configmap", "greeter-hello", "-n", namespace, check=False)
    assert gone.returncode != 0
    assert "NotFound" in gone.stderr


def test_minio_stores_and_returns_an_object(minio: Any) -> None:
    key = f"tests/world/{secrets.token_hex(4)}.txt"
    payload = b"bytes through the local MinIO"
    minio.put_object("datasets", key, io.BytesIO(payload), len(payload))
    try:
        response = minio.get_object("datasets", key)
        try:
            assert response.read() == payload
        finally:
            response.close()
            response.release_conn()
    finally:
        minio.remove_object("datasets", key)


def test_an_mlflow_artifact_lands_in_the_minio_bucket(
    world: World, minio: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Through the environment only, as the trainer does: no global tracking URI left behind.
    for key, value in world.env().items():
        monkeypatch.setenv(key, value)
    experiment_id = mlflow.create_experiment(f"world-test-{secrets.token_hex(4)}")
    artifact = tmp_path / "hello.txt"
    artifact.write_text("tracked by MLflow, stored in MinIO")
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_artifact(str(artifact), artifact_path="notes")
    assert run.info.artifact_uri == f"s3://mlflow/{experiment_id}/{run.info.run_id}/artifacts"

    key = f"{experiment_id}/{run.info.run_id}/artifacts/notes/hello.txt"
    response = minio.get_object("mlflow", key)
    try:
        assert response.read() == b"tracked by MLflow, stored in MinIO"
    finally:
        response.close()
        response.release_conn()


def test_up_on_a_healthy_world_reuses_it(world: World) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "retrainer_world", "up", "--state", str(world.state)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "RETRAINER_STATE": str(world.state)},
    )
    assert out.returncode == 0, out.stderr
    assert f"server={world.server}" in out.stdout.splitlines()
    again = World.load(world.state)
    assert (again.pids, again.owner) == (world.pids, world.owner)
    assert world.minio_secret_key not in out.stdout + out.stderr


def test_env_prints_exports_a_shell_can_eval(world: World) -> None:
    script = (
        f'eval "$({sys.executable} -m retrainer_world env --state {world.state})"; '
        'kubectl get --raw /readyz; echo; echo "$MLFLOW_TRACKING_URI"'
    )
    out = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.split() == ["ok", world.mlflow_uri]


def test_down_leaves_no_process_and_up_starts_again(world: World, tmp_path: Path) -> None:
    state = tmp_path / "second-world"

    def cli(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "retrainer_world", command, "--state", str(state)],
            capture_output=True,
            text=True,
            timeout=300,
        )

    for _ in range(2):  # a second `up` after `down` starts a fresh world
        up = cli("up")
        assert up.returncode == 0, up.stderr
        second = World.load(state)
        assert second.is_healthy()
        assert second.server != world.server
        pids = second.pids
        assert cli("down").returncode == 0
        left = {name: pid for name, pid in pids.items() if procs.start_time(pid) is not None}
        assert left == {}
        assert cli("status").returncode == 1
    assert cli("down").returncode == 0  # idempotent
