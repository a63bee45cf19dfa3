"""Each RetrainJob still going, as Kopf's watch or this process's own write last showed it.

Every pass that did not start from a create event (a Job event's, the progress ticker's, a
retry's) read its RetrainJob: 4.3 GETs per run at scale 0.1, the most frequent request of a
burst. A pass now starts from this memory, and its writes from a remembered copy are
compare-and-set on that copy's resourceVersion (`reconcile`): a copy made stale by another
writer (Kopf's own annotations, a person, the other replica) costs one 409 and a fresh read,
never a lost update. Lost (a restart), or never filled (a RetrainJob the watch has not shown
yet), a pass reads the object as before.

Ordering: the watch delivers one object's events in order, but Kopf hands its handlers only
the newest of a burst and skips those older than its own patches, so the event of a version we
wrote may never come. Versions are compared for equality only, as the API asks. After our write
or read at version R (`expect`), the event of R confirms the copy; any other event may be older
or newer than R, and the copy is then in doubt: dropped, and events are not taken until a pass
reads the object again. Doubt costs one GET, never a pass from a copy that may be older than
what this process already knew.

Size: kept as compact JSON, without managed fields or Kopf's copy of the spec; a RetrainJob
that ended (Succeeded, Failed) is dropped (its passes end at once, and one that comes reads it).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

from retrainer_contract import api

from retrainer_operator.conditions import is_terminal

__all__ = ["RunMemory"]

# Kopf's record of the spec it last handled (handlers.py): no pass reads it.
_KOPF_DIFFBASE = f"{api.GROUP}/last-handled-configuration"


def _slim(body: Mapping[str, Any]) -> bytes:
    meta = {k: v for k, v in (body.get("metadata") or {}).items() if k != "managedFields"}
    notes = meta.get("annotations")
    if notes and _KOPF_DIFFBASE in notes:
        meta["annotations"] = {k: v for k, v in notes.items() if k != _KOPF_DIFFBASE}
    return json.dumps({**body, "metadata": meta}, separators=(",", ":")).encode()


def _version(body: Mapping[str, Any]) -> str | None:
    version = (body.get("metadata") or {}).get("resourceVersion")
    return None if version is None else str(version)


class RunMemory:
    """The last copy of each RetrainJob still going, for one process."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._raw: dict[tuple[str, str], bytes] = {}
        # The version we last wrote or read, until the watch confirms it.
        self._expect: dict[tuple[str, str], str] = {}
        # Copies in doubt (an event other than the one expected): no event taken until a read.
        self._doubt: set[tuple[str, str]] = set()

    def seen(self, namespace: str, name: str, body: Mapping[str, Any] | None) -> None:
        """What the watch delivered: the object, or None when it was deleted."""
        key = (namespace, name)
        with self._guard:
            if body is None:
                self._drop(key)
                self._doubt.discard(key)
                return
            if key in self._doubt:
                return
            expected = self._expect.get(key)
            if expected is None:
                self._keep(key, body)
            elif expected == _version(body):
                del self._expect[key]
                self._keep(key, body)
            else:
                self._drop(key)
                self._doubt.add(key)

    def wrote(self, namespace: str, name: str, raw: bytes) -> str | None:
        """Our write's answer (the object as stored); its resourceVersion."""
        body = json.loads(raw)
        self.known(namespace, name, body)
        return _version(body)

    def known(self, namespace: str, name: str, body: Mapping[str, Any]) -> None:
        """The object as a read or a write of this process returned it just now."""
        key = (namespace, name)
        version = _version(body)
        with self._guard:
            self._doubt.discard(key)
            if version is None:
                self._drop(key)
                return
            self._expect[key] = version
            self._keep(key, body)

    def recall(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A fresh copy of the RetrainJob as last seen (None: not remembered, or in doubt)."""
        with self._guard:
            raw = self._raw.get((namespace, name))
        if raw is None:
            return None
        body: dict[str, Any] = json.loads(raw)
        return body

    def forget(self, namespace: str, name: str) -> None:
        """Drop the copy (a write from it was refused): the next pass reads the object."""
        with self._guard:
            self._drop((namespace, name))
            self._doubt.add((namespace, name))

    def __len__(self) -> int:
        with self._guard:
            return len(self._raw)

    def _drop(self, key: tuple[str, str]) -> None:
        self._raw.pop(key, None)
        self._expect.pop(key, None)

    def _keep(self, key: tuple[str, str], body: Mapping[str, Any]) -> None:
        if is_terminal(body.get("status") or {}):
            self._raw.pop(key, None)
        else:
            self._raw[key] = _slim(body)
