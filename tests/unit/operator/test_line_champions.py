"""The champion in the ModelLine: read as the trainer's opponent, moved once per promotion."""

from __future__ import annotations

from typing import Any

import pytest
from lines_fake import FakeLines
from retrainer_operator.champion import Champion, ChampionError
from retrainer_operator.line_champions import LineChampions
from retrainer_operator.versions import Conflict


class Lines(FakeLines):
    """FakeLines plus the status merge patch with a resourceVersion precondition."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, str]] = []
        self.conflicts = 0

    def patch_modelline_status(
        self, namespace: str, name: str, status: dict[str, Any], resource_version: str | None = None
    ) -> None:
        line = self.lines[(namespace, name)]
        if self.conflicts:
            self.conflicts -= 1
            line["metadata"]["resourceVersion"] = str(int(line["metadata"]["resourceVersion"]) + 1)
            raise Conflict("changed meanwhile")
        assert resource_version == line["metadata"]["resourceVersion"]
        current = line.setdefault("status", {})
        for key, value in status.items():
            current[key] = {k: v for k, v in value.items() if v is not None}
        line["metadata"]["resourceVersion"] = str(int(resource_version) + 1)

    def emit_event(
        self, body: dict[str, Any], reason: str, message: str, warning: bool = False
    ) -> None:
        self.events.append((reason, message))


def line_with(champion: dict[str, Any] | None) -> Lines:
    store = Lines()
    store.create_modelline("team", {"metadata": {"name": "shapes"}, "spec": {}})
    if champion is not None:
        store.lines[("team", "shapes")]["status"] = {"champion": champion}
    return store


def test_no_champion_yet_reads_as_none_and_a_named_one_with_its_metric() -> None:
    assert LineChampions(line_with(None), "mAP50", None).current("team", "shapes") is None  # type: ignore[arg-type]
    store = line_with({"version": 3, "metrics": {"mAP50": 0.7, "mAP50_95": 0.4}})
    found = LineChampions(store, "mAP50", None).current("team", "shapes")  # type: ignore[arg-type]
    assert found is not None and (found.version, found.value) == (3, 0.7)


def test_a_promotion_moves_the_record_with_previous_and_history_once() -> None:
    store = line_with({"version": 3, "metrics": {"mAP50": 0.7}, "history": [2, 1]})
    store.conflicts = 1  # someone else wrote the line between our read and our write
    champions = LineChampions(store, "mAP50", None)  # type: ignore[arg-type]
    champions.promote("team", "shapes", Champion(4, "mAP50", 0.8, {"mAP50": 0.8}, "Promoted"))
    champions.promote("team", "shapes", Champion(4, "mAP50", 0.8, {"mAP50": 0.8}, "Promoted"))
    record = store.lines[("team", "shapes")]["status"]["champion"]
    assert (record["version"], record["previous"], record["history"]) == (4, 3, [3, 2, 1])
    assert record["metrics"] == {"mAP50": 0.8}
    assert [reason for reason, _ in store.events] == ["Promoted"]  # once, not on the retry


def test_a_line_that_is_gone_is_a_transient_champion_error() -> None:
    champions = LineChampions(Lines(), "mAP50", None)  # type: ignore[arg-type]
    with pytest.raises(ChampionError, match="not found"):
        champions.promote("team", "shapes", Champion(1, "mAP50", 0.5))
