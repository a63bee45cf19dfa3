"""A model line's champion evidence made fast: stored versions (upkeep_support.store_version),
registered in a real MLflow registered model, tagged as the operator tags them, the alias set.
Plus the `retrainer` CLI run against the world."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

from operator_support import mlflow_json
from retrainer_contract import metrics as metric_keys
from retrainer_contract import tracking
from retrainer_world.world import World
from upkeep_support import store_version

REPO = Path(__file__).resolve().parents[2]
RETRAINER = str(REPO / ".venv" / "bin" / "retrainer")


def retrainer(world: World, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`retrainer ARGS -n NAMESPACE` against the world (MinIO, MLflow), as a person runs it."""
    env = {**os.environ, **world.env()}
    flags = ["-n", namespace, "--s3-endpoint", world.minio_endpoint, "--timeout", "120"]
    flags += ["--mlflow-uri", world.mlflow_uri]
    return subprocess.run(
        [RETRAINER, *args, *flags], env=env, capture_output=True, text=True, timeout=240
    )


def registered_versions(
    world: World,
    root: Path,
    namespace: str,
    model: str,
    experiment_id: str,
    registered: str,
    count: int,
) -> dict[int, dict[str, Any]]:
    """Versions 1..count stored and registered in `registered`: version -> run facts plus its
    registered version ("model_version") and holdout metrics (mAP50-95 0.1 * N)."""
    mlflow_json(world, "/api/2.0/mlflow/registered-models/create", {"name": registered})
    found: dict[int, dict[str, Any]] = {}
    for version in range(1, count + 1):
        run = store_version(world, root, namespace, model, version, experiment_id)
        score = {metric_keys.holdout_key(metric_keys.MAP50_95): 0.1 * version}
        mlflow_json(
            world,
            "/api/2.0/mlflow/runs/log-batch",
            {
                "run_id": run["run_id"],
                "metrics": [
                    {"key": k, "value": v, "timestamp": int(time.time() * 1000), "step": 0}
                    for k, v in score.items()
                ],
            },
        )
        created = mlflow_json(
            world,
            "/api/2.0/mlflow/model-versions/create",
            {
                "name": registered,
                "source": f"{run['artifact_uri']}/models",
                "run_id": run["run_id"],
            },
        )
        found[version] = {**run, "model_version": str(created["model_version"]["version"])}
    return found


def tag(world: World, run_id: str, key: str, value: str) -> None:
    mlflow_json(
        world, "/api/2.0/mlflow/runs/set-tag", {"run_id": run_id, "key": key, "value": value}
    )


def tag_champion(world: World, run_id: str, since: str, reason: str = "Promoted") -> None:
    """What the operator writes on a version's run when it becomes champion."""
    tag(world, run_id, tracking.TAG_CHAMPION, tracking.champion_tag_value(reason, since))


def set_alias(world: World, registered: str, alias: str, version: str) -> None:
    mlflow_json(
        world,
        "/api/2.0/mlflow/registered-models/alias",
        {"name": registered, "alias": alias, "version": version},
    )


def alias_version(world: World, registered: str, alias: str = "champion") -> str | None:
    """The registered version `alias` names (None: not set)."""
    answer = mlflow_json(world, f"/api/2.0/mlflow/registered-models/get?name={registered}")
    aliases = {a["alias"]: a["version"] for a in answer["registered_model"].get("aliases") or []}
    return str(aliases[alias]) if alias in aliases else None


def run_tags(world: World, run_id: str) -> dict[str, str]:
    run = mlflow_json(world, f"/api/2.0/mlflow/runs/get?run_id={run_id}")["run"]
    return {t["key"]: t["value"] for t in run["data"].get("tags") or []}
