"""The loadable model's own code: which inputs it takes, what a detection row holds, and that
it stands alone (it runs where Retrainer is not installed)."""

from __future__ import annotations

import ast
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from retrainer_trainer import pyfunc_model


@pytest.mark.parametrize(
    ("model_input", "names"),
    [
        ("a.png", ["a.png"]),
        (Path("a.png"), ["a.png"]),
        (["a.png", "b.png"], ["a.png", "b.png"]),
        (pd.DataFrame({"image": ["a.png", "b.png"]}), ["a.png", "b.png"]),
        (pd.DataFrame({"path": ["a.png"]}), ["a.png"]),
        (pd.Series(["a.png"]), ["a.png"]),
        ({"image": ["a.png"]}, ["a.png"]),
        (np.zeros((8, 8, 3), dtype=np.uint8), ["0"]),
        (np.zeros((2, 8, 8, 3), dtype=np.uint8), ["0", "1"]),
        ([np.zeros((8, 8, 3)), "b.png"], ["0", "b.png"]),
        (pd.DataFrame({"image": []}), []),
    ],
    ids=[
        "path",
        "pathlib",
        "paths",
        "frame",
        "frame-first-column",
        "series",
        "serving-dict",
        "array",
        "array-batch",
        "mixed",
        "empty",
    ],
)
def test_images_are_named_by_path_or_position(model_input: Any, names: list[str]) -> None:
    assert [name for name, _ in pyfunc_model.images_of(model_input)] == names


def boxes(rows: list[tuple[float, ...]]) -> Any:
    tensor = SimpleNamespace
    return SimpleNamespace(
        xyxy=tensor(tolist=lambda: [list(r[:4]) for r in rows]),
        conf=tensor(tolist=lambda: [r[4] for r in rows]),
        cls=tensor(tolist=lambda: [r[5] for r in rows]),
    )


def test_a_detection_row_has_the_image_class_confidence_and_box() -> None:
    result = SimpleNamespace(
        boxes=boxes([(1.0, 2.0, 30.5, 40.0, 0.9, 2.0)]), names={0: "circle", 2: "triangle"}
    )

    (row,) = pyfunc_model.detections("a.png", result)

    assert tuple(row) == pyfunc_model.COLUMNS
    assert row == {
        "image": "a.png",
        "class_id": 2,
        "class_name": "triangle",
        "confidence": 0.9,
        "x1": 1.0,
        "y1": 2.0,
        "x2": 30.5,
        "y2": 40.0,
    }
    assert pyfunc_model.detections("a.png", SimpleNamespace(boxes=None, names={})) == []


def test_the_model_code_imports_nothing_of_retrainer() -> None:
    tree = ast.parse(Path(pyfunc_model.__file__).read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported <= {
        "__future__",
        "collections",
        "pathlib",
        "typing",
        "mlflow",
        "pandas",
        "ultralytics",
    }
