"""The trainer's pipeline: inputs -> dataset -> corrections -> train -> store -> verify.

Each step is a call into one adapter module; this module only decides the order and what goes
into the metadata, the MLflow run and the manifest. It is safe to run again for the same
version: a verified version is left untouched (exit 0 at once), a finished training is not
repeated, an interrupted one resumes, and the MLflow run is found again by its tags.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from retrainer_operator import locations

from retrainer_trainer import corrections, dataset, inputs, logs, manifest, store, training
from retrainer_trainer.config import Config
from retrainer_trainer.tracking import TAG_BASE, TAG_MODEL, TAG_UID, TAG_VERSION, RunRef, Tracker
from retrainer_trainer.verify import verify

__all__ = ["Prepared", "prepare_data", "run"]

DATASET_METADATA = "retraining_dataset_metadata.json"
CORRECTIONS_APPLIED = "corrections_applied.json"


class Prepared:
    """The working dataset and what is known about it before training."""

    def __init__(self, data_yaml: Path, metadata: dict[str, Any], applied: dict[str, Any]) -> None:
        self.data_yaml = data_yaml
        self.metadata = metadata
        self.applied = applied


def prepare_data(config: Config, resolved: inputs.Inputs) -> Prepared:
    """Validate the dataset, merge the corrections, write the two dataset documents."""
    layout = dataset.load(resolved.dataset)
    work = config.workdir / "dataset"
    dataset.make_working_copy(layout, work)
    dataset_sha = dataset.tree_sha256(resolved.dataset)
    corrections_sha = ""
    applied: list[corrections.Correction] = []
    if resolved.corrections is not None:
        corrections_sha = dataset.tree_sha256(resolved.corrections)
        applied = corrections.apply(resolved.corrections, work, layout.names)
        dataset.validate_working_copy(work, layout.names)
    data_yaml = dataset.write_data_yaml(work, layout.names)
    counted = dataset.counts(work, layout.names)
    metadata = {
        "datasetUri": config.spec.dataset_uri,
        "datasetSha256": dataset_sha,
        "correctionsUri": config.spec.corrections_uri or "",
        "correctionsSha256": corrections_sha,
        "correctionsApplied": len(applied),
        "names": list(layout.names),
        "splits": counted,
    }
    applied_doc = corrections.applied_document(applied, corrections_sha)
    store.atomic_write_json(config.workdir / DATASET_METADATA, metadata)
    store.atomic_write_json(config.workdir / CORRECTIONS_APPLIED, applied_doc)
    logs.event(
        "dataset.ready",
        train=counted["train"]["samples"],
        val=counted["val"]["samples"],
        corrections=len(applied),
        sha256=dataset_sha,
    )
    return Prepared(data_yaml, metadata, applied_doc)


def _minio(config: Config) -> Any:
    if not config.s3_endpoint:
        return None
    return locations.minio_client(config.s3_endpoint, config.access_key, config.secret_key)


def _already_done(
    config: Config, paths: locations.VersionPaths, client: Any
) -> dict[str, Any] | None:
    """The manifest of a version that completed and still verifies, else None."""
    if not paths.manifest.is_file() or not paths.production.is_file():
        return None
    try:
        document = locations.read_json(paths.manifest)
    except (OSError, ValueError):
        return None
    checks = verify(
        document.get("artifacts", []),
        claim_root=config.storage_root,
        client=client,
        tracking_uri=config.tracking_uri,
    )
    if not checks["verified"]:
        failed = [c["name"] for c in checks["checks"] if not c["ok"]]
        logs.event("manifest.stale", failed=failed)
        return None
    document["verification"] = checks
    return document


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


def _upload_all(
    tracker: Tracker, run: RunRef, config: Config, paths: locations.VersionPaths, prep: Prepared
) -> None:
    # The quick-access copy already has the versioned name: upload it as models/retrained_vN.pt.
    tracker.upload(run.run_id, paths.quick_access, "models")
    for plot in sorted(paths.run_dir.glob("*.png")):
        tracker.upload(run.run_id, plot, "plots")
    for name in (DATASET_METADATA, CORRECTIONS_APPLIED):
        tracker.upload(run.run_id, config.workdir / name, "")
    tracker.upload(run.run_id, prep.data_yaml, "")


def _register(
    tracker: Tracker, config: Config, run: RunRef, metrics: dict[str, float]
) -> dict[str, Any]:
    spec = config.spec
    info: dict[str, Any] = {
        "experimentId": run.experiment_id,
        "runId": run.run_id,
        "runUrl": run.url,
    }
    if not spec.registered_model:
        return info
    version = tracker.register(spec.registered_model, run.run_id, f"{run.artifact_uri}/models")
    info["registeredModelVersion"] = version
    if spec.promotion is not None:
        value = metrics.get(spec.promotion.metric, 0.0)
        passed = value >= spec.promotion.minimum
        logs.event(
            "promotion",
            metric=spec.promotion.metric,
            value=value,
            minimum=spec.promotion.minimum,
            passed=passed,
        )
        if passed:
            tracker.set_alias(spec.registered_model, spec.promotion.alias, version)
        info["promoted"] = passed
    return info


def _backfill_epochs(tracker: Tracker, run: RunRef, paths: locations.VersionPaths) -> None:
    """Log epochs that results.csv has and MLflow lacks.

    Callbacks do not run under DDP (training happens in child processes), and a SIGTERM can
    land between an epoch's checkpoint and its MLflow call; results.csv has them all.
    """
    logged = tracker.logged_steps(run.run_id, "epoch")
    for row in training.read_results_csv(paths.run_dir):
        step = int(row["epoch"])
        if step not in logged:
            tracker.log_metrics(run.run_id, step, row)
            logs.event("epoch.backfill", epoch=step)


def run(config: Config) -> dict[str, Any]:
    """Produce and verify version N; returns its manifest. Raises TrainerError/BadInput.

    Order matters: inputs are checked before MLflow is contacted, and models/ is written only
    after training and the uploads succeeded.
    """
    spec = config.spec
    paths = locations.VersionPaths.for_version(config.storage_root, spec.model, config.version)
    config.workdir.mkdir(parents=True, exist_ok=True)
    logs.event("start", model=spec.model, version=config.version, name=config.name)
    client = _minio(config)
    done = _already_done(config, paths, client)
    if done is not None:
        logs.event("done.already", version=config.version)
        return done

    # Input checks first: bad input is reported (exit 3) whatever state MLflow is in.
    resolved = inputs.resolve(config)
    prep = prepare_data(config, resolved)
    training.prepare(config.workdir)
    training.coerce_args(spec.training.extra_args)
    device = training.device_for(spec.gpus)
    tracker = Tracker(config.tracking_uri)
    tracker.ping()

    tags = {
        TAG_UID: config.uid or f"{config.namespace}/{config.name}",
        TAG_MODEL: spec.model,
        TAG_VERSION: str(config.version),
        TAG_BASE: resolved.base.label,
    }
    run_ref = tracker.open_run(spec.experiment, tags, f"{spec.model}-v{config.version}")
    tracker.log_params(run_ref.run_id, _params(config, resolved.base, device))

    def on_epoch(epoch: int, epochs: int, metrics: dict[str, float]) -> None:
        tracker.log_metrics(run_ref.run_id, epoch, {**metrics, "epoch": epoch})
        logs.event("epoch", epoch=epoch, epochs=epochs, **metrics)

    started = time.monotonic()
    result = training.train(
        data_yaml=prep.data_yaml,
        base_model=resolved.base.source,
        paths=paths,
        training=spec.training,
        device=device,
        on_epoch=on_epoch,
    )
    _backfill_epochs(tracker, run_ref, paths)
    logs.event("train.done", seconds=round(time.monotonic() - started, 1), **result.metrics)

    store.write_quick_access(paths)
    _upload_all(tracker, run_ref, config, paths, prep)
    mlflow_info = _register(tracker, config, run_ref, result.metrics)
    weights = store.artifact(locations.PRODUCTION, "", paths.training_run)
    lineage = {
        "baseModel": resolved.base.label,
        **({"baseVersion": resolved.base.version} if resolved.base.version else {}),
        "baseSha256": resolved.base.sha256 or "",
        "datasetSha256": prep.metadata["datasetSha256"],
        "correctionsSha256": prep.metadata["correctionsSha256"],
        "trainSamples": prep.metadata["splits"]["train"]["samples"],
        "valSamples": prep.metadata["splits"]["val"]["samples"],
        "correctionsApplied": prep.metadata["correctionsApplied"],
    }
    claim = config.claim_name
    mlflow_uri = locations.mlflow_weights_uri(run_ref.artifact_uri, config.version)
    metadata = {
        "model": spec.model,
        "version": config.version,
        "retrainJob": {"name": config.name, "namespace": config.namespace, "uid": config.uid},
        "createdAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "weights": {"sha256": weights["sha256"], "size": weights["size"]},
        "metrics": result.metrics,
        "lineage": lineage,
        "training": {**_params(config, resolved.base, device), "resumed": result.resumed},
        "dataset": prep.metadata,
        "mlflow": mlflow_info,
        "locations": {
            locations.PRODUCTION: paths.uri(claim, paths.production),
            locations.QUICK_ACCESS: paths.uri(claim, paths.quick_access),
            locations.TRAINING_RUN: paths.uri(claim, paths.training_run),
            locations.MLFLOW: mlflow_uri,
        },
    }
    store.write_models(paths, metadata)
    artifacts = [
        store.artifact(name, paths.uri(claim, path), path)
        for name, path in paths.claim_files().items()
    ]
    artifacts.append(
        locations.Artifact(
            name=locations.MLFLOW,
            uri=mlflow_uri,
            sha256=weights["sha256"],
            size=weights["size"],
        )
    )
    verification = verify(
        artifacts, claim_root=config.storage_root, client=client, tracking_uri=config.tracking_uri
    )
    document = manifest.build(
        version=config.version,
        metrics=result.metrics,
        artifacts=list(artifacts),
        verification=verification,
        mlflow=mlflow_info,
        lineage=lineage,
    )
    store.atomic_write_json(paths.manifest, document)
    tracker.upload(run_ref.run_id, paths.manifest, "")
    for check in verification["checks"]:
        logs.event("verify", name=check["name"], ok=check["ok"], message=check["message"])
    if not verification["verified"]:
        store.rollback(paths)
        tracker.finish(run_ref.run_id, ok=False)
        from retrainer_trainer.errors import TrainerError

        failed = [c["name"] for c in verification["checks"] if not c["ok"]]
        raise TrainerError(f"verification failed for {failed}: {json.dumps(verification)[:1500]}")
    tracker.finish(run_ref.run_id, ok=True)
    logs.event("done", version=config.version, verified=True, **result.metrics)
    return document
