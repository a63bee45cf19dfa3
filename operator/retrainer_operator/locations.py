"""Where a model version lives, and how to check that it is really there.

The trainer writes version N of a model line to four places (the claim three times plus
MLflow on MinIO); the operator and the `retrainer verify` CLI re-check them. All three must
agree on names, paths, URIs and what "ok" means, so that knowledge lives here, in a pure
module: stdlib only, with the MinIO client imported lazily by the one helper that needs it.
Never import torch, ultralytics or kopf here.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, TypedDict
from urllib.parse import unquote, urlparse

__all__ = [
    "LOCATION_NAMES",
    "METADATA",
    "MLFLOW",
    "PRODUCTION",
    "QUICK_ACCESS",
    "TRAINING_RUN",
    "Artifact",
    "Check",
    "ObjectStore",
    "VersionPaths",
    "check_artifact",
    "check_artifacts",
    "check_file",
    "check_object",
    "claim_path",
    "file_chunks",
    "make_check",
    "minio_client",
    "mlflow_weights_uri",
    "newest_version",
    "parse_s3_uri",
    "pvc_uri",
    "read_json",
    "s3_uri",
    "sha256_file",
    "sha256_object",
    "sha256_stream",
]

# Artifact names, exactly as in docs/contract.md and the CRD's status.artifacts[].name.
PRODUCTION = "production"
QUICK_ACCESS = "quickAccess"
TRAINING_RUN = "trainingRun"
METADATA = "metadata"
MLFLOW = "mlflow"
LOCATION_NAMES: tuple[str, ...] = (PRODUCTION, QUICK_ACCESS, TRAINING_RUN, METADATA, MLFLOW)

CHUNK = 1024 * 1024
# The production copy's file name; its N is the version (versions start at 1).
WEIGHTS_FILE = re.compile(r"^retrained_v([1-9][0-9]*)\.pt$")


class Check(TypedDict):
    """One entry of status.verification.checks."""

    name: str
    uri: str
    ok: bool
    by: str
    message: str


class Artifact(TypedDict):
    """One entry of status.artifacts."""

    name: str
    uri: str
    sha256: str
    size: int


class ObjectStore(Protocol):
    """The part of `minio.Minio` the checks use (kept narrow so tests can pass a real one)."""

    def get_object(self, bucket_name: str, object_name: str) -> Any: ...

    def stat_object(self, bucket_name: str, object_name: str) -> Any: ...


@dataclass(frozen=True)
class VersionPaths:
    """The claim paths of version N of model line M under claim root R (docs/contract.md)."""

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
        return self.run_dir / "manifest.json"

    def claim_files(self) -> dict[str, Path]:
        """The four claim locations by artifact name, in contract order."""
        return {
            PRODUCTION: self.production,
            QUICK_ACCESS: self.quick_access,
            TRAINING_RUN: self.training_run,
            METADATA: self.metadata,
        }

    def relative(self, path: Path) -> str:
        """`path` relative to the claim root, in POSIX form (as it appears in pvc:// URIs)."""
        return PurePosixPath(*path.relative_to(self.root).parts).as_posix()

    def uri(self, claim_name: str, path: Path) -> str:
        return pvc_uri(claim_name, self.relative(path))

    @classmethod
    def for_version(cls, root: str | os.PathLike[str], model: str, version: int) -> VersionPaths:
        if version < 1:
            raise ValueError(f"version must be >= 1, got {version}")
        return cls(Path(root), model, int(version))


# ---- URIs ----------------------------------------------------------------------------------


def pvc_uri(claim_name: str, relative_path: str) -> str:
    """`pvc://<claim>/<path>`: a file on the claim, the path relative to the claim root."""
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

    Refuses paths that climb out of the claim root, so a status or spec cannot point us at
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


# ---- sha256 --------------------------------------------------------------------------------


def sha256_stream(
    chunks: Iterable[bytes], on_chunk: Callable[[int], None] | None = None
) -> tuple[str, int]:
    """sha256 hex digest and byte count of a stream of chunks (never held in memory).

    `on_chunk` hears each chunk's size, for a progress bar."""
    digest = hashlib.sha256()
    size = 0
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
        if on_chunk is not None:
            on_chunk(len(chunk))
    return digest.hexdigest(), size


def file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            yield chunk


def sha256_file(
    path: str | os.PathLike[str], on_chunk: Callable[[int], None] | None = None
) -> tuple[str, int]:
    return sha256_stream(file_chunks(Path(path)), on_chunk)


def sha256_object(
    client: ObjectStore, bucket: str, key: str, on_chunk: Callable[[int], None] | None = None
) -> tuple[str, int]:
    """sha256 of a MinIO object, streamed (ETags are not sha256, multipart ones not even md5)."""
    response = client.get_object(bucket, key)
    try:
        return sha256_stream(response.stream(CHUNK), on_chunk)
    finally:
        response.close()
        response.release_conn()


def newest_version(models_dir: Path) -> int | None:
    """The highest N with `models_dir/retrained_vN.pt`, or None when there is none."""
    if not models_dir.is_dir():
        return None
    found = [int(m.group(1)) for p in models_dir.iterdir() if (m := WEIGHTS_FILE.match(p.name))]
    return max(found, default=None)


# ---- checks --------------------------------------------------------------------------------


def make_check(name: str, uri: str, ok: bool, message: str, by: str) -> Check:
    return Check(name=name, uri=uri, ok=ok, by=by, message=message)


def _compare(
    name: str, uri: str, by: str, actual: tuple[str, int], sha256: str, size: int | None
) -> Check:
    digest, length = actual
    if size is not None and length != size:
        return make_check(name, uri, False, f"size {length} != expected {size}", by)
    if digest != sha256:
        return make_check(
            name, uri, False, f"sha256 mismatch: {digest[:12]}… != expected {sha256[:12]}…", by
        )
    return make_check(name, uri, True, "sha256 matches", by)


def check_file(
    name: str, uri: str, path: Path, sha256: str, size: int | None = None, *, by: str
) -> Check:
    """Re-read a claim file and compare its sha256 (and size) with what was recorded."""
    if not path.is_file():
        return make_check(name, uri, False, f"missing: {path}", by)
    try:
        actual = sha256_file(path)
    except OSError as error:
        return make_check(name, uri, False, f"unreadable: {error}", by)
    return _compare(name, uri, by, actual, sha256, size)


def check_object(
    name: str, uri: str, client: ObjectStore, sha256: str, size: int | None = None, *, by: str
) -> Check:
    """Stat then stream a MinIO object and compare its size and sha256."""
    bucket, key = parse_s3_uri(uri)
    try:
        stat = client.stat_object(bucket, key)
        if size is not None and stat.size != size:
            return make_check(name, uri, False, f"size {stat.size} != expected {size}", by)
        actual = sha256_object(client, bucket, key)
    except Exception as error:  # minio raises S3Error, urllib3 errors, ...: all mean "not ok"
        return make_check(name, uri, False, f"unreadable: {type(error).__name__}: {error}", by)
    return _compare(name, uri, by, actual, sha256, size)


def check_artifact(
    artifact: Mapping[str, Any],
    *,
    claim_root: str | os.PathLike[str],
    client: ObjectStore | None,
    by: str,
) -> Check:
    """Check one status.artifacts entry wherever it lives (pvc://, file://, s3://)."""
    name, uri = str(artifact.get("name", "")), str(artifact.get("uri", ""))
    sha256, size = str(artifact.get("sha256", "")), artifact.get("size")
    if not sha256:
        return make_check(name, uri, False, "no sha256 recorded", by)
    if uri.startswith("s3://"):
        if client is None:
            return make_check(name, uri, False, "no object store client to check with", by)
        return check_object(name, uri, client, sha256, size, by=by)
    try:
        path = claim_path(uri, claim_root)
    except ValueError as error:
        return make_check(name, uri, False, str(error), by)
    return check_file(name, uri, path, sha256, size, by=by)


def check_artifacts(
    artifacts: Iterable[Mapping[str, Any]],
    *,
    claim_root: str | os.PathLike[str],
    client: ObjectStore | None,
    by: str,
) -> list[Check]:
    return [check_artifact(a, claim_root=claim_root, client=client, by=by) for a in artifacts]


def read_json(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        data = json.load(handle)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


# ---- MinIO ---------------------------------------------------------------------------------


def minio_client(
    endpoint_url: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
) -> Any:
    """A `minio.Minio` for `http(s)://host:port` (defaults: MLFLOW_S3_ENDPOINT_URL, AWS_*)."""
    from minio import Minio  # optional dependency: only the callers that touch MinIO need it

    endpoint = endpoint_url or os.environ.get("MLFLOW_S3_ENDPOINT_URL", "")
    if not endpoint:
        raise ValueError("MLFLOW_S3_ENDPOINT_URL is not set: the MinIO endpoint is unknown")
    parsed = urlparse(endpoint if "://" in endpoint else f"http://{endpoint}")
    return Minio(
        parsed.netloc,
        access_key=access_key or os.environ.get("AWS_ACCESS_KEY_ID"),
        secret_key=secret_key or os.environ.get("AWS_SECRET_ACCESS_KEY"),
        secure=parsed.scheme == "https",
    )
