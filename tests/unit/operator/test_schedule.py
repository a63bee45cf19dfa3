"""The schedule's decisions at chosen moments: no real waiting, no real cron."""

from __future__ import annotations

import datetime

import pytest
from retrainer_operator import schedule

UTC = datetime.UTC


def at(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=UTC)


DAILY_3 = {"cron": "0 3 * * *", "timeZone": "UTC"}


def test_nothing_is_due_before_the_first_slot_and_the_next_run_is_announced() -> None:
    decision = schedule.decide(DAILY_3, at("2026-11-30T02:00"), at("2026-11-30T01:00"), False)
    assert decision.slot is None
    assert decision.next_run == at("2026-11-30T03:00")


def test_a_slot_at_or_after_its_time_starts_once() -> None:
    decision = schedule.decide(DAILY_3, at("2026-11-30T03:00"), at("2026-11-30T01:00"), False)
    assert (decision.slot, decision.action) == (at("2026-11-30T03:00"), schedule.STARTED)
    again = schedule.decide(DAILY_3, at("2026-11-30T03:05"), decision.slot, False)
    assert again.slot is None  # handled: never twice
    assert again.next_run == at("2026-12-01T03:00")


def test_after_a_long_outage_only_the_newest_missed_slot_runs() -> None:
    decision = schedule.decide(DAILY_3, at("2026-12-07T10:00"), at("2026-11-30T03:00"), False)
    assert (decision.slot, decision.action) == (at("2026-12-07T03:00"), schedule.STARTED)


def test_a_slot_older_than_the_starting_deadline_is_missed_not_started() -> None:
    spec = {**DAILY_3, "startingDeadlineSeconds": 600}
    late = schedule.decide(spec, at("2026-11-30T03:11"), at("2026-11-29T03:00"), False)
    assert late.action == schedule.MISSED
    in_time = schedule.decide(spec, at("2026-11-30T03:09"), at("2026-11-29T03:00"), False)
    assert in_time.action == schedule.STARTED


def test_forbid_skips_a_slot_while_a_run_is_active_and_allow_starts_it() -> None:
    now, since = at("2026-11-30T03:00"), at("2026-11-29T03:00")
    assert schedule.decide(DAILY_3, now, since, True).action == schedule.SKIPPED
    allow = {**DAILY_3, "concurrencyPolicy": "Allow"}
    assert schedule.decide(allow, now, since, True).action == schedule.STARTED


def test_suspend_handles_slots_as_passed_and_announces_no_next_run() -> None:
    spec = {**DAILY_3, "suspend": True}
    decision = schedule.decide(spec, at("2026-11-30T03:00"), at("2026-11-29T03:00"), False)
    assert (decision.action, decision.next_run) == (schedule.SUSPENDED, None)


def test_the_time_zone_moves_the_slot_and_follows_daylight_saving() -> None:
    berlin = {"cron": "0 3 * * *", "timeZone": "Europe/Berlin"}
    winter = schedule.decide(berlin, at("2026-11-30T01:00"), at("2026-11-29T12:00"), False)
    assert winter.next_run == at("2026-11-30T02:00")  # 03:00 CET
    summer = schedule.decide(berlin, at("2026-07-01T00:00"), at("2026-06-30T12:00"), False)
    assert summer.next_run == at("2026-07-01T01:00")  # 03:00 CEST


def test_macros_expand_to_their_five_fields() -> None:
    assert schedule.expression("@daily") == "0 0 * * *"
    decision = schedule.decide(
        {"cron": "@hourly"}, at("2026-11-30T05:30"), at("2026-11-30T04:00"), False
    )
    assert decision.slot == at("2026-11-30T05:00")


@pytest.mark.parametrize(
    ("spec", "word"),
    [
        ({"cron": "0 25 * * *"}, "cron"),
        ({"cron": "0 3 * * *", "timeZone": "Mars/Olympus"}, "timeZone"),
    ],
)
def test_what_admission_missed_is_a_schedule_error_naming_the_field(
    spec: dict[str, str], word: str
) -> None:
    with pytest.raises(schedule.ScheduleError, match=word):
        schedule.decide(spec, at("2026-11-30T03:00"), at("2026-11-29T03:00"), False)


def test_the_slot_key_is_utc_to_the_minute() -> None:
    berlin = datetime.datetime(
        2026, 11, 30, 3, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=1))
    )
    assert schedule.slot_key(berlin) == "202611300200"
