"""The trainer's pipeline: inputs -> dataset -> corrections -> train -> store -> verify.

Each step is a call into one adapter module and `run` reads as their order; the documents'
shapes (metadata, lineage, manifest) are the contract's (retrainer_contract.documents). It is
safe to run again for the same version: a verified version is left untouched (exit 0 at once,
its MLflow run given the manifest and ended FINISHED if a killed pod could not), a finished
training is not repeated (its best.pt restored from a copy if it no longer matches its record),
an interrupted one resumes, and the MLflow run is found again by its tags. Once that run is
open it is never left RUNNING by this process: SIGTERM ends it KILLED, any failure (logging the
params included) FAILED; a pod killed outright leaves it to the next attempt, which carries on
in it.

MLflow's client runs in a process of its own (tracker_process), started before the inputs are
read: it imports MLflow on another core while this one imports Ultralytics, and contacts
MLflow only when asked. The run is opened before training; what is logged into it overlaps
work it need not wait for (`_Overlap`, network calls only: a thread busy with Python code
would slow training down, not hide itself): the params and datasets while Ultralytics sets
up (in place before the first epoch's metrics), the uploads while the logged model is made.
Imports and Ultralytics' set-up run with the garbage collector paused (heap.py). Each step's
wall seconds are one `phase.seconds` event at the end.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from typing import Any

from retrainer_contract import documents, faults, integrity, layout, objectstore

from retrainer_trainer import (
    datacache,
    evaluate,
    heap,
    inputs,
    logs,
    mlflow_record,
    repair,
    runfolder,
    store,
    training,
)
from retrainer_trainer import tracking as run_status
from retrainer_trainer.config import Config
from retrainer_trainer.errors import Preempted, TrainerError
from retrainer_trainer.preparation import Prepared, prepare_cached, prepare_data
from retrainer_trainer.tracker_process import TrackerProcess
from retrainer_trainer.tracking import LoggedModelRef, RunRef
from retrainer_trainer.verify import verify

__all__ = ["Prepared", "prepare_data", "run"]


def _minio(config: Config) -> Any:
    if not config.s3_endpoint:
        return None
    return objectstore.minio_client(config.s3_endpoint, config.access_key, config.secret_key)


def _already_done(config: Config, paths: layout.VersionPaths, client: Any) -> dict[str, Any] | None:
    """The manifest of a version that completed and still verifies, else None."""
    if not paths.manifest.is_file() or not paths.production.is_file():
        return None
    try:
        document = documents.read_json(paths.manifest)
    except (OSError, ValueError):
        return None
    checks = verify(
        document.get("artifacts", []),
        storage_root=config.storage_root,
        client=client,
        tracking_uri=config.tracking_uri,
    )
    if not checks["verified"]:
        failed = [c["name"] for c in checks["checks"] if not c["ok"]]
        logs.event("manifest.stale", failed=failed)
        return None
    document["verification"] = checks
    return document


def _close_recorded_run(config: Config, paths: layout.VersionPaths, done: dict[str, Any]) -> None:
    """The MLflow run of a version that an earlier attempt verified: the manifest uploaded if
    it is missing and the run ended FINISHED. The manifest reaches the claim before MLflow, so
    a pod killed between the two left a RUNNING run without it; this attempt completes it."""
    run_id = str((done.get("mlflow") or {}).get("runId") or "")
    if not run_id:
        logs.event("mlflow.run_unknown", version=config.version)
        return
    with _tracker(config) as tracker:
        tracker.finish(run_id, paths.manifest)


def _owner_uid(config: Config) -> str:
    """The RetrainJob's uid; a local run without one is owned by namespace/name."""
    return config.uid or f"{config.namespace}/{config.name}"


def _owner(config: Config) -> dict[str, str]:
    return documents.owner(uid=_owner_uid(config), name=config.name, namespace=config.namespace)


