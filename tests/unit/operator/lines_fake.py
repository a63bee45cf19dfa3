"""In-memory ModelLines with the apiserver's optimistic concurrency (versions.LedgerClient)."""

from __future__ import annotations

import copy
import threading
from typing import Any

from retrainer_operator.line_status import Conflict


def NO_EVIDENCE() -> tuple[int, dict[int, tuple[str, str]]]:
    """recover() of a line nothing is known of."""
    return 0, {}


def merged(target: Any, patch: Any) -> Any:
    """`patch` applied to `target` as a JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merged(result.get(key), value)
    return result


class FakeLines:
    """ModelLines by (namespace, name); a replace with a stale resourceVersion is a Conflict."""

    def __init__(self) -> None:
        self.lines: dict[tuple[str, str], dict[str, Any]] = {}
        # The apiserver's compare-and-set is atomic: a check and its write under one lock
        # (two threads passing the check before either wrote shared a number in CI).
        self.guard = threading.RLock()
        self.writes = 0
        self.retrainjobs: list[dict[str, Any]] = []
        self.lists = 0

    def read_modelline(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self.guard:
            found = self.lines.get((namespace, name))
            return copy.deepcopy(found) if found else None

    def create_modelline(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        key = (namespace, body["metadata"]["name"])
        with self.guard:
            if key in self.lines:
                raise Conflict("exists")
            self.writes += 1
            stored = copy.deepcopy(body)
            meta = {**stored["metadata"], "resourceVersion": "1", "uid": f"uid-{key[1]}"}
            stored["metadata"] = meta
            self.lines[key] = stored
            return copy.deepcopy(stored)

    def replace_modelline_status(
        self, namespace: str, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        with self.guard:
            current = self.lines[(namespace, name)]
            if body["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"]:
                raise Conflict("stale")
            self.writes += 1
            current["status"] = copy.deepcopy(body["status"])
            current["metadata"]["resourceVersion"] = str(
                int(current["metadata"]["resourceVersion"]) + 1
            )
            return copy.deepcopy(current)

    def patch_modelline_status(
        self,
        namespace: str,
        name: str,
        status: dict[str, Any],
        resource_version: str | None = None,
    ) -> None:
        """A JSON merge patch of the status (RFC 7386), guarded by `resource_version`."""
        with self.guard:
            current = self.lines[(namespace, name)]
            rv = current["metadata"]["resourceVersion"]
            if resource_version is not None and resource_version != rv:
                raise Conflict("stale")
            self.writes += 1
            current["status"] = merged(current.get("status") or {}, status)
            current["metadata"]["resourceVersion"] = str(int(rv) + 1)

    def ledger(self, namespace: str, name: str) -> dict[str, str]:
        return dict((self.lines[(namespace, name)].get("status") or {}).get("ledger") or {})

    def list_retrainjobs(self, namespace: str) -> list[dict[str, Any]]:
        self.lists += 1
        return self.retrainjobs
