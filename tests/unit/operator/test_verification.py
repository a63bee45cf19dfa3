"""Verification keeps the trainer's claim checks and re-checks the MinIO object itself."""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

from retrainer_operator.verification import parse_manifest, verify_manifest

WEIGHTS = b"weights of version 1" * 100
SHA = hashlib.sha256(WEIGHTS).hexdigest()
MLFLOW_URI = "s3://mlflow/1/run123/artifacts/models/retrained_v1.pt"


class _Response:
    def __init__(self, data: bytes) -> None:
        self._io = io.BytesIO(data)

    def stream(self, size: int) -> Any:
        while chunk := self._io.read(size):
            yield chunk

    def read(self) -> bytes:
        return self._io.read()

    def close(self) -> None: ...

    def release_conn(self) -> None: ...


class _Stat:
    def __init__(self, size: int) -> None:
        self.size = size


class BucketStore:
    """An in-memory object store with minio's get_object/stat_object surface."""

    def __init__(self, objects: dict[tuple[str, str], bytes]) -> None:
        self.objects = objects

    def get_object(self, bucket_name: str, object_name: str) -> _Response:
        return _Response(self.objects[(bucket_name, object_name)])

    def stat_object(self, bucket_name: str, object_name: str) -> _Stat:
        return _Stat(len(self.objects[(bucket_name, object_name)]))


def manifest(version: int = 1) -> dict[str, Any]:
    names = {
        "production": "pvc://models/shapes/models/retrained_v1.pt",
        "quickAccess": "pvc://models/shapes/runs/train/retrained_v1.pt",
        "trainingRun": "pvc://models/shapes/runs/train/retrain_v1/weights/best.pt",
        "metadata": "pvc://models/shapes/models/retrained_v1_metadata.json",
        "mlflow": MLFLOW_URI,
    }
    artifacts = [
        {"name": n, "uri": u, "sha256": SHA, "size": len(WEIGHTS)} for n, u in names.items()
    ]
    return {
        "version": version,
        "metrics": {"precision": 0.5, "recall": 0.4, "mAP50": 0.3, "mAP50_95": 0.2},
        "artifacts": artifacts,
        "verification": {
            "verified": True,
            "checkedAt": "2026-11-27T10:00:00Z",
            "checks": [
                {"name": n, "uri": u, "ok": True, "by": "trainer", "message": "sha256 matches"}
                for n, u in names.items()
            ],
        },
        "mlflow": {"experimentId": "1", "runId": "run123", "runUrl": "http://m/#/x"},
        "lineage": {"baseModel": "yolo11n.yaml", "trainSamples": 16, "valSamples": 8},
    }


def intact_store() -> BucketStore:
    return BucketStore({("mlflow", "1/run123/artifacts/models/retrained_v1.pt"): WEIGHTS})


def test_an_intact_version_verifies_and_fills_the_status_fields() -> None:
    outcome = verify_manifest(manifest(), 1, intact_store())
    assert outcome.verified, outcome.message
    fields = outcome.fields
    assert [a["name"] for a in fields["artifacts"]] == [
        "production",
        "quickAccess",
        "trainingRun",
        "metadata",
        "mlflow",
    ]
    by = [(c["name"], c["by"]) for c in fields["verification"]["checks"]]
    assert ("mlflow", "operator") in by
    assert ("production", "trainer") in by
    assert fields["verification"]["verified"] is True
    assert fields["metrics"]["mAP50_95"] == 0.2
    assert fields["lineage"]["trainSamples"] == 16
    assert fields["mlflow"]["runId"] == "run123"


def test_a_corrupted_minio_object_fails_verification_naming_the_location() -> None:
    store = intact_store()
    store.objects[("mlflow", "1/run123/artifacts/models/retrained_v1.pt")] = b"x" * len(WEIGHTS)
    outcome = verify_manifest(manifest(), 1, store)
    assert not outcome.verified
    assert "mlflow (operator)" in outcome.message
    assert "sha256" in outcome.message


def test_a_missing_minio_object_fails_verification() -> None:
    outcome = verify_manifest(manifest(), 1, BucketStore({}))
    assert not outcome.verified
    assert "unreadable" in outcome.message


def test_a_location_missing_from_the_manifest_fails_verification() -> None:
    broken = manifest()
    broken["artifacts"] = [a for a in broken["artifacts"] if a["name"] != "quickAccess"]
    outcome = verify_manifest(broken, 1, intact_store())
    assert not outcome.verified
    assert "quickAccess" in outcome.message


def test_a_failed_trainer_check_fails_verification() -> None:
    broken = manifest()
    broken["verification"]["checks"][0].update(ok=False, message="missing: /x")
    broken["verification"]["verified"] = False
    outcome = verify_manifest(broken, 1, intact_store())
    assert not outcome.verified
    assert "missing: /x" in outcome.message


def test_a_manifest_for_another_version_fails_verification() -> None:
    outcome = verify_manifest(manifest(version=2), 1, intact_store())
    assert not outcome.verified
    assert "version 2" in outcome.message


def test_only_json_objects_with_a_version_are_manifests() -> None:
    assert parse_manifest(json.dumps(manifest())) == manifest()
    assert parse_manifest("bad label in labels/x.txt") is None
    assert parse_manifest(b"[1, 2]") is None
    assert parse_manifest(None) is None


def test_without_a_minio_client_the_mlflow_location_is_not_trusted() -> None:
    outcome = verify_manifest(manifest(), 1, None)
    assert not outcome.verified
    assert "no MinIO client" in outcome.message


def test_a_manifest_of_another_owner_never_verifies_this_retrainjob() -> None:
    foreign = {**manifest(), "retrainJob": {"uid": "other-uid", "name": "x", "namespace": "n"}}
    outcome = verify_manifest(foreign, 1, None, "my-uid")
    assert not outcome.verified
    assert "belongs to RetrainJob uid other-uid, not my-uid" in outcome.message


class UnreachableStore:
    """MinIO stopped: every call fails with a connection error."""

    def get_object(self, bucket_name: str, object_name: str) -> _Response:
        raise ConnectionRefusedError("connection refused")

    def stat_object(self, bucket_name: str, object_name: str) -> _Stat:
        raise ConnectionRefusedError("connection refused")


def test_an_unreachable_object_store_is_transient_not_a_failed_verification() -> None:
    outcome = verify_manifest(manifest(), 1, UnreachableStore())
    assert not outcome.verified and outcome.transient
    assert "unreachable" in outcome.message


def test_a_wrong_copy_is_never_transient_even_when_something_else_is_unreachable() -> None:
    store = intact_store()
    store.objects[("mlflow", "1/run123/artifacts/models/retrained_v1.pt")] = b"x" * len(WEIGHTS)
    assert not verify_manifest(manifest(), 1, store).transient
    assert not verify_manifest(manifest(2), 1, UnreachableStore()).transient
