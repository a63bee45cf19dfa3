"""Verify every copy of version N by reading it back and hashing it (by=trainer).

The verifier is the contract's (retrainer_contract.integrity), the same the operator and the
CLI run. This module adds what only the trainer has: the claim is mounted here, and an MLflow
artifact URI that is neither s3:// nor file:// (a proxied artifact store) is fetched through
MLflow itself.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from retrainer_contract import integrity
from retrainer_contract.objectstore import ObjectStore

__all__ = ["fetch_via_mlflow", "verify"]


def fetch_via_mlflow(uri: str, dest: Path, tracking_uri: str) -> Path:
    """Download an artifact that only MLflow can read (a proxied store) into `dest`."""
    import mlflow.artifacts

    local = mlflow.artifacts.download_artifacts(
        artifact_uri=uri, dst_path=str(dest), tracking_uri=tracking_uri
    )
    return Path(local)


def verify(
    artifacts: Iterable[Mapping[str, Any]],
    *,
    storage_root: Path,
    client: ObjectStore | None,
    tracking_uri: str = "",
) -> dict[str, Any]:
    """status.verification for `artifacts`: verified only if every check is ok."""
    with tempfile.TemporaryDirectory() as tmp:

        def via_mlflow(uri: str) -> Path:
            return fetch_via_mlflow(uri, Path(tmp), tracking_uri)

        return integrity.verify(
            artifacts,
            storage_root=storage_root,
            client=client,
            by=integrity.BY_TRAINER,
            fetch=via_mlflow,
        )
