"""Verify every location of version N by reading it back and hashing it.

Claim files are re-read and hashed; MinIO objects are stat'ed and streamed through sha256
(ETags are not content hashes). The checks themselves live in retrainer_operator.locations,
shared with the operator and `retrainer verify`; this module adds the case the operator does
not have: an MLflow artifact URI that is neither s3:// nor file:// (a proxied artifact store),
which is fetched through MLflow itself.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from retrainer_operator import locations

__all__ = ["BY", "verify"]

BY = "trainer"


def _via_mlflow(artifact: locations.Artifact, tracking_uri: str) -> locations.Check:
    import mlflow.artifacts

    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=artifact["uri"], dst_path=tmp, tracking_uri=tracking_uri
            )
        except Exception as error:
            return locations.make_check(
                artifact["name"], artifact["uri"], False, f"unreadable: {error}", BY
            )
        return locations.check_file(
            artifact["name"],
            artifact["uri"],
            Path(local),
            artifact["sha256"],
            artifact["size"],
            by=BY,
        )


def verify(
    artifacts: Iterable[locations.Artifact],
    *,
    claim_root: Path,
    client: Any,
    tracking_uri: str = "",
) -> dict[str, Any]:
    """status.verification for `artifacts`: verified only if every check is ok."""
    checks: list[locations.Check] = []
    for artifact in artifacts:
        uri = artifact["uri"]
        if "://" in uri and not uri.startswith(("s3://", "pvc://", "file://")):
            checks.append(_via_mlflow(artifact, tracking_uri))
        else:
            checks.append(
                locations.check_artifact(artifact, claim_root=claim_root, client=client, by=BY)
            )
    return {
        "verified": bool(checks) and all(c["ok"] for c in checks),
        "checkedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "checks": checks,
    }
