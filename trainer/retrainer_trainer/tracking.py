"""The MLflow adapter: one run per version, metrics, artifacts uploaded once, the registry.

A version's run is found again by its tags (the contract's run filter: the RetrainJob's uid and
the version), so a retried or resumed pod keeps logging into the same run. Artifacts go wherever the
experiment's artifact root points: `s3://mlflow/...` on MinIO (boto3 with
MLFLOW_S3_ENDPOINT_URL) or a plain `file:` folder on a box without MinIO.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrainer_contract import env as trainer_env
from retrainer_contract import integrity, tracking

from retrainer_trainer import logs
from retrainer_trainer.errors import TrainerError

__all__ = ["FAILED", "FINISHED", "KILLED", "RunRef", "Tracker"]

# MLflow's terminal run statuses: trained and verified, failed, stopped by SIGTERM.
FINISHED = "FINISHED"
FAILED = "FAILED"
KILLED = "KILLED"


@dataclass(frozen=True)
class RunRef:
    experiment_id: str
    run_id: str
    artifact_uri: str
    url: str
    reused: bool


class Tracker:
    """Thin wrapper over MlflowClient; every failure becomes a TrainerError (exit 1)."""

    def __init__(self, tracking_uri: str) -> None:
        if not tracking_uri:
            raise TrainerError(
                f"{trainer_env.TRACKING_URI} is not set: the MLflow server is unknown"
            )
        # Fail in seconds, not minutes, when the server is down; the Job retries anyway.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
        from mlflow.tracking import MlflowClient

        self.uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self.uploads: list[dict[str, Any]] = []

    def ping(self) -> None:
        try:
            self.client.search_experiments(max_results=1)
        except Exception as error:
            raise TrainerError(
                f"MLflow at {self.uri} is unreachable ({type(error).__name__}: "
                f"{str(error)[:300]}); check {trainer_env.TRACKING_URI} and that the server is up"
            ) from error

    def open_run(
        self, experiment: str, uid: str, namespace: str, model: str, version: int, base: str
    ) -> RunRef:
        """The run of version `version` of RetrainJob `uid`: found by its tags, or created."""
        tags = tracking.run_tags(uid, namespace, model, version, base)
        run_name = tracking.run_name(model, version)
        try:
            found = self.client.get_experiment_by_name(experiment)
            experiment_id = (
                found.experiment_id if found else self.client.create_experiment(experiment)
            )
            query = tracking.run_filter(uid, version)
            runs = self.client.search_runs([experiment_id], filter_string=query, max_results=1)
            if runs:
                run = runs[0]
                if run.info.status != "RUNNING":
                    self.client.update_run(run.info.run_id, status="RUNNING")
                reused = True
            else:
                run = self.client.create_run(experiment_id, tags=tags, run_name=run_name)
                reused = False
        except Exception as error:
            raise TrainerError(f"MLflow: cannot open the run of {run_name}: {error}") from error
        info = run.info
        artifact_uri = info.artifact_uri
        if ":" not in artifact_uri.split("/", 1)[0]:  # a bare local folder (file store)
            artifact_uri = Path(artifact_uri).resolve().as_uri()
        logs.event("mlflow.run", experimentId=experiment_id, runId=info.run_id, reused=reused)
        return RunRef(
            experiment_id,
            info.run_id,
            artifact_uri,
            tracking.run_url(self.uri, experiment_id, info.run_id),
            reused,
        )

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        existing = self.client.get_run(run_id).data.params
        fresh = [Param(k, str(v)[:6000]) for k, v in params.items() if k not in existing]
        if fresh:
            self.client.log_batch(run_id, params=fresh)

    def log_metrics(self, run_id: str, step: int, metrics: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        if batch:
            self.client.log_batch(run_id, metrics=batch)

    def logged_steps(self, run_id: str, key: str) -> set[int]:
        return {m.step for m in self.client.get_metric_history(run_id, key)}

    def upload(self, run_id: str, local: Path, artifact_path: str) -> None:
        """Upload one file unless this run already holds exactly these bytes (a rerun).

        "Exactly" is judged by a run tag `retrainer.sha256/<artifact>` set after each upload:
        weights of one architecture often have the same size, so size alone would keep a
        stale copy.
        """
        name = f"{artifact_path}/{local.name}" if artifact_path else local.name
        sha256, size = integrity.sha256_file(local)
        tag = tracking.sha_tag(name)
        if self.client.get_run(run_id).data.tags.get(tag) == sha256:
            logs.event("upload.skip", artifact=name, bytes=size)
            return
        self.client.log_artifact(run_id, str(local), artifact_path or None)
        self.client.set_tag(run_id, tag, sha256)
        self.uploads.append({"artifact": name, "bytes": size})
        logs.event("upload", artifact=name, bytes=size)

    def register(self, name: str, run_id: str, source: str) -> str:
        """Register the run's weights under `name`; a rerun finds its version again."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(name)
        except MlflowException:
            self.client.create_registered_model(name)
        query = f"name={tracking.quote(name)} and run_id={tracking.quote(run_id)}"
        existing = self.client.search_model_versions(query)
        if existing:
            return str(existing[0].version)
        version = self.client.create_model_version(name, source, run_id=run_id)
        logs.event("mlflow.register", model=name, version=version.version)
        return str(version.version)

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(name, alias, version)
        logs.event("mlflow.alias", model=name, alias=alias, version=version)

    def finish(self, run_id: str, manifest: Path) -> None:
        """A verified version's run completed: its manifest uploaded (unless it holds those
        bytes already) and the run ended FINISHED (unless it is)."""
        try:
            status = self.client.get_run(run_id).info.status
            self.upload(run_id, manifest, "")
            if status != FINISHED:
                self.client.set_terminated(run_id, FINISHED)
        except Exception as error:
            raise TrainerError(
                f"MLflow: cannot complete run {run_id} of this verified version "
                f"({type(error).__name__}: {str(error)[:300]}); the Job retries"
            ) from error
        logs.event("mlflow.run_completed", runId=run_id, was=status)

    def end(self, run_id: str, status: str) -> None:
        """End the run FINISHED, FAILED or KILLED (a rerun's open_run sets it RUNNING again)."""
        try:
            self.client.set_terminated(run_id, status)
            logs.event("mlflow.end", runId=run_id, status=status)
        except Exception as error:  # the pod is ending anyway; the status says what happened
            logs.event("mlflow.end_failed", status=status, error=str(error)[:300])
