"""Fixtures for the trainer's unit tests: a generated shapes dataset in a tmp folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from retrainer_demo import shapes


@pytest.fixture
def shapes_dataset(tmp_path: Path) -> Path:
    return shapes.generate_dataset(tmp_path / "shapes", seed=1, train=6, val=3)


@pytest.fixture
def shapes_corrections(tmp_path: Path) -> Path:
    return shapes.write_corrections(tmp_path / "corrections", seed=1)
