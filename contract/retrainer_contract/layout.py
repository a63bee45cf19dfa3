"""Where version N of a model line lives: the claim layout, the MLflow copy, their URIs.

The trainer writes version N to the claim three times (production, quick-access, the full
Ultralytics run) plus its metadata, and once to MLflow on MinIO: five artifacts, four of them
weight copies. The operator and the CLI find them again from the names and paths here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

__all__ = [
    "ARTIFACT_NAMES",
    "CORRECTIONS_APPLIED",
    "DATASET_CACHE",
    "DATASET_METADATA",
    "DATA_YAML",
    "MANIFEST",
    "METADATA",
    "MLFLOW",
    "OWNER",
    "PRODUCTION",
    "QUICK_ACCESS",
    "TRAINING_RUN",
    "WEIGHT_NAMES",
    "VersionPaths",
    "claim_path",
    "claim_versions",
    "dataset_cache_dir",
    "mlflow_weights_uri",
    "parse_s3_uri",
    "pvc_uri",
    "s3_uri",
]

# Artifact names, exactly as in docs/contract.md and the CRD's status.artifacts[].name.
PRODUCTION = "production"
QUICK_ACCESS = "quickAccess"
TRAINING_RUN = "trainingRun"
METADATA = "metadata"
MLFLOW = "mlflow"
ARTIFACT_NAMES: tuple[str, ...] = (PRODUCTION, QUICK_ACCESS, TRAINING_RUN, METADATA, MLFLOW)
# The four copies of the weights among them.
WEIGHT_NAMES: tuple[str, ...] = (PRODUCTION, QUICK_ACCESS, TRAINING_RUN, MLFLOW)

# Documents beside the weights: in the run folder, and at the root of the MLflow run.
MANIFEST = "manifest.json"
# The ownership record of version N, written first and exclusively into its run folder.
OWNER = "owner.json"
DATASET_METADATA = "retraining_dataset_metadata.json"
CORRECTIONS_APPLIED = "corrections_applied.json"
DATA_YAML = "data.yaml"
# The dataset cache of a claim, relative to the storage root: shared by every model line on the
# claim (docs/datasets.md). A dot folder, so it can never be taken for a model line.
DATASET_CACHE = ".retrainer/datasets"

# The production copy's file name; its N is the version (versions start at 1).
WEIGHTS_FILE = re.compile(r"^retrained_v([1-9][0-9]*)\.pt$")


@dataclass(frozen=True)
class VersionPaths:
    """The claim paths of version N of model line M under the storage root (docs/contract.md).

    The storage root is where the claim is mounted (RETRAINER_STORAGE_ROOT); paths in
    `pvc://<claim>/...` URIs are relative to it."""

    root: Path
    model: str
    version: int

    @property
    def model_dir(self) -> Path:
        return self.root / self.model

    @property
    def models_dir(self) -> Path:
        return self.model_dir / "models"

    @property
    def train_dir(self) -> Path:
        return self.model_dir / "runs" / "train"

    @property
    def production(self) -> Path:
        return self.models_dir / f"retrained_v{self.version}.pt"

    @property
    def metadata(self) -> Path:
        return self.models_dir / f"retrained_v{self.version}_metadata.json"

    @property
    def quick_access(self) -> Path:
        return self.train_dir / f"retrained_v{self.version}.pt"

    @property
    def run_dir(self) -> Path:
        """The whole Ultralytics run folder (project=train_dir, name=run_name)."""
        return self.train_dir / self.run_name

    @property
    def run_name(self) -> str:
        return f"retrain_v{self.version}"

    @property
    def training_run(self) -> Path:
        return self.run_dir / "weights" / "best.pt"

    @property
    def last_checkpoint(self) -> Path:
        return self.run_dir / "weights" / "last.pt"

    @property
    def manifest(self) -> Path:
        return self.run_dir / MANIFEST

    @property
    def owner(self) -> Path:
        return self.run_dir / OWNER

    def claim_files(self) -> dict[str, Path]:
        """The four claim artifacts by name, in contract order."""
        return {
            PRODUCTION: self.production,
            QUICK_ACCESS: self.quick_access,
            TRAINING_RUN: self.training_run,
            METADATA: self.metadata,
        }

    def relative(self, path: Path) -> str:
        """`path` relative to the storage root, in POSIX form (as it appears in pvc:// URIs)."""
        return PurePosixPath(*path.relative_to(self.root).parts).as_posix()

    def uri(self, claim_name: str, path: Path) -> str:
        return pvc_uri(claim_name, self.relative(path))

    def weight_uris(self, claim_name: str, artifact_root: str) -> dict[str, str]:
        """The URIs of the four weight copies by artifact name: three on the claim, one in
        the MLflow run whose artifact root is `artifact_root`."""
        return {
            PRODUCTION: self.uri(claim_name, self.production),
            QUICK_ACCESS: self.uri(claim_name, self.quick_access),
            TRAINING_RUN: self.uri(claim_name, self.training_run),
            MLFLOW: mlflow_weights_uri(artifact_root, self.version),
        }

    @classmethod
    def for_version(cls, root: str | os.PathLike[str], model: str, version: int) -> VersionPaths:
        if version < 1:
            raise ValueError(f"version must be >= 1, got {version}")
        return cls(Path(root), model, int(version))


# ---- URIs ----------------------------------------------------------------------------------


def pvc_uri(claim_name: str, relative_path: str) -> str:
    """`pvc://<claim>/<path>`: a file on the claim, the path relative to the storage root."""
    return f"pvc://{claim_name}/{relative_path.lstrip('/')}"


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key.lstrip('/')}"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/key/...` -> (bucket, key); the key may be empty (a whole bucket)."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an s3:// URI: {uri!r} (expected s3://bucket/prefix)")
    return parsed.netloc, parsed.path.lstrip("/")