def _params(config: Config, base: inputs.BaseModel, device: Any) -> dict[str, Any]:
    t = config.spec.training
    return {
        "model": config.spec.model,
        "version": config.version,
        "baseModel": base.label,
        "epochs": t.epochs,
        "imgsz": t.imgsz,
        "batch": t.batch,
        "patience": t.patience,
        "seed": t.seed,
        "device": device,
        "datasetUri": config.spec.dataset_uri,
        "correctionsUri": config.spec.corrections_uri or "",
        **{f"extra.{k}": v for k, v in sorted(t.extra_args.items())},
    }


def _device(config: Config) -> Any:
    """Ultralytics set up offline, extraArgs checked, the device chosen: before MLflow."""
    training.prepare(config.workdir)
    training.coerce_args(config.spec.training.extra_args)
    return training.device_for(config.spec.gpus)


def _tracker(config: Config) -> TrackerProcess:
    """The MLflow client, in a process of its own that imports MLflow while this one goes on
    (tracker_process); it contacts MLflow only when asked, and a tracking URI that is not set
    is reported by the first call."""
    return TrackerProcess(config.tracking_uri)


def _open_run(tracker: TrackerProcess, config: Config, base: inputs.BaseModel) -> RunRef:
    """The MLflow run of this version: found again on a rerun (a pod killed outright, by the
    OOM killer say, left it RUNNING: this attempt carries it on and ends it), or created."""
    tracker.ping()
    return tracker.open_run(
        config.spec.experiment,
        _owner_uid(config),
        config.namespace,
        config.spec.model,
        config.version,
        base.label,
    )


# The MLflow work that overlaps other steps (_Overlap task names, also their phase names).
RUN_INPUTS = "runInputs"  # params and datasets: while Ultralytics sets up
UPLOADS = "uploads"  # weights, plots, dataset documents: while the logged model is made


class _Overlap:
    """MLflow work that overlaps the pipeline's other steps: each task on a thread of its own,
    joined where its result is needed (its error raised there, in the main thread), and
    settled before the run is ended on a failure (nothing logs into an ended run)."""

    def __init__(self, phases: logs.Phases) -> None:
        self.phases = phases
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="retrainer-mlflow")
        self._tasks: dict[str, Future[None]] = {}

    def start(self, name: str, work: Callable[[], None]) -> None:
        """Start `work` as task `name`, unless that task was started already."""
        if name in self._tasks:
            return

        def timed() -> None:
            with self.phases.phase(name, background=True):
                work()

        self._tasks[name] = self._pool.submit(timed)

    def join(self, name: str) -> None:
        """Wait for task `name`, if it was started; its error is raised here."""
        task = self._tasks.get(name)
        if task is None:
            return
        if not task.done():
            with self.phases.phase(f"{name}.waited", background=True):
                wait_for([task])
        logs.flush()  # the events the task raised, in the main thread's order
        task.result()

    def settle(self) -> None:
        """Wait for every task, whatever it raised (the failure being handled comes first)."""
        wait_for(list(self._tasks.values()))
        logs.flush()

    def close(self) -> None:
        self._pool.shutdown(wait=True)


@contextlib.contextmanager
def _ends_the_run(tracker: TrackerProcess, run_ref: RunRef, overlap: _Overlap) -> Iterator[None]:
    """End the open MLflow run KILLED on SIGTERM and FAILED on any failure, then re-raise."""
    try:
        yield
    except Preempted:
        overlap.settle()
        tracker.end(run_ref.run_id, run_status.KILLED)
        raise
    except BaseException:
        overlap.settle()
        tracker.end(run_ref.run_id, run_status.FAILED)
        raise


def _weight_copies(
    config: Config, paths: layout.VersionPaths, run_ref: RunRef
) -> list[repair.Copy]:
    """Where copies of best.pt were stored, in the order a repair tries them."""
    uris = paths.weight_uris(config.claim_name, run_ref.artifact_uri)
    return [
        repair.Copy(name, uris[name])
        for name in (layout.PRODUCTION, layout.QUICK_ACCESS, layout.MLFLOW)
    ]


