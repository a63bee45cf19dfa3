"""The checks behind `retrainer verify`: one row per stored copy of a model version.

Split from the command (verify.py) so the checks are plain functions over a folder and a MinIO
client. Paths, artifact names, hashing, document reads, the MinIO client and "the latest
version" all come from retrainer_contract, so the trainer, the operator and the CLI agree on
what "ok" means. The CLI's own part is the table: each copy is hashed once, then compared with
the production copy and with the manifest, and every difference is named in its row.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from retrainer_contract import documents, integrity, layout, versions
from retrainer_contract.env import ACCESS_KEY, S3_ENDPOINT, SECRET_KEY
from retrainer_contract.objectstore import minio_client

from retrainer_cli import table

__all__ = ["RemoteSettings", "VerifyRow", "latest_version", "remote_settings", "verify_version"]

# Files smaller than this hash too fast for a progress bar to be worth drawing.
_PROGRESS_MIN_BYTES = 64 * 1024 * 1024


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
            "by": integrity.BY_CLI,
            "message": self.message,
        }


@dataclasses.dataclass(frozen=True)
class RemoteSettings:
    """How to reach MinIO: None for skip (--no-remote)."""

    endpoint: str
    access_key: str
    secret_key: str


def latest_version(root: Path, model: str) -> int | None:
    """The highest N with <root>/<model>/models/retrained_vN.pt, or None when there is none.

    On the claim the production copy is the evidence of a verified version (see
    layout.claim_versions); which version is the latest is the contract's rule."""
    return versions.latest_verified((n, True) for n in layout.claim_versions(root, model))


def remote_settings(
    endpoint: str | None, env: Mapping[str, str] | None = None
) -> RemoteSettings | str:
    """Settings from --s3-endpoint / env, or a message naming what is missing."""
    env = os.environ if env is None else env
    endpoint = endpoint or env.get(S3_ENDPOINT, "")
    access, secret = env.get(ACCESS_KEY, ""), env.get(SECRET_KEY, "")
    if not endpoint:
        return f"no MinIO endpoint: pass --s3-endpoint or set {S3_ENDPOINT} (or --no-remote)"
    if not access or not secret:
        return f"no MinIO credentials: set {ACCESS_KEY} and {SECRET_KEY} (or --no-remote)"
    return RemoteSettings(endpoint, access, secret)


@contextlib.contextmanager
def _progress(label: str, size: int) -> Iterator[Callable[[int], None] | None]:
    """The on_chunk callback for hashing `size` bytes: a progress bar, None for small ones."""
    if size < _PROGRESS_MIN_BYTES:
        yield None
        return
    bar = table.ProgressBar(f"sha256 {label}", size)
    try:
        yield bar.update
    finally:
        bar.close()


def _differs(what: str, actual: str, expected: str) -> str:
    return f"sha256 differs from {what}: {actual[:12]}… != {expected[:12]}…"


def _fail(row: VerifyRow, message: str) -> None:
    """Mark `row` failed, keeping an earlier failure's message in front."""
    row.message = f"{row.message}; {message}" if row.ok is False else message
    row.ok = False


def _hashed_row(name: str, path: Path) -> VerifyRow:
    """A claim file, hashed once: "present" until a comparison says more."""
    if not path.is_file():
        return VerifyRow(name, str(path), False, "missing")
    try:
        with _progress(name, path.stat().st_size) as on_chunk:
            digest, size = integrity.sha256_file(path, on_chunk)
    except OSError as error:
        return VerifyRow(name, str(path), False, f"unreadable: {error}")
    return VerifyRow(name, str(path), True, "present", digest, size)


def _present_row(path: Path) -> VerifyRow:
    name = f"{layout.TRAINING_RUN}/{path.name}"
    if path.is_file():
        return VerifyRow(name, str(path), True, "present", size=path.stat().st_size)
    return VerifyRow(name, str(path), False, "missing (the Ultralytics run folder is incomplete)")


def _document(path: Path, version: int) -> tuple[dict[str, Any] | None, str]:
    """A JSON document of version N and "" when it records N, else what is wrong with it."""
    try:
        data = documents.read_json(path)
    except (ValueError, OSError) as error:
        return None, f"not valid JSON: {error}"
    if data.get("version") != version:
        return data, f"records version {data.get('version')!r}, expected {version}"
    return data, ""


def _metadata_row(path: Path, version: int, weights_sha256: str) -> VerifyRow:
    row = _hashed_row(layout.METADATA, path)
    if not row.ok:
        return row
    data, problem = _document(path, version)
    recorded_sha = ((data or {}).get("weights") or {}).get("sha256")
    if not problem and recorded_sha and weights_sha256 and recorded_sha != weights_sha256:
        problem = (
            f"records weights sha256 {str(recorded_sha)[:12]}…, "
            f"{layout.PRODUCTION} has {weights_sha256[:12]}…"
        )
    row.ok, row.message = not problem, problem or f"parses, version {version}"
    return row


