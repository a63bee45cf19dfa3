"""The promotion gates: the bootstrap interval's lower bound, regression sets, class drops."""

from __future__ import annotations

from typing import Any

import pytest
from retrainer_contract import evaluation, evidence, gates

HOLDOUT = {"uri": "datasets/shapes-holdout"}


def policy(**raw: Any) -> evaluation.Policy:
    return evaluation.Policy.from_spec({"metric": "mAP50", "holdout": HOLDOUT, **raw})


def scores(version: int, value: float, **per_class: float) -> evaluation.Scores:
    return evaluation.Scores(
        version, {"mAP50": value}, {name: {"mAP50": v} for name, v in per_class.items()}
    )


def interval(low: float, high: float, observed: float = 0.05) -> gates.Interval:
    return gates.Interval("mAP50", 0.95, 1000, 7, observed, low, high)


def scored_set(name: str, ours: float, theirs: float, tolerance: float = 0.0, **classes: Any):
    ours_c = {k: {"mAP50": v[0]} for k, v in classes.items()}
    theirs_c = {k: {"mAP50": v[1]} for k, v in classes.items()}
    return gates.SetResult(
        gates.RegressionSet(name, f"s3://data/{name}", tolerance),
        {"mAP50": ours},
        {"mAP50": theirs},
        ours_c,
        theirs_c,
        "ab" * 32,
        20,
    )


def decided(
    pol: evaluation.Policy,
    ours: evaluation.Scores,
    theirs: evaluation.Scores,
    found: gates.Interval,
    sets: list[gates.SetResult],
) -> dict[str, Any]:
    """The evaluation document of the decision on these numbers, as the trainer writes it."""
    return evaluation.document(
        policy=pol,
        holdout_sha256="c" * 64,
        holdout_images=32,
        imgsz=64,
        challenger=ours,
        champion=theirs,
        verdict=evaluation.decide(pol, ours, theirs, found, sets),
        evaluated_at="2026-12-06T10:00:00Z",
        interval=found,
        sets=sets,
    )


def test_better_by_the_point_estimate_but_an_interval_through_zero_is_not_significant() -> None:
    verdict = evaluation.decide(
        policy(confidence=0.95), scores(2, 0.52), scores(1, 0.50), interval(-0.03, 0.07, 0.02)
    )
    assert (verdict.decision, verdict.cause) == (evaluation.REJECTED, gates.NOT_SIGNIFICANT)
    assert "95% interval of the mAP50 improvement [-0.0300, +0.0700]" in verdict.reason
    assert "1000 paired resamples, seed 7" in verdict.reason


def test_a_lower_bound_above_the_margin_is_promoted_and_the_reason_names_the_interval() -> None:
    verdict = evaluation.decide(
        policy(confidence=0.95, minImprovement=0.01),
        scores(2, 0.70),
        scores(1, 0.40),
        interval(0.2, 0.4, 0.3),
    )
    assert verdict.decision == evaluation.PROMOTED, verdict.reason
    assert "[+0.2000, +0.4000]" in verdict.reason


@pytest.mark.parametrize(("low", "decision"), [(0.009, "Rejected"), (0.01, "Promoted")])
def test_the_lower_bound_must_clear_the_absolute_margin(low: float, decision: str) -> None:
    verdict = evaluation.decide(
        policy(confidence=0.9, minImprovement=0.01),
        scores(2, 0.6),
        scores(1, 0.4),
        interval(low, 0.3),
    )
    assert verdict.decision == decision


def test_the_lower_bound_must_clear_the_relative_margin_too() -> None:
    # 10% of 0.4 = 0.04: a lower bound of 0.03 is not enough, though the estimate is.
    verdict = evaluation.decide(
        policy(confidence=0.9, minRelativeImprovement=0.1),
        scores(2, 0.6),
        scores(1, 0.4),
        interval(0.03, 0.3),
    )
    assert verdict.cause == gates.NOT_SIGNIFICANT and "at least 0.0400" in verdict.reason


def test_with_confidence_and_no_recorded_interval_nothing_is_promoted() -> None:
    verdict = evaluation.decide(policy(confidence=0.95), scores(2, 0.9), scores(1, 0.1))
    assert verdict.cause == gates.NOT_SIGNIFICANT


