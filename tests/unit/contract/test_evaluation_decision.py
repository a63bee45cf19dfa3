"""The promotion decision: thresholds, absolute and relative margins, per-class floors, ties."""

from __future__ import annotations

from typing import Any

import pytest
from retrainer_contract import evaluation

HOLDOUT = {"uri": "datasets/shapes-holdout"}


def policy(**raw: Any) -> evaluation.Policy:
    return evaluation.Policy.from_spec({"metric": "mAP50_95", "holdout": HOLDOUT, **raw})


def scores(version: int, value: float, **per_class: float) -> evaluation.Scores:
    return evaluation.Scores(
        version,
        {"mAP50_95": value, "mAP50": min(1.0, value + 0.2)},
        {name: {"mAP50_95": v} for name, v in per_class.items()},
    )


def test_a_clearly_better_challenger_is_promoted() -> None:
    verdict = evaluation.decide(policy(), scores(2, 0.60), scores(1, 0.40))
    assert verdict.decision == evaluation.PROMOTED
    assert "0.6000 beats champion v1 0.4000 by 0.2000" in verdict.reason


def test_a_worse_challenger_is_rejected_with_both_numbers_and_the_gap() -> None:
    verdict = evaluation.decide(policy(), scores(2, 0.38), scores(1, 0.43))
    assert verdict.decision == evaluation.REJECTED
    assert "mAP50_95 0.3800 is worse than champion v1 0.4300 by 0.0500" in verdict.reason


def test_a_tie_keeps_the_champion() -> None:
    verdict = evaluation.decide(policy(), scores(2, 0.43), scores(1, 0.43))
    assert verdict.decision == evaluation.REJECTED
    assert "ties champion v1" in verdict.reason


def test_a_tie_within_rounding_is_still_a_tie() -> None:
    verdict = evaluation.decide(policy(), scores(2, 0.43 + 1e-12), scores(1, 0.43))
    assert verdict.decision == evaluation.REJECTED


@pytest.mark.parametrize(
    ("challenger", "decision"),
    [(0.449, evaluation.REJECTED), (0.45, evaluation.PROMOTED), (0.46, evaluation.PROMOTED)],
)
def test_the_absolute_margin_is_a_minimum_gain(challenger: float, decision: str) -> None:
    verdict = evaluation.decide(policy(minImprovement=0.05), scores(2, challenger), scores(1, 0.4))
    assert verdict.decision == decision


def test_a_gain_below_the_absolute_margin_says_how_short_it_fell() -> None:
    verdict = evaluation.decide(policy(minImprovement=0.05), scores(2, 0.42), scores(1, 0.40))
    assert verdict.decision == evaluation.REJECTED
    assert "by only 0.0200; needs at least 0.4500, short by 0.0300" in verdict.reason


@pytest.mark.parametrize(
    ("challenger", "decision"),
    [(0.43, evaluation.REJECTED), (0.44, evaluation.PROMOTED)],
)
def test_the_relative_margin_is_a_fraction_of_the_champion(
    challenger: float, decision: str
) -> None:
    verdict = evaluation.decide(
        policy(minRelativeImprovement=0.1), scores(2, challenger), scores(1, 0.4)
    )
    assert verdict.decision == decision


def test_with_both_margins_the_larger_requirement_applies() -> None:
    both = policy(minImprovement=0.01, minRelativeImprovement=0.5)  # 0.4 * 1.5 = 0.6 > 0.41
    assert evaluation.required(both, 0.4) == pytest.approx(0.6)
    assert evaluation.decide(both, scores(2, 0.55), scores(1, 0.4)).decision == evaluation.REJECTED
    assert evaluation.decide(both, scores(2, 0.60), scores(1, 0.4)).decision == evaluation.PROMOTED


def test_the_minimum_applies_even_to_a_challenger_that_beats_the_champion() -> None:
    verdict = evaluation.decide(policy(minimum=0.5), scores(2, 0.45), scores(1, 0.3))
    assert verdict.decision == evaluation.REJECTED
    assert "mAP50_95 0.4500 is below the minimum 0.5000 by 0.0500" in verdict.reason


