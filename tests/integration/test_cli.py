"""The `retrainer` CLI against the real world: RetrainJobs whose status is patched through the
status subresource, Events from the apiserver, objects in MinIO, and a verify Job run by the pod
runner on a real claim. The CLI runs as a subprocess, as a person would run it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from retrainer_world.world import World

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
RETRAINER = str(REPO / ".venv" / "bin" / "retrainer")
GROUP, VERSION, PLURAL = "retrainer.dev", "v1alpha1", "retrainjobs"


@pytest.fixture(scope="module")
def retrainjob_crd(world: World) -> None:
    """The CRD, applied idempotently (server-side apply) and Established."""
    env = {**os.environ, **world.env()}
    kubectl = str(world.bin_dir / "kubectl")
    crd = str(REPO / "crds" / "retrainer.dev_retrainjobs.yaml")
    line_crd = str(REPO / "crds" / "retrainer.dev_modellines.yaml")
    for args in (
        ["apply", "--server-side", "--force-conflicts", "-f", crd, "-f", line_crd],
        [
            "wait",
            "--for=condition=Established",
            "crd/retrainjobs.retrainer.dev",
            "crd/modellines.retrainer.dev",
        ],
    ):
        subprocess.run([kubectl, *args], env=env, check=True, capture_output=True, timeout=120)


def retrainer(world: World, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **world.env()}
    return subprocess.run(
        [RETRAINER, *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def create_retrainjob(
    kube: client.ApiClient, namespace: str, name: str, model: str, status: dict[str, Any]
) -> dict[str, Any]:
    custom = client.CustomObjectsApi(kube)
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RetrainJob",
        "metadata": {"name": name},
        "spec": {
            "model": model,
            "baseModel": {"architecture": "yolo11n.yaml"},
            "dataset": {"uri": "datasets/shapes"},
        },
    }
    obj: Any = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    if status:
        obj = custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, {"status": status}
        )
    return dict(obj)


def succeeded(version: int, map50: float) -> dict[str, Any]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "phase": "Succeeded",
        "version": version,
        "metrics": {"mAP50": map50, "mAP50_95": map50 / 2},
        "conditions": [
            {"type": "Verified", "status": "True", "reason": "AllLocationsVerified",
             "message": "5 locations", "lastTransitionTime": now},
        ],
    }  # fmt: skip


def table_rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines() if line.strip()]


def test_versions_lists_each_model_line_in_version_order(
    world: World, kube: client.ApiClient, namespace: str, retrainjob_crd: None
) -> None:
    create_retrainjob(kube, namespace, "shapes-b", "shapes", succeeded(2, 0.6))
    create_retrainjob(kube, namespace, "shapes-a", "shapes", succeeded(1, 0.4))
    create_retrainjob(kube, namespace, "cars-a", "cars", succeeded(1, 0.3))
    create_retrainjob(kube, namespace, "shapes-new", "shapes", {})

    proc = retrainer(world, "versions", "-n", namespace)
    assert proc.returncode == 0, proc.stderr
    rows = table_rows(proc.stdout)
    assert rows[0] == ["MODEL", "cars"]
    assert rows[2][:6] == ["1", "cars-a", "Succeeded", "0.300", "0.150", "True"]
    shapes = rows[rows.index(["MODEL", "shapes"]) + 2 :]
    assert [r[:3] for r in shapes] == [
        ["1", "shapes-a", "Succeeded"],
        ["2", "shapes-b", "Succeeded"],
        ["<none>", "shapes-new", "Pending"],
    ]

    only = retrainer(world, "versions", "cars", "-n", namespace)
    assert only.returncode == 0 and "shapes" not in only.stdout

    everywhere = retrainer(world, "versions", "shapes", "-A")
    assert f"MODEL shapes (namespace {namespace})" in everywhere.stdout


def test_describe_shows_conditions_checks_and_events(
    world: World, kube: client.ApiClient, namespace: str, retrainjob_crd: None
) -> None:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    status = {
        "phase": "Failed",
        "version": 3,
        "jobName": "retrain-shapes-v3",
        "conditions": [
            {"type": "Failed", "status": "True", "reason": "VerificationFailed",
             "message": "mlflow: sha256 mismatch", "lastTransitionTime": now},
        ],
        "verification": {
            "verified": False,
            "checks": [
                {"name": "production", "ok": True, "by": "trainer", "message": "sha256 matches"},
                {"name": "mlflow", "ok": False, "by": "operator", "message": "sha256 mismatch"},
            ],
        },
    }  # fmt: skip
    obj = create_retrainjob(kube, namespace, "shapes-v3", "shapes", status)
    core: Any = client.CoreV1Api(kube)  # dict bodies: the typed models add nothing here
    core.create_namespaced_event(
        namespace,
        {
            "metadata": {"name": f"shapes-v3.{secrets.token_hex(4)}"},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "RetrainJob",
                "name": "shapes-v3",
                "namespace": namespace,
                "uid": obj["metadata"]["uid"],
            },
            "reason": "VerificationFailed",
            "message": "the mlflow copy differs",
            "type": "Warning",
            "source": {"component": "retrainer-operator"},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        },
    )

    proc = retrainer(world, "describe", "shapes-v3", "-n", namespace)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "Phase:      Failed" in out and "retrain-shapes-v3" in out
    assert "VerificationFailed" in out[out.index("Conditions:") : out.index("Artifacts:")]
    assert "mlflow       FAILED   operator   sha256 mismatch" in out
    events = out[out.index("Events:") :]
    assert "Warning" in events and "the mlflow copy differs" in events

    missing = retrainer(world, "describe", "nope", "-n", namespace)
    assert missing.returncode == 1 and "'nope' not found" in missing.stderr


# ---- verify ---------------------------------------------------------------------------------


def write_version(root: Path, model: str, version: int, mlflow_uri: str) -> bytes:
    """Version N laid out as the trainer does (docs/contract.md), with its manifest."""
    weights = secrets.token_bytes(4096)
    base = root / model
    files = {
        "production": base / "models" / f"retrained_v{version}.pt",
        "quickAccess": base / "runs" / "train" / f"retrained_v{version}.pt",
        "trainingRun": base / "runs" / "train" / f"retrain_v{version}" / "weights" / "best.pt",
    }
    for path in files.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(weights)
    run = base / "runs" / "train" / f"retrain_v{version}"
    (run / "weights" / "last.pt").write_bytes(weights)
    (run / "args.yaml").write_text("imgsz: 64\n")
    (base / "models" / f"retrained_v{version}_metadata.json").write_text(
        json.dumps({"version": version})
    )
    sha = hashlib.sha256(weights).hexdigest()
    artifacts = [
        {"name": name, "uri": f"pvc://models/{p.relative_to(root)}", "sha256": sha, "size": 4096}
        for name, p in files.items()
    ] + [{"name": "mlflow", "uri": mlflow_uri, "sha256": sha, "size": 4096}]
    (run / "manifest.json").write_text(json.dumps({"version": version, "artifacts": artifacts}))
    return weights


def test_verify_checks_the_mlflow_copy_in_minio(world: World, tmp_path: Path) -> None:
    key = f"test-cli/{secrets.token_hex(4)}/artifacts/models/retrained_v1.pt"
    weights = write_version(tmp_path, "shapes", 1, f"s3://mlflow/{key}")
    minio = world.minio_client()
    minio.put_object("mlflow", key, io.BytesIO(weights), len(weights))
    try:
        ok = retrainer(world, "verify", "shapes", "--root", str(tmp_path))
        assert ok.returncode == 0, ok.stdout + ok.stderr
        mlflow = next(line for line in ok.stdout.splitlines() if line.startswith("mlflow"))
        assert " ok " in mlflow and f"s3://mlflow/{key}" in mlflow

        other = bytes(b ^ 0xFF for b in weights)
        minio.put_object("mlflow", key, io.BytesIO(other), len(other))
        bad = retrainer(world, "verify", "shapes", "1", "--root", str(tmp_path))
        assert bad.returncode == 1
        mlflow = next(line for line in bad.stdout.splitlines() if line.startswith("mlflow"))
        assert "FAILED" in mlflow and "sha256 differs" in mlflow
    finally:
        minio.remove_object("mlflow", key)

    gone = retrainer(world, "verify", "shapes", "1", "--root", str(tmp_path))
    assert gone.returncode == 1 and "NoSuchKey" in gone.stdout


def _bound_claim_path(kube: client.ApiClient, namespace: str, claim: str) -> Path:
    core: Any = client.CoreV1Api(kube)
    core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": claim},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pvc = core.read_namespaced_persistent_volume_claim(claim, namespace)
        if pvc.status.phase == "Bound" and pvc.spec.volume_name:
            pv = core.read_persistent_volume(pvc.spec.volume_name)
            return Path(pv.spec.host_path.path)
        time.sleep(0.5)
    raise AssertionError(f"claim {namespace}/{claim} was not bound within 60s")


def test_in_cluster_verify_runs_a_job_on_the_claim_and_exits_with_its_code(
    world: World, kube: client.ApiClient, namespace: str
) -> None:
    root = _bound_claim_path(kube, namespace, "models")
    write_version(root, "shapes", 4, "s3://mlflow/unused/retrained_v4.pt")
    args = ["--in-cluster", "-n", namespace, "--claim", "models", "--no-remote", "--timeout", "120"]
    ok = retrainer(world, "verify", "shapes", *args)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "OK: shapes v4 verified" in ok.stdout

    best = root / "shapes" / "runs" / "train" / "retrain_v4" / "weights" / "best.pt"
    data = bytearray(best.read_bytes())
    data[7] ^= 0xFF
    best.write_bytes(bytes(data))
    bad = retrainer(world, "verify", "shapes", "4", *args)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "FAILED: shapes v4" in bad.stdout and "trainingRun" in bad.stdout
    batch: Any = client.BatchV1Api(kube)
    jobs = batch.list_namespaced_job(namespace).items
    assert not [j for j in jobs if not j.metadata.deletion_timestamp]  # cleaned up (or going)
