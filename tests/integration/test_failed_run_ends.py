"""A version whose trainer was killed (as the kernel's OOM killer does) never leaves its MLflow
run RUNNING: the operator ends it FAILED when the RetrainJob fails."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from kubernetes import client
from operator_support import (
    condition,
    create,
    get,
    mlflow_json,
    operator_in_prepared_namespace,
    retrainjob,
    upload_dataset,
    wait_finished,
    wait_for,
)
from retrainer_contract import env as trainer_env
from retrainer_world.world import World

pytestmark = pytest.mark.integration


def trainer_pids(uid: str) -> list[int]:
    """Host processes whose environment names RetrainJob `uid` (the trainer's container)."""
    marker = f"{trainer_env.UID}={uid}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if marker in environ.split(b"\0"):
            found.append(int(entry))
    return found


def run_of(world: World, uid: str) -> dict[str, object] | None:
    found = mlflow_json(world, "/api/2.0/mlflow/experiments/get-by-name?experiment_name=shapes")[
        "experiment"
    ]
    runs = mlflow_json(
        world,
        "/api/2.0/mlflow/runs/search",
        {
            "experiment_ids": [found["experiment_id"]],
            "filter": f"tags.`retrainer.uid` = '{uid}'",
        },
    ).get("runs")
    return dict(runs[0]["info"]) if runs else None


def test_a_trainer_killed_mid_training_leaves_its_run_failed_not_running(
    world: World, namespace: str, kube: client.ApiClient, crd: object, tmp_path: Path
) -> None:
    dataset = upload_dataset(world, tmp_path, f"{namespace}/shapes")
    body = retrainjob(
        "killed",
        dataset,
        training={"epochs": 30, "imgsz": 64, "batch": 4, "extraArgs": {"workers": 0}},
        retry={"backoffLimit": 0},
    )
    with operator_in_prepared_namespace(world, kube, namespace, tmp_path) as operator:
        create(kube, namespace, body)
        uid = get(kube, namespace, "killed")["metadata"]["uid"]
        # Fault point: the run exists and is RUNNING (training started); SIGKILL the trainer.
        wait_for(
            "the run RUNNING",
            lambda: (run_of(world, uid) or {}).get("status") == "RUNNING" or None,
            300,
            operator,
        )
        pids = trainer_pids(uid)
        assert pids, "the trainer process was not found"
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        obj = wait_finished(kube, namespace, "killed", operator)
        ended = wait_for(
            "the run ended",
            lambda: (
                run_of(world, uid)
                if (run_of(world, uid) or {}).get("status") != "RUNNING"
                else None
            ),
            60,
            operator,
        )

    assert obj["status"]["phase"] == "Failed", obj["status"]
    assert condition(obj, "Failed")["status"] == "True"
    assert ended["status"] == "FAILED"
