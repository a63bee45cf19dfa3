"""Printer columns that hold a time in the future are strings, never dates.

kubectl prints a `date` column as the time's age ("5m"), and a time still to come as
`<invalid>`: the ModelLine's NEXT RUN read `<invalid>` for every line with a schedule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CRDS = [ROOT / "crds" / "retrainer.dev_modellines.yaml", ROOT / "charts" / "retrainer" / "crds"]
# Status times that are in the future when they are shown.
FUTURE_TIMES = {".status.nextRunTime"}


def columns(path: Path) -> list[dict[str, Any]]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [c for v in doc["spec"]["versions"] for c in v.get("additionalPrinterColumns", [])]


@pytest.mark.parametrize(
    "path",
    [CRDS[0], CRDS[1] / "retrainer.dev_modellines.yaml"],
    ids=["crds", "chart"],
)
def test_the_next_run_column_is_a_string_so_a_future_time_reads_as_a_time(path: Path) -> None:
    future = [c for c in columns(path) if c["jsonPath"] in FUTURE_TIMES]
    assert [c["name"] for c in future] == ["Next Run"]
    assert [c["type"] for c in future] == ["string"]
