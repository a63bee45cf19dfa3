"""Model versions made fast for the ModelLine upkeep tests: real objects, no training.

Training a version on CPU takes minutes; scrub, retention and promotion only need what a
trained version leaves behind. So `store_version` writes it the way the trainer does (the
contract's claim layout and manifest, on the world's real claim), creates its real MLflow run
(tags, metrics) and puts its `mlflow` weight copy in MinIO at the run's artifact root; the
operator's and the CLI's code then read exactly what they would read after training.
"""

from __future__ import annotations

import hashlib
import io
import json
import secrets
import time
import uuid
from pathlib import Path
from typing import Any

from kubernetes import client
from operator_support import CLAIM, GROUP, VERSION, events_of, mlflow_json, prepare_namespace
from retrainer_contract import claimjob, layout, tracking
from retrainer_world.world import World

LINES = "modellines"
WEIGHT_BYTES = 4096


def upkeep_identity(kube: client.ApiClient, namespace: str) -> None:
    """What the chart's rbac.yaml gives each namespace for retention: a ServiceAccount that may
    get ModelLines (the Job re-reads the champion before it removes anything)."""
    name = claimjob.UPKEEP_SERVICE_ACCOUNT
    core: Any = client.CoreV1Api(kube)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
    rbac: Any = client.RbacAuthorizationV1Api(kube)
    rule = {"apiGroups": [GROUP], "resources": [LINES], "verbs": ["get"]}
    rbac.create_namespaced_role(namespace, {"metadata": {"name": name}, "rules": [rule]})
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
    )


def claim_root(kube: client.ApiClient, namespace: str) -> Path:
    """Prepare the namespace (claim, trainer SA, upkeep SA) and return the bound claim's host
    folder."""
    prepare_namespace(kube, namespace)
    upkeep_identity(kube, namespace)
    core: Any = client.CoreV1Api(kube)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pvc = core.read_namespaced_persistent_volume_claim(CLAIM, namespace)
        if pvc.status.phase == "Bound" and pvc.spec.volume_name:
            pv = core.read_persistent_volume(pvc.spec.volume_name)
            return Path(pv.spec.host_path.path)
        time.sleep(0.3)
    raise AssertionError(f"claim {namespace}/{CLAIM} was not bound within 60s")


def experiment(world: World, name: str) -> str:
    """The id of a new MLflow experiment `name` (tests name it after their namespace)."""
    created = mlflow_json(world, "/api/2.0/mlflow/experiments/create", {"name": name})
    return str(created["experiment_id"])


def store_version(
    world: World, root: Path, namespace: str, model: str, version: int, experiment_id: str
) -> dict[str, Any]:
    """Version N as the trainer leaves it: claim copies, metadata, manifest, run, MinIO copy."""
    run = mlflow_json(
        world,
        "/api/2.0/mlflow/runs/create",
        {
            "experiment_id": experiment_id,
            "run_name": tracking.run_name(model, version),
            "tags": [
                {"key": k, "value": v}
                for k, v in tracking.run_tags(
                    str(uuid.uuid4()), namespace, model, version, "yolo11n.yaml"
                ).items()
            ],
        },
    )["run"]
    run_id, artifact_uri = run["info"]["run_id"], run["info"]["artifact_uri"]
    metrics = {"precision": 0.5, "recall": 0.4, "mAP50": 0.3 + version / 100, "mAP50_95": 0.2}
    mlflow_json(
        world,
        "/api/2.0/mlflow/runs/log-batch",
        {
            "run_id": run_id,
            "metrics": [
                {"key": k, "value": v, "timestamp": int(time.time() * 1000), "step": 0}
                for k, v in metrics.items()
            ],
        },
    )
    weights = secrets.token_bytes(WEIGHT_BYTES)
    sha = hashlib.sha256(weights).hexdigest()
    mlflow_uri = layout.mlflow_weights_uri(artifact_uri, version)
    bucket, key = layout.parse_s3_uri(mlflow_uri)
    world.minio_client().put_object(bucket, key, io.BytesIO(weights), len(weights))

    paths = layout.VersionPaths.for_version(root, model, version)
    for path in (paths.production, paths.quick_access, paths.training_run, paths.last_checkpoint):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(weights)
    (paths.run_dir / "args.yaml").write_text("imgsz: 64\n")
    paths.metadata.write_text(json.dumps({"version": version, "weights": {"sha256": sha}}))
    artifacts = [
        {"name": name, "uri": uri, "sha256": sha, "size": WEIGHT_BYTES}
        for name, uri in paths.weight_uris(CLAIM, artifact_uri).items()
    ]
    paths.manifest.write_text(json.dumps({"version": version, "artifacts": artifacts}))
    return {"run_id": run_id, "artifact_uri": artifact_uri, "mlflow_uri": mlflow_uri}


def flip_byte(path: Path, offset: int = 7) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def create_line(
    kube: client.ApiClient, namespace: str, model: str, spec: dict[str, Any]
) -> dict[str, Any]:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelLine",
        "metadata": {"name": model},
        "spec": spec,
    }
    custom: Any = client.CustomObjectsApi(kube)
    return dict(custom.create_namespaced_custom_object(GROUP, VERSION, namespace, LINES, body))


def get_line(kube: client.ApiClient, namespace: str, model: str) -> dict[str, Any]:
    custom: Any = client.CustomObjectsApi(kube)
    return dict(custom.get_namespaced_custom_object(GROUP, VERSION, namespace, LINES, model))


def patch_line_status(
    kube: client.ApiClient, namespace: str, model: str, status: dict[str, Any]
) -> dict[str, Any]:
    """What the line reconciler does with a step's result: a merge patch of the status."""
    custom: Any = client.CustomObjectsApi(kube)
    return dict(
        custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, LINES, model, {"status": status}
        )
    )


def line_events(kube: client.ApiClient, namespace: str, model: str) -> list[Any]:
    return events_of(kube, namespace, model, kind="ModelLine")
