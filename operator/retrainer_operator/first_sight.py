"""Which RetrainJobs and ModelLines this process has seen, so that each gets its pass once.

A RetrainJob's first pass (checks, version, Job) and a ModelLine's pass on its creation, its
spec's change or a start used to be Kopf's create, update and resume handlers. Kopf starts a
worker for every object its watch lists and keeps it, with the object's body, its cause and
the handler's arguments, until the handler returns; and it caps the workers per watch, which
is per namespace. An operator that takes over thousands of RetrainJobs in a hundred
namespaces held every one of them that way at once (about 40 KiB each), waiting for a thread.
Now the watches' event handlers only note each object's first sight here and queue its key
(`handlers.py`); the passes run from the queues, a RetrainJob's from this process's memory of
it (`run_memory.py`).

What makes a sight new is the object's `mark`: a RetrainJob's uid (its spec is immutable; one
deleted and created again under its name is seen anew even if the watch missed the deletion),
a ModelLine's uid and generation (a change of its spec is seen anew). A mark of None (deleted,
or a RetrainJob that ended and needs no pass) forgets the object. Nothing here is durable: a
new process (a restart, the other replica taking over) sees every object anew as its watch
lists them, as Kopf resumed them.

Used from Kopf's event loop only (the event handlers are async): no lock.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from retrainer_operator.conditions import is_terminal

__all__ = ["FirstSight", "line_mark", "run_mark"]


def run_mark(body: Mapping[str, Any] | None) -> str | None:
    """A RetrainJob's mark (None: deleted, or ended)."""
    if body is None or is_terminal(body.get("status") or {}):
        return None
    return str((body.get("metadata") or {}).get("uid", ""))


def line_mark(meta: Mapping[str, Any] | None) -> str | None:
    """A ModelLine's mark from its metadata (None: deleted)."""
    if meta is None:
        return None
    return f"{meta.get('uid', '')}/{meta.get('generation', '')}"


class FirstSight:
    """Says, for each watch event of an object, whether this process sees it anew."""

    def __init__(self) -> None:
        self._marks: dict[tuple[str, str], str] = {}

    def first(self, namespace: str, name: str, mark: str | None) -> bool:
        """Whether the object in this event (its `mark`; None: forget it) needs its pass."""
        key = (namespace, name)
        if mark is None:
            self._marks.pop(key, None)
            return False
        if self._marks.get(key) == mark:
            return False
        self._marks[key] = mark
        return True

    def __len__(self) -> int:
        return len(self._marks)
