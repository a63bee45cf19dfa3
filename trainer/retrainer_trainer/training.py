"""The Ultralytics adapter: offline setup, train or resume one run folder, per-epoch callbacks.

Everything that knows Ultralytics' internals (settings keys, metric names, checkpoint fields,
the resume rules) is here, so the pipeline only sees `train(...) -> TrainResult`. The run
folder lives on the claim (`<model>/runs/train/retrain_vN`), so a pod killed by SIGTERM
leaves `weights/last.pt` behind and the next pod resumes from it instead of starting over.

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

from retrainer_contract import layout
from retrainer_contract import metrics as metric_keys

from retrainer_trainer import logs
from retrainer_trainer.config import Training
from retrainer_trainer.errors import BadInput

__all__ = [
    "METRIC_KEYS",
    "EpochHook",
    "TrainResult",
    "checkpoint_state",
    "coerce_args",
    "device_for",
    "prepare",
    "read_results_csv",
    "standard_metrics",
    "train",
]

# Ultralytics' metric names -> the contract's (status.metrics, MLflow, spec.promotion.metric).
METRIC_KEYS = metric_keys.ULTRALYTICS
EpochHook = Callable[[int, int, dict[str, float]], None]


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


def checkpoint_state(last: Path) -> str:
    """`none`, `resumable`, `finished` (optimizer stripped, epoch -1) or `corrupt`."""
    if not last.is_file():
        return "none"
    import torch

    try:
        ckpt = torch.load(last, map_location="cpu", weights_only=False)
    except Exception:  # a pod killed mid-write leaves a truncated file
        return "corrupt"
    if not isinstance(ckpt, dict):
        return "corrupt"
    return "finished" if ckpt.get("epoch", -1) == -1 else "resumable"


def _best_metrics(best: Path) -> dict[str, float]:
    import torch

    ckpt = torch.load(best, map_location="cpu", weights_only=False)
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
    """Tells per-epoch validation apart from the final validation of best.pt.

    Ultralytics calls on_fit_epoch_end for both; only real epochs run on_train_epoch_end first.
    """

    def __init__(self, hook: EpochHook) -> None:
        self.hook = hook
        self.pending = False
        self.final: dict[str, float] = {}

    def train_epoch_end(self, trainer: Any) -> None:
        self.pending = True

    def fit_epoch_end(self, trainer: Any) -> None:
        metrics = standard_metrics(trainer.metrics or {})
        if self.pending:
            self.pending = False
            self.hook(int(trainer.epoch) + 1, int(trainer.epochs), metrics)
        else:
            self.final = metrics


def train(
    *,
    data_yaml: Path,
    base_model: str,
    paths: layout.VersionPaths,
    training: Training,
    device: str | list[int],
    on_epoch: EpochHook,
) -> TrainResult:
    """Train version N into its run folder, resuming or reusing what an earlier pod left."""
    from ultralytics import YOLO

    state = checkpoint_state(paths.last_checkpoint)
    logs.event("train.state", checkpoint=state, run=str(paths.run_dir))
    if state == "finished" and paths.training_run.is_file():
        return TrainResult(_best_metrics(paths.training_run), trained=False, resumed=False)
    if state in ("corrupt", "finished"):
        # A truncated last.pt, or a finished run that lost best.pt: start this version over.
        shutil.rmtree(paths.run_dir, ignore_errors=True)
        state = "none"
    callbacks = _Callbacks(on_epoch)
    if state == "resumable":
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
    model.add_callback("on_train_epoch_end", callbacks.train_epoch_end)
    model.add_callback("on_fit_epoch_end", callbacks.fit_epoch_end)
    logs.event("train.start", resume=state == "resumable", base=base_model, device=device)
    model.train(**kwargs)
    trainer = getattr(model, "trainer", None)
    final = callbacks.final or standard_metrics(getattr(trainer, "metrics", None) or {})
    if not final and paths.training_run.is_file():  # DDP: the parent process saw no callbacks
        final = _best_metrics(paths.training_run)
    if not paths.training_run.is_file():
        raise RuntimeError(f"training finished without {paths.training_run}")
    return TrainResult(final, trained=True, resumed=state == "resumable")
