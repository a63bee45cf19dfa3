"""Integrity: sha256 of every copy, and the one verifier that compares it with the record.

The trainer, the operator and the CLI all verify a version with these functions; each check
says who ran it (`by`), so a status shows which program read which copy. A copy verifies when
its bytes hash to the sha256 (and size) recorded when it was written, never merely because it
exists or matches another copy.
"""

from __future__ import annotations

import datetime
import hashlib
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypedDict

from retrainer_contract.layout import claim_path, parse_s3_uri
from retrainer_contract.objectstore import ObjectStore

__all__ = [
    "BY_CLI",
    "BY_OPERATOR",
    "BY_TRAINER",
    "CHUNK",
    "UNREACHABLE",
    "Artifact",
    "Check",
    "Fetch",
    "check_artifact",
    "check_artifacts",
    "check_file",
    "check_object",
    "file_chunks",
    "make_check",
    "now_iso",
    "sha256_file",
    "sha256_object",
    "sha256_stream",
    "verification",
    "verify",
]

# Who ran a check (status.verification.checks[].by).
BY_TRAINER = "trainer"
BY_OPERATOR = "operator"
BY_CLI = "cli"

CHUNK = 1024 * 1024
# The message prefix of a check that could not reach the object store at all.
UNREACHABLE = "unreachable"
NO_CLIENT = "no object store client to check with: no MinIO client is configured"

# Reads a copy that is neither on the claim nor in MinIO (a proxied MLflow artifact) into a
# local file, or raises.
Fetch = Callable[[str], Path]


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


def _connection_error(error: BaseException) -> bool:
    return isinstance(error, OSError) or type(error).__module__.startswith("urllib3")


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
        # The server could not be reached (a connection or timeout error) says nothing about
        # the copy: callers may retry. Any answer (missing, denied, ...) is about the copy.
        said = UNREACHABLE if _connection_error(error) else "unreadable"
        return make_check(name, uri, False, f"{said}: {type(error).__name__}: {error}", by)
    return _compare(name, uri, by, actual, sha256, size)


def check_artifact(
    artifact: Mapping[str, Any],
    *,
    storage_root: str | os.PathLike[str] | None,
    client: ObjectStore | None,
    by: str,
    fetch: Fetch | None = None,
) -> Check | None:
    """Check one status.artifacts entry wherever it lives (pvc://, file://, s3://, else `fetch`).

    None when the copy is on the claim and the claim is not mounted here (`storage_root` None):
    that copy is left to a program that mounts it.
    """
    name, uri = str(artifact.get("name", "")), str(artifact.get("uri", ""))
    sha256, size = str(artifact.get("sha256", "")), artifact.get("size")
    if not sha256:
        return make_check(name, uri, False, "no sha256 recorded", by)
    if uri.startswith("s3://"):
        if client is None:
            return make_check(name, uri, False, NO_CLIENT, by)
        return check_object(name, uri, client, sha256, size, by=by)
    if "://" in uri and not uri.startswith(("pvc://", "file://")):
        if fetch is None:
            return make_check(name, uri, False, f"no way to read {uri.split(':')[0]}: URIs", by)
        try:
            local = fetch(uri)
        except Exception as error:  # any failure to fetch means the copy is not readable
            return make_check(name, uri, False, f"unreadable: {error}", by)
        return check_file(name, uri, local, sha256, size, by=by)
    if storage_root is None:
        return None
    try:
        path = claim_path(uri, storage_root)
    except ValueError as error:
        return make_check(name, uri, False, str(error), by)
    return check_file(name, uri, path, sha256, size, by=by)


def check_artifacts(
    artifacts: Iterable[Mapping[str, Any]],
    *,
    storage_root: str | os.PathLike[str] | None,
    client: ObjectStore | None,
    by: str,
    fetch: Fetch | None = None,
) -> list[Check]:
    """A check per artifact this program can reach (see `check_artifact`)."""
    checks = (
        check_artifact(a, storage_root=storage_root, client=client, by=by, fetch=fetch)
        for a in artifacts
    )
    return [c for c in checks if c is not None]


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def verification(checks: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """status.verification for `checks`: verified only if there are checks and all are ok."""
    listed = [dict(c) for c in checks]
    return {
        "verified": bool(listed) and all(c.get("ok") for c in listed),
        "checkedAt": now_iso(),
        "checks": listed,
    }


def verify(
    artifacts: Iterable[Mapping[str, Any]],
    *,
    storage_root: str | os.PathLike[str] | None,
    client: ObjectStore | None,
    by: str,
    fetch: Fetch | None = None,
) -> dict[str, Any]:
    """Check every reachable artifact; the status.verification document."""
    return verification(
        check_artifacts(artifacts, storage_root=storage_root, client=client, by=by, fetch=fetch)
    )
