"""Builds a real claim folder with one model version, the way the trainer lays it out."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from retrainer_contract import layout

MakeVersion = Callable[..., layout.VersionPaths]


def _artifact(name: str, path: Path, uri: str) -> dict[str, object]:
    data = path.read_bytes()
    return {"name": name, "uri": uri, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


@pytest.fixture
def make_version(tmp_path: Path) -> MakeVersion:
    """make_version(model, N, weights=b"...", manifest=True) -> the VersionPaths written."""

    def make(
        model: str = "shapes", version: int = 1, weights: bytes | None = None, manifest: bool = True
    ) -> layout.VersionPaths:
        paths = layout.VersionPaths.for_version(tmp_path / "claim", model, version)
        weights = weights if weights is not None else f"weights of v{version} ".encode() * 500
        for path in (paths.production, paths.quick_access, paths.training_run):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(weights)
        paths.last_checkpoint.write_bytes(weights + b"last")
        (paths.run_dir / "args.yaml").write_text("imgsz: 64\nepochs: 2\n")
        sha = hashlib.sha256(weights).hexdigest()
        metadata = {"model": model, "version": version, "weights": {"sha256": sha}}
        paths.metadata.write_text(json.dumps(metadata))
        if manifest:
            claim = "retrainer-models"
            artifacts = [
                _artifact(name, path, paths.uri(claim, path))
                for name, path in paths.claim_files().items()
            ]
            artifacts.append(
                {
                    **_artifact("mlflow", paths.production, ""),
                    "uri": f"s3://mlflow/1/run{version}/artifacts/models/retrained_v{version}.pt",
                }
            )
            paths.manifest.write_text(json.dumps({"version": version, "artifacts": artifacts}))
        return paths

    return make
