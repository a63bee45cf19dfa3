"""The MLflow adapter: one run per version with its datasets, metrics and artifacts (each
uploaded once), the version as a logged model, and its registered model version.

A version's run is found again by its tags (the contract's run filter: the RetrainJob's uid and
the version), so a retried or resumed pod keeps logging into the same run. Artifacts go wherever the
experiment's artifact root points: `s3://mlflow/...` on MinIO (boto3 with
MLFLOW_S3_ENDPOINT_URL) or a plain `file:` folder on a box without MinIO. What the run holds is
recorded in one artifact (`uploads.json`, sha256 and size per artifact), so a rerun uploads
nothing twice and the run keeps a handful of tags.

The version is also a logged model of its run (pyfunc_model.py around its best.pt, loadable with
`mlflow.pyfunc.load_model`), and its registered version is made from that logged model; the words
MLflow shows (datasets, tags, the description) come from mlflow_record.py.

What this process logged itself (a run it created has no params, no uploads record; the points
of each epoch) is remembered, so nothing is read back from MLflow that this process wrote. The
uploads of one step go up together and the record is written once after them. Methods may be
called from a thread that overlaps training; the uploads record has a lock of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrainer_contract import env as trainer_env
from retrainer_contract import metrics as metric_keys
from retrainer_contract import tracking

from retrainer_trainer import logs, mlflow_record, store
from retrainer_trainer.errors import TrainerError
from retrainer_trainer.mlflow_record import DatasetRef, VersionFacts

__all__ = ["FAILED", "FINISHED", "KILLED", "LoggedModelRef", "RunRef", "Tracker"]

# The model's code, copied into each logged model ("models from code").
PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")

# Uploads of one step at once (each a request to the artifact store, mostly waiting).
UPLOAD_THREADS = 4

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


@dataclass(frozen=True)
class LoggedModelRef:
    """Version N's logged model: its id, URI (`models:/<id>`) and weights."""

    model_id: str
    uri: str
    sha256: str
    facts: VersionFacts


