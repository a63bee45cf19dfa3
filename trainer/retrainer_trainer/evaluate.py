"""The evaluation step: the new version and the champion scored on the pinned holdout.

It runs in the training pod, after training and before the version is stored, so the
evidence goes into the metadata file and the manifest with the weights it judges. Both
versions are validated by Ultralytics on the same holdout working copy with the same image
size and thresholds; the champion is always re-scored (its production copy on the claim,
trusted only when its sha256 matches its metadata file), so a changed holdout never compares
numbers from two different sets: its last recorded evaluation is kept beside the new one.
The decision is the contract's (`evaluation.decide`); moving the champion is the operator's.
Under spec.promotion's gates the same step also scores both versions on each regression set
and computes the paired-bootstrap interval of the improvement (bootstrap.py) from the
per-image matches the holdout validation already made.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrainer_contract import documents, evaluation, evidence, gates, integrity, layout
from retrainer_contract import metrics as metric_keys

from retrainer_trainer import bootstrap, checkpoints, logs, regression, store, training
from retrainer_trainer.config import Config
from retrainer_trainer.dataset import FIELD as dataset_field
from retrainer_trainer.errors import BadInput, CorruptedWeights, TrainerError
from retrainer_trainer.holdout import FIELD as holdout_field
from retrainer_trainer.holdout import Holdout
from retrainer_trainer.tracker_process import TrackerProcess
from retrainer_trainer.tracking import RunRef

__all__ = [
    "Champion",
    "champion",
    "check_classes",
    "check_policy",
    "evaluate",
    "per_class_table",
    "preflight",
]

CHALLENGER = "challenger"
CHAMPION = "champion"
# The plots Ultralytics writes for a validation run that we keep in MLflow.
PLOTS = ("confusion_matrix.png", "confusion_matrix_normalized.png")


@dataclass(frozen=True)
class Champion:
    """The champion's production copy, checked against its metadata file."""

    version: int
    weights: Path
    sha256: str
    recorded: dict[str, Any]  # its own last evaluation: holdoutSha256 and metrics
    names: tuple[str, ...] | None = None  # the classes its weights predict, in id order


