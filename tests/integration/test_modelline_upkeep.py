"""A model line's upkeep against the real world: the scrub and retention Jobs run by the pod
runner on a real claim, MinIO and MLflow behind them.

The line reconciler is not in these tests: they call its upkeep steps (scrub.scrub_step,
retention.retention_step) directly with a controlled `now`, fold each step into the
ModelLine's status through the status subresource and post its Events, as the reconciler does.
"""

from __future__ import annotations

import datetime
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from operator_support import CLAIM, mlflow_json, wait_for
from retrainer_contract import claimjob, layout
from retrainer_operator import retention, scrub, upkeep
from retrainer_operator.config import OperatorConfig
from retrainer_operator.kube import Cluster
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

MODEL = "shapes"
REPO = Path(__file__).resolve().parents[2]
T0 = datetime.datetime(2026, 1, 1, 3, 0, tzinfo=datetime.UTC)
HOUR = datetime.timedelta(hours=1)


def operator_config(world: World) -> OperatorConfig:
    return OperatorConfig(
        claim_name=CLAIM,
        s3_endpoint=world.minio_endpoint,
        mlflow_tracking_uri=world.mlflow_uri,
    )


def commit(cluster: Cluster, kube: client.ApiClient, line: dict[str, Any], step: Any) -> None:
    """What the line reconciler does with a step: one status patch, then the Events."""
    if not step:
        return
    patch = dict(step.patch)
    if step.condition is not None:
        patch["conditions"] = upkeep.apply_step(line.get("status") or {}, step)["conditions"]
    patch_line_status(kube, line["metadata"]["namespace"], MODEL, patch)
    upkeep.post_events(cluster, line, step)


def finish_job(cluster: Cluster, namespace: str, name: str) -> None:
    def finished() -> bool:
        job = cluster.read_job(namespace, name)
        return job is not None and claimjob.result(job) is not None

    wait_for(f"Job {name} finished", finished, timeout=180)


def scrub_once(
    cluster: Cluster,
    kube: client.ApiClient,
    namespace: str,
    config: OperatorConfig,
    now: datetime.datetime,
) -> dict[str, Any]:
    """Tick at `now` until a scrub started (a tick first removes the Job of the last one, already
    recorded), then until it has finished and been recorded."""

    def start() -> bool:
        line = get_line(kube, namespace, MODEL)
        step = scrub.scrub_step(cluster, line, config, now)
        commit(cluster, kube, line, step)
        return bool(step.events) and step.events[0].reason == upkeep.Reason.SCRUB_STARTED

    wait_for("a scrub started", start, timeout=60)
    finish_job(cluster, namespace, scrub.job_name(MODEL))
    line = get_line(kube, namespace, MODEL)
    commit(cluster, kube, line, scrub.scrub_step(cluster, line, config, now))
    return get_line(kube, namespace, MODEL)


def scrubbed(line: dict[str, Any]) -> dict[str, Any]:
    conditions = (line.get("status") or {}).get("conditions") or []
    return next(c for c in conditions if c["type"] == upkeep.SCRUBBED)


def test_a_scrub_finds_a_flipped_byte_within_one_interval(
    world: World, kube: client.ApiClient, namespace: str, crd: str
) -> None:
    root = claim_root(kube, namespace)
    experiment_id = experiment(world, f"scrub-{namespace}")
    for version in (1, 2):
        store_version(world, root, namespace, MODEL, version, experiment_id)
    create_line(kube, namespace, MODEL, {"scrub": {"intervalSeconds": 3600}})
    cluster, config = Cluster(kube), operator_config(world)

    line = scrub_once(cluster, kube, namespace, config, T0)
    assert scrubbed(line)["status"] == "True", line["status"]
    assert scrubbed(line)["reason"] == upkeep.Reason.COPIES_INTACT
    assert line["status"]["scrub"] == {"time": "2026-01-01T03:00:00Z", "checked": 2, "problems": []}

    # Within the interval nothing runs (the finished Job is cleaned up instead).
    best = layout.VersionPaths.for_version(root, MODEL, 1).training_run
    flip_byte(best)
    line = get_line(kube, namespace, MODEL)
    assert not scrub.scrub_step(cluster, line, config, T0 + HOUR / 2)
    wait_for(
        "the recorded scrub Job gone",
        lambda: cluster.read_job(namespace, scrub.job_name(MODEL)) is None,
        timeout=60,
    )
    assert not scrub.scrub_step(cluster, line, config, T0 + HOUR - datetime.timedelta(seconds=1))
    assert cluster.read_job(namespace, scrub.job_name(MODEL)) is None

    line = scrub_once(cluster, kube, namespace, config, T0 + HOUR)
    condition = scrubbed(line)
    assert condition["status"] == "False", line["status"]
    assert condition["reason"] == upkeep.Reason.COPY_CHANGED
    where = "trainingRun shapes/runs/train/retrain_v1/weights/best.pt"
    assert f"v1 {where}" in condition["message"]
    problems = line["status"]["scrub"]["problems"]
    assert problems and all(p.startswith("v1 ") for p in problems), problems
    assert any(p.startswith(f"v1 {where}: sha256 differs") for p in problems)
    assert line["status"]["scrub"]["time"] == "2026-01-01T04:00:00Z"
    assert "jobName" not in line["status"]["scrub"]
    warnings = [e for e in line_events(kube, namespace, MODEL) if e.type == "Warning"]
    assert [e.reason for e in warnings] == [upkeep.Reason.COPY_CHANGED]

    # A deleted copy is "missing", named the same way.
    flip_byte(best)  # back to intact
    layout.VersionPaths.for_version(root, MODEL, 2).quick_access.unlink()
    line = scrub_once(cluster, kube, namespace, config, T0 + 2 * HOUR)
    assert scrubbed(line)["reason"] == upkeep.Reason.COPY_MISSING, line["status"]
    assert "v2 quickAccess shapes/runs/train/retrained_v2.pt: missing" in scrubbed(line)["message"]


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


def test_retention_dry_run_lists_and_its_run_removes_exactly_the_expected_claim_copies(
    world: World, kube: client.ApiClient, namespace: str, crd: str
) -> None:
    root = claim_root(kube, namespace)
    experiment_id = experiment(world, f"retention-{namespace}")
    stored = {
        v: store_version(world, root, namespace, MODEL, v, experiment_id) for v in range(1, 8)
    }
    # Version 7 is still training: in the claim, never verified, so never a candidate.
    layout.VersionPaths.for_version(root, MODEL, 7).production.unlink()
    verified = range(1, 7)
    create_line(kube, namespace, MODEL, {"retention": {"keepLast": 2}})
    patch_line_status(kube, namespace, MODEL, {"champion": {"version": 3, "previous": 2}})
    cluster, config = Cluster(kube), operator_config(world)
    before = files_under(root)

    line = get_line(kube, namespace, MODEL)
    commit(cluster, kube, line, retention.retention_step(cluster, line, config, verified, T0))
    listed = get_line(kube, namespace, MODEL)["status"]["retention"]
    assert listed["kept"] == "2-3,5-6"
    assert listed["removable"] == [
        uri
        for v in (1, 4)
        for uri in (
            f"pvc://{CLAIM}/shapes/models/retrained_v{v}.pt",
            f"pvc://{CLAIM}/shapes/runs/train/retrained_v{v}.pt",
            f"pvc://{CLAIM}/shapes/runs/train/retrain_v{v}",
        )
    ]
    assert cluster.read_job(namespace, retention.job_name(MODEL)) is None
    assert files_under(root) == before  # a dry run removes nothing
    line = get_line(kube, namespace, MODEL)
    assert not retention.retention_step(cluster, line, config, verified, T0 + HOUR)  # no change

    custom: Any = client.CustomObjectsApi(kube)
    custom.patch_namespaced_custom_object(
        "retrainer.dev", "v1alpha1", namespace, "modellines", MODEL,
        {"spec": {"retention": {"keepLast": 2, "dryRun": False}}},
    )  # fmt: skip
    gone: set[Path] = set()
    for v in (1, 4):
        paths = layout.VersionPaths.for_version(root, MODEL, v)
        gone |= {paths.production, paths.quick_access} | files_under(paths.run_dir)
    line = get_line(kube, namespace, MODEL)
    started = retention.retention_step(cluster, line, config, verified, T0 + HOUR)
    commit(cluster, kube, line, started)
    assert [e.reason for e in started.events] == [upkeep.Reason.RETENTION_STARTED]
    finish_job(cluster, namespace, retention.job_name(MODEL))
    line = get_line(kube, namespace, MODEL)
    done = retention.retention_step(cluster, line, config, verified, T0 + HOUR)
    commit(cluster, kube, line, done)

    status = get_line(kube, namespace, MODEL)["status"]["retention"]
    assert status["removed"] == "1,4" and status["removable"] == [], status
    for v in (1, 4):
        paths = layout.VersionPaths.for_version(root, MODEL, v)
        assert not paths.run_dir.exists() and paths.metadata.is_file()
    assert files_under(root) == before - gone
    assert [e.reason for e in done.events] == [upkeep.Reason.CLAIM_COPIES_REMOVED]

    # MLflow is never touched: every run and every MLflow weight copy is still there.
    minio = world.minio_client()
    for v, info in stored.items():
        run = mlflow_json(world, f"/api/2.0/mlflow/runs/get?run_id={info['run_id']}")
        assert run["run"]["info"]["lifecycle_stage"] == "active", v
        bucket, key = layout.parse_s3_uri(info["mlflow_uri"])
        assert minio.stat_object(bucket, key).size > 0, v

    # Nothing more to remove: no new Job, no status change.
    wait_for(
        "the retention Job gone",
        lambda: cluster.read_job(namespace, retention.job_name(MODEL)) is None,
        timeout=60,
    )
    line = get_line(kube, namespace, MODEL)
    assert not retention.retention_step(cluster, line, config, verified, T0 + 2 * HOUR)
    assert cluster.read_job(namespace, retention.job_name(MODEL)) is None


def test_verify_all_in_cluster_names_the_flipped_copy_and_exits_1(
    world: World, kube: client.ApiClient, namespace: str
) -> None:
    root = claim_root(kube, namespace)
    experiment_id = experiment(world, f"verify-all-{namespace}")
    for version in (1, 2):
        store_version(world, root, namespace, MODEL, version, experiment_id)
    flip_byte(layout.VersionPaths.for_version(root, MODEL, 2).production)
    env = {**os.environ, **world.env()}
    proc = subprocess.run(
        [str(REPO / ".venv" / "bin" / "retrainer"), "verify", MODEL, "--all", "--in-cluster",
         "-n", namespace, "--s3-endpoint", world.minio_endpoint, "--timeout", "120"],
        env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1].startswith("FAILED: shapes:") and "in 2 versions" in lines[-1]
    assert any(line.startswith("  v2 production shapes/models/retrained_v2.pt") for line in lines)
    assert not any(line.startswith("  v1 ") for line in lines)


def test_a_scrub_reports_a_deleted_production_copy_and_a_version_gone_from_the_claim(
    world: World, kube: client.ApiClient, namespace: str, crd: str
) -> None:
    """Fault point: deleted objects. v2 loses its production copy, v3 every claim copy; the
    ledger still says both were verified. Listing by production copy read both as not there,
    and the line as intact."""
    root = claim_root(kube, namespace)
    experiment_id = experiment(world, f"scrub-missing-{namespace}")
    for version in (1, 2, 3):
        store_version(world, root, namespace, MODEL, version, experiment_id)
    create_line(kube, namespace, MODEL, {"scrub": {"intervalSeconds": 3600}})
    patch_line_status(kube, namespace, MODEL, {"verifiedVersions": "1-3"})  # the ledger's word
    layout.VersionPaths.for_version(root, MODEL, 2).production.unlink()
    three = layout.VersionPaths.for_version(root, MODEL, 3)
    for path in (three.production, three.quick_access, three.metadata):
        path.unlink()
    subprocess.run(["rm", "-rf", str(three.run_dir)], check=True)
    cluster, config = Cluster(kube), operator_config(world)

    line = scrub_once(cluster, kube, namespace, config, T0)
    condition = scrubbed(line)
    assert (condition["status"], condition["reason"]) == ("False", upkeep.Reason.COPY_MISSING)
    assert "in 3 versions" in condition["message"], condition
    problems = line["status"]["scrub"]["problems"]
    assert "v2 production shapes/models/retrained_v2.pt: missing" in problems, problems
    assert "v3 production shapes/models/retrained_v3.pt: missing" in problems, problems
    assert not any(p.startswith("v1 ") for p in problems), problems


def test_retention_keeps_a_version_promoted_after_its_job_was_built(
    world: World, kube: client.ApiClient, namespace: str, crd: str
) -> None:
    """Fault point: a ResourceQuota (pods: 0) holds the retention Job's pod between the listing
    and the removal, while v4, listed as removable, is promoted; then the quota goes."""
    root = claim_root(kube, namespace)
    experiment_id = experiment(world, f"retention-champion-{namespace}")
    for version in range(1, 7):
        store_version(world, root, namespace, MODEL, version, experiment_id)
    verified = range(1, 7)
    create_line(kube, namespace, MODEL, {"retention": {"keepLast": 2, "dryRun": False}})
    patch_line_status(kube, namespace, MODEL, {"champion": {"version": 3, "previous": 2}})
    core = client.CoreV1Api(kube)
    quota = {"metadata": {"name": "no-pods"}, "spec": {"hard": {"pods": "0"}}}
    core.create_namespaced_resource_quota(namespace, quota)
    cluster, config = Cluster(kube), operator_config(world)

    line = get_line(kube, namespace, MODEL)
    started = retention.retention_step(cluster, line, config, verified, T0)
    commit(cluster, kube, line, started)
    assert "versions 1,4 of shapes" in started.events[0].message
    patch_line_status(kube, namespace, MODEL, {"champion": {"version": 4, "previous": 3}})
    core.delete_namespaced_resource_quota("no-pods", namespace)
    finish_job(cluster, namespace, retention.job_name(MODEL))
    line = get_line(kube, namespace, MODEL)
    done = retention.retention_step(cluster, line, config, verified, T0)
    commit(cluster, kube, line, done)

    four = layout.VersionPaths.for_version(root, MODEL, 4)
    assert four.production.is_file() and four.run_dir.is_dir()  # the champion kept its copies
    assert not layout.VersionPaths.for_version(root, MODEL, 1).production.exists()
    status = get_line(kube, namespace, MODEL)["status"]["retention"]
    assert status["removed"] == "1", status
    assert "kept versions 4" in done.events[0].message, done.events
