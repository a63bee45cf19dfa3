"""In-memory ModelLines with the apiserver's optimistic concurrency (versions.LedgerClient)."""

from __future__ import annotations

import copy
from typing import Any

from retrainer_operator.versions import Conflict


def NO_EVIDENCE() -> tuple[int, dict[int, tuple[str, str]]]:
    """recover() of a line nothing is known of."""
    return 0, {}


class FakeLines:
    """ModelLines by (namespace, name); a replace with a stale resourceVersion is a Conflict."""

    def __init__(self) -> None:
        self.lines: dict[tuple[str, str], dict[str, Any]] = {}
        self.writes = 0
        self.retrainjobs: list[dict[str, Any]] = []
        self.lists = 0

    def read_modelline(self, namespace: str, name: str) -> dict[str, Any] | None:
        found = self.lines.get((namespace, name))
        return copy.deepcopy(found) if found else None

    def create_modelline(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        key = (namespace, body["metadata"]["name"])
        if key in self.lines:
            raise Conflict("exists")
        self.writes += 1
        stored = copy.deepcopy(body)
        stored["metadata"] = {**stored["metadata"], "resourceVersion": "1", "uid": f"uid-{key[1]}"}
        self.lines[key] = stored
        return copy.deepcopy(stored)

    def replace_modelline_status(
        self, namespace: str, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        current = self.lines[(namespace, name)]
        if body["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"]:
            raise Conflict("stale")
        self.writes += 1
        current["status"] = copy.deepcopy(body["status"])
        current["metadata"]["resourceVersion"] = str(
            int(current["metadata"]["resourceVersion"]) + 1
        )
        return copy.deepcopy(current)

    def ledger(self, namespace: str, name: str) -> dict[str, str]:
        return dict((self.lines[(namespace, name)].get("status") or {}).get("ledger") or {})

    def list_retrainjobs(self, namespace: str) -> list[dict[str, Any]]:
        self.lists += 1
        return self.retrainjobs
