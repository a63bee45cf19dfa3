"""Which ModelLine ticks need no pass: a line is read at its tick only if something changed.

At 1,000 lines the tick's read of each line (every line interval) was most of what an idle
operator asked the apiserver. A pass that found nothing to do records why (`Quiet`): the
line's resourceVersion it read, when the listing of the line's RetrainJobs it used was made,
and the earliest moment something of the line falls due (the schedule's next slot, the next
corrections poll, the next champion check, and at the latest `RECHECK`). The line's next tick
is skipped, without a read, while all of these hold:

- the newest event of the line that Kopf's watch delivered has that same resourceVersion
  (compared for equality only, as the API asks; any write since, ours or anyone's, differs);
- no event of a RetrainJob of the line arrived since that listing was started (a listing
  started after an event was delivered shows the change);
- the clock has not gone back and the earliest due moment has not come.

Anything else, or nothing recorded, brings the full pass as before. Nothing here is durable:
a restart starts with nothing recorded, so every line's first tick is a full pass, which
rebuilds it; the watch's initial listing gives each line's resourceVersion. Two writers: the
watch handlers and the passes of different lines touch different keys, and a pass's record is
checked against what the watch says at the next tick, never trusted alone.
"""

from __future__ import annotations

import dataclasses
import datetime
import threading
import time

__all__ = ["RECHECK", "IdleLines", "Quiet"]

# An idle line is still read at least this often: what no event says (a Job or a Secret the
# pass looks at, MLflow moved by hand past the champion check) is looked at again.
RECHECK = datetime.timedelta(minutes=5)


@dataclasses.dataclass(frozen=True)
class Quiet:
    """A pass over a line that found nothing to do."""

    resource_version: str
    # When the listing of the line's RetrainJobs the pass used was started (monotonic).
    runs_listed_at: float
    # The pass's `now`, and the earliest moment something of the line falls due.
    passed_at: datetime.datetime
    until: datetime.datetime


class IdleLines:
    """What the watches said of each line and its RetrainJobs, and each line's last quiet pass."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._seen: dict[tuple[str, str], str] = {}
        self._runs_changed: dict[tuple[str, str], float] = {}
        self._quiet: dict[tuple[str, str], Quiet] = {}

    def seen(self, namespace: str, name: str, resource_version: str | None) -> None:
        """The watch delivered the line at `resource_version` (None: deleted)."""
        key = (namespace, name)
        with self._guard:
            if resource_version is None:
                self._seen.pop(key, None)
                self._quiet.pop(key, None)
                self._runs_changed.pop(key, None)
            else:
                self._seen[key] = resource_version

    def runs_changed(self, namespace: str, model: str) -> None:
        """The watch delivered an event of a RetrainJob of line `model`."""
        with self._guard:
            self._runs_changed[(namespace, model)] = time.monotonic()

    def record(self, namespace: str, name: str, quiet: Quiet | None) -> None:
        """The outcome of a pass over the line (None: it did something, or could not tell)."""
        with self._guard:
            if quiet is None:
                self._quiet.pop((namespace, name), None)
            else:
                self._quiet[(namespace, name)] = quiet

    def quiet(self, namespace: str, name: str, now: datetime.datetime) -> bool:
        """True when the line's tick needs no pass (see the module's docstring)."""
        key = (namespace, name)
        with self._guard:
            last = self._quiet.get(key)
            seen = self._seen.get(key)
            changed = self._runs_changed.get(key)
        if last is None or seen != last.resource_version:
            return False
        if changed is not None and changed >= last.runs_listed_at:
            return False
        return last.passed_at <= now < last.until
