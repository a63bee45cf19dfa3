"""The Ultralytics adapter: offline setup, train or resume one run folder, per-epoch callbacks.

Everything that knows Ultralytics' internals (settings keys, metric names, checkpoint fields,
the resume rules) is here, so the pipeline only sees `train(...) -> TrainResult`. The run
folder lives on the claim (`<model>/runs/train/retrain_vN`), so a pod killed by SIGTERM
leaves `weights/last.pt` behind and the next pod resumes from it instead of starting over:
but only from bytes that match what was recorded when Ultralytics wrote them (`runfolder`).

`prepare()` must run before the first `import ultralytics`: Ultralytics reads its config dir
and settings at import time.
"""

from __future__ import annotations

import csv
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrainer_contract import faults, layout
from retrainer_contract import metrics as metric_keys

from retrainer_trainer import bootstrap, checkpoints, labelcache, logs, preemption, runfolder
from retrainer_trainer.config import Training
from retrainer_trainer.errors import BadInput, CorruptedWeights

__all__ = [
    "METRIC_KEYS",
    "EpochHook",
    "Restore",
    "TrainResult",
    "ValResult",
    "coerce_args",
    "device_for",
    "prepare",
    "read_results_csv",
    "standard_metrics",
    "train",
    "validate",
]

# Ultralytics' metric names -> the contract's (status.metrics, MLflow, spec.promotion.metric).
METRIC_KEYS = metric_keys.ULTRALYTICS
EpochHook = Callable[[int, int, dict[str, float]], None]
# Puts best.pt back from a copy matching `plan.best`; False when no copy was ever stored.
Restore = Callable[[runfolder.Plan], bool]


@dataclass
class TrainResult:
    metrics: dict[str, float]
    trained: bool  # False when a finished run was found on the claim and reused
    resumed: bool
    epochs: list[dict[str, float]] = field(default_factory=list)


def _font_source() -> Path | None:
    try:
        import matplotlib
    except ImportError:
        return None
    font = Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
    return font if font.is_file() else None


def prepare(workdir: Path) -> Path:
    """Make Ultralytics work offline: own config dir, bundled font, integrations off.

    Ultralytics downloads Arial.ttf for its plots; a DejaVu font from matplotlib stands in.
    Its MLflow callback is switched off so each weight file is uploaded once, by us.
    """
    config_dir = workdir / "ultralytics-config"
    settings_dir = config_dir / "Ultralytics"
    settings_dir.mkdir(parents=True, exist_ok=True)
    font = _font_source()
    if font is not None:
        for name in ("Arial.ttf", "Arial.Unicode.ttf"):
            if not (settings_dir / name).exists():
                shutil.copyfile(font, settings_dir / name)
    os.environ["YOLO_CONFIG_DIR"] = str(config_dir)
    os.environ["YOLO_OFFLINE"] = "1"
    # Ultralytics then loads every checkpoint weights_only with its own allowlist, and builds a
    # model from a checkpoint's yaml without eval(): our scan (checkpoints.check_base) sees a
    # pickle's globals, not the strings in it that Ultralytics would otherwise eval.
    os.environ["ULTRALYTICS_SAFE_LOAD"] = "1"
    from ultralytics import settings  # after the environment is set

    off = {k: False for k, v in settings.items() if isinstance(v, bool)}
    dirs = {f"{d}_dir": str(workdir / d) for d in ("datasets", "weights", "runs")}
    settings.update({**off, **dirs})
    return config_dir


def device_for(gpus: int) -> str | list[int]:
    """spec.resources.gpus -> Ultralytics device: 0 is the CPU, n > 1 is DDP on n GPUs."""
    if gpus <= 0:
        return "cpu"
    return 0 if gpus == 1 else list(range(gpus))  # type: ignore[return-value]