def _manifest_row(path: Path, version: int) -> tuple[VerifyRow, dict[str, Any] | None]:
    if not path.is_file():
        return VerifyRow("manifest", str(path), None, "not present: copies compared only"), None
    manifest, problem = _document(path, version)
    message = problem or f"parses, version {version}"
    return VerifyRow("manifest", str(path), not problem, message), manifest


def _recorded(manifest: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The manifest's artifacts by name."""
    return {str(a.get("name")): a for a in manifest.get("artifacts") or []}


def _mlflow_row(
    manifest: Mapping[str, Any] | None, remote: RemoteSettings | str | None, reference: str
) -> VerifyRow:
    """The MLflow copy in MinIO, streamed and hashed (ETags are not sha256), compared with the
    manifest's record, then with `reference` (the production copy's sha256)."""
    row = functools.partial(VerifyRow, layout.MLFLOW)
    if remote is None:
        return row("", None, "not checked (--no-remote)")
    if manifest is None:
        unknown = f"no valid {layout.MANIFEST}, so the MLflow location is unknown (or --no-remote)"
        return row("", False, unknown)
    artifact = _recorded(manifest).get(layout.MLFLOW, {})
    uri = str(artifact.get("uri", ""))
    if not uri.startswith("s3://"):
        return row("", False, f"the manifest names no s3:// {layout.MLFLOW} artifact")
    if isinstance(remote, str):
        return row(uri, False, remote)
    try:
        bucket, key = layout.parse_s3_uri(uri)
        client = minio_client(remote.endpoint, remote.access_key, remote.secret_key)
        with _progress(layout.MLFLOW, int(client.stat_object(bucket, key).size)) as on_chunk:
            digest, size = integrity.sha256_object(client, bucket, key, on_chunk)
    except Exception as error:  # S3Error, connection errors, bad URIs: all a failed check
        return row(uri, False, f"unreadable: {type(error).__name__}: {error}")
    # The first difference fails the row; agreement is reported production first.
    known = [("the manifest", str(artifact.get("sha256") or "")), (layout.PRODUCTION, reference)]
    for what, expected in known:
        if expected and digest != expected:
            return row(uri, False, _differs(what, digest, expected), digest, size)
    matches = " and ".join(what for what, expected in reversed(known) if expected)
    return row(uri, True, f"sha256 matches {matches}" if matches else "readable", digest, size)


def _compare_copies(rows: list[VerifyRow]) -> None:
    """Every weight copy must have the production copy's sha256 (the first hashed one if absent)."""
    hashed = [r for r in rows if r.sha256]
    for row in hashed[1:]:
        if row.sha256 != hashed[0].sha256:
            _fail(row, _differs(hashed[0].name, row.sha256, hashed[0].sha256))
        elif row.ok:
            row.message = f"sha256 matches {hashed[0].name}"


def _compare_manifest(rows: list[VerifyRow], manifest: Mapping[str, Any]) -> None:
    """Every hashed copy the manifest records must have its sha256 and size."""
    recorded = _recorded(manifest)
    for row in rows:
        artifact = recorded.get(row.name)
        if artifact is None or not row.sha256:
            continue
        expected = str(artifact.get("sha256"))
        if expected != row.sha256:
            _fail(row, _differs("the manifest", row.sha256, expected))
        elif artifact.get("size") not in (None, row.size):
            _fail(row, f"size {row.size} != manifest {artifact.get('size')}")
        elif row.ok and row.message == "present":
            row.message = "sha256 matches the manifest"
        elif row.ok and row.message.startswith("sha256 matches"):
            row.message += " and the manifest"
        elif row.ok:
            row.message += "; sha256 matches the manifest"


def verify_version(
    root: Path, model: str, version: int, remote: RemoteSettings | str | None
) -> list[VerifyRow]:
    """Every check of version N of `model` under claim root `root`, in table order."""
    paths = layout.VersionPaths.for_version(root, model, version)
    weights = [
        _hashed_row(layout.PRODUCTION, paths.production),
        _hashed_row(layout.QUICK_ACCESS, paths.quick_access),
        _hashed_row(layout.TRAINING_RUN, paths.training_run),
    ]
    extras = [_present_row(paths.last_checkpoint), _present_row(paths.run_dir / "args.yaml")]
    reference = next((r.sha256 for r in weights if r.sha256), "")
    metadata = _metadata_row(paths.metadata, version, reference)
    manifest_row, manifest = _manifest_row(paths.manifest, version)
    _compare_copies(weights)
    if manifest is not None:
        _compare_manifest([*weights, metadata], manifest)
    mlflow = _mlflow_row(manifest, remote, reference)
    return [*weights, *extras, metadata, manifest_row, mlflow]
