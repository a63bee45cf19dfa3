"""The one write path of a ModelLine's status.

Three parts of the operator keep fields of it: the ledger (versions.py), the champion record
(line_champions.py) and the line reconciler (lines.py: schedule, corrections, upkeep, the
Ready and ChampionInSync conditions). Each computes a whole new status from the object it just
read and writes it here, guarded by that read's resourceVersion; on 409 it reads again and
recomputes. So a check and the write that depends on it (the champion compared with, the
next free number) can never be interleaved by a second writer, in this process or another.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

__all__ = ["Conflict", "LineGone", "LineStatusClient", "merge_patch", "update"]

T = TypeVar("T")

MAX_TRIES = 60


class Conflict(Exception):
    """The object (a ModelLine, a RetrainJob) changed (409) between our read and our write:
    read again and retry."""


class LineGone(Exception):
    """The ModelLine does not exist (and the caller did not ask to create it)."""


class LineStatusClient(Protocol):
    """The ModelLine calls a status writer needs (kube.Cluster implements them)."""

    def read_modelline(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def patch_modelline_status(
        self,
        namespace: str,
        name: str,
        status: Mapping[str, Any],
        resource_version: str | None = None,
    ) -> None:
        """Merge-patch the status if the object is still at `resource_version` (else Conflict)."""
        ...


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns `old` into `new`: changed keys, nested objects
    recursively, None for a key `new` lacks."""
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            nested = merge_patch(before, value)
            if nested:
                patch[key] = nested
        elif before != value or key not in old:
            patch[key] = value
    return patch


def _backoff(attempt: int) -> None:
    # Jitter keeps many concurrent writers from colliding in lock-step.
    time.sleep(random.uniform(0.0, min(0.5, 0.02 * (attempt + 1))))


def update(
    client: LineStatusClient,
    namespace: str,
    name: str,
    change: Callable[[dict[str, Any]], tuple[dict[str, Any] | None, T]],
    on_missing: Callable[[], None] | None = None,
) -> T:
    """Read the ModelLine, `change(line) -> (new whole status | None: no write, result)`, and
    write the difference under the read resourceVersion, until it sticks; return the result.

    A missing line calls `on_missing()` (which may create it) and reads again, or raises
    LineGone when there is no `on_missing`. Exceptions of `change` propagate (a refused
    compare-and-set, for one)."""
    for attempt in range(MAX_TRIES):
        line = client.read_modelline(namespace, name)
        if line is None:
            if on_missing is None:
                raise LineGone(f"ModelLine {namespace}/{name} not found")
            on_missing()
            continue
        old = dict(line.get("status") or {})
        new, result = change(line)
        if new is None:
            return result
        patch = merge_patch(old, new)
        if not patch:
            return result
        try:
            client.patch_modelline_status(
                namespace, name, patch, str(line["metadata"]["resourceVersion"])
            )
        except Conflict:
            _backoff(attempt)
            continue
        return result
    raise Conflict(f"ModelLine {namespace}/{name}: gave up after {MAX_TRIES} conflicting writes")
