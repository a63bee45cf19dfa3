"""Real Ultralytics checkpoints for the trainer's unit tests (no tests here): the scan's
allowlist is checked against these, so they must be what Ultralytics itself writes."""

from __future__ import annotations

from pathlib import Path


def save_real_checkpoint(architecture: str, path: Path) -> Path:
    """`architecture` built from its yaml, run once as validation does, saved by Ultralytics."""
    import torch
    from ultralytics import YOLO

    model = YOLO(architecture)
    model.model.eval()
    with torch.no_grad():
        model.model(torch.zeros(1, 3, 64, 64))  # sets what a validated model carries
    model.save(str(path))
    return path
