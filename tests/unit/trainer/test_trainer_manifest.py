"""The termination message stays under Kubernetes' 4 KB, the manifest keeps the CRD shape."""

from __future__ import annotations

import json
from pathlib import Path

from retrainer_contract import documents
from retrainer_trainer import manifest


def big_manifest() -> dict[str, object]:
    checks = [
        {"name": f"n{i}", "uri": "s3://mlflow/" + "x" * 200, "ok": True, "by": "trainer",
         "message": "sha256 matches " + "y" * 100}
        for i in range(20)
    ]  # fmt: skip
    artifacts = [{"name": f"n{i}", "uri": "pvc://" + "z" * 200, "sha256": "a" * 64, "size": 1}
                 for i in range(5)]  # fmt: skip
    return documents.manifest(
        version=3, metrics={"precision": 0.5, "recall": 0.4, "mAP50": 0.3, "mAP50_95": 0.2},
        artifacts=artifacts, verification={"verified": True, "checkedAt": "t", "checks": checks},
        mlflow={"experimentId": "1", "runId": "r"}, lineage={"baseModel": "v2"},
    )  # fmt: skip


def test_manifest_has_the_status_fields() -> None:
    assert set(big_manifest()) == {
        "version",
        "metrics",
        "artifacts",
        "verification",
        "mlflow",
        "lineage",
    }


def test_termination_message_is_compacted_below_4kb(tmp_path: Path) -> None:
    path = tmp_path / "termination-log"
    manifest.write_termination(path, big_manifest())
    written = path.read_bytes()
    assert len(written) <= documents.TERMINATION_LIMIT
    doc = json.loads(written)
    assert (
        doc["version"] == 3 and doc["metrics"]["mAP50"] == 0.3 and doc["verification"]["verified"]
    )


def test_small_manifest_is_written_whole(tmp_path: Path) -> None:
    small = documents.manifest(version=1, metrics={}, artifacts=[], verification={"verified": True},
                               mlflow={}, lineage={})  # fmt: skip
    path = tmp_path / "t"
    manifest.write_termination(path, small)
    assert json.loads(path.read_text()) == small
