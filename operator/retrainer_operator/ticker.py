"""The progress ticker: re-reconciles every unfinished RetrainJob every progress interval.

Job events cover state changes; progress (epochs in MLflow) and retries after transient errors
need polling. One thread for the whole operator (instead of a Kopf timer per object, which
would also put a finalizer on every RetrainJob) keeps 1000 finished RetrainJobs free.

A RetrainJob that an event reconciled within the last half interval is left for the next
round: it was just read, and under a burst of RetrainJobs the ticker's redundant passes took
the apiserver time and the per-object locks the events needed. Every unfinished RetrainJob is
still reconciled at least every 1.5 intervals.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable

__all__ = ["Ticker"]

logger = logging.getLogger("retrainer.ticker")


class Ticker:
    """Calls `step(namespace, name)` for each tracked RetrainJob every `interval` seconds.

    `step` returns the phase; Succeeded/Failed (or None: deleted) stops tracking. `track` is
    called as each event-driven step starts (handlers.queued_step): a RetrainJob tracked anew
    is due at the next round, one tracked again (an event stepped it) only half an interval
    later.
    """

    def __init__(
        self,
        step: Callable[[str, str], str | None],
        interval: float,
        workers: int = 8,
    ) -> None:
        self._step = step
        self._interval = interval
        self._workers = workers
        # (namespace, name) -> when an event last stepped it (monotonic; 0.0: never).
        self._tracked: dict[tuple[str, str], float] = {}
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def track(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        with self._guard:
            self._tracked[key] = time.monotonic() if key in self._tracked else 0.0

    def untrack(self, namespace: str, name: str) -> None:
        with self._guard:
            self._tracked.pop((namespace, name), None)

    def tracked(self) -> set[tuple[str, str]]:
        with self._guard:
            return set(self._tracked)

    def due(self) -> set[tuple[str, str]]:
        """The tracked RetrainJobs no event stepped within the last half interval."""
        recent = time.monotonic() - self._interval / 2
        with self._guard:
            return {key for key, stepped in self._tracked.items() if stepped <= recent}

    def tick(self, pool: concurrent.futures.Executor) -> None:
        """One round over the tracked RetrainJobs that are due."""
        keys = self.due()
        futures = {pool.submit(self._step, ns, name): (ns, name) for ns, name in keys}
        for future in concurrent.futures.as_completed(futures):
            ns, name = futures[future]
            try:
                phase = future.result()
            except Exception as error:  # keep ticking: the next round retries
                logger.warning("tick failed retrainjob=%s/%s error=%r", ns, name, error)
                continue
            if phase in (None, "Succeeded", "Failed"):
                self.untrack(ns, name)

    def _run(self) -> None:
        with concurrent.futures.ThreadPoolExecutor(self._workers, "retrainer-tick") as pool:
            while not self._stop.wait(self._interval):
                self.tick(pool)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="retrainer-ticker", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
