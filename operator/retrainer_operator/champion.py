"""Who the champion of a model line is, behind one small interface.

The operator reads the champion when it starts a training Job (the trainer scores the new
version against it on the holdout) and moves it when the new version is verified and its
evaluation says Promoted (or NoChampion with promoteFirstVersion). A move is a
compare-and-set on the champion the evaluation was compared with: `ChampionMoved` when the
record names another one by the time of the write, so no version is ever crowned uncompared.
The record lives in the ModelLine (line_champions.py); MLflow's alias mirrors it
(champion_mirror.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from retrainer_contract import evaluation

__all__ = [
    "Champion",
    "ChampionError",
    "ChampionFactory",
    "ChampionMoved",
    "ChampionStore",
]


@dataclass(frozen=True)
class Champion:
    """The version in production for a model line, and its score on the metric it won by.

    `metrics` (all its holdout metrics) and `reason` (Promoted, or NoChampion for a line's
    first champion) are filled by the operator when it promotes; `current()` may leave them
    empty. `registered_model` and `alias`: where the MLflow alias that mirrors it lives."""

    version: int
    metric: str
    value: float
    metrics: Mapping[str, float] = field(default_factory=dict)
    reason: str = evaluation.PROMOTED
    registered_model: str | None = None
    alias: str | None = None


class ChampionError(RuntimeError):
    """The champion cannot be read or moved now (transient: the operator retries)."""


class ChampionMoved(Exception):
    """The record names another champion than the one the move was compared with."""

    def __init__(self, expected: int | None, current: int | None) -> None:
        self.expected = expected
        self.current = current
        super().__init__(f"expected {expected}, found {current}")


class ChampionStore(Protocol):
    """Where the champion of a model line (namespace, model) is kept."""

    def current(self, namespace: str, model: str) -> Champion | None:
        """The champion, or None when the line has none yet; ChampionError when unknown."""

    def promote(self, namespace: str, model: str, champion: Champion, expected: int | None) -> None:
        """Make `champion` the line's champion if the champion is still `expected` (None: no
        champion); idempotent. ChampionMoved when it is not, ChampionError when it failed."""


# Given a RetrainJob (its body), the store of its line's champion; None: no spec.promotion.
ChampionFactory = Callable[[Mapping[str, Any]], ChampionStore | None]
