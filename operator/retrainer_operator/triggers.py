"""The corrections trigger: how many correction files are new since the last verified version.

A correction is keyed by its sample, `<split>/<stem>` (docs/corrections.md): a label file
`labels/<split>/<stem>.txt`, an image `images/<split>/<stem>.<ext>`, or a `delete` entry of
`corrections.json`. The files under spec.corrections.uri are listed in the object store; the
ones the last verified version applied come from its `corrections_applied.json` in MLflow
(MLflow keeps it for ever, whatever happens to RetrainJobs). Pending = listed - applied.

What a verified version applied never changes, so it is read from MLflow once per version
(`_applied`, kept in memory; a version whose run or document is not found is asked again
after NOT_FOUND_SECONDS): an idle line polling its corrections costs MLflow nothing.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath
from typing import Any, Protocol

from retrainer_contract import layout, tracking

from retrainer_operator.mlflow_rest import MlflowRest

__all__ = ["Lister", "applied_keys", "fingerprint", "listed_keys", "pending"]

# The optional log of a corrections folder (docs/corrections.md).
LOG_NAME = "corrections.json"


class Lister(Protocol):
    """The part of `minio.Minio` the trigger uses."""

    def list_objects(
        self, bucket_name: str, prefix: str | None = None, recursive: bool = False
    ) -> Any: ...

    def get_object(self, bucket_name: str, object_name: str) -> Any: ...


def _sample(path: str) -> str | None:
    parts = PurePosixPath(path).parts
    if len(parts) == 3 and parts[0] in ("labels", "images"):
        return f"{parts[1]}/{PurePosixPath(parts[2]).stem}"
    return None


def _log_deletes(raw: bytes) -> set[str]:
    try:
        entries = json.loads(raw)
    except ValueError:
        return set()  # the trainer reports a bad log; the count only skips it
    found = set()
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and entry.get("action") == "delete":
            image = str(entry.get("image", "")).removeprefix("images/")
            split, _, name = image.partition("/")
            if split and name:
                found.add(f"{split}/{PurePosixPath(name).stem}")
    return found


def listed_keys(store: Lister, uri: str) -> set[str]:
    """The samples the corrections folder at `uri` (s3://bucket/prefix) touches now."""
    bucket, prefix = layout.parse_s3_uri(uri)
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    found: set[str] = set()
    for item in store.list_objects(bucket, prefix=prefix, recursive=True):
        relative = str(item.object_name)[len(prefix) :]
        if relative == LOG_NAME:
            response = store.get_object(bucket, item.object_name)
            try:
                found |= _log_deletes(response.read())
            finally:
                response.close()
                response.release_conn()
            continue
        sample = _sample(relative)
        if sample is not None:
            found.add(sample)
    return found


def applied_keys(document: Mapping[str, Any] | None) -> set[str]:
    """The samples a corrections_applied.json records."""
    found = set()
    for entry in (document or {}).get("applied") or []:
        image = str((entry or {}).get("image", ""))
        split, _, name = image.partition("/")
        if split and name:
            found.add(f"{split}/{PurePosixPath(name).stem}")
    return found


def _applied_of(
    mlflow: MlflowRest, experiment: str, entry: Mapping[str, Any] | None, version: int | None
) -> set[str]:
    if entry is None or version is None or not entry.get("uid"):
        return set()
    key = (mlflow.base, experiment, str(entry["uid"]), version)
    known = _applied.get(key)
    if known is not None:
        return set(known)
    found = _read_applied(mlflow, experiment, str(entry["uid"]), version)
    _applied.put(key, found)
    return set(found or ())


def _read_applied(
    mlflow: MlflowRest, experiment: str, uid: str, version: int
) -> frozenset[str] | None:
    """The samples version `version` applied; None when its run or its document is missing."""
    run = mlflow.find_run(experiment, uid, version)
    if run is None:
        return None
    raw = mlflow.read_artifact(run, layout.CORRECTIONS_APPLIED)
    if not raw:
        return None
    try:
        return frozenset(applied_keys(json.loads(raw)))
    except ValueError:
        return None


# A verified version whose run or corrections_applied.json was not found is asked again after
# this long (a run logged late); one found is kept.
NOT_FOUND_SECONDS = 900.0
# Versions remembered (the newest verified one of each line is what a poll needs).
_REMEMBERED = 4096


class _AppliedCache:
    """What each verified version applied, by (MLflow, experiment, uid, version)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._found: dict[tuple[str, str, str, int], tuple[float, frozenset[str] | None]] = {}

    def get(self, key: tuple[str, str, str, int]) -> frozenset[str] | None:
        """The applied samples (an empty set: nothing applied or not found lately), or None
        when MLflow must be asked."""
        with self._guard:
            entry = self._found.get(key)
        if entry is None:
            return None
        at, found = entry
        if found is None:
            return frozenset() if time.monotonic() - at < NOT_FOUND_SECONDS else None
        return found

    def put(self, key: tuple[str, str, str, int], found: frozenset[str] | None) -> None:
        with self._guard:
            if len(self._found) >= _REMEMBERED:
                self._found.pop(next(iter(self._found)))
            self._found[key] = (time.monotonic(), found)

    def clear(self) -> None:
        with self._guard:
            self._found.clear()


_applied = _AppliedCache()


def pending(
    store: Lister,
    mlflow: MlflowRest,
    line: Mapping[str, Any],
) -> list[str]:
    """The samples under the line's corrections uri that its last verified version did not
    apply, sorted. Object-store and MLflow errors propagate (the count is then unknown)."""
    spec = line.get("spec") or {}
    status = line.get("status") or {}
    name = line["metadata"]["name"]
    listed = listed_keys(store, str(spec["corrections"]["uri"]))
    latest = status.get("latestVerified")
    ledger = status.get("ledger") or {}
    entry = None
    if isinstance(latest, int):
        try:
            entry = json.loads(ledger.get(f"v.{latest}", "null"))
        except ValueError:
            entry = None
    template = {**(spec.get("template") or {}), "model": name}
    experiment = tracking.experiment_name(template)
    applied = _applied_of(mlflow, experiment, entry, latest if isinstance(latest, int) else None)
    return sorted(listed - applied)


def fingerprint(keys: Iterable[str]) -> str:
    """A short stable name for a set of pending samples (the run they start is named by it)."""
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:8]
