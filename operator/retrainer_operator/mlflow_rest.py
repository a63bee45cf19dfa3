"""A small MLflow REST client: find a version's run by its tags and read its artifacts.

The operator needs three calls (experiment by name, run search, one artifact), so it speaks the
REST API over urllib instead of importing mlflow: faster start, smaller memory, no pin (the
measurements behind that choice are in docs/operator.md). The run filter, the tags and the
run URL are the contract's (retrainer_contract.tracking), the same the trainer uses.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from retrainer_contract import layout, tracking
from retrainer_contract.objectstore import ObjectStore

__all__ = ["MlflowError", "MlflowRest", "Run"]

TIMEOUT = 15.0
# How long an experiment's id (looked up by name) and this process's own allocated tags are
# trusted without asking MLflow again. Experiments are never deleted (MLflow history is kept),
# so this only bounds how long a hand-deleted one goes unnoticed.
KNOWN_SECONDS = 300.0


def _not_found(error: urllib.error.HTTPError) -> bool:
    """MLflow answers an alias that is not set with HTTP 400 and "... alias X not found."."""
    try:
        body = json.loads(error.read() or b"{}")
    except (OSError, ValueError):
        return False
    message = str(body.get("message", "")) if isinstance(body, dict) else ""
    return error.code == 400 and message.endswith("not found.")


class MlflowError(RuntimeError):
    """MLflow answered with an error or could not be reached (transient: retry later)."""


class Run:
    """The parts of an MLflow run the operator reads."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        info, data = raw.get("info") or {}, raw.get("data") or {}
        self.run_id: str = info.get("run_id", "")
        self.experiment_id: str = str(info.get("experiment_id", ""))
        self.artifact_uri: str = info.get("artifact_uri", "")
        self.status: str = info.get("status", "")
        self.metrics: dict[str, float] = {
            m["key"]: float(m["value"]) for m in data.get("metrics") or [] if "key" in m
        }
        self.params: dict[str, str] = {
            p["key"]: str(p.get("value", "")) for p in data.get("params") or [] if "key" in p
        }
        self.tags: dict[str, str] = {
            t["key"]: str(t.get("value", "")) for t in data.get("tags") or [] if "key" in t
        }


