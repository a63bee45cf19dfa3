"""The CLI's few MLflow REST calls: a version's run and metrics, the registered-model alias.

`retrainer promote` and `rollback` move the champion alias on the registered model, and read a
version's metrics from its run when no RetrainJob remembers them. The CLI's image carries no
mlflow package (nor does the operator's), so these are plain HTTP calls; the run filter and
tags are the contract's (retrainer_contract.tracking), the ones the trainer writes.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from retrainer_contract import metrics, tracking

__all__ = ["MlflowError", "MlflowRest"]

TIMEOUT = 15.0


class MlflowError(RuntimeError):
    """MLflow answered with an error or could not be reached."""


class MlflowRest:
    """MLflow's REST API at `tracking_uri`."""

    def __init__(self, tracking_uri: str) -> None:
        self.base = tracking_uri.rstrip("/")

    def _call(self, method: str, path: str, payload: Mapping[str, Any] | None = None) -> Any:
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(
            f"{self.base}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            detail = error.read()[:300].decode("utf-8", "replace")
            raise MlflowError(f"MLflow {method} {path}: HTTP {error.code} {detail}") from None
        except (urllib.error.URLError, OSError, ValueError) as error:
            raise MlflowError(f"MLflow {method} {path}: {error}") from None

    def find_run(self, experiment: str, namespace: str, model: str, version: int) -> Any:
        """The raw run of version N of line namespace/model in `experiment`, or None."""
        query = urllib.parse.urlencode({"experiment_name": experiment})
        found = self._call("GET", f"/api/2.0/mlflow/experiments/get-by-name?{query}")
        experiment_id = ((found or {}).get("experiment") or {}).get("experiment_id")
        if not experiment_id:
            return None
        version_filter = f"tags.`{tracking.TAG_VERSION}` = {tracking.quote(str(version))}"
        answer = self._call(
            "POST",
            "/api/2.0/mlflow/runs/search",
            {
                "experiment_ids": [experiment_id],
                "filter": f"{tracking.model_filter(namespace, model)} and {version_filter}",
                "max_results": 1,
            },
        )
        runs = (answer or {}).get("runs") or []
        return runs[0] if runs else None

    @staticmethod
    def run_metrics(run: Mapping[str, Any]) -> dict[str, float]:
        """The validation metrics (contract keys) a run logged, last values."""
        logged = ((run.get("data") or {}).get("metrics")) or []
        return {str(m["key"]): float(m["value"]) for m in logged if m.get("key") in metrics.KEYS}

    def model_version(self, registered_model: str, run_id: str) -> str | None:
        """The registered model's version made from run `run_id`, or None."""
        query = urllib.parse.urlencode(
            {
                "filter": f"name={tracking.quote(registered_model)} and "
                f"run_id={tracking.quote(run_id)}"
            }
        )
        answer = self._call("GET", f"/api/2.0/mlflow/model-versions/search?{query}")
        versions = (answer or {}).get("model_versions") or []
        return str(versions[0]["version"]) if versions else None

    def registrations_of(self, run_id: str) -> list[tuple[str, str]]:
        """(registered model, version) of every registered version made from run `run_id`."""
        query = urllib.parse.urlencode({"filter": f"run_id={tracking.quote(run_id)}"})
        answer = self._call("GET", f"/api/2.0/mlflow/model-versions/search?{query}")
        return [
            (str(found.get("name", "")), str(found.get("version", "")))
            for found in (answer or {}).get("model_versions") or []
        ]

    def set_run_tag(self, run_id: str, key: str, value: str) -> None:
        """Set tag `key` of run `run_id`."""
        payload = {"run_id": run_id, "key": key, "value": value}
        if self._call("POST", "/api/2.0/mlflow/runs/set-tag", payload) is None:
            raise MlflowError(f"run {run_id} not found")

    def set_alias(self, registered_model: str, alias: str, version: str) -> None:
        """Point `alias` of `registered_model` at its version `version`."""
        payload = {"name": registered_model, "alias": alias, "version": version}
        if self._call("POST", "/api/2.0/mlflow/registered-models/alias", payload) is None:
            raise MlflowError(f"registered model {registered_model!r} version {version} not found")
