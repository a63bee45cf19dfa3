"""The chart's bundled MLflow and MinIO carry a real RetrainJob: the MLflow server runs from the
project's own image (mlflow/Dockerfile: MLflow with boto3), the trainer logs to it, and the
server lists and serves the run's artifacts out of the bundled MinIO's bucket.

Every pod runs as a real container (podman + runc) in a namespace that enforces the restricted
Pod Security Standard: the chart's operator, MinIO and MLflow (with its create-bucket init
container), and the trainer. Container mode uses host networking and has no cluster DNS, so
the release is pointed at its own bundled servers by address (s3.endpoint, mlflow.trackingUri:
127.0.0.1, the chart's fixed ports 9000 and 5000) instead of their Service names; that the
server would answer those names is checked through its Host header guard. MinIO's public
image is never pulled here: a stand-in image holds the world's own minio binary.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from chart_support import CHART, HelmRunner, fullname
from container_support import (
    REGISTRY,
    TAG,
    container_engine_env,
    container_namespace,
    image,
    image_values,
    pod_log,
)
from kubernetes import client
from minio import Minio
from operator_support import (
    DATASET_BUCKET,
    condition,
    create,
    retrainjob,
    wait_for,
    wait_phase,
)
from retrainer_demo import shapes
from retrainer_world.world import World

pytestmark = pytest.mark.integration

MINIO_PORT, MLFLOW_PORT = 9000, 5000  # fixed in the chart's templates
MLFLOW_URI = f"http://127.0.0.1:{MLFLOW_PORT}"
BUCKET = "mlflow"  # mlflow.artifactBucket's default
TRAIN_TIMEOUT = 600
START_TIMEOUT = 240


def _podman(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args],
        env={**os.environ, **container_engine_env()},
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def minio_standin_image(world: World, tmp_path: Path) -> tuple[str, str]:
    """(repository, tag) of an image holding the world's minio binary as its entrypoint,
    built once per binary: it stands in for quay.io/minio/minio, which is never pulled."""
    binary = world.bin_dir / "minio"
    key = hashlib.sha256(binary.read_bytes()).hexdigest()[:12]
    repository = "localhost/retrainer/test/minio"
    if _podman("image", "exists", f"{repository}:{key}").returncode != 0:
        context = tmp_path / "minio-image"
        context.mkdir()
        (context / "minio").write_bytes(binary.read_bytes())
        (context / "minio").chmod(0o755)
        (context / "Containerfile").write_text(
            'FROM scratch\nCOPY minio /usr/bin/minio\nENTRYPOINT ["/usr/bin/minio"]\n'
        )
        built = subprocess.run(
            ["buildah", "bud", "--quiet", "--layers", "-t", f"{repository}:{key}", str(context)],
            env={**os.environ, **container_engine_env()},
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        assert built.returncode == 0, built.stderr
    return repository, key


def _listening(port: int) -> bool:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _http(path: str, host: str | None = None, timeout: float = 30) -> tuple[int, bytes]:
    """(status, body) of GET MLFLOW_URI + path, optionally with another Host header."""
    request = urllib.request.Request(MLFLOW_URI + path, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def _api(route: str, **query: str) -> Any:
    status, body = _http(f"{route}?{urllib.parse.urlencode(query)}")
    assert status == 200, (route, query, status, body[:500])
    return json.loads(body)


def _pods(kube: Any, namespace: str, release: str) -> list[Any]:
    items: list[Any] = (
        client.CoreV1Api(kube)
        .list_namespaced_pod(namespace, label_selector=f"app.kubernetes.io/instance={release}")
        .items
    )
    return items


def _component_running(kube: Any, namespace: str, release: str, component: str) -> Any:
    for pod in _pods(kube, namespace, release):
        if pod.metadata.labels.get("app.kubernetes.io/component") != component:
            continue
        if any(c.state.running is not None for c in pod.status.container_statuses or []):
            return pod
    return None


def _runs(kube: Any, namespace: str, release: str, component: str) -> Callable[[], Any]:
    return lambda: _component_running(kube, namespace, release, component)


def _logs(world: Any, namespace: str) -> str:
    """Every container log of the namespace's pods, for a failure message."""
    folder = Path(world.state) / "logs" / "pods"
    return "\n".join(
        f"--- {path.name}\n{path.read_text()[-3000:]}"
        for path in sorted(folder.glob(f"{namespace}_*.log"))
    )


