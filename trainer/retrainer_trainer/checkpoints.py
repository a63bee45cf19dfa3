"""Every checkpoint the trainer reads itself or hands to Ultralytics as a base model goes here.

A checkpoint is a pickle, and unpickling runs whatever its globals say. So a base model's
globals are scanned (`picklescan`) before Ultralytics ever opens it, and a refused one is bad
input naming the field; the trainer's own reads (the epoch of last.pt, the metrics of best.pt)
unpickle with `weights_only=True`, admitting only globals the same scan allowed.

A failed read has two causes that must never be confused: the bytes are not a checkpoint
(`NotACheckpoint`: their structure proves it), or they could not be read or understood here
(an OSError such as EIO, a MemoryError, a torch or Ultralytics that cannot load them). Only
the first is evidence about the content; this module reports which it was and decides nothing.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from retrainer_trainer import picklescan
from retrainer_trainer.errors import BadInput, TrainerError
from retrainer_trainer.picklescan import NotACheckpoint

__all__ = [
    "FINISHED",
    "RESUMABLE",
    "NotACheckpoint",
    "UnsafeCheckpoint",
    "check_base",
    "class_names",
    "epoch_state",
    "load",
]

# What a last.pt says about its training: Ultralytics strips a finished run (epoch -1).
RESUMABLE = "resumable"
FINISHED = "finished"


class UnsafeCheckpoint(ValueError):
    """The checkpoint's pickle uses globals outside `picklescan.ALLOWED`."""

    def __init__(self, path: Path, uses: list[picklescan.Use]) -> None:
        self.uses = uses
        listed = ", ".join(f"{u.qualified} ({u.how})" for u in uses)
        super().__init__(f"{path.name} would import {listed} when unpickled")


def _scan(path: Path) -> list[picklescan.Use]:
    uses = picklescan.scan(path)
    refused = picklescan.unsafe(uses)
    if refused:
        raise UnsafeCheckpoint(path, refused)
    return uses


def check_base(path: Path, field: str, uri: str) -> None:
    """Refuse a base model whose pickle could run code when Ultralytics loads it (exit 3).

    Nothing is unpickled here: the scan reads opcodes only. A read error is infrastructure.
    """
    try:
        _scan(path)
    except UnsafeCheckpoint as error:
        first = error.uses[0]
        raise BadInput(
            f"{field}: {uri} is refused: loading it would import {first.qualified} ({first.how}), "
            "which real Ultralytics checkpoints never contain, and a pickle's globals run code. "
            "Fix: re-save the weights with a trusted Ultralytics (YOLO('in.pt').save('out.pt')) "
            "from a yolov8/yolo11/yolo26 detection model, or start from "
            "spec.baseModel.architecture",
            [f"{u.qualified} ({u.how})" for u in error.uses],
        ) from error
    except NotACheckpoint as error:
        raise BadInput(
            f"{field}: {uri} is not a PyTorch checkpoint ({error}); give a .pt saved by "
            "Ultralytics (a zip with data.pkl inside)"
        ) from error
    except OSError as error:
        raise TrainerError(f"{field}: cannot read {path}: {error}") from error


def load(path: Path) -> Any:
    """Unpickle a checkpoint with `weights_only=True`, its globals scanned and allowed first.

    Raises NotACheckpoint (the bytes are not one), UnsafeCheckpoint, and whatever reading or
    torch raises (OSError, MemoryError, RuntimeError, ...) unchanged, for the caller to judge.
    """
    uses = _scan(path)
    import torch

    # The scan allowed these (exact module and name); weights_only admits nothing else.
    admitted = [getattr(importlib.import_module(u.module), u.name) for u in uses]
    with torch.serialization.safe_globals(admitted):
        return torch.load(path, map_location="cpu", weights_only=True)


def epoch_state(path: Path) -> str:
    """RESUMABLE or FINISHED for a last.pt; NotACheckpoint when it holds no checkpoint dict."""
    ckpt = load(path)
    if not isinstance(ckpt, dict):
        raise NotACheckpoint(f"{path.name}: holds a {type(ckpt).__name__}, not a checkpoint")
    epoch = ckpt.get("epoch", -1)
    if epoch == -1:  # optimizer stripped: Ultralytics finished the run
        return FINISHED
    # Saved at the last epoch, stopped before Ultralytics' final strip (a SIGTERM then):
    # every epoch is trained, and Ultralytics refuses to resume it ("nothing to resume").
    planned = (ckpt.get("train_args") or {}).get("epochs")
    if isinstance(planned, int) and isinstance(epoch, int) and epoch + 1 >= planned:
        return FINISHED
    return RESUMABLE


def class_names(path: Path) -> tuple[str, ...] | None:
    """The class names a checkpoint's model predicts, in class-id order (None: it names none).

    A model's class ids mean these names, in this order; scoring it on a set whose data.yaml
    orders them otherwise compares different classes under one id.
    """
    ckpt = load(path)
    model = (ckpt.get("ema") or ckpt.get("model")) if isinstance(ckpt, dict) else None
    names = getattr(model, "names", None)
    if isinstance(names, dict) and names:
        try:
            return tuple(str(names[i]) for i in range(len(names)))
        except KeyError:
            return tuple(str(names[k]) for k in sorted(names))
    if isinstance(names, list | tuple) and names:
        return tuple(str(n) for n in names)
    return None
