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
