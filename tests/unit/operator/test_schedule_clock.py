"""A clock that steps back never stalls the schedule: the operator's clock (clock.py, the file a
test sets) is stepped back past the last handled slot, and the next slot on the new clock
still starts, once. Each tick is what the line reconciler does: decide from lastScheduleTime,
record the handled slot."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest
from retrainer_operator import clock, schedule

UTC = datetime.UTC
HOURLY = {"cron": "0 * * * *", "timeZone": "UTC"}


def at(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=UTC)


class Line:
    """A line's schedule state across ticks: lastScheduleTime and the slots it started."""

    def __init__(self, spec: dict[str, Any], created: datetime.datetime) -> None:
        self.spec, self.created = spec, created
        self.last: datetime.datetime | None = None
        self.started: list[datetime.datetime] = []

    def tick(self) -> schedule.Decision:
        decision = schedule.decide(self.spec, clock.now(), self.last or self.created, False)
        if decision.slot is not None:
            if decision.action == schedule.STARTED:
                self.started.append(decision.slot)
            self.last = decision.slot
        return decision


@pytest.fixture
def set_clock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    path = tmp_path / "clock"
    monkeypatch.setenv(clock.ENV, str(path))

    def set_to(text: str) -> None:
        path.write_text(f"{text}Z", encoding="utf-8")

    return set_to


def test_a_clock_stepped_back_a_day_still_starts_the_next_slot(set_clock: Any) -> None:
    line = Line(HOURLY, at("2026-11-30T00:30"))
    set_clock("2026-11-30T03:00:05")
    line.tick()
    assert line.started == [at("2026-11-30T03:00")]

    set_clock("2026-11-29T05:10:00")  # fault point: the clock steps back a day
    for _ in range(3):
        line.tick()  # repeated ticks start nothing for the slots of the stepped-back past
    assert line.started == [at("2026-11-30T03:00")]

    set_clock("2026-11-29T06:00:05")
    decision = line.tick()
    assert line.started == [at("2026-11-30T03:00"), at("2026-11-29T06:00")]
    assert decision.next_run == at("2026-11-29T07:00")
    line.tick()
    assert len(line.started) == 2  # once


def test_a_step_back_before_the_next_slot_changes_nothing(set_clock: Any) -> None:
    line = Line(HOURLY, at("2026-11-30T00:30"))
    set_clock("2026-11-30T03:00:05")
    line.tick()
    set_clock("2026-11-30T02:59:50")  # a few seconds back: 03:00 is still the last slot handled
    assert line.tick().slot is None
    set_clock("2026-11-30T03:00:30")
    assert line.tick().slot is None  # 03:00 is not started twice
    set_clock("2026-11-30T04:00:05")
    line.tick()
    assert line.started == [at("2026-11-30T03:00"), at("2026-11-30T04:00")]


def test_a_suspended_line_resyncs_too_and_announces_nothing(set_clock: Any) -> None:
    line = Line({**HOURLY, "suspend": True}, at("2026-11-30T00:30"))
    line.last = at("2027-01-01T00:00")  # recorded under a clock a month ahead
    set_clock("2026-11-30T03:30:00")
    decision = line.tick()
    assert (decision.action, decision.next_run) == (schedule.RESYNCED, None)
    assert line.last == at("2026-11-30T03:00") and line.started == []