@pytest.fixture
def bundled_release(
    helm: HelmRunner, world: World, kube: Any, namespace: str, crd: str, tmp_path: Path
) -> Iterator[str]:
    """The chart installed with its bundled MinIO and MLflow (and operator), all running."""
    release = "rt-" + namespace[-12:].strip("-")
    container_namespace(kube, namespace)
    found = _podman("image", "exists", image("mlflow"))
    assert found.returncode == 0, f"{image('mlflow')} is not built: run `make images` first"
    busy = [port for port in (MINIO_PORT, MLFLOW_PORT) if _listening(port)]
    assert not busy, f"127.0.0.1 ports {busy} are taken: the bundled servers listen there"
    minio_repository, minio_tag = minio_standin_image(world, tmp_path)
    helm(
        "install", release, str(CHART), "--namespace", namespace,
        *image_values(),
        "--set", f"watchNamespaces[0]={namespace}",
        "--set", "storage.create=true",
        "--set", "storage.size=1Gi",
        "--set", "minio.enabled=true",
        "--set", f"minio.image.repository={minio_repository}",
        "--set", f"minio.image.tag={minio_tag}",
        "--set", "minio.persistence.size=1Gi",
        "--set", "mlflow.enabled=true",
        "--set", f"mlflow.image.repository={REGISTRY}/mlflow",
        "--set", f"mlflow.image.tag={TAG}",
        "--set", "mlflow.persistence.size=1Gi",
        # One server process: the world runs on 2-core machines.
        "--set", "mlflow.extraArgs={--workers=1}",
        # No cluster DNS in container mode: the bundled servers by address, not Service name.
        "--set", f"s3.endpoint=http://127.0.0.1:{MINIO_PORT}",
        "--set", f"mlflow.trackingUri={MLFLOW_URI}",
        "--set", "progressInterval=2",
        "--set", "logFormat=plain",
    )  # fmt: skip
    try:
        started = time.monotonic()
        for component in ("operator", "minio", "mlflow"):
            wait_for(
                f"the chart's {component} pod to run",
                _runs(kube, namespace, release, component),
                timeout=START_TIMEOUT,
                interval=1,
            )
        wait_for(
            f"the bundled MLflow to answer at {MLFLOW_URI}/health\n{_logs(world, namespace)}",
            lambda: _http("/health", timeout=5)[0] == 200,
            timeout=START_TIMEOUT,
            interval=1,
        )
        print(f"bundled MinIO and MLflow up in {time.monotonic() - started:.0f}s")
        yield release
    finally:
        helm("uninstall", release, "--namespace", namespace, check=False)
        # The next run needs the fixed ports back: wait for the containers to stop.
        with contextlib.suppress(AssertionError):
            wait_for(
                "the release's pods to go",
                lambda: not _pods(kube, namespace, release),
                timeout=90,
                interval=1,
            )


