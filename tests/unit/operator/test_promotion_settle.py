"""The operator moves the champion only on a Promoted (or first-version) evaluation, and only
when the champion it was compared with is still the champion."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from retrainer_contract import evaluation
from retrainer_operator import promotion
from retrainer_operator.champion import Champion, ChampionError, ChampionMoved
from retrainer_operator.conditions import Reason

POLICY = evaluation.Policy.from_spec(
    {"metric": "mAP50_95", "holdout": {"uri": "datasets/h"}, "minImprovement": 0.01}
)


class FakeStore:
    """A ChampionStore in memory; `down` makes every call fail like an MLflow outage."""

    def __init__(self, current: int | None = None, down: bool = False) -> None:
        self.champion = Champion(current, "mAP50_95", 0.4) if current else None
        self.down = down
        self.promoted: list[Champion] = []

    def current(self, namespace: str, model: str) -> Champion | None:
        if self.down:
            raise ChampionError("MLflow unreachable")
        return self.champion

    def promote(self, namespace: str, model: str, champion: Champion, expected: int | None) -> None:
        if self.down:
            raise ChampionError("MLflow unreachable")
        now = self.champion.version if self.champion else None
        if now == champion.version:
            return
        if now != expected:
            raise ChampionMoved(expected, now)
        self.promoted.append(champion)
        self.champion = champion


def doc(challenger: float, champion: float | None, decision: str | None = None) -> dict[str, Any]:
    ours = evaluation.Scores(2, {"mAP50_95": challenger})
    theirs = evaluation.Scores(1, {"mAP50_95": champion}) if champion is not None else None
    verdict = evaluation.decide(POLICY, ours, theirs)
    if decision:
        verdict = evaluation.Verdict(decision, "forged")
    return evaluation.document(
        policy=POLICY,
        holdout_sha256="h",
        holdout_images=10,
        imgsz=160,
        challenger=ours,
        champion=theirs,
        verdict=verdict,
        evaluated_at="2026-11-30T21:00:00Z",
    )


def settle(store: FakeStore, document: dict[str, Any], **policy: Any) -> promotion.Outcome:
    chosen = dataclasses.replace(POLICY, **policy)
    return promotion.settle(store, chosen, document, "team-a", "shapes", 2)


def test_a_promoted_version_becomes_the_champion() -> None:
    store = FakeStore(current=1)
    outcome = settle(store, doc(0.6, 0.4))
    assert (outcome.value, outcome.reason, outcome.promoted) == (True, Reason.PROMOTED, True)
    (champion,) = store.promoted
    assert (champion.version, champion.metric, champion.value) == (2, "mAP50_95", 0.6)
    assert (champion.metrics, champion.reason) == ({"mAP50_95": 0.6}, "Promoted")
    assert champion.alias == "champion"


def test_a_rejected_version_leaves_the_champion_and_says_why() -> None:
    store = FakeStore(current=1)
    outcome = settle(store, doc(0.3, 0.4))
    assert (outcome.value, outcome.reason) == (False, Reason.REJECTED)
    assert "0.3000 is worse than champion v1 0.4000 by 0.1000" in outcome.message
    assert store.promoted == []


def test_the_first_version_becomes_champion_when_the_policy_says_so() -> None:
    store = FakeStore()
    outcome = settle(store, doc(0.3, None))
    assert (outcome.value, outcome.reason) == (True, Reason.NO_CHAMPION)
    (champion,) = store.promoted
    assert (champion.version, champion.value, champion.reason) == (2, 0.3, "NoChampion")


def test_the_first_version_stays_unpromoted_when_the_policy_says_so() -> None:
    store = FakeStore()
    outcome = settle(store, doc(0.3, None), promote_first_version=False)
    assert (outcome.value, outcome.reason) == (False, Reason.NO_CHAMPION)
    assert "promoteFirstVersion is false" in outcome.message
    assert store.promoted == []


def test_a_champion_that_moved_during_evaluation_blocks_the_promotion() -> None:
    store = FakeStore(current=3)
    outcome = settle(store, doc(0.6, 0.4))
    assert (outcome.value, outcome.reason) == (False, Reason.CHAMPION_CHANGED)
    assert "compared with v1, but the champion is now v3" in outcome.message
    assert store.promoted == []


def test_promoting_again_after_a_crash_is_idempotent() -> None:
    store = FakeStore(current=2)  # the alias moved, the status patch did not happen
    outcome = settle(store, doc(0.6, 0.4))
    assert outcome.value is True
    assert store.promoted == []


def test_an_outage_leaves_the_decision_open() -> None:
    outcome = settle(FakeStore(current=1, down=True), doc(0.6, 0.4))
    assert (outcome.value, outcome.reason) == (None, Reason.CHAMPION_UNAVAILABLE)


@pytest.mark.parametrize(
    "document",
    [{}, doc(0.3, 0.4, decision=evaluation.PROMOTED)],
    ids=["no evaluation", "decision contradicts its numbers"],
)
def test_an_evaluation_that_does_not_hold_up_promotes_nothing(document: dict[str, Any]) -> None:
    store = FakeStore(current=1)
    outcome = settle(store, document)
    assert (outcome.value, outcome.reason) == (False, Reason.NOT_EVALUATED)
    assert store.promoted == []


def test_the_champion_version_for_the_trainer() -> None:
    assert promotion.champion_version(None, "team-a", "shapes") is None
    assert promotion.champion_version(FakeStore(), "team-a", "shapes") is None
    assert promotion.champion_version(FakeStore(current=4), "team-a", "shapes") == 4
