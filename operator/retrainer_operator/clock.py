"""The operator's clock: real time, or a time a test sets, so schedules are tested without
waiting for cron; and the two time-driven helpers the line reconciler shares.

A named hook like `faults.point`: when RETRAINER_CLOCK_FILE names a file, `now()` is the ISO
8601 time written in it (the test advances it); otherwise it is the system's UTC time. The
chart never sets the variable.

- `Shared`: one reading shared by every caller for a few seconds (a namespace's RetrainJobs or
  training Jobs, listed once for all the lines of the namespace instead of once per line).
- `Alarm`: one thread that calls back at given moments (a schedule's next slot), instead of a
  timer per object; `alarm()` is the operator's one instance.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import heapq
import logging
import os
import threading
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Generic, TypeVar

__all__ = ["ENV", "Alarm", "Shared", "alarm", "faked", "now"]

ENV = "RETRAINER_CLOCK_FILE"
T = TypeVar("T")
logger = logging.getLogger("retrainer.operator")


def faked() -> bool:
    """True when a test sets the time (RETRAINER_CLOCK_FILE): it has nothing to do with the
    real time an `Alarm` waits for."""
    return bool(os.environ.get(ENV))


def now() -> datetime.datetime:
    """The current time, timezone-aware (UTC unless the clock file says otherwise)."""
    path = os.environ.get(ENV)
    if path:
        text = Path(path).read_text(encoding="utf-8").strip()
        value = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)
    return datetime.datetime.now(datetime.UTC)


class Shared(Generic[T]):
    """Readings by key, each reused for `max_age` seconds (real time, monotonic).

    Concurrent callers of a stale key share one fetch: while it runs they get the stale
    reading (or wait for it, when there is none yet). `forget` drops a key, so the caller that
    just changed what it reads sees its change at once."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._entries: dict[Hashable, tuple[float, T]] = {}
        self._fetching: dict[Hashable, threading.Lock] = {}

    def get(self, key: Hashable, max_age: float, fetch: Callable[[], T]) -> T:
        return self.reading(key, max_age, fetch)[1]

    def peek(self, key: Hashable) -> T | None:
        """The reading kept for `key`, whatever its age, without fetching (None: none)."""
        with self._guard:
            entry = self._entries.get(key)
        return None if entry is None else entry[1]

    def reading(self, key: Hashable, max_age: float, fetch: Callable[[], T]) -> tuple[float, T]:
        """As `get`, with when the reading returned was started (monotonic): what changed
        before that moment is in it."""
        with self._guard:
            lock = self._fetching.setdefault(key, threading.Lock())
            entry = self._entries.get(key)
        if entry is not None and time.monotonic() - entry[0] < max_age:
            return entry
        if entry is None:
            lock.acquire()
        elif not lock.acquire(blocking=False):
            return entry  # another caller is fetching: the last reading meanwhile
        try:
            with self._guard:
                entry = self._entries.get(key)
            if entry is not None and time.monotonic() - entry[0] < max_age:
                return entry
            started = time.monotonic()
            value = fetch()
            with self._guard:
                self._entries[key] = (started, value)
            return started, value
        finally:
            lock.release()

    def forget(self, key: Hashable) -> None:
        with self._guard:
            self._entries.pop(key, None)

    def amend(self, key: Hashable, change: Callable[[T], None]) -> None:
        """Apply `change` to the reading kept for `key`, if any (the caller changed what it
        reads and knows how), keeping its age."""
        with self._guard:
            entry = self._entries.get(key)
            if entry is not None:
                change(entry[1])

    def clear(self) -> None:
        with self._guard:
            self._entries.clear()


class Alarm:
    """Calls `callback()` at (or just after) a wall-clock moment, from `workers` threads of its
    own: one thread waits for the earliest moment of all. A key holds one moment: setting it
    again moves it. Callbacks that raise are logged."""

    def __init__(self, workers: int = 8) -> None:
        self._workers = workers
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Hashable]] = []
        self._due: dict[Hashable, tuple[float, int, Callable[[], object]]] = {}
        self._serial = 0
        self._thread: threading.Thread | None = None

    def set(self, key: Hashable, at: datetime.datetime, callback: Callable[[], object]) -> None:
        """Call `callback` at `at` (replacing what `key` had)."""
        with self._cond:
            when = at.timestamp()
            current = self._due.get(key)
            if current is not None and current[0] == when:
                self._due[key] = (when, current[1], callback)
                return
            self._serial += 1
            self._due[key] = (when, self._serial, callback)
            heapq.heappush(self._heap, (when, self._serial, key))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="retrainer-alarm", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def cancel(self, key: Hashable) -> None:
        with self._cond:
            self._due.pop(key, None)

    def pending(self) -> dict[Hashable, float]:
        """Each key's moment (seconds since the epoch)."""
        with self._cond:
            return {k: v[0] for k, v in self._due.items()}

    def _next(self) -> Callable[[], object]:
        with self._cond:
            while True:
                while self._heap:
                    when, serial, key = self._heap[0]
                    current = self._due.get(key)
                    if current is None or current[1] != serial:
                        heapq.heappop(self._heap)  # moved or cancelled
                        continue
                    wait = when - time.time()
                    if wait <= 0:
                        heapq.heappop(self._heap)
                        del self._due[key]
                        return current[2]
                    break
                self._cond.wait(min(wait, 60.0) if self._heap else 60.0)

    def _run(self) -> None:
        with concurrent.futures.ThreadPoolExecutor(self._workers, "retrainer-alarm") as pool:
            while True:
                pool.submit(self._call, self._next())

    @staticmethod
    def _call(callback: Callable[[], object]) -> None:
        try:
            callback()
        except Exception as error:  # the periodic pass tries again
            logger.warning("alarm callback failed: %r", error)


_alarm = Alarm()


def alarm() -> Alarm:
    """The operator's one Alarm."""
    return _alarm
