"""The champion record: promotions push the old champion back, rollbacks walk back."""

from __future__ import annotations

import pytest
from retrainer_contract import champion

NOW = "2026-01-01T00:00:00Z"


def test_the_first_promotion_has_no_previous_and_no_history() -> None:
    new = champion.move(None, 1, reason=champion.PROMOTED_BY_USER, since=NOW, metrics={"mAP50": 1})
    assert new == {
        "version": 1,
        "metrics": {"mAP50": 1.0},
        "since": NOW,
        "reason": "PromotedByUser",
        "previous": None,
        "history": [],
    }


def test_a_promotion_makes_the_old_champion_previous_and_newest_in_history() -> None:
    old = {"version": 3, "previous": 2, "history": [2, 1]}
    new = champion.move(old, 5, reason=champion.PROMOTED, since=NOW)
    assert (new["version"], new["previous"], new["history"]) == (5, 3, [3, 2, 1])


def test_rollbacks_walk_back_through_earlier_champions_then_stop() -> None:
    record = {"version": 5, "previous": 4, "history": [4, 3, 2]}
    walked = []
    while (target := champion.rollback_target(record)) is not None:
        record = champion.move(record, target, reason=champion.ROLLED_BACK, since=NOW)
        walked.append(record["version"])
    assert walked == [4, 3, 2]
    assert record["history"][0] == 3  # the champion just left is the newest earlier one
    assert set(record["history"]) == {3, 4, 5}


def test_promoting_an_earlier_champion_again_keeps_history_free_of_duplicates() -> None:
    old = {"version": 4, "previous": 2, "history": [2, 3]}
    new = champion.move(old, 2, reason=champion.PROMOTED_BY_USER, since=NOW)
    assert (new["previous"], new["history"]) == (4, [4, 3])


def test_history_keeps_at_most_twenty_versions() -> None:
    old = {"version": 100, "history": list(range(99, 60, -1))}
    new = champion.move(old, 101, reason=champion.PROMOTED, since=NOW)
    assert len(new["history"]) == champion.HISTORY_LIMIT and new["history"][0] == 100


@pytest.mark.parametrize(
    ("version", "reason"), [(0, champion.PROMOTED), (True, champion.PROMOTED), (2, "ByHand")]
)
def test_a_bad_version_or_reason_is_refused(version: int, reason: str) -> None:
    with pytest.raises(ValueError):
        champion.move({}, version, reason=reason, since=NOW)


def test_alias_and_registered_model_come_from_the_template() -> None:
    assert champion.alias({}) == "champion"
    assert champion.alias({"promotion": {"alias": "prod"}}) == "prod"
    assert champion.registered_model(None) is None
    assert champion.registered_model({"mlflow": {"registeredModel": "shapes"}}) == "shapes"


def test_the_merge_patch_leaves_nothing_of_the_old_record_behind() -> None:
    old = {"version": 2, "previous": 1, "history": [1], "metrics": {"mAP50": 0.3, "recall": 0.5}}
    new = champion.move(old, 1, reason=champion.ROLLED_BACK, since=NOW, metrics={"mAP50": 0.2})
    patch = champion.patch(old, new)
    assert patch["previous"] is None
    assert patch["metrics"] == {"mAP50": 0.2, "recall": None}


def test_a_move_is_a_compare_and_set_on_the_champion_it_was_compared_with() -> None:
    old = {"version": 3, "history": [2, 1], "registeredModel": "reg", "alias": "prod"}
    new = champion.compare_and_move(old, 3, 4, reason=champion.PROMOTED, since="t")
    assert new is not None and (new["version"], new["previous"]) == (4, 3)
    assert (new["registeredModel"], new["alias"]) == ("reg", "prod")  # kept from the record
    assert champion.compare_and_move(new, 3, 4, reason=champion.PROMOTED, since="t") is None
    with pytest.raises(
        champion.ChampionChanged, match="compared with v2, but the champion is now v3"
    ):
        champion.compare_and_move(old, 2, 4, reason=champion.PROMOTED, since="t")
    with pytest.raises(champion.ChampionChanged, match="compared with no champion"):
        champion.compare_and_move(old, None, 4, reason=champion.PROMOTED, since="t")
    first = champion.compare_and_move({}, None, 1, reason=champion.PROMOTED, since="t")
    assert first is not None and first["version"] == 1


def test_a_lost_record_is_rebuilt_from_the_alias_else_the_newest_tag() -> None:
    tagged = {1: ("2026-12-01T09:00:00.5Z", "Promoted"), 2: ("2026-12-01T10:00:00.1Z", "Promoted")}
    record = champion.rebuild(None, tagged, {2: {"mAP50": 0.5}}, "reg")
    assert record is not None
    assert (record["version"], record["previous"], record["history"]) == (2, 1, [1])
    assert (record["since"], record["metrics"], record["alias"]) == (
        "2026-12-01T10:00:00Z",
        {"mAP50": 0.5},
        "champion",
    )
    aliased = champion.rebuild(1, tagged, {})
    assert aliased is not None and (aliased["version"], aliased["history"]) == (1, [2])
    assert "registeredModel" not in aliased
    assert champion.rebuild(None, {}, {}) is None