def champion(config: Config) -> Champion | None:
    """The champion named by the operator (None: there is none), its bytes verified."""
    number = config.champion_version
    if number is None:
        return None
    paths = layout.VersionPaths.for_version(config.storage_root, config.spec.model, number)
    where = f"champion v{number}"
    if not paths.production.is_file() or not paths.metadata.is_file():
        raise BadInput(
            f"{where}: {paths.production} or its metadata file is missing from the claim; "
            "restore it, or move the champion to a version that is there"
        )
    try:
        metadata = documents.read_json(paths.metadata)
        recorded = str(metadata["weights"]["sha256"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise BadInput(f"{where}: {paths.metadata} is not a metadata file ({error})") from error
    actual, _ = integrity.sha256_file(paths.production)
    if actual != recorded:
        raise CorruptedWeights(
            f"{where}: {paths.production} has sha256 {actual}, not {recorded} as its metadata "
            f"file {paths.metadata.name} records: it is not scored, nothing is promoted"
        )
    checkpoints.check_base(paths.production, "champion", f"v{number} ({paths.production})")
    own = metadata.get("evaluation") or {}
    recorded_eval = {
        "holdoutSha256": own.get("holdoutSha256", ""),
        "metrics": (own.get("challenger") or {}).get("metrics") or {},
    }
    try:
        names = checkpoints.class_names(paths.production)
    except OSError as error:
        raise TrainerError(f"{where}: cannot read {paths.production}: {error}") from error
    return Champion(number, paths.production, actual, recorded_eval, names)


def check_classes(
    current: Champion, holdout_names: tuple[str, ...], dataset_names: tuple[str, ...]
) -> None:
    """The champion's classes must be the holdout's and the dataset's, in the same order.

    Ultralytics scores by class id: a champion trained with `circle` as class 0, scored on a
    holdout whose data.yaml makes class 0 `square`, gets numbers that mean nothing, and the
    promotion decision would rest on them. BadInput names each spec field that differs.
    """
    if current.names is None:
        logs.event("champion.classes_unknown", version=current.version)
        return
    theirs = list(current.names)
    problems = [
        f"{field}: the {what}'s classes {list(names)} differ from champion v{current.version}'s "
        f"{theirs}"
        for field, what, names in (
            (holdout_field, "holdout", holdout_names),
            (dataset_field, "dataset", dataset_names),
        )
        if tuple(names) != current.names
    ]
    if problems:
        fields = ", ".join(p.split(":", 1)[0] for p in problems)
        raise BadInput(
            f"{fields}: classes differ from champion v{current.version}'s {theirs} (same names "
            "in the same order are needed to compare the two versions): give data.yaml "
            f"'names' in the champion's order, or move the champion to a version trained on "
            "these classes",
            problems,
        )


def preflight(config: Config, holdout: Holdout, dataset_names: tuple[str, ...]) -> Champion | None:
    """Before training: the champion that evaluate will score, checked (its bytes as
    recorded, its classes the holdout's and the dataset's), so a mismatch costs no GPU hour."""
    current = champion(config)
    if current is not None:
        check_classes(current, holdout.names, dataset_names)
    return current


def check_policy(policy: evaluation.Policy, holdout: Holdout) -> None:
    """Bad input found before training: class floors must name classes of the holdout."""
    unknown = sorted(set(policy.class_floors) - set(holdout.names))
    if unknown:
        raise BadInput(
            f"spec.promotion.classFloors names {unknown}, which are not classes of the "
            f"holdout ({', '.join(holdout.names)}); use the class names from data.yaml"
        )


def per_class_table(doc: dict[str, Any]) -> dict[str, Any]:
    """Per-class holdout scores of both versions in MLflow's table format (columns, data)."""
    columns = ["role", "version", "class", *metric_keys.KEYS]
    rows = []
    for role in (CHALLENGER, CHAMPION):
        scored = doc.get(role)
        if not scored:
            continue
        for name, values in sorted(scored["perClass"].items()):
            rows.append([role, scored["version"], name, *(values.get(k) for k in metric_keys.KEYS)])
    return {"columns": columns, "data": rows}


def _validate(
    config: Config, holdout: Holdout, weights: Path, role: str, device: Any
) -> training.ValResult:
    started = time.monotonic()
    result = training.validate(
        weights=weights,
        data_yaml=holdout.data_yaml,
        imgsz=config.spec.training.imgsz,
        conf=evaluation.DEFAULT_CONF,
        iou=evaluation.DEFAULT_IOU,
        device=device,
        save_dir=config.workdir / "evaluation" / role,
    )
    seconds = round(time.monotonic() - started, 1)
    logs.event("holdout.scored", role=role, seconds=seconds, **result.metrics)
    return result


def _record(
    tracker: TrackerProcess,
    run: RunRef,
    config: Config,
    doc: dict[str, Any],
    results: dict[str, Any],
) -> None:
    """Holdout metrics of both, the per-class table, both confusion matrices, the document."""
    scores = {metric_keys.holdout_key(k): v for k, v in doc[CHALLENGER]["metrics"].items()}
    if CHAMPION in doc:
        scores.update(
            {metric_keys.champion_holdout_key(k): v for k, v in doc[CHAMPION]["metrics"].items()}
        )
    tracker.log_metrics(run.run_id, 0, scores)
    tracker.log_metrics(run.run_id, 0, gate_metrics(doc))
    folder = config.workdir / "evaluation"
    table = folder / "per_class_ap.json"
    store.atomic_write_json(table, per_class_table(doc))
    tracker.upload(run.run_id, table, "evaluation")
    gates_table = folder / evidence.TABLE_NAME
    store.atomic_write_json(gates_table, evidence.table(doc))
    tracker.upload(run.run_id, gates_table, "evaluation")
    for role, result in results.items():
        for plot in PLOTS:
            if (result.save_dir / plot).is_file():
                tracker.upload(run.run_id, result.save_dir / plot, f"evaluation/{role}")
    summary = folder / "evaluation.json"
    summary.write_text(json.dumps(doc, indent=2, sort_keys=True), encoding="utf-8")
    tracker.upload(run.run_id, summary, "evaluation")


def gate_metrics(doc: dict[str, Any]) -> dict[str, float]:
    """The gates' numbers as run metrics: the interval's bounds, each regression set's scores."""
    out: dict[str, float] = {}
    interval = doc.get("confidence")
    if interval:
        out["promotion.improvement_low"] = float(interval["low"])
        out["promotion.improvement_high"] = float(interval["high"])
    metric = str(doc.get("metric") or "")
    for entry in doc.get("regressionSets") or []:
        if entry.get("error"):
            continue
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", str(entry["name"]))
        out[f"regression.{name}.{metric}"] = float(entry["challenger"]["metrics"].get(metric, 0))
        out[f"regression.{name}.champion.{metric}"] = float(
            entry["champion"]["metrics"].get(metric, 0)
        )
    return out


def _score_set(
    config: Config, i: int, loaded: regression.Loaded, weights: Path, theirs: Path, device: Any
) -> gates.SetResult:
    """One regression set scored with both versions (or the reason it could not be read)."""
    if loaded.copy is None:
        return gates.SetResult(loaded.set, {}, {}, {}, {}, error=loaded.error)
    ours = _validate(config, loaded.copy, weights, f"regression-{i}-{CHALLENGER}", device)
    champ = _validate(config, loaded.copy, theirs, f"regression-{i}-{CHAMPION}", device)
    return gates.SetResult(
        loaded.set,
        ours.metrics,
        champ.metrics,
        ours.per_class,
        champ.per_class,
        loaded.copy.sha256,
        loaded.copy.images,
    )


def _interval(
    policy: evaluation.Policy, results: dict[str, training.ValResult]
) -> gates.Interval | None:
    """The paired-bootstrap interval on the holdout (None: no confidence asked, no champion)."""
    if policy.confidence is None or CHAMPION not in results:
        return None
    started = time.monotonic()
    interval = bootstrap.paired_interval(
        results[CHALLENGER].matches,
        results[CHAMPION].matches,
        policy.metric,
        policy.confidence,
        policy.resamples,
        policy.seed,
    )
    logs.event(
        "holdout.bootstrap", seconds=round(time.monotonic() - started, 3), **interval.to_dict()
    )
    return interval


def evaluate(
    config: Config,
    holdout: Holdout,
    weights: Path,
    device: Any,
    tracker: TrackerProcess,
    run: RunRef,
    sets: tuple[regression.Loaded, ...] = (),
) -> dict[str, Any]:
    """Score version N (`weights`) and the champion on the holdout; the evaluation document."""
    policy = config.spec.promotion
    assert policy is not None  # the pipeline calls this only under spec.promotion
    current = champion(config)  # again: its bytes may have changed while this version trained
    if current is not None:  # the dataset's classes are the holdout's (holdout.load)
        check_classes(current, holdout.names, holdout.names)
    results = {CHALLENGER: _validate(config, holdout, weights, CHALLENGER, device)}
    ours = evaluation.Scores(
        config.version, results[CHALLENGER].metrics, results[CHALLENGER].per_class
    )
    theirs = None
    if current is not None:
        results[CHAMPION] = _validate(config, holdout, current.weights, CHAMPION, device)
        theirs = evaluation.Scores(
            current.version, results[CHAMPION].metrics, results[CHAMPION].per_class
        )
    interval = _interval(policy, results)
    scored_sets = (
        [
            _score_set(config, i, loaded, weights, current.weights, device)
            for i, loaded in enumerate(sets)
        ]
        if current is not None
        else []
    )
    verdict = evaluation.decide(policy, ours, theirs, interval, scored_sets)
    doc = evaluation.document(
        policy=policy,
        holdout_sha256=holdout.sha256,
        holdout_images=holdout.images,
        imgsz=config.spec.training.imgsz,
        challenger=ours,
        champion=theirs,
        champion_sha256=current.sha256 if current else "",
        champion_recorded=current.recorded if current else None,
        verdict=verdict,
        evaluated_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        interval=interval,
        sets=scored_sets,
    )
    _record(tracker, run, config, doc, results)
    logs.event("evaluation", decision=verdict.decision, cause=verdict.cause, reason=verdict.reason)
    return doc