class MlflowRest:
    """MLflow's REST API at `tracking_uri`, plus MinIO for s3:// artifact roots."""

    def __init__(self, tracking_uri: str, store: ObjectStore | None) -> None:
        self.base = tracking_uri.rstrip("/")
        self.store = store
        # In memory only, rebuilt by asking MLflow (after KNOWN_SECONDS, a restart, an error):
        # experiment name -> (when, id); (experiment, namespace, model) -> (when, id, the
        # highest allocated number this process wrote or read, its tag). They save a
        # RetrainJob's first pass two of its four MLflow calls, each run lookup one of two.
        self._guard = threading.Lock()
        self._ids: dict[str, tuple[float, str]] = {}
        self._recorded: dict[tuple[str, str, str], tuple[float, str, int, str]] = {}
        self._line_locks: dict[tuple[str, str, str], threading.Lock] = {}
        # Tags below a line's new highest, removed off the first pass's path (`_drop_later`).
        self._drops: queue.Queue[tuple[str, list[str]]] = queue.Queue()
        self._dropper: threading.Thread | None = None

    def _call(
        self, method: str, path: str, payload: Mapping[str, Any] | None = None
    ) -> dict[str, Any] | None:
        url = f"{self.base}{path}"
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(
            url, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                body: dict[str, Any] = json.loads(response.read() or b"{}")
                return body
        except urllib.error.HTTPError as error:
            if error.code == 404 or _not_found(error):
                return None
            raise MlflowError(f"MLflow {method} {path}: HTTP {error.code}") from error
        except (urllib.error.URLError, OSError, ValueError) as error:
            raise MlflowError(f"MLflow {method} {path}: {error}") from error

    def experiment_id(self, name: str) -> str | None:
        return self._experiment_tags(name)[0] or None

    def find_run(self, experiment: str, uid: str, version: int) -> Run | None:
        """The run of version `version` owned by RetrainJob `uid` in `experiment`, or None."""
        return self._first_run(experiment, tracking.run_filter(uid, version))

    def _known_id(self, experiment: str) -> str | None:
        """The experiment's id, from memory when looked up within KNOWN_SECONDS."""
        with self._guard:
            known = self._ids.get(experiment)
        if known is not None and time.monotonic() - known[0] < KNOWN_SECONDS:
            return known[1]
        experiment_id = self.experiment_id(experiment)
        if experiment_id is not None:
            with self._guard:
                self._ids[experiment] = (time.monotonic(), experiment_id)
        return experiment_id

    def _first_run(self, experiment: str, run_filter: str) -> Run | None:
        """The first run of `experiment` that `run_filter` matches, or None. (A remembered
        id is safe here: the filters name a RetrainJob's uid or a line's version, which only
        one experiment's runs carry.)"""
        experiment_id = self._known_id(experiment)
        if experiment_id is None:
            return None
        answer = self._call(
            "POST",
            "/api/2.0/mlflow/runs/search",
            {"experiment_ids": [experiment_id], "filter": run_filter, "max_results": 1},
        )
        runs = (answer or {}).get("runs") or []
        return Run(runs[0]) if runs else None

    def line_runs(self, experiment: str, namespace: str, model: str) -> list[Run]:
        """Every run of model line `namespace`/`model` in `experiment` (all pages)."""
        experiment_id = self.experiment_id(experiment)
        if experiment_id is None:
            return []
        found: list[Run] = []
        token = ""
        while True:
            payload: dict[str, Any] = {
                "experiment_ids": [experiment_id],
                "filter": tracking.model_filter(namespace, model),
                "max_results": 1000,
            }
            if token:
                payload["page_token"] = token
            answer = self._call("POST", "/api/2.0/mlflow/runs/search", payload) or {}
            found.extend(Run(raw) for raw in answer.get("runs") or [])
            token = str(answer.get("next_page_token") or "")
            if not token:
                return found

    def versions_of(self, experiment: str, namespace: str, model: str) -> list[int]:
        """Every version number a run of model line `namespace`/`model` is tagged with."""
        values = (
            r.tags.get(tracking.TAG_VERSION, "")
            for r in self.line_runs(experiment, namespace, model)
        )
        return [int(v) for v in values if v.isdigit()]

    def set_run_tag(self, run_id: str, key: str, value: str) -> None:
        """Set tag `key` of run `run_id`."""
        payload = {"run_id": run_id, "key": key, "value": value}
        self._call("POST", "/api/2.0/mlflow/runs/set-tag", payload)

    def fail_run(self, run_id: str) -> None:
        """Mark run `run_id` FAILED, ended now (a pod killed by the kernel cannot end it)."""
        payload = {"run_id": run_id, "status": "FAILED", "end_time": int(time.time() * 1000)}
        self._call("POST", "/api/2.0/mlflow/runs/update", payload)

    def registrations_of(self, run_id: str) -> list[tuple[str, str]]:
        """(registered model, version) of every registered model version made from `run_id`."""
        query = urllib.parse.urlencode({"filter": f"run_id={tracking.quote(run_id)}"})
        answer = self._call("GET", f"/api/2.0/mlflow/model-versions/search?{query}")
        return [
            (str(found.get("name", "")), str(found.get("version", "")))
            for found in (answer or {}).get("model_versions") or []
        ]

    def record_allocated(self, experiment: str, namespace: str, model: str, version: int) -> None:
        """Record that `version` of the line was handed out: its own experiment tag, then the
        line's lower tags removed (creating the experiment when it does not exist yet; the
        trainer uses the same one). Safe with any number of writers at once: nobody removes
        a tag above its own, so the highest number keeps its tag.

        This process's own writes to a line are serialized, and what it last wrote or read is
        kept for KNOWN_SECONDS: a later number then costs its tag, one call, and the removal
        of the one before it happens after, off the caller's path (a first pass waits for the
        record before its Job; a tag below the highest never counts). Were the memory behind
        (another writer went higher), the record still only rises, and a tag left below is
        removed later."""
        key = (experiment, namespace, model)
        with self._guard:
            lock = self._line_locks.setdefault(key, threading.Lock())
        with lock:
            with self._guard:
                known = self._recorded.get(key)
            if known is not None and time.monotonic() - known[0] < KNOWN_SECONDS:
                _, experiment_id, highest, tag = known
                if highest >= version:
                    return
                try:
                    self._set_allocated(experiment_id, namespace, model, version)
                except MlflowError:
                    pass  # the experiment may be gone: ask MLflow below, as with no memory
                else:
                    self._remember(key, experiment_id, version)
                    self._drop_later(experiment_id, [tag])
                    return
            experiment_id, tags = self._experiment_tags(experiment, create=True)
            found = tracking.allocated_in(tags, namespace, model)
            highest = max(found.values(), default=0)
            if highest >= version:
                top = next(k for k, n in found.items() if n == highest)
                self._remember(key, experiment_id, highest, top)
                return
            self._set_allocated(experiment_id, namespace, model, version)
            self._remember(key, experiment_id, version)
            _, tags = self._experiment_tags(experiment)
            lower = [
                k for k, n in tracking.allocated_in(tags, namespace, model).items() if n < version
            ]
            self._drop_tags(experiment_id, lower)

    def _remember(
        self, key: tuple[str, str, str], experiment_id: str, highest: int, tag: str | None = None
    ) -> None:
        """What this process now knows of line `key`: the highest number and its tag."""
        _, namespace, model = key
        tag = tag or tracking.allocated_tag(namespace, model, highest)
        with self._guard:
            self._recorded[key] = (time.monotonic(), experiment_id, highest, tag)

    def _set_allocated(self, experiment_id: str, namespace: str, model: str, version: int) -> None:
        self._call(
            "POST",
            "/api/2.0/mlflow/experiments/set-experiment-tag",
            {
                "experiment_id": experiment_id,
                "key": tracking.allocated_tag(namespace, model, version),
                "value": str(version),
            },
        )

    def _drop_tags(self, experiment_id: str, keys: list[str]) -> None:
        for key in keys:
            # Best effort: a lower tag left behind never hides the highest one.
            with contextlib.suppress(MlflowError):
                self._call(
                    "POST",
                    "/api/2.0/mlflow/experiments/delete-experiment-tag",
                    {"experiment_id": experiment_id, "key": key},
                )

    def _drop_later(self, experiment_id: str, keys: list[str]) -> None:
        """Remove tags on this client's own thread, one at a time. A daemon thread: what an
        exiting process leaves undone is a lower tag, which never counts and which the next
        full look at the line's tags (after KNOWN_SECONDS, a restart) removes."""
        with self._guard:
            if self._dropper is None:
                self._dropper = threading.Thread(
                    target=self._drop_loop, name="retrainer-mlflow-tags", daemon=True
                )
                self._dropper.start()
        self._drops.put((experiment_id, keys))

    def _drop_loop(self) -> None:
        while True:
            experiment_id, keys = self._drops.get()
            try:
                self._drop_tags(experiment_id, keys)
            finally:
                self._drops.task_done()

    def settle(self) -> None:
        """Wait until the tags queued for removal are removed (or their removal failed)."""
        self._drops.join()

    def _experiment_tags(self, experiment: str, create: bool = False) -> tuple[str, dict[str, str]]:
        """The experiment's id ("" when it does not exist) and tags. With `create`, a missing
        experiment is created (a create that another writer won, HTTP 400, finds theirs)."""
        query = urllib.parse.urlencode({"experiment_name": experiment})
        path = f"/api/2.0/mlflow/experiments/get-by-name?{query}"
        found = (self._call("GET", path) or {}).get("experiment") or {}
        if not found and create:
            with contextlib.suppress(MlflowError):  # lost to another writer: read theirs
                # Created like the trainer creates it: MLflow's model-training view.
                kind = [{"key": k, "value": v} for k, v in tracking.experiment_tags().items()]
                payload = {"name": experiment, "tags": kind}
                self._call("POST", "/api/2.0/mlflow/experiments/create", payload)
            found = (self._call("GET", path) or {}).get("experiment") or {}
            if not found:
                raise MlflowError(f"experiment {experiment!r} could not be created")
        tags = {str(t.get("key", "")): str(t.get("value", "")) for t in found.get("tags") or []}
        return str(found.get("experiment_id") or ""), tags

    def allocated(self, experiment: str, namespace: str, model: str) -> int:
        """The highest version the experiment's tags record for the line (0: none)."""
        _, tags = self._experiment_tags(experiment)
        return max(tracking.allocated_in(tags, namespace, model).values(), default=0)

    def version_run(self, experiment: str, namespace: str, model: str, version: int) -> Run | None:
        """The run of version `version` of model line `namespace`/`model`, or None."""
        return self._first_run(experiment, tracking.version_filter(namespace, model, version))

    def get_run(self, run_id: str) -> Run | None:
        query = urllib.parse.urlencode({"run_id": run_id})
        answer = self._call("GET", f"/api/2.0/mlflow/runs/get?{query}")
        return Run(answer["run"]) if answer and answer.get("run") else None

    def alias_version(self, name: str, alias: str) -> dict[str, Any] | None:
        """The registered model version `alias` points at ({version, run_id, ...}), or None."""
        query = urllib.parse.urlencode({"name": name, "alias": alias})
        answer = self._call("GET", f"/api/2.0/mlflow/registered-models/alias?{query}")
        found = (answer or {}).get("model_version")
        return dict(found) if isinstance(found, dict) else None

    def model_version_of(self, name: str, run_id: str) -> str | None:
        """The version of registered model `name` made from run `run_id`, or None."""
        query = urllib.parse.urlencode(
            {"filter": f"name={tracking.quote(name)} and run_id={tracking.quote(run_id)}"}
        )
        answer = self._call("GET", f"/api/2.0/mlflow/model-versions/search?{query}")
        found = (answer or {}).get("model_versions") or []
        return str(found[0]["version"]) if found else None

    def set_alias(self, name: str, alias: str, version: str) -> None:
        """Point alias `alias` of registered model `name` at its version `version`."""
        payload = {"name": name, "alias": alias, "version": version}
        self._call("POST", "/api/2.0/mlflow/registered-models/alias", payload)

    def read_artifact(self, run: Run, path: str) -> bytes | None:
        """The bytes of artifact `path` of `run` (None: not there)."""
        root = run.artifact_uri.rstrip("/")
        if root.startswith("s3://"):
            if self.store is None:
                raise MlflowError("artifact root is s3:// but no MinIO client is configured")
            bucket, prefix = layout.parse_s3_uri(f"{root}/{path}")
            try:
                response = self.store.get_object(bucket, prefix)
            except Exception as error:  # minio's S3Error: NoSuchKey means "not there"
                if getattr(error, "code", "") in ("NoSuchKey", "NoSuchBucket"):
                    return None
                raise MlflowError(f"read {root}/{path}: {error}") from error
            try:
                content: bytes = response.read()
                return content
            finally:
                response.close()
                response.release_conn()
        if root.startswith("mlflow-artifacts:"):
            # Proxied artifacts: /api/2.0/mlflow-artifacts/artifacts/<path under the root>.
            rel = urllib.parse.urlparse(root).path.lstrip("/")
            url = f"{self.base}/api/2.0/mlflow-artifacts/artifacts/{rel}/{path}"
            try:
                with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
                    proxied: bytes = response.read()
                    return proxied
            except urllib.error.HTTPError as error:
                if error.code == 404:
                    return None
                raise MlflowError(f"read {url}: HTTP {error.code}") from error
            except (urllib.error.URLError, OSError) as error:
                raise MlflowError(f"read {url}: {error}") from error
        raise MlflowError(f"unsupported artifact root {root!r} (expected s3:// on MinIO)")

    def run_url(self, run: Run) -> str:
        return tracking.run_url(self.base, run.experiment_id, run.run_id)
