"""Every ModelLine's periodic pass, from one clock instead of a Kopf timer per ModelLine.

A Kopf timer is an asyncio task per object that wakes on its own and takes an executor
thread: at 1,000 lines, a hundred passes a second competing with the RetrainJobs' passes for
the same threads, all lines of one start in step. Here one `clock.Alarm` holds each line's
next moment and its own few threads run the passes: a line's first pass is spread over the
interval by its name (so lines created together do not tick together), the next is set one
interval after a pass starts (never two passes of a line at once), and a line found gone is
dropped. Which lines exist is what the line watch's events tell the handlers (each line's
first sight, at its creation or at a start, and each change of its spec: first_sight.py):
nothing here outlives the process.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
import zlib
from collections.abc import Callable

from retrainer_operator import clock

__all__ = ["LineTicks"]

logger = logging.getLogger("retrainer.lines")


class LineTicks:
    """Calls `step(namespace, name)` for each tracked line every `interval` seconds; `step`
    returns False when the line is gone (it is then untracked)."""

    def __init__(self, step: Callable[[str, str], bool], interval: float, workers: int = 4) -> None:
        self._step = step
        self._interval = interval
        self._alarm = clock.Alarm(workers)
        self._guard = threading.Lock()
        self._tracked: set[tuple[str, str]] = set()

    def track(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        with self._guard:
            if key in self._tracked:
                return
            self._tracked.add(key)
        spread = (zlib.crc32(f"{namespace}/{name}".encode()) % 1000) / 1000 * self._interval
        self._set(key, time.time() + spread)

    def untrack(self, namespace: str, name: str) -> None:
        with self._guard:
            self._tracked.discard((namespace, name))
        self._alarm.cancel((namespace, name))

    def tracked(self) -> set[tuple[str, str]]:
        with self._guard:
            return set(self._tracked)

    def stop(self) -> None:
        for namespace, name in self.tracked():
            self.untrack(namespace, name)

    def _set(self, key: tuple[str, str], at: float) -> None:
        moment = datetime.datetime.fromtimestamp(at, tz=datetime.UTC)
        self._alarm.set(key, moment, lambda: self._tick(key))

    def _tick(self, key: tuple[str, str]) -> None:
        with self._guard:
            if key not in self._tracked:
                return
        started = time.time()
        alive = True
        try:
            alive = self._step(*key)
        except Exception as error:  # the next tick tries again
            logger.warning("line tick failed line=%s/%s error=%r", key[0], key[1], error)
        if not alive:
            self.untrack(*key)
            return
        with self._guard:
            if key not in self._tracked:
                return
        self._set(key, started + self._interval)