def _train(
    config: Config,
    paths: layout.VersionPaths,
    prep: Prepared,
    base: inputs.BaseModel,
    device: Any,
    tracker: TrackerProcess,
    run_ref: RunRef,
    client: Any,
    overlap: _Overlap,
) -> training.TrainResult:
    """Train (or resume, or reuse) the run folder, logging every epoch to MLflow."""

    def on_epoch(epoch: int, epochs: int, metrics: dict[str, float]) -> None:
        overlap.join(RUN_INPUTS)  # the run's params and datasets come before its metrics
        tracker.log_metrics(run_ref.run_id, epoch, {**metrics, "epoch": epoch})
        logs.event("epoch", epoch=epoch, epochs=epochs, **metrics)

    def restore(plan: runfolder.Plan) -> bool:
        return repair.restore(
            paths.training_run,
            plan,
            _weight_copies(config, paths, run_ref),
            storage_root=config.storage_root,
            client=client,
            tracking_uri=config.tracking_uri,
            published=paths.manifest.is_file() or paths.metadata.is_file(),
        )

    started = time.monotonic()
    # Collector paused through Ultralytics' set-up (its imports, the model, the datasets).
    with heap.paused() as set_up:
        result = training.train(
            data_yaml=prep.data_yaml,
            base_model=base.source,
            paths=paths,
            training=config.spec.training,
            device=device,
            on_epoch=on_epoch,
            restore=restore,
            on_start=set_up,
        )
    overlap.join(RUN_INPUTS)  # no epoch was trained here (reused, DDP): joined now
    _backfill_epochs(tracker, run_ref, paths)
    logs.event("train.done", seconds=round(time.monotonic() - started, 1), **result.metrics)
    return result


def _log_run_inputs(
    tracker: TrackerProcess,
    run_ref: RunRef,
    config: Config,
    base: inputs.BaseModel,
    device: Any,
    prep: Prepared,
) -> None:
    """The run's params and datasets (the training set, corrections, holdout)."""
    tracker.log_params(run_ref.run_id, _params(config, base, device))
    tracker.log_datasets(
        run_ref.run_id, mlflow_record.datasets_of(config, prep.metadata, prep.holdout)
    )


def _upload_all(
    tracker: TrackerProcess, run: RunRef, config: Config, paths: layout.VersionPaths, prep: Prepared
) -> None:
    """The weights, the plots and the dataset documents, in one batch (the quick-access copy
    already has the versioned name: it goes up as models/retrained_vN.pt)."""
    plots = [(plot, "plots") for plot in sorted(paths.run_dir.glob("*.png"))]
    names = (layout.DATASET_METADATA, layout.CORRECTIONS_APPLIED)
    docs = [(path, "") for path in (*(config.workdir / n for n in names), prep.data_yaml)]
    tracker.upload_many(run.run_id, [(paths.quick_access, "models"), *plots, *docs])


def _register(
    tracker: TrackerProcess,
    config: Config,
    run: RunRef,
    model: LoggedModelRef,
    evaluation: dict[str, Any] | None,
) -> dict[str, Any]:
    """The registered model version of this run, made from its logged model; the alias (the
    champion) is the operator's to move, after every copy verified and the holdout evaluation
    said Promoted."""
    spec = config.spec
    info: dict[str, Any] = {
        "experimentId": run.experiment_id,
        "runId": run.run_id,
        "runUrl": run.url,
    }
    if not spec.registered_model:
        return info
    version = tracker.register(spec.registered_model, run.run_id, model, evaluation)
    info["registeredModelVersion"] = version
    return info


def _backfill_epochs(tracker: TrackerProcess, run: RunRef, paths: layout.VersionPaths) -> None:
    """Log epochs that results.csv has and MLflow lacks.

    Callbacks do not run under DDP (training happens in child processes), and a SIGTERM can
    land between an epoch's checkpoint and its MLflow call; results.csv has them all. MLflow
    is asked only when this process did not log every one of them itself.
    """
    rows = training.read_results_csv(paths.run_dir)
    if {int(row["epoch"]) for row in rows} <= tracker.epochs_logged_here(run.run_id):
        return
    logged = tracker.logged_steps(run.run_id, "epoch")
    for row in rows:
        step = int(row["epoch"])
        if step not in logged:
            tracker.log_metrics(run.run_id, step, row)
            logs.event("epoch.backfill", epoch=step)


