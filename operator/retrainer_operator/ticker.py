"""The progress ticker: re-reconciles every unfinished RetrainJob every progress interval.

Job events cover state changes; progress (epochs in MLflow) and retries after transient errors
need polling. One thread for the whole operator (instead of a Kopf timer per object, which
would also put a finalizer on every RetrainJob) keeps 1000 finished RetrainJobs free.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import Callable

__all__ = ["Ticker"]

logger = logging.getLogger("retrainer.ticker")


class Ticker:
    """Calls `step(namespace, name)` for each tracked RetrainJob every `interval` seconds.

    `step` returns the phase; Succeeded/Failed (or None: deleted) stops tracking.
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
        self._tracked: set[tuple[str, str]] = set()
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def track(self, namespace: str, name: str) -> None:
        with self._guard:
            self._tracked.add((namespace, name))

    def untrack(self, namespace: str, name: str) -> None:
        with self._guard:
            self._tracked.discard((namespace, name))

    def tracked(self) -> set[tuple[str, str]]:
        with self._guard:
            return set(self._tracked)

    def tick(self, pool: concurrent.futures.Executor) -> None:
        """One round over the tracked RetrainJobs."""
        keys = self.tracked()
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
