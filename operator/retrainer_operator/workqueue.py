"""A work queue of keys, the pattern of Kubernetes' own controllers (client-go's workqueue).

A training Job changes state several times in a second or two (created, pod pending, running,
succeeded), and each change used to run a whole pass over its RetrainJob on Kopf's executor,
the same threads that accept new RetrainJobs. Under a burst of applies that queued the first
passes (apply -> Job) behind the Job events of the runs already started. Job events now only
`add` their RetrainJob here: a key waiting is added once however many events name it, a key
being worked on is never worked on twice at once (it runs again after, if added meanwhile),
and `workers` threads of its own do the passes. What is lost with the process (the keys
waiting) is rebuilt at the next start: Kopf resumes every RetrainJob that is not finished.

An `add` may bring what its event showed (`seen`: the Job's body); the pass gets the newest
one added since the key was last taken, so it need not read the Job again. An event after
the pass took it adds the key again, with its own body: the last pass always sees the last
event. An `add` may also say what of the object a pass acts on (`state`): one whose state is
the one last added for its key is dropped (a Job's finalizer released by the pass itself
changes nothing a pass looks at). `forget` drops both once the object is gone. An `add`
marked `first` goes ahead of the keys added without it (in order among the `first`s): a Job
that ended is verified (and its RetrainJob finished) before the passes of Jobs still
starting, which under a burst of new RetrainJobs held a Complete behind hundreds of them.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["WorkQueue"]

logger = logging.getLogger("retrainer.workqueue")


class WorkQueue:
    """`work(key, seen)` for each key added, by `workers` threads, coalescing repeats."""

    def __init__(self, work: Callable[[Hashable, Any], object], workers: int = 4) -> None:
        self._work = work
        self._workers = workers
        self._cond = threading.Condition()
        self._queue: collections.deque[Hashable] = collections.deque()
        self._ahead: collections.deque[Hashable] = collections.deque()  # `first`, in order
        self._waiting: set[Hashable] = set()  # in _queue or _ahead
        self._working: set[Hashable] = set()
        self._again: set[Hashable] = set()  # added while being worked on
        self._seen: dict[Hashable, Any] = {}  # the newest `seen` added for the next pass
        self._states: dict[Hashable, Hashable] = {}  # the `state` last added per key
        self._first: set[Hashable] = set()  # added with `first` since last taken
        self._threads: list[threading.Thread] = []
        self._stopped = False

    def add(
        self, key: Hashable, seen: Any = None, state: Hashable = None, first: bool = False
    ) -> None:
        with self._cond:
            if state is not None:
                if self._states.get(key) == state:
                    if seen is not None and key in self._waiting:
                        self._seen[key] = seen  # its pass is still to come: the newest body
                    return
                self._states[key] = state
            if seen is not None:
                self._seen[key] = seen
            # A waiting key is in _ahead exactly when it was added `first` since last taken.
            moves_ahead = first and key not in self._first
            if first:
                self._first.add(key)
            if key in self._working:
                self._again.add(key)
                return
            if key in self._waiting:
                if moves_ahead:  # ahead of the rest, behind earlier `first`s
                    self._queue.remove(key)
                    self._ahead.append(key)
                return
            self._waiting.add(key)
            self._enqueue(key)
            self._start()
            self._cond.notify()

    def _enqueue(self, key: Hashable) -> None:
        (self._ahead if key in self._first else self._queue).append(key)

    def forget(self, key: Hashable) -> None:
        """Forget the body and state added for `key` (its object is gone): a pass reads."""
        with self._cond:
            self._seen.pop(key, None)
            self._states.pop(key, None)

    def __len__(self) -> int:
        with self._cond:
            return len(self._ahead) + len(self._queue) + len(self._again)

    def _start(self) -> None:
        if self._threads or self._stopped:
            return
        for index in range(self._workers):
            thread = threading.Thread(
                target=self._run, name=f"retrainer-queue-{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _take(self) -> tuple[Hashable, Any] | None:
        with self._cond:
            while not self._ahead and not self._queue and not self._stopped:
                self._cond.wait()
            if self._stopped:
                return None
            key = (self._ahead or self._queue).popleft()
            self._waiting.discard(key)
            self._first.discard(key)
            self._working.add(key)
            return key, self._seen.pop(key, None)

    def _done(self, key: Hashable) -> None:
        with self._cond:
            self._working.discard(key)
            if key in self._again:
                self._again.discard(key)
                self._waiting.add(key)
                self._enqueue(key)
                self._cond.notify()

    def _run(self) -> None:
        while (taken := self._take()) is not None:
            key, seen = taken
            try:
                self._work(key, seen)
            except Exception as error:  # the ticker's next round retries
                logger.warning("queued pass failed key=%s error=%r", key, error)
            finally:
                self._done(key)

    def stop(self) -> None:
        """Stop taking keys (a pass under way finishes); what waits is dropped."""
        with self._cond:
            self._stopped = True
            self._queue.clear()
            self._ahead.clear()
            self._waiting.clear()
            self._seen.clear()
            self._states.clear()
            self._first.clear()
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads = []
