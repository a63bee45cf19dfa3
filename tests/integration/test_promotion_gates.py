"""Promotion a statistician would sign, end to end with real training (CPU): the paired
bootstrap interval, regression sets (a changed holdout kept as one) and class drops.

One model line, five versions, one namespace:
- v1, one epoch: the first version (NoChampion), the champion;
- v2, fifteen epochs from v1: clearly better, Promoted with its interval (lower bound > 0);
- v3, a one-epoch continuation of the champion with another seed and a tiny learning rate:
  better or worse only by noise, Rejected/NotSignificant naming the interval;
- v4, the same with a regression set that does not exist: Rejected/RegressionSetUnavailable,
  never a skip, and the version itself is stored and verified;
- v5, trained from scratch only on new data without triangles, judged on a new holdout
  without triangles: the old holdout (the champion's) joins its regression sets by itself,
  and v5 is Rejected/Regressed there, with the triangle listed as a class that dropped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from operator_support import (
    DATASET_BUCKET,
    TRAIN_TIMEOUT,
    condition,
    create,
    get_line,
    mlflow_json,
    operator_in_prepared_namespace,
    retrainjob,
    upload_dataset,
    upload_folder,
    wait_finished,
)
from retrainer_contract import evidence, layout
from retrainer_demo import shapes
from retrainer_world.world import World

pytestmark = pytest.mark.integration

TRAIN, SIZE, IMGSZ, GOOD_EPOCHS = 128, 64, 64, 15
FAST = {"workers": 0, "warmup_epochs": 1, "mosaic": 0.0, "optimizer": "AdamW", "lr0": 0.003}
# A continuation that moves the weights only a little: what changes is noise.
NUDGE = {"workers": 0, "warmup_epochs": 0, "mosaic": 0.0, "optimizer": "AdamW", "lr0": 0.00002}
NO_TRIANGLES = (0, 1)
MARGIN = 0.01  # the least gain worth a new champion: the interval's lower bound must clear it


def job(
    name: str, dataset: str, registered: str, promotion: dict[str, Any], epochs: int, **spec: Any
) -> dict[str, Any]:
    extra = spec.pop("extra", FAST)
    seed = spec.pop("seed", 0)
    return retrainjob(
        name,
        dataset,
        training={
            "epochs": epochs,
            "imgsz": IMGSZ,
            "batch": 16,
            "seed": seed,
            "extraArgs": extra,
        },
        mlflow={"registeredModel": registered},
        promotion={
            "metric": "mAP50",
            "minImprovement": MARGIN,
            "confidence": 0.95,
            "resamples": 1000,
            **promotion,
        },
        **spec,
    )


def evidence_table(world: World, run_id: str) -> dict[str, Any]:
    """The run's evaluation/promotion_evidence.json, read from MLflow's artifact store."""
    run = mlflow_json(world, f"/api/2.0/mlflow/runs/get?run_id={run_id}")["run"]
    bucket, key = layout.parse_s3_uri(run["info"]["artifact_uri"])
    answer = world.minio_client().get_object(
        bucket, f"{key}/evaluation/{evidence.TABLE_NAME}".lstrip("/")
    )
    try:
        found: dict[str, Any] = json.loads(answer.read())
    finally:
        answer.close()
        answer.release_conn()
    return found


def rows_of(table: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(zip(table["columns"], row, strict=True)) for row in table["data"]]


def test_noise_is_not_significant_forgetting_is_regressed_and_better_is_promoted(
    world: World, namespace: str, kube: client.ApiClient, crd: object, tmp_path: Path
) -> None:
    dataset = upload_dataset(world, tmp_path, f"{namespace}/shapes", train=TRAIN, size=SIZE)
    old_holdout = upload_folder(
        world,
        shapes.generate_holdout(tmp_path / "old", seed=0, count=24, size=SIZE),
        f"{namespace}/holdout-old",
    )
    new_data = shapes.generate_dataset(
        tmp_path / "new", seed=5, train=TRAIN, size=SIZE, classes=NO_TRIANGLES
    )
    new_dataset = upload_folder(world, new_data, f"{namespace}/new")
    new_holdout = upload_folder(
        world,
        shapes.generate_holdout(
            tmp_path / "newh", seed=9, count=24, size=SIZE, classes=NO_TRIANGLES
        ),
        f"{namespace}/holdout-new",
    )
    missing = f"s3://{DATASET_BUCKET}/{namespace}/no-such-set"
    registered = namespace
    pinned = {"holdout": {"uri": old_holdout}}
    continuation = {"baseModel": {"version": "champion"}, "extra": NUDGE, "seed": 7}
    with operator_in_prepared_namespace(world, kube, namespace, tmp_path) as operator:
        create(kube, namespace, job("first", dataset, registered, pinned, 1))
        first = wait_finished(kube, namespace, "first", operator)
        better = job(
            "better", dataset, registered, pinned, GOOD_EPOCHS, baseModel={"version": "latest"}
        )
        create(kube, namespace, better)
        second = wait_finished(kube, namespace, "better", operator, timeout=2 * TRAIN_TIMEOUT)
        create(kube, namespace, job("noise", dataset, registered, pinned, 1, **continuation))
        third = wait_finished(kube, namespace, "noise", operator)
        unreadable = {**pinned, "regressionSets": [{"uri": missing, "tolerance": 0.5}]}
        create(
            kube, namespace, job("unreadable", dataset, registered, unreadable, 1, **continuation)
        )
        fourth = wait_finished(kube, namespace, "unreadable", operator)
        forgetful = {"holdout": {"uri": new_holdout}, "maxClassRegression": 0.1}
        create(
            kube,
            namespace,
            job("forgetful", new_dataset, registered, forgetful, GOOD_EPOCHS, seed=3),
        )
        fifth = wait_finished(kube, namespace, "forgetful", operator, timeout=2 * TRAIN_TIMEOUT)
        line = get_line(kube, namespace, "shapes")

    for obj in (first, second, third, fourth, fifth):
        assert obj["status"]["phase"] == "Succeeded", obj["status"]
    assert first["status"]["evaluation"]["decision"] == "NoChampion"
    assert "confidence" not in first["status"]["evaluation"]  # nothing to compare with

    # v2: clearly better, and the interval says so; the reason and the status carry it.
    v2 = second["status"]["evaluation"]
    assert v2["decision"] == "Promoted", v2["reason"]
    interval = v2["confidence"]
    assert (interval["confidence"], interval["resamples"], interval["seed"]) == (0.95, 1000, 0)
    assert MARGIN <= interval["low"] <= interval["observed"] <= interval["high"], interval
    ours, theirs = v2["challenger"]["metrics"]["mAP50"], v2["champion"]["metrics"]["mAP50"]
    assert interval["observed"] == pytest.approx(ours - theirs, abs=1e-5)
    assert f"[{interval['low']:+.4f}, {interval['high']:+.4f}]" in v2["reason"]
    assert condition(second, "Promoted")["reason"] == "Promoted"

    # v3: noise. Whatever the point estimate, the interval's lower bound is below the margin.
    v3 = third["status"]["evaluation"]
    assert (v3["decision"], v3.get("cause")) == ("Rejected", "NotSignificant"), v3["reason"]
    assert v3["champion"]["version"] == 2
    found = v3["confidence"]
    assert found["low"] < MARGIN and found["low"] <= found["observed"] <= found["high"], found
    promoted = condition(third, "Promoted")
    assert (promoted["status"], promoted["reason"]) == ("False", "NotSignificant")
    assert "Rejected/NotSignificant" in promoted["message"]
    assert f"[{v3['confidence']['low']:+.4f}, " in promoted["message"]

    # v4: a regression set that cannot be read rejects; the version is still stored.
    v4 = fourth["status"]["evaluation"]
    assert (v4["decision"], v4.get("cause")) == ("Rejected", "RegressionSetUnavailable")
    (unread,) = v4["regressionSets"]
    assert unread["uri"] == missing and unread["origin"] == "spec" and unread["error"]
    assert condition(fourth, "Promoted")["reason"] == "RegressionSetUnavailable"
    assert condition(fourth, "Verified")["status"] == "True"

    # v5: the old holdout came along as a regression set, and v5 forgot the triangles there
    # (the forgetting is the cause, ahead of an interval that is no better than noise).
    v5 = fifth["status"]["evaluation"]
    assert v5["holdoutUri"] == new_holdout
    assert (v5["decision"], v5.get("cause")) == ("Rejected", "Regressed"), v5["reason"]
    (kept,) = v5["regressionSets"]
    assert (kept["uri"], kept["origin"], kept["name"]) == (
        old_holdout,
        "previousHoldout",
        "holdout-old",
    )
    assert kept["champion"]["metrics"]["mAP50"] > kept["challenger"]["metrics"]["mAP50"]
    assert "regression set holdout-old" in v5["reason"]
    dropped = {(r["set"], r["class"]) for r in v5["classRegressions"]}
    assert ("holdout-old", "triangle") in dropped, v5["classRegressions"]
    assert condition(fifth, "Promoted")["reason"] == "Regressed"

    # The champion stayed on v2 through all of it.
    assert line["status"]["champion"]["version"] == 2

    # MLflow: one table with every check; the interval's bounds as run metrics.
    rows = rows_of(evidence_table(world, fifth["status"]["mlflow"]["runId"]))
    regression = [r for r in rows if r["check"] == "regression"]
    assert [(r["set"], r["passed"]) for r in regression] == [("holdout-old", False)]
    triangle = next(r for r in rows if r["set"] == "holdout-old" and r["class"] == "triangle")
    assert triangle["passed"] is False and triangle["champion"] > triangle["challenger"]
    run = mlflow_json(
        world, f"/api/2.0/mlflow/runs/get?run_id={second['status']['mlflow']['runId']}"
    )["run"]
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    assert metrics["promotion.improvement_low"] == pytest.approx(interval["low"])
    assert metrics["promotion.improvement_high"] == pytest.approx(interval["high"])
