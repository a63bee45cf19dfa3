"""The checks behind `retrainer verify`: one row per stored copy of a model version.

Split from the command (cli_verify.py) so the checks are plain functions over a folder and a
MinIO client. Paths, names and sha256 come from locations.py, so the trainer, the operator and
the CLI agree on what "ok" means.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from retrainer_operator import cli_table, locations

__all__ = ["RemoteSettings", "VerifyRow", "latest_version", "remote_settings", "verify_version"]

# Files smaller than this hash too fast for a progress bar to be worth drawing.
_PROGRESS_MIN_BYTES = 64 * 1024 * 1024
BY = "cli"


@dataclasses.dataclass
class VerifyRow:
    """One line of the verify table; ok None means "not checked" (never a failure)."""

    name: str
    location: str
    ok: bool | None
    message: str
    sha256: str = ""
    size: int | None = None

    def as_check(self) -> dict[str, Any]:
        """The CRD's status.verification.checks shape (for --output json)."""
        return {
            "name": self.name,
            "uri": self.location,
            "ok": self.ok,
            "by": BY,
            "message": self.message,
        }


def latest_version(root: Path, model: str) -> int | None:
    """The highest N with <root>/<model>/models/retrained_vN.pt, or None when there is none."""
    return locations.newest_version(root / model / "models")


def _hash_file(path: Path, label: str) -> tuple[str, int]:
    size = path.stat().st_size
    if size < _PROGRESS_MIN_BYTES:
        return locations.sha256_file(path)
    bar = cli_table.ProgressBar(f"sha256 {label}", size)
    try:
        return locations.sha256_file(path, bar.update)
    finally:
        bar.close()


def _weight_row(name: str, path: Path) -> VerifyRow:
    if not path.is_file():
        return VerifyRow(name, str(path), False, "missing")
    try:
        digest, size = _hash_file(path, name)
    except OSError as error:
        return VerifyRow(name, str(path), False, f"unreadable: {error}")
    return VerifyRow(name, str(path), True, "present", digest, size)


def _present_row(name: str, path: Path) -> VerifyRow:
    if path.is_file():
        return VerifyRow(name, str(path), True, "present", size=path.stat().st_size)
    return VerifyRow(name, str(path), False, "missing (the Ultralytics run folder is incomplete)")


def _metadata_row(path: Path, version: int, weights_sha256: str) -> VerifyRow:
    row = VerifyRow(locations.METADATA, str(path), False, "missing")
    if not path.is_file():
        return row
    row.sha256, row.size = locations.sha256_file(path)
    try:
        data = locations.read_json(path)
    except (ValueError, OSError) as error:
        row.message = f"not valid JSON: {error}"
        return row
    recorded = data.get("version")
    if recorded != version:
        row.message = f"records version {recorded!r}, expected {version}"
        return row
    recorded_sha = (data.get("weights") or {}).get("sha256")
    if recorded_sha and weights_sha256 and recorded_sha != weights_sha256:
        row.message = (
            f"records weights sha256 {str(recorded_sha)[:12]}…, "
            f"production has {weights_sha256[:12]}…"
        )
        return row
    row.ok, row.message = True, f"parses, version {version}"
    return row


def _compare_copies(rows: list[VerifyRow]) -> None:
    """Every weight copy must have the production copy's sha256 (the first hashed one if absent)."""
    hashed = [r for r in rows if r.sha256]
    if not hashed:
        return
    reference = hashed[0]
    for row in hashed[1:]:
        if row.sha256 != reference.sha256:
            row.ok = False
            row.message = (
                f"sha256 differs from {reference.name}: "
                f"{row.sha256[:12]}… != {reference.sha256[:12]}…"
            )
        elif row.ok:
            row.message = f"sha256 matches {reference.name}"


def _read_manifest(path: Path, version: int) -> tuple[VerifyRow, dict[str, Any] | None]:
    if not path.is_file():
        return VerifyRow("manifest", str(path), None, "not present: copies compared only"), None
    try:
        manifest = locations.read_json(path)
    except (ValueError, OSError) as error:
        return VerifyRow("manifest", str(path), False, f"not valid JSON: {error}"), None
    if manifest.get("version") != version:
        message = f"records version {manifest.get('version')!r}, expected {version}"
        return VerifyRow("manifest", str(path), False, message), manifest
    return VerifyRow("manifest", str(path), True, f"parses, version {version}"), manifest


def _fail(row: VerifyRow, message: str) -> None:
    """Mark `row` failed, keeping an earlier failure's message in front."""
    row.message = f"{row.message}; {message}" if row.ok is False else message
    row.ok = False


