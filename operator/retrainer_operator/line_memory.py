"""The ModelLines as this process last read or wrote them, and one lock per line.

A burst of new RetrainJobs of one line allocated each its version from a fresh read of the
ModelLine and then a write guarded by that read's resourceVersion: two round trips each, and
with several first passes of one line at once, a run of 409s and reads again. Allocations of
one line now take turns (`hold`) and start from the line as the previous write left it
(`recall`), so each is one write.

The memory is only where a pass starts: every ledger write is a compare-and-set on the
resourceVersion it was computed from, so a reading that another writer made stale (a person's
`retrainer promote`, the line reconciler, the other replica) costs one 409 and a fresh read,
never a lost update or a number handed out twice. Lost (a restart), the next read rebuilds it.
A line is kept as its raw JSON (a few KB), decoded into a fresh copy on each recall.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["LineMemory"]


class LineMemory:
    """The last answer about each ModelLine, and a lock per line, for one process."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._raw: dict[tuple[str, str], bytes] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}

    def remember(self, namespace: str, name: str, raw: bytes) -> None:
        with self._guard:
            self._raw[(namespace, name)] = raw

    def forget(self, namespace: str, name: str) -> None:
        with self._guard:
            self._raw.pop((namespace, name), None)

    def recall(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A fresh copy of the line as last seen (None: not remembered)."""
        with self._guard:
            raw = self._raw.get((namespace, name))
        if raw is None:
            return None
        line: dict[str, Any] = json.loads(raw)
        return line

    @contextlib.contextmanager
    def hold(self, namespace: str, name: str) -> Iterator[None]:
        """The line's lock: one allocation of a line at a time in this process."""
        with self._guard:
            lock = self._locks.setdefault((namespace, name), threading.Lock())
        with lock:
            yield