@contextlib.contextmanager
def _pinned_from_here() -> Iterator[None]:
    """Saving a model, MLflow checks its requirements against the installed packages through
    a map of every installed distribution's modules, built by reading all their file lists
    (half a second and more). The requirements logged here are pinned from the installed
    distributions themselves (mlflow_record.requirements; MLflow pins its own version), so
    that check cannot find a mismatch (it only ever warns): it is left out meanwhile."""
    try:
        from mlflow.utils import environment
    except ImportError:  # another MLflow layout: it checks as it always did
        yield
        return
    check = getattr(environment, "warn_dependency_requirement_mismatches", None)
    if check is None:
        yield
        return
    environment.warn_dependency_requirement_mismatches = lambda *_args, **_kwargs: None
    try:
        yield
    finally:
        environment.warn_dependency_requirement_mismatches = check


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
        # run id -> what its uploads record says it holds: artifact path -> {sha256, bytes}
        self._records: dict[str, dict[str, dict[str, Any]]] = {}
        self._record_lock = threading.Lock()  # one writer of a record at a time
        # run id -> its params as MLflow holds them (read once, or known: a run created here)
        self._params: dict[str, dict[str, str]] = {}
        # (run id, key, step) -> the point this process logged; run id -> its epochs logged here
        self._points: dict[tuple[str, str, int], Any] = {}
        self._epochs: dict[str, set[int]] = {}
        # The datasets of the run, by context (the holdout's ties the holdout metrics to it).
        self.datasets: dict[str, DatasetRef] = {}
        self._scoring: LoggedModelRef | None = None

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
            experiment_id = self._experiment(experiment)
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
        if not reused:  # created just now: no params, no artifacts, no uploads record yet
            self._params[info.run_id] = {}
            self._records[info.run_id] = {}
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

    def _experiment(self, name: str) -> str:
        """The experiment's id; one Retrainer creates, or finds without a kind, opens in MLflow's
        model-training view (a kind someone chose is left alone)."""
        found = self.client.get_experiment_by_name(name)
        if found is None:
            return str(self.client.create_experiment(name, tags=tracking.experiment_tags()))
        if tracking.TAG_EXPERIMENT_KIND not in found.tags:
            for key, value in tracking.experiment_tags().items():
                self.client.set_experiment_tag(found.experiment_id, key, value)
        return str(found.experiment_id)

    def _run_params(self, run_id: str) -> dict[str, str]:
        """The run's params as MLflow holds them: read once, then kept up to date here."""
        if run_id not in self._params:
            self._params[run_id] = dict(self.client.get_run(run_id).data.params)
        return self._params[run_id]

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        existing = self._run_params(run_id)
        fresh = [Param(k, str(v)[:6000]) for k, v in params.items() if k not in existing]
        if fresh:
            self.client.log_batch(run_id, params=fresh)
            existing.update({p.key: p.value for p in fresh})

    def log_metrics(self, run_id: str, step: int, metrics: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step, **self._tied(k)) for k, v in metrics.items()]
        if batch:
            self.client.log_batch(run_id, metrics=batch)
            for point in batch:
                self._points[(run_id, point.key, step)] = point
            if metric_keys.EPOCH in metrics:
                self._epochs.setdefault(run_id, set()).add(step)

    def epochs_logged_here(self, run_id: str) -> set[int]:
        """The epochs (steps of the `epoch` metric) this process logged to the run."""
        return set(self._epochs.get(run_id, ()))

    def _tied(self, key: str) -> dict[str, str]:
        """While scoring: a holdout metric's dataset (the holdout) and, for this version's own
        scores, its logged model (the champion's scores are not this model's)."""
        model = self._scoring
        if model is None or not key.startswith(metric_keys.HOLDOUT_PREFIX):
            return {}
        tied: dict[str, str] = {}
        holdout = self.datasets.get(tracking.CONTEXT_EVALUATION)
        if holdout is not None:
            tied = {"dataset_name": holdout.name, "dataset_digest": holdout.digest}
        if not key.startswith(metric_keys.CHAMPION_HOLDOUT_PREFIX):
            tied["model_id"] = model.model_id
        return tied

    @contextlib.contextmanager
    def scoring(self, model: LoggedModelRef) -> Iterator[None]:
        """The holdout evaluation of `model`: the holdout metrics logged inside are tied to the
        holdout dataset and the version's own ones to `model`."""
        self.score_as(model)
        try:
            yield
        finally:
            self.score_as(None)

    def score_as(self, model: LoggedModelRef | None) -> None:
        """`scoring` in two calls (its beginning with the model, its end with None), for a
        caller in another process (tracker_process)."""
        self._scoring = model

    def log_datasets(self, run_id: str, datasets: Sequence[DatasetRef]) -> None:
        """The run's datasets (MLflow dedups a rerun's), each with its role as context."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        inputs = [
            DatasetInput(
                Dataset(d.name, d.digest, d.source_type, d.source, profile=d.profile_json()),
                [InputTag(tracking.TAG_DATASET_CONTEXT, d.context)],
            )
            for d in datasets
        ]
        try:
            self.client.log_inputs(run_id, datasets=inputs)
        except Exception as error:
            raise TrainerError(
                f"MLflow: cannot log the datasets of run {run_id} ({type(error).__name__}: "
                f"{str(error)[:300]})"
            ) from error
        self.datasets = {d.context: d for d in datasets}
        logs.event("mlflow.datasets", **{d.context: f"{d.name}@{d.digest}" for d in datasets})

    def logged_steps(self, run_id: str, key: str) -> set[int]:
        return {m.step for m in self.client.get_metric_history(run_id, key)}

    def upload(self, run_id: str, local: Path, artifact_path: str) -> None:
        """Upload one file unless this run already holds exactly these bytes (a rerun)."""
        self.upload_many(run_id, [(local, artifact_path)])

    def upload_many(self, run_id: str, files: Sequence[tuple[Path, str]]) -> None:
        """Upload each (file, artifact folder) unless this run already holds exactly these
        bytes (a rerun), several at once; then rewrite the run's uploads record once.

        "Exactly" is judged by sha256 against the run's uploads record: weights of one
        architecture often have the same size, so size alone would keep a stale copy. A pod
        killed between an upload and the record uploads that file again: never one too few.
        """
        with self._record_lock:
            record = dict(self._record(run_id))
        todo = []
        for local, artifact_path in files:
            name = f"{artifact_path}/{local.name}" if artifact_path else local.name
            sha256, size = store.digest(local)
            if (record.get(name) or {}).get("sha256") == sha256:
                logs.event("upload.skip", artifact=name, bytes=size)
                continue
            todo.append((local, artifact_path, name, sha256, size))
        if not todo:
            return

        def put(item: tuple[Path, str, str, str, int]) -> None:
            self.client.log_artifact(run_id, str(item[0]), item[1] or None)

        put(todo[0])  # alone: the first upload brings up the artifact store's client, once
        if len(todo) > 1:
            with ThreadPoolExecutor(min(UPLOAD_THREADS, len(todo) - 1)) as pool:
                list(pool.map(put, todo[1:]))
        with self._record_lock:
            held = self._record(run_id)
            held.update({name: {"sha256": sha, "bytes": size} for _, _, name, sha, size in todo})
            self._write_record(run_id, held)
        for _, _, name, _, size in todo:
            self.uploads.append({"artifact": name, "bytes": size})
            logs.event("upload", artifact=name, bytes=size)

    def _record(self, run_id: str) -> dict[str, dict[str, Any]]:
        """What the run holds: its uploads record, or (a run of an older trainer) its
        per-artifact sha256 tags. Read once; this process is then its only writer."""
        if run_id in self._records:
            return self._records[run_id]
        tags = self.client.get_run(run_id).data.tags
        prefix = tracking.TAG_SHA_PREFIX
        record = {k[len(prefix) :]: {"sha256": v} for k, v in tags.items() if k.startswith(prefix)}
        listed = {info.path for info in self.client.list_artifacts(run_id)}
        if tracking.UPLOADS_ARTIFACT in listed:
            with tempfile.TemporaryDirectory() as folder:
                local = self.client.download_artifacts(run_id, tracking.UPLOADS_ARTIFACT, folder)
                try:
                    document = json.loads(Path(local).read_text(encoding="utf-8"))
                except ValueError:  # unreadable: uploading again is always correct
                    document = {}
            held = document.get("artifacts") if isinstance(document, dict) else None
            if isinstance(held, dict):
                record.update({k: dict(v) for k, v in held.items() if isinstance(v, dict)})
        self._records[run_id] = record
        return record

    def _write_record(self, run_id: str, record: Mapping[str, Mapping[str, Any]]) -> None:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / tracking.UPLOADS_ARTIFACT
            document = {"artifacts": dict(sorted(record.items()))}
            path.write_text(json.dumps(document, indent=2), encoding="utf-8")
            self.client.log_artifact(run_id, str(path))

    def log_model(self, run: RunRef, weights: Path, facts: VersionFacts) -> LoggedModelRef:
        """Version N as a logged model of its run: pyfunc_model.py with `weights` (its best.pt),
        the pinned requirements, the run's params and lineage; linked to the run as its output
        with the last epoch's metrics. A rerun finds the model of these weights again."""
        sha256, size = store.digest(weights)
        try:
            # A run created by this process has no logged model yet: nothing to find again.
            model_id = self._logged_model(run, sha256) if run.reused else None
            new = model_id is None
            if model_id is None:
                model_id = self._new_model(run, weights, sha256, size, facts)
            self._link(run, model_id, new)
        except Exception as error:
            raise TrainerError(
                f"MLflow: cannot log {facts.name} as a model ({type(error).__name__}: "
                f"{str(error)[:300]}); the Job retries"
            ) from error
        return LoggedModelRef(model_id, f"models:/{model_id}", sha256, facts)

    def _logged_model(self, run: RunRef, sha256: str) -> str | None:
        """The run's finished logged model of these weights; one a killed pod left PENDING is
        marked FAILED (it never got all its files)."""
        from mlflow.entities import LoggedModelStatus

        found = self.client.search_logged_models(
            [run.experiment_id], filter_string=f"source_run_id = {tracking.quote(run.run_id)}"
        )
        ready = None
        for model in found:
            if model.status == LoggedModelStatus.PENDING:
                self.client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
            elif (
                model.status == LoggedModelStatus.READY
                and model.tags.get(tracking.TAG_SHA256) == sha256
            ):
                ready = str(model.model_id)
        return ready

    def _new_model(
        self, run: RunRef, weights: Path, sha256: str, size: int, facts: VersionFacts
    ) -> str:
        import mlflow

        from retrainer_trainer import pyfunc_model

        params = {k: v[:6000] for k, v in self._run_params(run.run_id).items()}
        created = self.client.create_logged_model(
            run.experiment_id,
            name=facts.name,
            source_run_id=run.run_id,
            tags=facts.model_tags(sha256),
            params={**params, **facts.lineage},
            model_type=mlflow_record.MODEL_TYPE,
        )
        mlflow.set_tracking_uri(self.uri)  # log_model writes through the fluent client
        started = time.monotonic()
        with _pinned_from_here():
            mlflow.pyfunc.log_model(
                name=facts.name,
                python_model=str(PYFUNC_CODE),
                artifacts={pyfunc_model.WEIGHTS: str(weights)},
                pip_requirements=mlflow_record.requirements(),
                model_config=facts.model_config(),
                model_id=created.model_id,
            )
        seconds = round(time.monotonic() - started, 1)
        logs.event("mlflow.logged_model", modelId=created.model_id, bytes=size, seconds=seconds)
        return str(created.model_id)

    def _link(self, run: RunRef, model_id: str, new: bool) -> None:
        """The model as the run's output at its last epoch, with that epoch's metrics.

        A run this process created holds only the points it logged: they are known here. A
        model found again was linked already unless a pod died in between: MLflow is asked."""
        from mlflow.entities import LoggedModelOutput, Metric

        run_id = run.run_id
        if not new:
            found = self.client.get_run(run_id)
            outputs = found.outputs.model_outputs if found.outputs else []
            if model_id in {output.model_id for output in outputs}:
                return
        if run.reused:
            steps = self.logged_steps(run_id, metric_keys.EPOCH)
        else:
            steps = self.epochs_logged_here(run_id)
        step = max(steps, default=0)
        self.client.log_outputs(run_id, [LoggedModelOutput(model_id, step)])
        batch = []
        for key in metric_keys.KEYS:
            mine = self._points.get((run_id, key, step))  # logged by this process: known
            if mine is not None or not run.reused:
                points = [mine] if mine is not None else []
            else:
                points = [m for m in self.client.get_metric_history(run_id, key) if m.step == step]
            # The same point again (MLflow keeps one in the run), now also the model's.
            batch += [
                Metric(m.key, m.value, m.timestamp, m.step, model_id=model_id, run_id=run_id)
                for m in points[-1:]
            ]
        if batch:
            self.client.log_batch(run_id, metrics=batch)

    def register(
        self,
        name: str,
        run_id: str,
        model: LoggedModelRef,
        evaluation: Mapping[str, Any] | None,
    ) -> str:
        """Register the logged model under `name` with its tags and description; a rerun finds
        its version again (and brings those up to date). An evaluated version also becomes the
        `challenger`."""
        from mlflow.exceptions import MlflowException

        facts = model.facts
        tags = facts.registry_tags(model.sha256, evaluation)
        text = mlflow_record.description(facts, evaluation)
        try:
            self.client.get_registered_model(name)
        except MlflowException:
            with contextlib.suppress(MlflowException):  # another trainer created it first
                self.client.create_registered_model(name)
        query = f"name={tracking.quote(name)} and run_id={tracking.quote(run_id)}"
        existing = self.client.search_model_versions(query)
        if existing:
            found = existing[0]
            version = str(found.version)
            for key, value in tags.items():
                if found.tags.get(key) != value:
                    self.client.set_model_version_tag(name, version, key, value)
            if found.description != text:
                self.client.update_model_version(name, version, description=text)
            logs.event("mlflow.register_found", model=name, version=version, source=found.source)
        else:
            created = self.client.create_model_version(
                name, model.uri, run_id=run_id, tags=tags, description=text, model_id=model.model_id
            )
            version = str(created.version)
            logs.event("mlflow.register", model=name, version=version, source=model.uri)
        if evaluation:
            self._mark_challenger(name, version, facts)
        return version

    def _mark_challenger(self, name: str, version: str, facts: VersionFacts) -> None:
        """Point `challenger` at `version`, unless a later Retrainer version holds it already
        (two trainers finishing out of order) or it is the line's champion alias."""
        from mlflow.exceptions import MlflowException

        alias = tracking.CHALLENGER_ALIAS
        if facts.champion_alias == alias:
            logs.event("mlflow.challenger_skipped", model=name, alias=alias)
            return
        try:
            current = self.client.get_model_version_by_alias(name, alias)
        except MlflowException:  # not set yet
            current = None
        if current is not None and str(current.version) != version:
            theirs = str(current.tags.get(tracking.TAG_VERSION, ""))
            if theirs.isdigit() and int(theirs) > facts.version:
                logs.event("mlflow.challenger_kept", model=name, version=str(current.version))
                return
        self.set_alias(name, alias, version)

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
