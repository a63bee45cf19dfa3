"""Metric keys: the names in status.metrics, in the MLflow run and in spec.promotion.metric.

The trainer maps Ultralytics' names to these; the operator and the CLI read them back.
"""

from __future__ import annotations

__all__ = [
    "EPOCH",
    "EPOCHS_PARAM",
    "KEYS",
    "MAP50",
    "MAP50_95",
    "PRECISION",
    "RECALL",
    "ULTRALYTICS",
    "champion_holdout_key",
    "holdout_key",
]

PRECISION = "precision"
RECALL = "recall"
MAP50 = "mAP50"
MAP50_95 = "mAP50_95"
# The validation metrics of a version, in display order.
KEYS: tuple[str, ...] = (PRECISION, RECALL, MAP50, MAP50_95)

# Ultralytics' detection metric names -> ours.
ULTRALYTICS: dict[str, str] = {
    "metrics/precision(B)": PRECISION,
    "metrics/recall(B)": RECALL,
    "metrics/mAP50(B)": MAP50,
    "metrics/mAP50-95(B)": MAP50_95,
}

# The per-epoch step metric and the run param holding the planned epochs (status.progress).
EPOCH = "epoch"
EPOCHS_PARAM = "epochs"

# The holdout scores in a version's MLflow run: its own, and the champion's it was compared with.
HOLDOUT_PREFIX = "holdout."
CHAMPION_HOLDOUT_PREFIX = "holdout.champion."


def holdout_key(key: str) -> str:
    """The MLflow metric of a version's own holdout score (`holdout.mAP50_95`)."""
    return f"{HOLDOUT_PREFIX}{key}"


def champion_holdout_key(key: str) -> str:
    """The MLflow metric of the champion's score on the same holdout, in the challenger's run."""
    return f"{CHAMPION_HOLDOUT_PREFIX}{key}"
