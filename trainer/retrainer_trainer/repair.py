"""Put best.pt of a finished version back from a copy that still matches its record.

best.pt is what every copy of version N is written from, so a rerun that reused a corrupted
best.pt would write the corruption to every location, upload it, and call it verified. When
best.pt no longer hashes to what was recorded when it was written, a copy that still does
(production, quick-access, the MLflow copy in MinIO) is copied back over it; when every copy
was read and none does, the version's weights are lost and a person decides
(CorruptedWeights). A copy that could not be read is not evidence: that is a retry.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from retrainer_contract import integrity, layout
from retrainer_contract.objectstore import ObjectStore

from retrainer_trainer import logs, store
from retrainer_trainer.errors import CorruptedWeights, TrainerError
from retrainer_trainer.runfolder import Digest, Plan
from retrainer_trainer.verify import fetch_via_mlflow

__all__ = ["Copy", "restore"]


@dataclass(frozen=True)
class Copy:
    """One weight copy of version N: its artifact name and where it lives."""

    name: str
    uri: str


def _from_minio(client: ObjectStore | None, uri: str, dest: Path) -> Path | None:
    if client is None:
        raise TrainerError(f"{uri}: no MinIO client to read it with")
    from minio.error import S3Error

    bucket, key = layout.parse_s3_uri(uri)
    try:
        client.stat_object(bucket, key)
    except S3Error as error:
        if error.code in ("NoSuchKey", "NoSuchBucket"):
            return None
        raise
    response = client.get_object(bucket, key)
    try:
        with dest.open("wb") as handle:
            for chunk in response.stream(integrity.CHUNK):
                handle.write(chunk)
    finally:
        response.close()
        response.release_conn()
    return dest


def _local(
    copy: Copy, tmp: Path, storage_root: Path, client: ObjectStore | None, tracking_uri: str
) -> Path | None:
    """A local file holding the copy's bytes; None when the copy does not exist."""
    if copy.uri.startswith("s3://"):
        return _from_minio(client, copy.uri, tmp / f"{copy.name}.pt")
    if "://" in copy.uri and not copy.uri.startswith(("pvc://", "file://")):
        return fetch_via_mlflow(copy.uri, tmp / copy.name, tracking_uri)
    path = layout.claim_path(copy.uri, storage_root)
    return path if path.is_file() else None


def restore(
    target: Path,
    plan: Plan,
    copies: Sequence[Copy],
    *,
    storage_root: Path,
    client: ObjectStore | None,
    tracking_uri: str,
    published: bool,
) -> bool:
    """Copy back over `target` the first copy whose sha256 and size are `plan.best`.

    False when no copy exists at all and the version was never `published`: nothing relies
    on these weights, the caller may train them again. Raises TrainerError when some copy could
    not be read (a retry may read it), CorruptedWeights when every copy was read and none
    matches (retrying cannot help).
    """
    expected = plan.best
    assert expected is not None, "restore needs the recorded digest of best.pt"
    found: list[str] = []
    unreadable: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for copy in copies:
            try:
                local = _local(copy, Path(tmp), storage_root, client, tracking_uri)
                actual = Digest(*integrity.sha256_file(local)) if local is not None else None
            except Exception as error:  # OSError, S3Error, MLflow's: none says the copy is bad
                unreadable.append(f"{copy.name} ({copy.uri}): {type(error).__name__}: {error}")
                continue
            if local is None or actual != expected:
                found.append(f"{copy.name}: {'missing' if actual is None else actual.sha256}")
                continue
            store.atomic_copy(local, target)
            if Digest(*integrity.sha256_file(target)) != expected:
                raise TrainerError(f"{target}: restored from {copy.uri}, but reads back different")
            logs.event(
                "weights.repaired",
                file=str(target),
                source=copy.name,
                uri=copy.uri,
                sha256=expected.sha256,
                was=plan.actual,
                recordedIn=plan.recorded_in,
            )
            return True
    what = (
        f"{target} has sha256 {plan.actual} (expected {expected.sha256}, size {expected.size}, "
        f"recorded in {plan.recorded_in} when it was written)"
    )
    if unreadable:
        raise TrainerError(
            f"{what}; no copy read so far matches and some could not be read: "
            f"{'; '.join(unreadable)}. Nothing was published; the Job retries"
        )
    if not published and all(line.endswith(": missing") for line in found):
        return False
    raise CorruptedWeights(
        f"{what}, and no copy has the recorded sha256 ({'; '.join(found)}). Retrying cannot "
        f"help: restore a copy with sha256 {expected.sha256} to {target}, or delete the "
        "version and train it again"
    )