def test_a_class_below_its_floor_rejects_a_better_challenger() -> None:
    floors = policy(classFloors={"circle": 0.3, "square": 0.2})
    verdict = evaluation.decide(
        floors, scores(2, 0.6, circle=0.25, square=0.9), scores(1, 0.4, circle=0.5)
    )
    assert verdict.decision == evaluation.REJECTED
    assert verdict.reason == "class 'circle' mAP50_95 0.2500 is below its floor 0.3000 by 0.0500"


def test_a_floored_class_missing_from_the_holdout_cannot_pass() -> None:
    verdict = evaluation.decide(
        policy(classFloors={"triangle": 0.1}), scores(2, 0.6, circle=0.5), scores(1, 0.4)
    )
    assert verdict.decision == evaluation.REJECTED
    assert "class 'triangle' has no labelled instance in the holdout" in verdict.reason


def test_every_shortfall_is_reported_at_once() -> None:
    verdict = evaluation.decide(
        policy(minimum=0.5, classFloors={"circle": 0.3}),
        scores(2, 0.35, circle=0.1),
        scores(1, 0.4),
    )
    assert "below the minimum" in verdict.reason
    assert "class 'circle'" in verdict.reason
    assert "worse than champion v1" in verdict.reason


def test_the_first_version_gets_no_champion_and_its_score() -> None:
    verdict = evaluation.decide(policy(), scores(1, 0.31), None)
    assert verdict.decision == evaluation.NO_CHAMPION
    assert verdict.reason == "no champion yet: v1 scores mAP50_95 0.3100 on the holdout"


def test_the_first_version_still_has_to_meet_the_floors() -> None:
    verdict = evaluation.decide(policy(minimum=0.5), scores(1, 0.31), None)
    assert verdict.decision == evaluation.REJECTED


@pytest.mark.parametrize(
    ("first", "decision", "moves"),
    [
        (True, evaluation.NO_CHAMPION, True),
        (False, evaluation.NO_CHAMPION, False),
        (True, evaluation.PROMOTED, True),
        (True, evaluation.REJECTED, False),
    ],
)
def test_what_moves_the_champion(first: bool, decision: str, moves: bool) -> None:
    assert evaluation.should_promote(policy(promoteFirstVersion=first), decision) is moves


def test_the_policy_reads_the_crd_defaults() -> None:
    parsed = policy()
    assert (parsed.minimum, parsed.min_improvement, parsed.min_relative_improvement) == (0, 0, 0)
    assert parsed.promote_first_version is True
    assert parsed.alias == "champion"
    assert parsed.holdout_uri == HOLDOUT["uri"]


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        ({"metric": "accuracy", "holdout": HOLDOUT}, "spec.promotion.metric"),
        ({"metric": "mAP50"}, "spec.promotion.holdout.uri"),
        ({"metric": "mAP50", "holdout": HOLDOUT, "minImprovement": -0.1}, "minImprovement"),
        ({"metric": "mAP50", "holdout": HOLDOUT, "classFloors": {"a": "x"}}, "classFloors.a"),
    ],
)
def test_a_malformed_policy_names_the_field(raw: dict[str, Any], names: str) -> None:
    with pytest.raises(evaluation.PolicyError, match=names):
        evaluation.Policy.from_spec(raw)


def test_the_document_keeps_the_champions_score_on_another_holdout() -> None:
    doc = evaluation.document(
        policy=policy(),
        holdout_sha256="new",
        holdout_images=20,
        imgsz=160,
        challenger=scores(2, 0.5),
        champion=scores(1, 0.4),
        champion_sha256="abc",
        champion_recorded={"holdoutSha256": "old", "metrics": {"mAP50_95": 0.45}},
        verdict=evaluation.Verdict(evaluation.PROMOTED, "why"),
        evaluated_at="2026-11-30T21:00:00Z",
    )
    assert doc["holdoutChanged"] is True
    assert doc["champion"]["previous"] == {"holdoutSha256": "old", "metrics": {"mAP50_95": 0.45}}
    assert evaluation.champion_version(doc) == 1