def _compare_manifest(rows: list[VerifyRow], manifest: dict[str, Any]) -> None:
    recorded = {str(a.get("name")): a for a in manifest.get("artifacts") or []}
    for row in rows:
        artifact = recorded.get(row.name)
        if artifact is None or not row.sha256:
            continue
        expected = str(artifact.get("sha256"))
        if expected != row.sha256:
            _fail(row, f"sha256 differs from the manifest: {row.sha256[:12]}… != {expected[:12]}…")
        elif artifact.get("size") not in (None, row.size):
            _fail(row, f"size {row.size} != manifest {artifact.get('size')}")
        elif row.ok and row.message == "present":
            row.message = "sha256 matches the manifest"
        elif row.ok and row.message.startswith("sha256 matches"):
            row.message += " and the manifest"
        elif row.ok:
            row.message += "; sha256 matches the manifest"


@dataclasses.dataclass(frozen=True)
class RemoteSettings:
    """How to reach MinIO: None for skip (--no-remote)."""

    endpoint: str
    access_key: str
    secret_key: str


def remote_settings(
    endpoint: str | None, env: Mapping[str, str] | None = None
) -> RemoteSettings | str:
    """Settings from --s3-endpoint / env, or a message naming what is missing."""
    env = os.environ if env is None else env
    endpoint = endpoint or env.get("MLFLOW_S3_ENDPOINT_URL", "")
    access, secret = env.get("AWS_ACCESS_KEY_ID", ""), env.get("AWS_SECRET_ACCESS_KEY", "")
    if not endpoint:
        return (
            "no MinIO endpoint: pass --s3-endpoint or set MLFLOW_S3_ENDPOINT_URL (or --no-remote)"
        )
    if not access or not secret:
        return (
            "no MinIO credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or --no-remote)"
        )
    return RemoteSettings(endpoint, access, secret)


def _hash_object(client: Any, bucket: str, key: str, size: int) -> tuple[str, int]:
    bar = cli_table.ProgressBar("sha256 mlflow", size)
    try:
        on_chunk = bar.update if size >= _PROGRESS_MIN_BYTES else None
        return locations.sha256_object(client, bucket, key, on_chunk)
    finally:
        bar.close()


def _mlflow_row(
    manifest: dict[str, Any] | None, remote: RemoteSettings | str | None, reference: str
) -> VerifyRow:
    if remote is None:
        return VerifyRow(locations.MLFLOW, "", None, "not checked (--no-remote)")
    if manifest is None:
        return VerifyRow(
            locations.MLFLOW,
            "",
            False,
            "no valid manifest.json, so the MLflow location is unknown (or --no-remote)",
        )
    artifact = next(
        (a for a in manifest.get("artifacts") or [] if a.get("name") == locations.MLFLOW), None
    )
    if artifact is None or not str(artifact.get("uri", "")).startswith("s3://"):
        return VerifyRow(locations.MLFLOW, "", False, "the manifest names no s3:// mlflow artifact")
    uri = str(artifact["uri"])
    if isinstance(remote, str):
        return VerifyRow(locations.MLFLOW, uri, False, remote)
    try:
        bucket, key = locations.parse_s3_uri(uri)
        client = locations.minio_client(remote.endpoint, remote.access_key, remote.secret_key)
        stat = client.stat_object(bucket, key)
        digest, size = _hash_object(client, bucket, key, int(stat.size))
    except Exception as error:  # S3Error, connection errors, bad URIs: all a failed check
        return VerifyRow(
            locations.MLFLOW, uri, False, f"unreadable: {type(error).__name__}: {error}"
        )
    row = VerifyRow(locations.MLFLOW, uri, True, "", digest, size)
    recorded = str(artifact.get("sha256") or "")
    if recorded and digest != recorded:
        _fail(row, f"sha256 differs from the manifest: {digest[:12]}… != {recorded[:12]}…")
    elif reference and digest != reference:
        _fail(row, f"sha256 differs from production: {digest[:12]}… != {reference[:12]}…")
    else:
        matches = [w for w, sha in (("production", reference), ("the manifest", recorded)) if sha]
        row.message = "sha256 matches " + " and ".join(matches) if matches else "readable"
    return row


def verify_version(
    root: Path, model: str, version: int, remote: RemoteSettings | str | None
) -> list[VerifyRow]:
    """Every check of version N of `model` under claim root `root`, in table order."""
    paths = locations.VersionPaths.for_version(root, model, version)
    weights = [
        _weight_row(locations.PRODUCTION, paths.production),
        _weight_row(locations.QUICK_ACCESS, paths.quick_access),
        _weight_row(locations.TRAINING_RUN, paths.training_run),
    ]
    _compare_copies(weights)
    extras = [
        _present_row(f"{locations.TRAINING_RUN}/last.pt", paths.last_checkpoint),
        _present_row(f"{locations.TRAINING_RUN}/args.yaml", paths.run_dir / "args.yaml"),
    ]
    reference = weights[0].sha256 or next((r.sha256 for r in weights if r.sha256), "")
    metadata = _metadata_row(paths.metadata, version, reference)
    manifest_row, manifest = _read_manifest(paths.manifest, version)
    if manifest is not None:
        _compare_manifest([*weights, metadata], manifest)
    mlflow = _mlflow_row(manifest, remote, reference)
    return [*weights, *extras, metadata, manifest_row, mlflow]