def _store_version(
    config: Config, paths: layout.VersionPaths, metadata: dict[str, Any]
) -> list[integrity.Artifact]:
    """Write models/ (metadata, then the production copy); the five artifacts as written."""
    store.write_models(paths, metadata)
    claim = config.claim_name
    artifacts = [
        store.artifact(name, paths.uri(claim, path), path)
        for name, path in paths.claim_files().items()
    ]
    weights = metadata["weights"]
    artifacts.append(
        integrity.Artifact(
            name=layout.MLFLOW,
            uri=metadata["locations"][layout.MLFLOW],  # the same URI the metadata records
            sha256=weights["sha256"],
            size=weights["size"],
        )
    )
    return artifacts


def _metadata(
    config: Config,
    paths: layout.VersionPaths,
    run_ref: RunRef,
    result: training.TrainResult,
    base: inputs.BaseModel,
    device: Any,
    prep: Prepared,
    mlflow_info: dict[str, Any],
    lineage: dict[str, Any],
    evaluation: dict[str, Any] | None,
) -> dict[str, Any]:
    """models/retrained_vN_metadata.json of this version (the contract's shape)."""
    return documents.metadata(
        model=config.spec.model,
        version=config.version,
        retrainjob=_owner(config),
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        weights=store.artifact(layout.PRODUCTION, "", paths.training_run),
        metrics=result.metrics,
        lineage=lineage,
        training={**_params(config, base, device), "resumed": result.resumed},
        dataset=prep.metadata,
        mlflow=mlflow_info,
        locations=paths.weight_uris(config.claim_name, run_ref.artifact_uri),
        evaluation=evaluation,
    )


def _publish(
    tracker: TrackerProcess, run_ref: RunRef, paths: layout.VersionPaths, document: dict[str, Any]
) -> None:
    """The manifest to the run folder and the MLflow run; a failed check undoes models/."""
    store.atomic_write_json(paths.manifest, document)
    faults.point(faults.TRAINER_MANIFEST_WRITTEN)
    tracker.upload(run_ref.run_id, paths.manifest, "")
    verification = document["verification"]
    for check in verification["checks"]:
        logs.event("verify", name=check["name"], ok=check["ok"], message=check["message"])
    if not verification["verified"]:
        store.rollback(paths)
        failed = [c["name"] for c in verification["checks"] if not c["ok"]]
        raise TrainerError(f"verification failed for {failed}: {json.dumps(verification)[:1500]}")
    tracker.end(run_ref.run_id, run_status.FINISHED)


def _inputs(config: Config) -> tuple[inputs.Inputs, Prepared]:
    """Resolve the inputs and prepare the working dataset through the claim's dataset cache,
    then bring the cache back under its cap (never evicting what a live trainer uses)."""
    cache = datacache.Cache(config.storage_root, config.dataset_cache_max_bytes)
    resolved, prep, evicted = prepare_cached(config, cache, lambda: inputs.resolve(config, cache))
    logs.event(
        "dataset.cache",
        cachedBytes=evicted.total_after,
        maxBytes=cache.max_bytes,
        evictedBlobs=evicted.blobs,
        evictedBytes=evicted.bytes,
        evictedTrees=evicted.trees,
    )
    return resolved, prep


def run(config: Config) -> dict[str, Any]:
    """Produce and verify version N; returns its manifest. Raises TrainerError/BadInput.

    Order matters: inputs are checked before MLflow is contacted, and models/ is written only
    after training and the uploads succeeded.
    """
    try:
        return _run(config)
    finally:
        heap.thaw()