def test_without_confidence_the_interval_is_not_a_gate() -> None:
    verdict = evaluation.decide(policy(), scores(2, 0.52), scores(1, 0.50), interval(-0.1, 0.1))
    assert verdict.decision == evaluation.PROMOTED


def test_no_champion_means_no_gates() -> None:
    unreadable = gates.SetResult(
        gates.RegressionSet("old", "s3://d/old", 0.0), {}, {}, {}, {}, error="gone"
    )
    verdict = evaluation.decide(policy(confidence=0.95), scores(1, 0.3), None, None, [unreadable])
    assert verdict.decision == evaluation.NO_CHAMPION


def test_forgetting_on_a_regression_set_beyond_its_tolerance_is_regressed() -> None:
    sets = [scored_set("old", 0.30, 0.60, tolerance=0.05), scored_set("other", 0.59, 0.60, 0.02)]
    verdict = evaluation.decide(policy(), scores(2, 0.8), scores(1, 0.5), None, sets)
    assert (verdict.decision, verdict.cause) == (evaluation.REJECTED, gates.REGRESSED)
    assert "regression set old: mAP50 0.3000 is below the champion's 0.6000 by 0.3000" in (
        verdict.reason
    )
    assert "other" not in verdict.reason  # within its tolerance


def test_a_drop_within_tolerance_is_promoted() -> None:
    sets = [scored_set("old", 0.58, 0.60, tolerance=0.02)]
    assert evaluation.decide(policy(), scores(2, 0.8), scores(1, 0.5), None, sets).decision == (
        evaluation.PROMOTED
    )


def test_an_unreadable_set_rejects_whatever_else_holds() -> None:
    gone = gates.SetResult(
        gates.RegressionSet("old", "s3://d/old", 0.0), {}, {}, {}, {}, error="NoSuchBucket"
    )
    verdict = evaluation.decide(
        policy(confidence=0.95),
        scores(2, 0.6),
        scores(1, 0.5),
        interval(-0.1, 0.2),
        [gone, scored_set("x", 0.1, 0.5)],
    )
    assert verdict.cause == gates.SET_UNAVAILABLE  # the most specific of the three causes
    for part in ("could not be read: NoSuchBucket", "not significant", "regression set x"):
        assert part in verdict.reason


def test_every_class_that_dropped_too_far_is_listed_on_holdout_and_sets() -> None:
    sets = [scored_set("old", 0.6, 0.6, circle=(0.2, 0.7), square=(0.69, 0.7))]
    verdict = evaluation.decide(
        policy(maxClassRegression=0.05),
        scores(2, 0.8, circle=0.9, square=0.5, triangle=0.0),
        scores(1, 0.5, circle=0.8, square=0.6, triangle=0.1),
        None,
        sets,
    )
    assert verdict.cause == gates.CLASS_REGRESSED
    listed = {(r["set"], r["class"]) for r in verdict.class_regressions}
    assert listed == {("holdout", "square"), ("holdout", "triangle"), ("old", "circle")}
    assert "3 class(es)" in verdict.reason


def test_a_class_the_challenger_no_longer_scores_counts_as_zero() -> None:
    found = gates.class_regressions("holdout", "mAP50", {}, {"circle": {"mAP50": 0.3}}, 0.1)
    assert found == [
        {"set": "holdout", "class": "circle", "challenger": 0.0, "champion": 0.3, "drop": 0.3}
    ]


def test_the_document_keeps_the_evidence_and_the_operator_rereads_it() -> None:
    pol = policy(confidence=0.95, maxClassRegression=0.1)
    sets = [scored_set("old", 0.3, 0.6)]
    ours, theirs, found = scores(2, 0.6, a=0.5), scores(1, 0.5, a=0.5), interval(0.01, 0.2)
    doc = decided(pol, ours, theirs, found, sets)
    assert doc["cause"] == gates.REGRESSED
    assert doc["confidence"] == found.to_dict()
    assert gates.interval_of(doc) == found
    assert gates.set_results_of(doc) == sets
    assert doc["maxClassRegression"] == 0.1 and doc["classRegressions"] == []
    again = evaluation.decide(pol, ours, theirs, gates.interval_of(doc), gates.set_results_of(doc))
    assert (again.decision, again.cause) == (doc["decision"], doc["cause"])