def test_bundled_mlflow_from_the_project_image_serves_a_retrainjobs_artifacts_from_minio(
    bundled_release: str, world: World, kube: Any, namespace: str, tmp_path: Path
) -> None:
    release = bundled_release
    access, secret = world.minio_access_key, world.minio_secret_key
    bundled_minio = Minio(f"127.0.0.1:{MINIO_PORT}", access, secret, secure=False)

    # The MLflow pod runs the project's image, and its init container made the bucket.
    mlflow_pod = _component_running(kube, namespace, release, "mlflow")
    (server,) = mlflow_pod.spec.containers
    assert server.image == image("mlflow")
    assert [c.image for c in mlflow_pod.spec.init_containers] == [image("mlflow")]
    bucket_log = pod_log(world, namespace, mlflow_pod.metadata.name, "create-bucket")
    assert f"bucket {BUCKET}" in bucket_log, bucket_log
    assert bundled_minio.bucket_exists(BUCKET)

    # The UI is there (the full mlflow package, not mlflow-skinny).
    status, page = _http("/")
    assert status == 200 and b"<html" in page.lower(), page[:300]

    # The Host header guard answers the Service's names and refuses strangers.
    service_host = f"{fullname(release)}-mlflow.{namespace}.svc:{MLFLOW_PORT}"
    search = "/api/2.0/mlflow/experiments/search?max_results=1"
    assert _http(search, host=service_host)[0] == 200
    assert _http(search, host=f"{fullname(release)}-mlflow:{MLFLOW_PORT}")[0] == 200
    assert _http(search, host="mlflow.attacker.example:5000")[0] == 403

    # A real RetrainJob, its dataset in the bundled MinIO, logging to the bundled MLflow.
    folder = shapes.generate_dataset(tmp_path / "shapes", train=8, val=4)
    shapes.upload_folder(bundled_minio, DATASET_BUCKET, f"{namespace}/shapes", folder)
    body = retrainjob("bundled", f"s3://{DATASET_BUCKET}/{namespace}/shapes")
    body["spec"]["training"]["epochs"] = 1
    started = time.monotonic()
    create(kube, namespace, body)
    done = wait_phase(kube, namespace, "bundled", ("Succeeded", "Failed"), TRAIN_TIMEOUT)
    print(f"RetrainJob finished ({done['status']['phase']}) in {time.monotonic() - started:.0f}s")
    assert done["status"]["phase"] == "Succeeded", (done["status"], _logs(world, namespace))
    assert condition(done, "Verified")["status"] == "True"

    # The run is in the bundled MLflow, its artifact root in the bundled bucket.
    run_id = done["status"]["mlflow"]["runId"]
    assert done["status"]["mlflow"]["runUrl"].startswith(MLFLOW_URI)
    info = _api("/api/2.0/mlflow/runs/get", run_id=run_id)["run"]["info"]
    experiment_id = info["experiment_id"]
    prefix = f"{experiment_id}/{run_id}/artifacts"
    assert info["artifact_uri"] == f"s3://{BUCKET}/{prefix}"
    artifacts = {a["name"]: a for a in done["status"]["artifacts"]}
    weights = artifacts["mlflow"]
    assert weights["uri"] == f"s3://{BUCKET}/{prefix}/models/retrained_v1.pt"
    checks = done["status"]["verification"]["checks"]
    assert any(c["name"] == "mlflow" and c["by"] == "operator" and c["ok"] for c in checks)

    # The object is in the bundled MinIO's bucket.
    stat = bundled_minio.stat_object(BUCKET, f"{prefix}/models/retrained_v1.pt")
    assert stat.size == weights["size"]

    # The tracking server lists the run's artifacts itself (boto3 in its image, reading S3).
    top = _api("/api/2.0/mlflow/artifacts/list", run_id=run_id)
    assert "models" in {f["path"] for f in top["files"] if f["is_dir"]}, top
    models = _api("/api/2.0/mlflow/artifacts/list", run_id=run_id, path="models")
    sizes = {f["path"]: int(f.get("file_size", -1)) for f in models["files"]}
    assert sizes.get("models/retrained_v1.pt") == weights["size"], models

    # ... serves them (the UI's download) ...
    query = urllib.parse.urlencode({"path": "models/retrained_v1.pt", "run_uuid": run_id})
    status, content = _http(f"/get-artifact?{query}", timeout=120)
    assert status == 200, content[:500]
    assert hashlib.sha256(content).hexdigest() == weights["sha256"]

    # ... and proxies the same bucket as mlflow-artifacts:/ (--artifacts-destination).
    proxied = _api("/api/2.0/mlflow-artifacts/artifacts", path=f"{prefix}/models")
    assert "retrained_v1.pt" in {f["path"] for f in proxied["files"]}, proxied
