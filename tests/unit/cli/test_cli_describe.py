"""`retrainer describe`: the sections an on-call person reads, from a RetrainJob dict."""

from __future__ import annotations

import datetime as dt
from typing import Any

from retrainer_cli import describe

NOW = dt.datetime(2026, 11, 27, 12, 0, 0, tzinfo=dt.UTC)

FAILED_JOB: dict[str, Any] = {
    "metadata": {
        "name": "shapes-v2",
        "namespace": "team-a",
        "generation": 1,
        "creationTimestamp": "2026-11-27T11:50:00Z",
    },
    "spec": {
        "model": "shapes",
        "baseModel": {"version": "latest"},
        "dataset": {"uri": "s3://datasets/shapes"},
        "training": {"epochs": 3, "imgsz": 64},
    },
    "status": {
        "observedGeneration": 1,
        "phase": "Failed",
        "version": 2,
        "jobName": "retrain-shapes-v2",
        "conditions": [
            {
                "type": "Failed",
                "status": "True",
                "reason": "VerificationFailed",
                "message": "mlflow: sha256 mismatch",
                "lastTransitionTime": "2026-11-27T11:59:00Z",
            }
        ],
        "artifacts": [
            {
                "name": "production",
                "uri": "pvc://retrainer-models/shapes/models/retrained_v2.pt",
                "sha256": "ab" * 32,
                "size": 5_500_000,
            }
        ],
        "verification": {
            "verified": False,
            "checks": [
                {"name": "production", "ok": True, "by": "trainer", "message": "sha256 matches"},
                {"name": "mlflow", "ok": False, "by": "operator", "message": "sha256 mismatch"},
            ],
        },
    },
}

EVENTS = [
    {
        "type": "Warning",
        "reason": "VerificationFailed",
        "message": "mlflow copy differs",
        "lastTimestamp": "2026-11-27T11:59:30Z",
        "source": {"component": "retrainer-operator"},
        "count": 2,
    }
]


def test_describe_shows_the_failure_reason_checks_and_events() -> None:
    text = describe.render_describe(FAILED_JOB, EVENTS, NOW)
    assert "Phase:      Failed" in text
    assert "Base model:   version latest" in text
    conditions = text[text.index("Conditions:") : text.index("Artifacts:")]
    assert "Failed   True     VerificationFailed   60s   mlflow: sha256 mismatch" in conditions
    assert "production   abababababab   5.2 MiB   pvc://retrainer-models" in text
    checks = text[text.index("Verification:") : text.index("Events:")]
    assert "Verified:" in checks and "false" in checks
    assert "mlflow       FAILED   operator   sha256 mismatch" in checks
    assert (
        "Warning   VerificationFailed   30s (x2)   retrainer-operator   mlflow copy differs" in text
    )


def test_describe_of_a_new_retrainjob_prints_none_markers_not_errors() -> None:
    fresh = {"metadata": {"name": "new", "namespace": "a"}, "spec": {"model": "shapes"}}
    text = describe.render_describe(fresh, [], NOW)
    assert "Phase:      Pending" in text
    assert text.rstrip().endswith("<none>")  # no events yet


def test_stale_status_is_flagged() -> None:
    stale = {**FAILED_JOB, "metadata": {**FAILED_JOB["metadata"], "generation": 2}}
    assert "Failed (stale)" in describe.render_describe(stale, [], NOW)


def test_describe_shows_the_holdout_comparison_of_both_versions() -> None:
    evaluation = {
        "holdoutUri": "datasets/shapes-holdout",
        "holdoutSha256": "cd" * 32,
        "holdoutImages": 24,
        "imgsz": 96,
        "metric": "mAP50_95",
        "decision": "Rejected",
        "reason": "mAP50_95 0.4100 is worse than champion v1 0.4300 by 0.0200",
        "holdoutChanged": True,
        "challenger": {
            "version": 2,
            "metrics": {"mAP50_95": 0.41, "mAP50": 0.7},
            "perClass": {"circle": {"mAP50_95": 0.5}},
        },
        "champion": {
            "version": 1,
            "metrics": {"mAP50_95": 0.43, "mAP50": 0.72},
            "perClass": {"circle": {"mAP50_95": 0.45}, "square": {"mAP50_95": 0.3}},
            "previous": {"holdoutSha256": "ef" * 32, "metrics": {"mAP50_95": 0.5}},
        },
    }
    job = {**FAILED_JOB, "status": {**FAILED_JOB["status"], "evaluation": evaluation}}
    text = describe.render_describe(job, [], NOW)
    section = text[text.index("Evaluation (holdout):") : text.index("Events:")]
    assert "Decision:" in section and "Rejected" in section
    assert "worse than champion v1 0.4300 by 0.0200" in section
    assert "challenger v2" in section and "champion v1" in section
    assert "0.410" in section and "0.430" in section
    assert "champion v1 (holdout efefefefefef)" in section
    assert "circle   0.500" in section
    assert "square   <none>" in section


def test_describe_shows_the_interval_and_a_line_per_regression_set_and_class() -> None:
    evaluation = {
        "holdoutUri": "datasets/shapes-holdout",
        "metric": "mAP50",
        "decision": "Rejected",
        "cause": "Regressed",
        "reason": "regression set night: mAP50 0.3000 is below the champion's 0.6000",
        "challenger": {"version": 3, "metrics": {"mAP50": 0.6}, "perClass": {}},
        "champion": {"version": 2, "metrics": {"mAP50": 0.5}, "perClass": {}},
        "confidence": {
            "metric": "mAP50",
            "confidence": 0.95,
            "resamples": 1000,
            "seed": 4,
            "observed": 0.1,
            "low": 0.02,
            "high": 0.18,
        },
        "regressionSets": [
            {
                "name": "night",
                "uri": "s3://d/night",
                "tolerance": 0.02,
                "origin": "spec",
                "challenger": {"metrics": {"mAP50": 0.3}, "perClass": {"circle": {"mAP50": 0.1}}},
                "champion": {"metrics": {"mAP50": 0.6}, "perClass": {"circle": {"mAP50": 0.7}}},
            },
            {"name": "gone", "uri": "s3://d/gone", "tolerance": 0, "error": "NoSuchKey"},
        ],
        "maxClassRegression": 0.05,
        "classRegressions": [
            {"set": "night", "class": "circle", "challenger": 0.1, "champion": 0.7, "drop": 0.6}
        ],
    }
    job = {**FAILED_JOB, "status": {**FAILED_JOB["status"], "evaluation": evaluation}}
    text = describe.render_describe(job, [], NOW)
    section = text[text.index("Evaluation (holdout):") : text.index("Events:")]
    assert "Cause:" in section and "Regressed" in section
    assert "95% interval of the mAP50 improvement: [+0.0200, +0.1800]" in section
    assert "seed 4" in section
    checks = section[section.index("Checks:") :]
    assert "regression set night: 0.3000 vs champion 0.6000 (-0.3000, tolerance 0.0200) FAILED" in (
        checks
    )
    assert "regression set gone: unavailable: NoSuchKey FAILED" in checks
    assert "class circle on night: 0.1000 vs champion 0.7000 (-0.6000) FAILED" in checks
    assert "interval" not in checks  # shown once, above
