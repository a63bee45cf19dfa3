"""The manifest of version N (the CRD status shape) and its compact termination message.

The manifest goes to the run folder and to MLflow; the operator copies it into the RetrainJob
status. The termination message is what Kubernetes shows in the pod status, capped at 4 KB,
so it is shrunk step by step until it fits.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["LIMIT", "build", "compact", "failure", "write_termination"]

LIMIT = 4096


def build(
    *,
    version: int,
    metrics: dict[str, float],
    artifacts: list[Any],
    verification: dict[str, Any],
    mlflow: dict[str, Any],
    lineage: dict[str, Any],
) -> dict[str, Any]:
    return {
        "version": version,
        "metrics": metrics,
        "artifacts": artifacts,
        "verification": verification,
        "mlflow": mlflow,
        "lineage": lineage,
    }


def _size(document: dict[str, Any]) -> int:
    return len(json.dumps(document, separators=(",", ":")).encode())


def compact(manifest: dict[str, Any], limit: int = LIMIT) -> dict[str, Any]:
    """The manifest, minus detail that the operator can read from MLflow, under `limit` bytes."""
    doc = json.loads(json.dumps(manifest))
    steps = [
        lambda d: [
            c.pop("message", None)
            for c in d.get("verification", {}).get("checks", [])
            if c.get("ok")
        ],
        lambda d: [a.pop("uri", None) for a in d.get("artifacts", [])],
        lambda d: d.get("verification", {}).pop("checks", None),
        lambda d: d.pop("lineage", None),
        lambda d: d.pop("artifacts", None),
    ]
    for step in steps:
        if _size(doc) <= limit:
            break
        step(doc)
    return doc


def failure(reason: str, message: str, exit_code: int) -> dict[str, Any]:
    return {"error": {"reason": reason, "message": message[:3000], "exitCode": exit_code}}


def write_termination(path: Path | None, document: dict[str, Any]) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(compact(document), separators=(",", ":")), encoding="utf-8")
    except OSError:
        pass  # no termination log (a local run): the stdout events say the same
