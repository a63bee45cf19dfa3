"""Version allocation: one number per RetrainJob, never reused, never allocated twice.

Each model line has a ConfigMap `retrainer-versions-<model>` in the namespace. Its data is the
ledger (all values strings, as ConfigMaps require):

- `next`: the next number to hand out;
- `uid.<uid>`: the version given to the RetrainJob with that uid (so a restart finds it again);
- `v.<N>`: JSON `{"name", "uid", "base", "state"}`, state `allocated` then `verified`.

Updates use optimistic concurrency (replace with the read resourceVersion; retry on 409), so
concurrent allocations, even from two operator processes, never hand out a number twice.
The ledger outlives the RetrainJobs: deleting one never frees or reuses its number.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from retrainer_contract import api
from retrainer_contract import versions as contract_versions

__all__ = [
    "Allocation",
    "ConfigMapClient",
    "Conflict",
    "allocate",
    "allocate_in",
    "find",
    "find_in",
    "mark_verified",
    "mark_verified_in",
    "resolve_base",
    "resolve_base_in",
]

MAX_TRIES = 60


class Conflict(Exception):
    """The ConfigMap changed (409) between our read and our write: read again and retry."""


class ConfigMapClient(Protocol):
    """The three ConfigMap calls the ledger needs (kube.Cluster implements them)."""

    def read_configmap(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def create_configmap(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create; raise Conflict when it already exists."""
        ...

    def replace_configmap(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Replace honouring body.metadata.resourceVersion; raise Conflict on 409."""
        ...


@dataclasses.dataclass(frozen=True)
class Allocation:
    """The version a RetrainJob got, and the base version it resolved at that moment."""

    version: int
    base_version: int | None = None


# ---- pure ledger operations ----------------------------------------------------------------


def _entry(data: Mapping[str, str], version: int) -> dict[str, Any]:
    raw = data.get(f"v.{version}")
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def find_in(data: Mapping[str, str], uid: str) -> Allocation | None:
    """The allocation recorded for `uid`, if any."""
    raw = data.get(f"uid.{uid}")
    if not raw:
        return None
    version = int(raw)
    base = _entry(data, version).get("base")
    return Allocation(version, int(base) if base is not None else None)


def allocate_in(
    data: Mapping[str, str], uid: str, name: str, base_version: int | None, floor: int = 1
) -> tuple[dict[str, str], Allocation]:
    """The new ledger data and the allocation for `uid` (the existing one if already there).

    `floor` is the lowest number that may be handed out (one above the highest version with
    evidence, when the ledger had to be recovered)."""
    existing = find_in(data, uid)
    if existing is not None:
        return dict(data), existing
    new = dict(data)
    version = max(int(new.get("next", "1")), floor, 1)
    new["next"] = str(version + 1)
    new[f"uid.{uid}"] = str(version)
    new[f"v.{version}"] = json.dumps(
        {"name": name, "uid": uid, "base": base_version, "state": "allocated"}, sort_keys=True
    )
    return new, Allocation(version, base_version)


def mark_verified_in(data: Mapping[str, str], version: int, sha256: str) -> dict[str, str]:
    """The ledger with version `version` marked verified (a valid base from now on)."""
    new = dict(data)
    entry = _entry(new, version)
    entry.update({"state": "verified", "sha256": sha256})
    new[f"v.{version}"] = json.dumps(entry, sort_keys=True)
    return new


def evidence(data: Mapping[str, str]) -> list[tuple[int, bool]]:
    """(version, verified) for every version the ledger records."""
    found = []
    for key in data:
        if key.startswith("v.") and key[2:].isdigit():
            version = int(key[2:])
            found.append((version, _entry(data, version).get("state") == "verified"))
    return sorted(found)


def resolve_base_in(data: Mapping[str, str], requested: str) -> int | None:
    """`latest` -> the newest verified version; `"3"` -> 3 when verified; else None."""
    return contract_versions.resolve(requested, evidence(data))


# ---- cluster operations --------------------------------------------------------------------


def _name(model: str) -> str:
    return api.versions_configmap_name(model)


def _data(configmap: Mapping[str, Any] | None) -> dict[str, str]:
    return dict((configmap or {}).get("data") or {})


def _backoff(attempt: int) -> None:
    # Jitter keeps many concurrent allocators from colliding in lock-step.
    time.sleep(random.uniform(0.0, min(0.5, 0.02 * (attempt + 1))))


def _update(
    client: ConfigMapClient,
    namespace: str,
    model: str,
    change: Any,
) -> Any:
    """Read-modify-write the ledger with `change(data) -> (new_data, result)` until it sticks."""
    name = _name(model)
    for attempt in range(MAX_TRIES):
        current = client.read_configmap(namespace, name)
        data = _data(current)
        new_data, result = change(data)
        if current is not None and new_data == data:
            return result
        try:
            if current is None:
                client.create_configmap(
                    namespace,
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {
                            "name": name,
                            "labels": {
                                api.LABEL_MANAGED_BY: api.MANAGED_BY,
                                api.LABEL_MODEL: model,
                            },
                        },
                        "data": new_data,
                    },
                )
            else:
                body = {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {
                        "name": name,
                        "resourceVersion": current["metadata"]["resourceVersion"],
                        "labels": (current["metadata"].get("labels") or {}),
                    },
                    "data": new_data,
                }
                client.replace_configmap(namespace, name, body)
        except Conflict:
            _backoff(attempt)
            continue
        return result
    raise Conflict(f"ConfigMap {namespace}/{name}: gave up after {MAX_TRIES} conflicting writes")


def find(client: ConfigMapClient, namespace: str, model: str, uid: str) -> Allocation | None:
    """The allocation already recorded for `uid` (after a restart), or None."""
    return find_in(_data(client.read_configmap(namespace, _name(model))), uid)


def allocate(
    client: ConfigMapClient,
    namespace: str,
    model: str,
    uid: str,
    name: str,
    base_version: int | None,
    recover: Callable[[], int] | None = None,
) -> Allocation:
    """Allocate the next version for `uid` (idempotent: the same uid gets the same version).

    When the ledger does not exist (a new model line, or its ConfigMap was deleted), `recover`
    names the highest version with durable evidence, and numbering continues above it.
    """
    floor = 1
    if recover is not None and client.read_configmap(namespace, _name(model)) is None:
        floor = recover() + 1
    result: Allocation = _update(
        client, namespace, model, lambda data: allocate_in(data, uid, name, base_version, floor)
    )
    return result


def mark_verified(
    client: ConfigMapClient, namespace: str, model: str, version: int, sha256: str
) -> None:
    """Record that `version` succeeded and was verified."""
    _update(
        client,
        namespace,
        model,
        lambda data: (mark_verified_in(data, version, sha256), None),
    )


def resolve_base(client: ConfigMapClient, namespace: str, model: str, requested: str) -> int | None:
    """Resolve spec.baseModel.version against the ledger (None: no such verified version)."""
    data = _data(client.read_configmap(namespace, _name(model)))
    return resolve_base_in(data, requested)
