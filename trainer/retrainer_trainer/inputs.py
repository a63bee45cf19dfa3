"""Turn the spec's URIs into local files: dataset, corrections and base weights.

An input folder is either `s3://bucket/prefix` in MinIO (fetched into the dataset cache on the
claim, fetch.py) or a path relative to the storage root (read once, in place). A missing input
is the user's mistake (exit 3); an unreachable MinIO is infrastructure (exit 1). A base model
`.pt` is a pickle that could run code when loaded: its globals are scanned here, before
anything loads it (exit 3 if refused).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrainer_contract import env as trainer_env
from retrainer_contract import integrity, layout, objectstore, versions

from retrainer_trainer import checkpoints, fetch, logs, worktree
from retrainer_trainer.config import Config
from retrainer_trainer.datacache import Cache
from retrainer_trainer.errors import BadInput, TrainerError
from retrainer_trainer.fetch import Source

__all__ = ["BaseModel", "Inputs", "folder", "resolve", "resolve_base"]


@dataclass(frozen=True)
class BaseModel:
    """What training starts from: a .pt file or an architecture yaml."""

    source: str  # a local .pt path or e.g. yolo11n.yaml
    label: str  # lineage.baseModel
    version: int | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class Inputs:
    dataset: Source
    corrections: Source | None
    base: BaseModel
    holdout: Source | None = None  # spec.promotion.holdout.uri: the pinned evaluation set


def _client(config: Config, max_connections: int | None = None) -> Any:
    if not config.s3_endpoint:
        raise BadInput(f"an s3:// input needs {trainer_env.S3_ENDPOINT} (the MinIO endpoint)")
    return objectstore.minio_client(
        config.s3_endpoint,
        config.access_key,
        config.secret_key,
        max_connections=max_connections,
    )


def _infra(error: Exception, uri: str) -> TrainerError:
    return TrainerError(f"cannot read {uri} from MinIO: {type(error).__name__}: {error}")


def _download_object(client: Any, uri: str, dest: Path, field: str) -> Path:
    from minio.error import S3Error

    bucket, key = layout.parse_s3_uri(uri)
    try:
        client.fget_object(bucket, key, str(dest))
    except S3Error as error:
        if error.code in ("NoSuchKey", "NoSuchBucket"):
            raise BadInput(f"{field}: {uri} does not exist") from error
        raise _infra(error, uri) from error
    except Exception as error:
        raise _infra(error, uri) from error
    logs.event("download.done", uri=uri, files=1, bytes=dest.stat().st_size)
    return dest


def folder(config: Config, cache: Cache, uri: str, field: str) -> Source:
    """The folder at `uri` (s3:// through the dataset cache, or on the claim) as a Source."""
    if uri.startswith("s3://"):
        client = _client(config, max_connections=config.fetch_concurrency)
        source, _ = fetch.fetch_prefix(
            client, uri, cache, concurrency=config.fetch_concurrency, field_name=field
        )
        return source
    try:
        path = layout.claim_path(uri, config.storage_root)
    except ValueError as error:
        raise BadInput(f"{field}: {error}") from error
    if not path.is_dir():
        raise BadInput(f"{field}: folder {uri!r} not found on the claim (looked at {path})")
    return worktree.scan_folder(path, uri)


def resolve_base(config: Config) -> BaseModel:
    """The base weights: a previous version of this model line, a URI, or an architecture."""
    spec = config.spec
    if spec.base_architecture:
        return BaseModel(source=spec.base_architecture, label=spec.base_architecture)
    if spec.base_uri:
        uri = spec.base_uri
        if uri.startswith("s3://"):
            (config.workdir / "inputs").mkdir(parents=True, exist_ok=True)
            path = _download_object(
                _client(config), uri, config.workdir / "inputs" / "base.pt", "spec.baseModel.uri"
            )
        else:
            try:
                path = layout.claim_path(uri, config.storage_root)
            except ValueError as error:
                raise BadInput(f"spec.baseModel.uri: {error}") from error
            if not path.is_file():
                raise BadInput(f"spec.baseModel.uri: {uri!r} not found on the claim ({path})")
        checkpoints.check_base(path, "spec.baseModel.uri", uri)
        return BaseModel(source=str(path), label=uri, sha256=integrity.sha256_file(path)[0])
    paths = layout.VersionPaths.for_version(config.storage_root, spec.model, config.version)
    number = config.resolved_base_version
    if number is None and spec.base_version and spec.base_version.isdigit():
        number = int(spec.base_version)
    if number is None and spec.base_version == versions.CHAMPION:
        # Only the ModelLine knows its champion; the operator resolves it into the env.
        raise BadInput(
            "spec.baseModel.version: champion needs the operator's resolution "
            f"(the environment names no resolved base version for model line {spec.model!r})"
        )
    if number is None:  # "latest" without the operator's resolution: the newest on the claim
        claim = ((n, True) for n in layout.claim_versions(config.storage_root, spec.model))
        number = versions.latest_verified(claim)
        if number is None:
            raise BadInput(
                f"spec.baseModel.version: latest, but model line {spec.model!r} has no version "
                f"yet in {paths.models_dir}; start from baseModel.architecture (yolo11n.yaml)"
            )
    base = layout.VersionPaths.for_version(config.storage_root, spec.model, number).production
    if not base.is_file():
        raise BadInput(
            f"spec.baseModel.version: version {number} of model line {spec.model!r} not found "
            f"(expected {base})"
        )
    # Written by an earlier run of this trainer, but the claim is writable: scanned all the same.
    checkpoints.check_base(base, "spec.baseModel.version", f"v{number} ({base})")
    return BaseModel(
        source=str(base), label=f"v{number}", version=number, sha256=integrity.sha256_file(base)[0]
    )


def resolve(config: Config, cache: Cache) -> Inputs:
    """The inputs; s3:// folders come through the dataset cache on the claim (fetch.py)."""
    spec = config.spec
    dataset = folder(config, cache, spec.dataset_uri, "spec.dataset.uri")
    corrections = (
        folder(config, cache, spec.corrections_uri, "spec.corrections.uri")
        if spec.corrections_uri
        else None
    )
    holdout = (
        folder(config, cache, spec.promotion.holdout_uri, "spec.promotion.holdout.uri")
        if spec.promotion is not None
        else None
    )
    return Inputs(
        dataset=dataset, corrections=corrections, base=resolve_base(config), holdout=holdout
    )
