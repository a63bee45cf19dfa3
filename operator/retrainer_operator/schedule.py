"""When a ModelLine's schedule starts a run: CronJob's rules as one pure function.

Cron parsing is cronsim's (maintained, no dependencies, time-zone aware through the standard
library's zoneinfo); this module only decides, for a moment `now`, which slot (if any) is due,
whether it is started, skipped (concurrency Forbid) or missed (past its starting deadline), and
when the next one comes. Only the newest unhandled slot counts, as with CronJob: an operator
down for a week starts one run, not seven. Every handled slot moves `lastScheduleTime`, so a
slot is decided once.

A clock that steps back (NTP, a VM restored from a snapshot, a clock set wrong and corrected)
leaves `lastScheduleTime` in the future; read as it stands, no slot would be due until the
clock caught up with it, which may be never for practical purposes. When the last handled slot
lies beyond the next slot, the record is wrong for this clock: the decision is RESYNCED to the
newest slot not after now (nothing starts for it: it may well have run before the step), so the
line records that one and the next slot starts as usual. A step back that lands before the
next slot needs nothing: the next slot still comes after the recorded one.
"""

from __future__ import annotations

import dataclasses
import datetime
import zoneinfo
from collections.abc import Mapping
from typing import Any

from cronsim import CronSim, CronSimError

__all__ = [
    "FORBID",
    "MACROS",
    "MISSED",
    "RESYNCED",
    "SKIPPED",
    "STARTED",
    "SUSPENDED",
    "Decision",
    "ScheduleError",
    "decide",
    "expression",
    "parse_time",
    "slot_key",
]

FORBID = "Forbid"
STARTED = "Started"
SKIPPED = "Skipped"
MISSED = "Missed"
SUSPENDED = "Suspended"
# The last handled slot was in the future (the clock stepped back): recorded as `slot`, the
# newest slot not after now, without starting anything.
RESYNCED = "Resynced"

# The macros CronJob accepts, as the five fields cronsim reads.
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_SECOND = datetime.timedelta(seconds=1)


class ScheduleError(ValueError):
    """The cron expression or the time zone cannot be used (admission let it through)."""


@dataclasses.dataclass(frozen=True)
class Decision:
    """What to do now. `slot`: the due slot (None: nothing due); `action`: STARTED, SKIPPED,
    MISSED, SUSPENDED or RESYNCED for that slot; `next_run`: the next slot after now (None
    while suspended)."""

    slot: datetime.datetime | None
    action: str
    next_run: datetime.datetime | None


def expression(cron: str) -> str:
    """The five cron fields of `cron` (a macro expanded)."""
    text = " ".join(cron.split())
    return MACROS.get(text, text)


def _zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as error:
        raise ScheduleError(
            f"spec.schedule.timeZone {name!r} is not a known IANA time zone: use a name such "
            "as UTC or Europe/Berlin"
        ) from error


def _iterate(cron: str, start: datetime.datetime, reverse: bool) -> CronSim:
    try:
        return CronSim(expression(cron), start, reverse=reverse)
    except CronSimError as error:
        raise ScheduleError(
            f"spec.schedule.cron {cron!r} cannot be read ({error}): use five fields such as "
            '"0 3 * * MON"'
        ) from error


def parse_time(value: str | None) -> datetime.datetime | None:
    if not value:
        return None
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def slot_key(slot: datetime.datetime) -> str:
    """The slot as its run's name part: UTC, to the minute (yyyymmddhhmm)."""
    return slot.astimezone(datetime.UTC).strftime("%Y%m%d%H%M")


def decide(
    schedule: Mapping[str, Any],
    now: datetime.datetime,
    since: datetime.datetime,
    active: bool,
) -> Decision:
    """The decision at `now` for `schedule` (spec.schedule), given the last handled slot or the
    line's creation (`since`) and whether a run of the line is active."""
    zone = _zone(str(schedule.get("timeZone") or "UTC"))
    cron = str(schedule.get("cron", ""))
    local_now = now.astimezone(zone)
    upcoming = next(_iterate(cron, local_now, reverse=False))
    latest = next(_iterate(cron, local_now + _SECOND, reverse=True), None)
    if latest is not None and since > upcoming:
        # The clock stepped back past the last handled slot: record the present one instead.
        return Decision(latest, RESYNCED, None if schedule.get("suspend") else upcoming)
    due = latest is not None and latest > since.astimezone(zone)
    if schedule.get("suspend"):
        # Suspended: a slot that comes is handled as passed, so resuming starts nothing
        # for it; no next run is announced.
        return Decision(latest if due else None, SUSPENDED if due else "", None)
    if latest is None or not due:
        return Decision(None, "", upcoming)
    deadline = schedule.get("startingDeadlineSeconds")
    if deadline is not None and (now - latest).total_seconds() > float(deadline):
        return Decision(latest, MISSED, upcoming)
    if active and str(schedule.get("concurrencyPolicy") or FORBID) == FORBID:
        return Decision(latest, SKIPPED, upcoming)
    return Decision(latest, STARTED, upcoming)
