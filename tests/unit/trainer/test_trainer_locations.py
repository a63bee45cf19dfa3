"""retrainer_operator.locations: the names, paths and checks the trainer, CLI and operator share."""

from __future__ import annotations

from pathlib import Path

import pytest
from retrainer_contract import integrity, layout


def test_version_paths_follow_the_contract(tmp_path: Path) -> None:
    paths = layout.VersionPaths.for_version(tmp_path, "shapes", 3)
    files = {
        name: path.relative_to(tmp_path).as_posix() for name, path in paths.claim_files().items()
    }
    assert files == {
        "production": "shapes/models/retrained_v3.pt",
        "quickAccess": "shapes/runs/train/retrained_v3.pt",
        "trainingRun": "shapes/runs/train/retrain_v3/weights/best.pt",
        "metadata": "shapes/models/retrained_v3_metadata.json",
    }
    assert paths.manifest == tmp_path / "shapes/runs/train/retrain_v3/manifest.json"
    assert paths.uri("models", paths.production) == "pvc://models/shapes/models/retrained_v3.pt"


def test_version_zero_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="version must be >= 1"):
        layout.VersionPaths.for_version(tmp_path, "shapes", 0)


def test_uris_round_trip() -> None:
    assert layout.parse_s3_uri("s3://mlflow/1/abc/artifacts/x.pt") == (
        "mlflow",
        "1/abc/artifacts/x.pt",
    )
    assert layout.mlflow_weights_uri("s3://mlflow/1/abc/artifacts/", 2) == (
        "s3://mlflow/1/abc/artifacts/models/retrained_v2.pt"
    )
    with pytest.raises(ValueError, match="not an s3:// URI"):
        layout.parse_s3_uri("pvc://models/x")


def test_claim_path_resolves_pvc_and_relative_paths_but_refuses_climbing_out(
    tmp_path: Path,
) -> None:
    assert layout.claim_path("pvc://models/shapes/a.pt", tmp_path) == tmp_path / "shapes/a.pt"
    assert layout.claim_path("datasets/shapes", tmp_path) == tmp_path / "datasets/shapes"
    with pytest.raises(ValueError, match=r"\.\."):
        layout.claim_path("pvc://models/../etc/passwd", tmp_path)


def test_check_file_reports_match_missing_and_a_flipped_byte(tmp_path: Path) -> None:
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"weights" * 1000)
    sha, size = integrity.sha256_file(weights)
    ok = integrity.check_file("production", "pvc://m/w.pt", weights, sha, size, by="trainer")
    assert ok == {"name": "production", "uri": "pvc://m/w.pt", "ok": True, "by": "trainer",
                  "message": "sha256 matches"}  # fmt: skip
    data = bytearray(weights.read_bytes())
    data[100] ^= 0xFF
    weights.write_bytes(bytes(data))
    flipped = integrity.check_file("production", "pvc://m/w.pt", weights, sha, size, by="cli")
    assert not flipped["ok"] and "sha256 mismatch" in flipped["message"]
    weights.unlink()
    missing = integrity.check_file("production", "pvc://m/w.pt", weights, sha, size, by="cli")
    assert not missing["ok"] and missing["message"].startswith("missing")


def test_check_artifacts_reads_claim_and_file_uris(tmp_path: Path) -> None:
    (tmp_path / "shapes").mkdir()
    (tmp_path / "shapes" / "a.pt").write_bytes(b"a")
    sha, size = integrity.sha256_file(tmp_path / "shapes" / "a.pt")
    artifacts = [
        {"name": "production", "uri": "pvc://models/shapes/a.pt", "sha256": sha, "size": size},
        {
            "name": "mlflow",
            "uri": (tmp_path / "shapes" / "a.pt").as_uri(),
            "sha256": sha,
            "size": size,
        },
        {"name": "mlflow", "uri": "s3://mlflow/a.pt", "sha256": sha, "size": size},
    ]
    checks = integrity.check_artifacts(artifacts, storage_root=tmp_path, client=None, by="trainer")
    assert [c["ok"] for c in checks] == [True, True, False]
    assert "no object store client" in checks[2]["message"]