def _run(config: Config) -> dict[str, Any]:
    spec = config.spec
    phases = logs.Phases()
    phases.add("startup", logs.process_seconds())  # the interpreter and the imports up to here
    paths = layout.VersionPaths.for_version(config.storage_root, spec.model, config.version)
    config.workdir.mkdir(parents=True, exist_ok=True)
    logs.event("start", model=spec.model, version=config.version, name=config.name)
    with phases.phase("inputs"):
        store.claim_version(paths, _owner(config))
        client = _minio(config)
        done = _already_done(config, paths, client)
        if done is not None:
            _close_recorded_run(config, paths, done)
    if done is not None:
        phases.emit()
        logs.event("done.already", version=config.version)
        return done
    # MLflow is imported by the tracker's own process meanwhile (on another core).
    with _tracker(config) as tracker:
        return _new_version(config, paths, client, tracker, phases)


def _new_version(
    config: Config,
    paths: layout.VersionPaths,
    client: Any,
    tracker: TrackerProcess,
    phases: logs.Phases,
) -> dict[str, Any]:
    # Input checks first: bad input is reported (exit 3) whatever state MLflow is in.
    with phases.phase("inputs"):
        resolved, prep = _inputs(config)
    with phases.phase("setup"), heap.paused():  # Ultralytics imported (heap.py)
        device = _device(config)
    if prep.holdout is not None:  # after _device: reading weights imports Ultralytics
        with phases.phase("preflight"):
            evaluate.preflight(config, prep.holdout, tuple(prep.metadata["names"]))
    with phases.phase("mlflow"):  # the tracker's process has imported MLflow by now
        run_ref = _open_run(tracker, config, resolved.base)
    overlap = _Overlap(phases)
    try:
        with _ends_the_run(tracker, run_ref, overlap):
            overlap.start(
                RUN_INPUTS,
                lambda: _log_run_inputs(tracker, run_ref, config, resolved.base, device, prep),
            )
            document = _produce(
                config, paths, resolved, prep, device, tracker, run_ref, client, phases, overlap
            )
    finally:
        overlap.close()
    phases.emit()
    logs.event("done", version=config.version, verified=True, **document["metrics"])
    return document


def _produce(
    config: Config,
    paths: layout.VersionPaths,
    resolved: inputs.Inputs,
    prep: Prepared,
    device: Any,
    tracker: TrackerProcess,
    run_ref: RunRef,
    client: Any,
    phases: logs.Phases,
    overlap: _Overlap,
) -> dict[str, Any]:
    """Train, upload, store and verify version N into its open MLflow run; its manifest."""
    with phases.phase("train"):
        result = _train(
            config, paths, prep, resolved.base, device, tracker, run_ref, client, overlap
        )
    with phases.phase("store"):
        store.write_quick_access(paths)
    overlap.start(UPLOADS, lambda: _upload_all(tracker, run_ref, config, paths, prep))
    facts = mlflow_record.facts_of(config, resolved.base, prep.metadata, prep.holdout)
    with phases.phase("logModel"):
        model = tracker.log_model(run_ref, paths.training_run, facts)
    with phases.phase("upload"):
        overlap.join(UPLOADS)
    scored = None
    if prep.holdout is not None:
        with phases.phase("evaluate"), tracker.scoring(model):
            scored = evaluate.evaluate(
                config, prep.holdout, paths.training_run, device, tracker, run_ref, prep.regression
            )
    with phases.phase("register"):
        mlflow_info = _register(tracker, config, run_ref, model, scored)
    lineage = documents.lineage(
        base_label=resolved.base.label,
        base_version=resolved.base.version,
        base_sha256=resolved.base.sha256 or "",
        dataset=prep.metadata,
    )
    with phases.phase("store"):
        metadata = _metadata(
            config,
            paths,
            run_ref,
            result,
            resolved.base,
            device,
            prep,
            mlflow_info,
            lineage,
            scored,
        )
        artifacts = _store_version(config, paths, metadata)
    with phases.phase("verify"):
        verification = verify(
            artifacts,
            storage_root=config.storage_root,
            client=client,
            tracking_uri=config.tracking_uri,
        )
    document = documents.manifest(
        version=config.version,
        retrainjob=_owner(config),
        metrics=result.metrics,
        artifacts=list(artifacts),
        verification=verification,
        mlflow=mlflow_info,
        lineage=lineage,
        evaluation=scored,
    )
    with phases.phase("publish"):
        _publish(tracker, run_ref, paths, document)
    return document