def _coerce(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    lowered = value.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def coerce_args(extra: Mapping[str, Any]) -> dict[str, Any]:
    """extraArgs arrive as int-or-string (CRD); give Ultralytics real numbers and booleans.

    Unknown or ill-typed arguments are bad input, reported before any training starts.
    """
    args = {k: _coerce(v) for k, v in extra.items()}
    from ultralytics.cfg import get_cfg

    try:
        get_cfg(overrides=dict(args))
    except (SyntaxError, TypeError, ValueError) as error:
        raise BadInput(f"spec.training.extraArgs: {error}".strip()) from error
    return args


def standard_metrics(raw: Mapping[str, Any]) -> dict[str, float]:
    return {ours: round(float(raw[key]), 6) for key, ours in METRIC_KEYS.items() if key in raw}


def _best_metrics(best: Path) -> dict[str, float]:
    ckpt = checkpoints.load(best)
    return standard_metrics(ckpt.get("train_metrics") or {})


def read_results_csv(run_dir: Path) -> list[dict[str, float]]:
    """Per-epoch metrics from results.csv (used when callbacks cannot run, e.g. under DDP)."""
    path = run_dir / "results.csv"
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            row = {k.strip(): v for k, v in row.items() if k}
            metrics: dict[str, float] = {metric_keys.EPOCH: float(row.get(metric_keys.EPOCH, 0))}
            metrics.update(standard_metrics(row))
            rows.append(metrics)
    return rows


class _Callbacks:
    """Tells per-epoch validation apart from the final validation of best.pt, records the
    weights each time Ultralytics writes them, and holds SIGTERM while it does (preemption).

    Ultralytics calls on_fit_epoch_end for both; only real epochs run on_train_epoch_end first.
    An epoch runs: on_train_epoch_end, [validation: on_val_start .. on_val_end], the save
    (last.pt, maybe best.pt) and on_model_save, on_fit_epoch_end. SIGTERM is held from the end
    of the epoch's training to on_fit_epoch_end, except during validation, which writes nothing
    a resume reads.
    """

    def __init__(self, hook: EpochHook, paths: layout.VersionPaths) -> None:
        self.hook = hook
        self.paths = paths
        self.pending = False
        self.final: dict[str, float] = {}

    def train_epoch_start(self, trainer: Any) -> None:
        preemption.release()  # an epoch redone (NaN recovery) skipped its save and its end

    def train_epoch_end(self, trainer: Any) -> None:
        self.pending = True
        preemption.hold()  # no validation may come before this epoch's save

    def val_start(self, validator: Any) -> None:
        preemption.release()

    def val_end(self, validator: Any) -> None:
        preemption.hold()  # the save follows: last.pt and its record go together

    def model_save(self, trainer: Any) -> None:
        # Right after Ultralytics wrote last.pt (and maybe best.pt): record what they are. The
        # save after which the loop stops (`stop` is decided before it) is sealed: the final
        # phase that follows rewrites both files in place.
        if getattr(trainer, "stop", False):
            runfolder.seal(self.paths)
        else:
            runfolder.record(self.paths, finished=False)

    def train_end(self, trainer: Any) -> None:
        # After the final validation stripped both files: the record of the finished run.
        runfolder.record_finished(self.paths)

    def fit_epoch_end(self, trainer: Any) -> None:
        if not self.pending:  # the final validation: both files are stripped by now
            faults.point(faults.TRAINER_FINAL_VALIDATION)
        metrics = standard_metrics(trainer.metrics or {})
        if self.pending:
            self.pending = False
            self.hook(int(trainer.epoch) + 1, int(trainer.epochs), metrics)
        else:
            self.final = metrics
        # The save is recorded and the epoch logged: a SIGTERM held meanwhile stops here, and
        # the next pod resumes after this epoch with nothing logged twice or lost.
        preemption.release()


def _cannot_restore(plan: runfolder.Plan) -> bool:
    raise CorruptedWeights(
        f"{plan.file} has sha256 {plan.actual}, not {plan.best and plan.best.sha256} as "
        f"recorded in {plan.recorded_in} when it was written, and there is no copy to restore "
        "it from"
    )


def _reusable(paths: layout.VersionPaths, restore: Restore) -> runfolder.Plan:
    """The run folder's plan, best.pt of a finished run restored to its record first."""
    plan = runfolder.assess(paths)
    if plan.state == runfolder.FINISHED and plan.actual:
        logs.event(
            "weights.mismatch",
            file=plan.file,
            sha256=plan.actual,
            recorded=plan.best and plan.best.sha256,
            recordedIn=plan.recorded_in,
        )
        if not restore(plan):  # never stored anywhere: nothing relies on it, train again
            runfolder.move_aside(paths, "best.pt does not match its record, no copy was stored")
            return runfolder.Plan(runfolder.NONE)
    return plan


def _finish_final_phase(paths: layout.VersionPaths) -> None:
    """What Ultralytics' final phase does to the weights, for a run stopped before it was
    recorded done: strip the optimizer from last.pt, then from best.pt with last.pt's training
    results, with Ultralytics' own function; the metrics are best.pt's, from its epoch."""
    from ultralytics.utils.torch_utils import strip_optimizer

    ckpt = strip_optimizer(paths.last_checkpoint) if paths.last_checkpoint.is_file() else {}
    strip_optimizer(paths.training_run, updates={"train_results": ckpt.get("train_results")})
    runfolder.record_finished(paths)
    logs.event("train.final_phase_finished", run=str(paths.run_dir))


def train(
    *,
    data_yaml: Path,
    base_model: str,
    paths: layout.VersionPaths,
    training: Training,
    device: str | list[int],
    on_epoch: EpochHook,
    restore: Restore = _cannot_restore,
    on_start: Callable[[], None] | None = None,
) -> TrainResult:
    """Train version N into its run folder, resuming or reusing what an earlier pod left.

    What is left is reused only as recorded (runfolder.assess): a finished run's best.pt must
    match its record or be restored by `restore` from a copy that does. `on_start` is called
    once Ultralytics has set training up (its datasets, model and imports ready), right before
    the first epoch; not under DDP, where the callbacks run in child processes.
    """
    from ultralytics import YOLO

    plan = _reusable(paths, restore)
    state = plan.state
    logs.event("train.state", checkpoint=state, run=str(paths.run_dir))
    if state == runfolder.FINISHED:
        if plan.final_phase:
            _finish_final_phase(paths)
        return TrainResult(
            _best_metrics(paths.training_run), trained=False, resumed=plan.final_phase
        )
    callbacks = _Callbacks(on_epoch, paths)
    if state == runfolder.RESUMABLE:
        model = YOLO(str(paths.last_checkpoint))
        kwargs: dict[str, Any] = {"resume": True, "data": str(data_yaml), "device": device}
    else:
        model = YOLO(base_model)
        kwargs = {
            "data": str(data_yaml),
            "epochs": training.epochs,
            "imgsz": training.imgsz,
            "batch": training.batch,
            "patience": training.patience,
            "seed": training.seed,
            "device": device,
            "project": str(paths.train_dir),
            "name": paths.run_name,
            "exist_ok": True,
            "amp": device != "cpu",
            **coerce_args(training.extra_args),
        }
    model.add_callback("on_train_epoch_start", callbacks.train_epoch_start)
    model.add_callback("on_train_epoch_end", callbacks.train_epoch_end)
    model.add_callback("on_val_start", callbacks.val_start)
    model.add_callback("on_val_end", callbacks.val_end)
    model.add_callback("on_fit_epoch_end", callbacks.fit_epoch_end)
    model.add_callback("on_model_save", callbacks.model_save)
    model.add_callback("on_train_end", callbacks.train_end)
    if on_start is not None:
        model.add_callback("on_train_start", lambda _: on_start())
    # Ultralytics has built its datasets (and written their label caches) by this event.
    model.add_callback("on_pretrain_routine_end", lambda _: labelcache.record(data_yaml.parent))
    labelcache.scrub(data_yaml.parent)  # no label cache Retrainer did not record is unpickled
    logs.event("train.start", resume=state == runfolder.RESUMABLE, base=base_model, device=device)
    with preemption.training():
        model.train(**kwargs)
    labelcache.record(data_yaml.parent)  # again: under DDP the callbacks ran in child processes
    if not paths.training_run.is_file():
        raise RuntimeError(f"training finished without {paths.training_run}")
    # Again here: under DDP the callbacks ran in child processes, not in this one.
    runfolder.record_finished(paths)
    trainer = getattr(model, "trainer", None)
    final = callbacks.final or standard_metrics(getattr(trainer, "metrics", None) or {})
    if not final:  # DDP: the parent process saw no callbacks
        final = _best_metrics(paths.training_run)
    return TrainResult(final, trained=True, resumed=state == runfolder.RESUMABLE)


@dataclass
class ValResult:
    """One version scored on one set: overall and per-class metrics, its plots' folder, and the
    per-image matches they were counted from (for the paired bootstrap, `bootstrap`)."""

    metrics: dict[str, float]
    per_class: dict[str, dict[str, float]]
    save_dir: Path
    matches: bootstrap.Matches = field(default_factory=bootstrap.Matches)


def validate(
    *,
    weights: Path,
    data_yaml: Path,
    imgsz: int,
    conf: float,
    iou: float,
    device: str | list[int],
    save_dir: Path,
) -> ValResult:
    """Ultralytics validation of `weights` on the `val` split of `data_yaml`, plots included.

    Per class: precision, recall, mAP50 and mAP50_95 of each class the set has instances of.
    The run is single-device (a list of GPUs validates on the first) and deterministic.
    Each image's matches are kept as Ultralytics counts them (DetMetrics.stats, which it empties
    after the last batch), named by the image's path under the data.yaml's folder.
    """
    from ultralytics import YOLO

    if save_dir.exists():
        shutil.rmtree(save_dir)
    model = YOLO(str(weights))
    root = data_yaml.parent.resolve()
    seen: list[tuple[str, dict[str, Any]]] = []

    def keep_matches(validator: Any) -> None:
        update = validator.update_metrics

        def update_metrics(preds: Any, batch: dict[str, Any]) -> None:
            stats = validator.metrics.stats
            first = len(stats["tp"])
            update(preds, batch)  # one update_stats per image of the batch, in batch order
            for i, file in enumerate(batch["im_file"]):
                path = Path(os.path.abspath(file))  # its folder as Ultralytics resolved it
                name = path.relative_to(root).as_posix() if path.is_relative_to(root) else file
                seen.append((name, {key: values[first + i] for key, values in stats.items()}))

        validator.update_metrics = update_metrics

    model.add_callback("on_val_start", keep_matches)
    labelcache.scrub(data_yaml.parent)
    result = model.val(
        data=str(data_yaml),
        split="val",
        imgsz=imgsz,
        conf=conf,
        iou=iou,
        batch=8,
        device=device[0] if isinstance(device, list) else device,
        plots=True,
        project=str(save_dir.parent),
        name=save_dir.name,
        exist_ok=True,
        verbose=False,
    )
    labelcache.record(data_yaml.parent)
    names = result.names
    per_class: dict[str, dict[str, float]] = {}
    for i, cls in enumerate(result.ap_class_index):
        values = result.class_result(i)
        per_class[str(names[int(cls)])] = {
            key: round(float(value), 6) for key, value in zip(metric_keys.KEYS, values, strict=True)
        }
    matches = bootstrap.Matches(
        images=tuple(name for name, _ in seen),
        tp=tuple(stat["tp"] for _, stat in seen),
        conf=tuple(stat["conf"] for _, stat in seen),
        pred_cls=tuple(stat["pred_cls"] for _, stat in seen),
        target_cls=tuple(stat["target_cls"] for _, stat in seen),
        names=tuple(str(names[i]) for i in sorted(names)),
    )
    return ValResult(
        standard_metrics(result.results_dict), per_class, Path(result.save_dir), matches
    )