def mlflow_weights_uri(artifact_root: str, version: int) -> str:
    """The `mlflow` location: `<run artifact root>/models/retrained_vN.pt`.

    With MinIO the run's artifact root is `s3://<bucket>/<experiment id>/<run id>/artifacts`.
    """
    return f"{artifact_root.rstrip('/')}/models/retrained_v{version}.pt"


def claim_path(uri: str, root: str | os.PathLike[str]) -> Path:
    """A claim file for `pvc://<claim>/<path>`, `file://` or a bare path relative to `root`.

    Refuses paths that climb out of the storage root, so a status or spec cannot point us at
    arbitrary files.
    """
    root_path = Path(root)
    if uri.startswith("pvc://"):
        rest = uri[len("pvc://") :]
        _, _, rel = rest.partition("/")
    elif uri.startswith("file://"):
        return Path(unquote(urlparse(uri).path))
    elif "://" in uri:
        raise ValueError(f"not a claim path: {uri!r} (expected pvc://claim/path or a path)")
    else:
        rel = uri
    if ".." in PurePosixPath(rel).parts:
        raise ValueError(f"claim path must not contain '..': {uri!r}")
    return root_path / rel.lstrip("/")


def claim_versions(root: str | os.PathLike[str], model: str) -> Iterator[int]:
    """Every N with a production copy `models/retrained_vN.pt` of `model` under `root`.

    The trainer writes the production copy only after training and upload, and removes it
    again when verification fails, so on the claim it is the evidence of a verified version.
    """
    models_dir = Path(root) / model / "models"
    if not models_dir.is_dir():
        return
    for path in models_dir.iterdir():
        if match := WEIGHTS_FILE.match(path.name):
            yield int(match.group(1))


def dataset_cache_dir(root: str | os.PathLike[str]) -> Path:
    """The dataset cache on the claim mounted at `root` (s3:// objects and working trees)."""
    return Path(root) / DATASET_CACHE
