"""A Retrainer version as an MLflow model anyone can load: images in, detections out.

    model = mlflow.pyfunc.load_model("models:/shapes@champion")
    model.predict(["a.jpg", "b.jpg"])  # one row per detection

The trainer logs this file as the code of each version's logged model ("models from code":
MLflow copies the file into the model and runs it when the model is loaded) with the version's
weights as the artifact `weights`. It therefore imports nothing of Retrainer, only MLflow,
pandas and, once the model is loaded, Ultralytics: whoever loads the model needs the model's
recorded requirements (ultralytics, torch), never Retrainer, and no Kubernetes.

`predict` takes image paths or URLs, numpy arrays (height x width x 3, BGR as OpenCV reads
them), PIL images, a list of those, or a DataFrame whose `image` column (else its first column)
holds them. It returns one row per detection: the image (its path, or its position in the input
for an array), the class id and name, the confidence and the box in pixels (x1, y1, x2, y2). An
image with no detection adds no row. The model config (`conf`, `imgsz`, `device`) sets the
threshold, image size and device: `mlflow.pyfunc.load_model(uri, model_config={"conf": 0.5})`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel

__all__ = ["COLUMNS", "WEIGHTS", "Detector", "detections", "images_of"]

# The artifact holding the version's weights (its best.pt), as the trainer logs it.
WEIGHTS = "weights"
# What predict returns, one row per detection.
COLUMNS = ("image", "class_id", "class_name", "confidence", "x1", "y1", "x2", "y2")
# Ultralytics' own predict defaults; the trainer records the version's training imgsz.
DEFAULT_CONF = 0.25
DEFAULT_IMGSZ = 640


def _one(value: Any) -> bool:
    """True when `value` is one image rather than a collection of them."""
    if isinstance(value, str | Path):
        return True
    ndim = getattr(value, "ndim", None)
    if ndim is not None:  # a numpy array: one image (HxWxC or HxW), else a batch of them
        return int(ndim) <= 3
    return hasattr(value, "getpixel")  # a PIL image


def images_of(model_input: Any) -> list[tuple[str, Any]]:
    """(name, source) of each image in `model_input`: a path is named by itself, anything else
    by its position in the input."""
    if isinstance(model_input, pd.DataFrame):
        if model_input.empty:
            return []
        column = "image" if "image" in model_input.columns else model_input.columns[0]
        items: Iterable[Any] = model_input[column].tolist()
    elif isinstance(model_input, pd.Series):
        items = model_input.tolist()
    elif isinstance(model_input, dict):  # a serving request's {"image": [...]}
        items = model_input.get("image") or next(iter(model_input.values()), [])
    elif _one(model_input):
        items = [model_input]
    else:
        items = list(model_input)
    found = []
    for index, item in enumerate(items):
        if isinstance(item, Path):
            item = str(item)
        found.append((item if isinstance(item, str) else str(index), item))
    return found


def detections(image: str, result: Any) -> list[dict[str, Any]]:
    """The rows of one Ultralytics result (its `boxes` and `names`)."""
    boxes = result.boxes
    if boxes is None:
        return []
    names = result.names or {}
    rows = []
    for xyxy, conf, cls in zip(
        boxes.xyxy.tolist(), boxes.conf.tolist(), boxes.cls.tolist(), strict=True
    ):
        class_id = int(cls)
        x1, y1, x2, y2 = (float(v) for v in xyxy)
        rows.append(
            {
                "image": image,
                "class_id": class_id,
                "class_name": str(names.get(class_id, class_id)),
                "confidence": float(conf),
                "x1": x1,
                "y1": y1,
                "x2": x2,
                "y2": y2,
            }
        )
    return rows


class Detector(PythonModel):
    """Ultralytics YOLO behind MLflow's pyfunc interface."""

    # predict takes paths, arrays, PIL images and DataFrames as they are: no schema is inferred
    # from its (absent) type hints, and MLflow is told not to ask for them.
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        from ultralytics import YOLO

        config = dict(context.model_config or {})
        self.conf = float(config.get("conf", DEFAULT_CONF))
        self.imgsz = int(config.get("imgsz", DEFAULT_IMGSZ))
        self.device = config.get("device") or None  # "": Ultralytics picks (GPU 0 if any)
        self.model = YOLO(context.artifacts[WEIGHTS], task="detect")

    # model_input has no type hint on purpose: MLflow would infer a schema from one and
    # convert or refuse the inputs predict takes.
    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        rows: list[dict[str, Any]] = []
        for name, source in images_of(model_input):
            results = self.model.predict(
                source, conf=self.conf, imgsz=self.imgsz, device=self.device, verbose=False
            )
            for result in results:
                rows.extend(detections(name, result))
        return pd.DataFrame(rows, columns=list(COLUMNS))


set_model(Detector())
