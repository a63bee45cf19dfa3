"""The champion in the ModelLine: read as the trainer's opponent, moved once per promotion."""

from __future__ import annotations

from typing import Any

import pytest
from lines_fake import FakeLines
from retrainer_operator.champion import Champion, ChampionError, ChampionMoved
from retrainer_operator.line_champions import LineChampions
from retrainer_operator.line_status import Conflict


class Lines(FakeLines):
    """FakeLines plus Events; `conflicts` makes the next writes lose to another writer,
    `meanwhile` is what that other writer does to the status (a named point: between our read
    and our write)."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, str]] = []
        self.conflicts = 0
        self.meanwhile: dict[str, Any] | None = None

    def patch_modelline_status(
        self, namespace: str, name: str, status: dict[str, Any], resource_version: str | None = None
    ) -> None:
        line = self.lines[(namespace, name)]
        if self.conflicts:
            self.conflicts -= 1
            if self.meanwhile is not None:
                line["status"] = {**(line.get("status") or {}), **self.meanwhile}
            line["metadata"]["resourceVersion"] = str(int(line["metadata"]["resourceVersion"]) + 1)
            raise Conflict("changed meanwhile")
        super().patch_modelline_status(namespace, name, status, resource_version)

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
    champions.promote("team", "shapes", Champion(4, "mAP50", 0.8, {"mAP50": 0.8}, "Promoted"), 3)
    champions.promote("team", "shapes", Champion(4, "mAP50", 0.8, {"mAP50": 0.8}, "Promoted"), 3)
    record = store.lines[("team", "shapes")]["status"]["champion"]
    assert (record["version"], record["previous"], record["history"]) == (4, 3, [3, 2, 1])
    assert record["metrics"] == {"mAP50": 0.8}
    assert [reason for reason, _ in store.events] == ["Promoted"]  # once, not on the retry


def test_a_line_that_is_gone_is_a_transient_champion_error() -> None:
    champions = LineChampions(Lines(), "mAP50", None)  # type: ignore[arg-type]
    with pytest.raises(ChampionError, match="not found"):
        champions.promote("team", "shapes", Champion(1, "mAP50", 0.5), None)


def test_a_champion_moved_between_our_read_and_our_write_refuses_the_move() -> None:
    # Two verifications at once (or a `retrainer promote` in between): v4 was compared with v3,
    # but another writer crowns v5 after our read; our write conflicts, the re-read sees v5.
    store = line_with({"version": 3, "metrics": {"mAP50": 0.7}})
    store.conflicts = 1
    store.meanwhile = {"champion": {"version": 5, "metrics": {"mAP50": 0.9}}}
    champions = LineChampions(store, "mAP50", None)  # type: ignore[arg-type]
    with pytest.raises(ChampionMoved) as moved:
        champions.promote("team", "shapes", Champion(4, "mAP50", 0.8, {"mAP50": 0.8}), 3)
    assert (moved.value.expected, moved.value.current) == (3, 5)
    assert store.lines[("team", "shapes")]["status"]["champion"]["version"] == 5
    assert store.events == []


def test_a_first_champion_is_refused_when_the_line_got_one_meanwhile() -> None:
    store = line_with({"version": 2})  # e.g. rebuilt from evidence after the Job started
    champions = LineChampions(store, "mAP50", None)  # type: ignore[arg-type]
    with pytest.raises(ChampionMoved):
        champions.promote("team", "shapes", Champion(3, "mAP50", 0.1, {}, "NoChampion"), None)
    assert store.lines[("team", "shapes")]["status"]["champion"]["version"] == 2