def test_previous_holdouts_are_inherited_from_champion_to_champion() -> None:
    champion_doc = {
        "holdoutUri": "s3://d/holdout-2025",
        "regressionSets": [
            {
                "name": "holdout-2024",
                "uri": "s3://d/holdout-2024",
                "tolerance": 0.01,
                "origin": gates.ORIGIN_PREVIOUS_HOLDOUT,
            },
            {"name": "night", "uri": "s3://d/night", "tolerance": 0.0, "origin": gates.ORIGIN_SPEC},
        ],
    }
    inherited = gates.inherited_sets(champion_doc, 0.02)
    assert [(s.uri, s.tolerance) for s in inherited] == [
        ("s3://d/holdout-2025", 0.02),
        ("s3://d/holdout-2024", 0.01),
    ]
    pol = policy(regressionSets=[{"uri": "s3://d/night", "tolerance": 0.03}])
    chosen = pol.effective_sets(inherited)
    assert [s.uri for s in chosen] == ["s3://d/night", "s3://d/holdout-2025", "s3://d/holdout-2024"]
    assert chosen[0].name == "night" and chosen[0].tolerance == 0.03
    # The current holdout is never its own regression set; opting out keeps the spec's only.
    same = evaluation.Policy.from_spec(
        {"metric": "mAP50", "holdout": {"uri": "s3://d/holdout-2025"}}
    )
    assert [s.uri for s in same.effective_sets(inherited)] == ["s3://d/holdout-2024"]
    assert policy(keepPreviousHoldouts=False).effective_sets(inherited) == ()


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"confidence": 0.5}, "spec.promotion.confidence"),
        ({"confidence": 0.999}, "spec.promotion.confidence"),
        ({"confidence": 1}, "spec.promotion.confidence"),
        ({"resamples": 10}, "spec.promotion.resamples"),
        ({"seed": -1}, "spec.promotion.seed"),
        ({"maxClassRegression": -0.1}, "spec.promotion.maxClassRegression"),
        ({"regressionSets": [{"uri": "s3://d/a", "tolerance": -0.01}]}, "regressionSets[0]"),
        ({"regressionSets": [{"uri": f"s3://d/{i}"} for i in range(9)]}, "at most 8"),
        ({"regressionSets": [{"tolerance": 0.1}]}, "regressionSets[0].uri"),
    ],
)
def test_bad_gate_values_are_refused_naming_the_field(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(evaluation.PolicyError, match=field.replace("[", r"\[").replace("]", r"\]")):
        policy(**raw)


def test_the_evidence_table_has_a_row_per_check_and_describe_lines() -> None:
    pol = policy(confidence=0.95, maxClassRegression=0.05)
    sets = [scored_set("old", 0.3, 0.6, circle=(0.2, 0.7))]
    gone = gates.SetResult(
        gates.RegressionSet("lost", "s3://d/lost", 0.0), {}, {}, {}, {}, error="x"
    )
    ours, theirs = scores(2, 0.6, circle=0.5), scores(1, 0.5, circle=0.5)
    found = interval(-0.01, 0.2)
    doc = decided(pol, ours, theirs, found, [*sets, gone])
    got = evidence.table(doc)
    assert got["columns"] == list(evidence.COLUMNS)
    rows = [dict(zip(got["columns"], r, strict=True)) for r in got["data"]]
    assert [(r["check"], r["set"], r["class"]) for r in rows] == [
        ("holdout", "holdout", ""),
        ("class", "holdout", "circle"),
        ("regression", "old", ""),
        ("class", "old", "circle"),
        ("regression", "lost", ""),
    ]
    assert rows[0]["low"] == -0.01 and rows[0]["passed"] is False
    assert rows[2]["passed"] is False and rows[3]["passed"] is False and rows[1]["passed"] is True
    assert rows[4]["note"] == "unavailable: x"
    text = evidence.lines(doc)
    assert text[0].startswith("95% interval of the mAP50 improvement: [-0.0100, +0.2000]")
    assert (
        "regression set old: 0.3000 vs champion 0.6000 (-0.3000, tolerance 0.0000) FAILED" in text
    )
    assert "class circle on old: 0.2000 vs champion 0.7000 (-0.5000) FAILED" in text
