"""A work queue of keys, the pattern of Kubernetes' own controllers (client-go's workqueue).

A training Job changes state several times in a second or two (created, pod pending, running,
succeeded), and each change used to run a whole pass over its RetrainJob on Kopf's executor,
the same threads that accept new RetrainJobs. Under a burst of applies that queued the first
passes (apply -> Job) behind the Job events of the runs already started. Job events now only
`add` their RetrainJob here: a key waiting is added once however many events name it, a key
being worked on is never worked on twice at once (it runs again after, if added meanwhile),
and `workers` threads of its own do the passes. What is lost with the process (the keys
waiting) is rebuilt at the next start: Kopf resumes every RetrainJob that is not finished.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Hashable

__all__ = ["WorkQueue"]

logger = logging.getLogger("retrainer.workqueue")


class WorkQueue:
    """`work(key)` for each key added, by `workers` threads, coalescing repeats."""

    def __init__(self, work: Callable[[Hashable], object], workers: int = 4) -> None:
        self._work = work
        self._workers = workers
        self._cond = threading.Condition()
        self._queue: collections.deque[Hashable] = collections.deque()
        self._waiting: set[Hashable] = set()  # in _queue
        self._working: set[Hashable] = set()
        self._again: set[Hashable] = set()  # added while being worked on
        self._threads: list[threading.Thread] = []
        self._stopped = False

    def add(self, key: Hashable) -> None:
        with self._cond:
            if key in self._working:
                self._again.add(key)
                return
            if key in self._waiting:
                return
            self._waiting.add(key)
            self._queue.append(key)
            self._start()
            self._cond.notify()

    def __len__(self) -> int:
        with self._cond:
            return len(self._queue) + len(self._again)

    def _start(self) -> None:
        if self._threads or self._stopped:
            return
        for index in range(self._workers):
            thread = threading.Thread(
                target=self._run, name=f"retrainer-queue-{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _take(self) -> Hashable | None:
        with self._cond:
            while not self._queue and not self._stopped:
                self._cond.wait()
            if self._stopped:
                return None
            key = self._queue.popleft()
            self._waiting.discard(key)
            self._working.add(key)
            return key

    def _done(self, key: Hashable) -> None:
        with self._cond:
            self._working.discard(key)
            if key in self._again:
                self._again.discard(key)
                self._waiting.add(key)
                self._queue.append(key)
                self._cond.notify()

    def _run(self) -> None:
        while (key := self._take()) is not None:
            try:
                self._work(key)
            except Exception as error:  # the ticker's next round retries
                logger.warning("queued pass failed key=%s error=%r", key, error)
            finally:
                self._done(key)

    def stop(self) -> None:
        """Stop taking keys (a pass under way finishes); what waits is dropped."""
        with self._cond:
            self._stopped = True
            self._queue.clear()
            self._waiting.clear()
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads = []
