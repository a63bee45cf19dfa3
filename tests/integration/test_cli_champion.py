"""`retrainer promote` and `retrainer rollback` against the real world: each re-verifies the
target version in a Job the pod runner runs on the real claim (with the MLflow copy in MinIO),
then moves ModelLine status.champion through the status subresource, posts an Event and moves
the registered-model alias in the real MLflow. A version whose copies do not verify is refused.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from champion_support import retrainer
from kubernetes import client
from operator_support import mlflow_json
from retrainer_contract import layout
from retrainer_world.world import World
from upkeep_support import (
    claim_root,
    create_line,
    experiment,
    flip_byte,
    get_line,
    line_events,
    patch_line_status,
    store_version,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
RETRAINER = str(REPO / ".venv" / "bin" / "retrainer")
MODEL = "shapes"


def alias_version(world: World, name: str, alias: str) -> str:
    query = f"name={name}&alias={alias}"
    answer = mlflow_json(world, f"/api/2.0/mlflow/registered-models/alias?{query}")
    return str(answer["model_version"]["version"])


def champion(kube: client.ApiClient, namespace: str) -> dict[str, Any]:
    return dict(get_line(kube, namespace, MODEL)["status"].get("champion") or {})


def test_promote_and_rollback_refuse_a_version_whose_copies_do_not_verify(
    world: World, kube: client.ApiClient, namespace: str, crd: str
) -> None:
    root = claim_root(kube, namespace)
    experiment_id = experiment(world, f"champion-{namespace}")
    registered = f"shapes-{namespace}"
    mlflow_json(world, "/api/2.0/mlflow/registered-models/create", {"name": registered})
    model_versions = {}
    for version in (1, 2, 3):
        run = store_version(world, root, namespace, MODEL, version, experiment_id)
        created = mlflow_json(
            world,
            "/api/2.0/mlflow/model-versions/create",
            {
                "name": registered,
                "source": f"{run['artifact_uri']}/models",
                "run_id": run["run_id"],
            },
        )
        model_versions[version] = str(created["model_version"]["version"])
    template = {
        "baseModel": {"architecture": "yolo11n.yaml"},
        "dataset": {"uri": "datasets/shapes"},
        "mlflow": {"experiment": f"champion-{namespace}", "registeredModel": registered},
    }
    create_line(kube, namespace, MODEL, {"template": template})
    # The operator's own status fields, which the CLI must never clobber.
    patch_line_status(kube, namespace, MODEL, {"latestVerified": 3, "verifiedVersions": "1-3"})

    missing = retrainer(world, namespace, "promote", "nope", "1")
    assert missing.returncode == 1 and "'nope' not found" in missing.stderr

    nothing = retrainer(world, namespace, "rollback", MODEL)
    assert nothing.returncode == 1 and "nothing to roll back to" in nothing.stderr

    first = retrainer(world, namespace, "promote", MODEL, "1")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "OK: shapes v1 verified" in first.stdout
    assert champion(kube, namespace)["version"] == 1
    assert alias_version(world, registered, "champion") == model_versions[1]

    second = retrainer(world, namespace, "promote", MODEL, "2")
    assert second.returncode == 0, second.stdout + second.stderr
    record = champion(kube, namespace)
    assert {k: record[k] for k in ("version", "reason", "previous", "history")} == {
        "version": 2,
        "reason": "PromotedByUser",
        "previous": 1,
        "history": [1],
    }
    assert record["metrics"]["mAP50"] == pytest.approx(0.32)  # from the version's MLflow run
    assert alias_version(world, registered, "champion") == model_versions[2]

    # A flipped byte in v3's production copy: promote refuses, nothing moves.
    flip_byte(layout.VersionPaths.for_version(root, MODEL, 3).production)
    refused = retrainer(world, namespace, "promote", MODEL, "3")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "FAILED: shapes v3" in refused.stdout and "production" in refused.stdout
    assert "refusing to promote shapes v3" in refused.stderr
    assert champion(kube, namespace) == record
    assert alias_version(world, registered, "champion") == model_versions[2]

    # v1's MLflow copy (in MinIO) changed: rollback to it refuses too.
    manifest = json.loads(layout.VersionPaths.for_version(root, MODEL, 1).manifest.read_text())
    uri = next(a["uri"] for a in manifest["artifacts"] if a["name"] == layout.MLFLOW)
    bucket, key = layout.parse_s3_uri(uri)
    minio = world.minio_client()
    original = minio.get_object(bucket, key).read()
    _put(minio, bucket, key, bytes(b ^ 0xFF for b in original))
    refused = retrainer(world, namespace, "rollback", MODEL)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "refusing to roll back to shapes v1" in refused.stderr
    assert champion(kube, namespace) == record

    _put(minio, bucket, key, original)
    back = retrainer(world, namespace, "rollback", MODEL)
    assert back.returncode == 0, back.stdout + back.stderr
    record = champion(kube, namespace)
    assert (record["version"], record["reason"], record["history"]) == (1, "RolledBack", [2])
    assert "previous" not in record  # nothing before v1: no further rollback
    assert alias_version(world, registered, "champion") == model_versions[1]

    status = get_line(kube, namespace, MODEL)["status"]
    assert (status["latestVerified"], status["verifiedVersions"]) == (3, "1-3")
    reasons = [e.reason for e in line_events(kube, namespace, MODEL)]
    assert sorted(reasons) == ["PromotedByUser", "PromotedByUser", "RolledBack"]


def _put(minio: Any, bucket: str, key: str, data: bytes) -> None:
    minio.put_object(bucket, key, io.BytesIO(data), len(data))
