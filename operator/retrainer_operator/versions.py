"""Version allocation: one number per RetrainJob, never reused, never allocated twice.

Each model line is a ModelLine object (named after the line, in the line's namespace); its
`status.ledger` is the sequence (its layout and the pure operations on it: ledger.py).

Updates use optimistic concurrency (replace the status subresource with the read
resourceVersion; retry on 409), so concurrent allocations, even from two operator processes,
never hand out a number twice. The ledger outlives the RetrainJobs: deleting one never frees or
reuses its number. A RetrainJob of a line without a ModelLine gets a bare one (no schedule, no
trigger); a deleted ModelLine's sequence is recovered from durable evidence (recovery.py).
Every write compacts a ledger past its threshold and refreshes the status fields people read
(`ledger.summary_of`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

from retrainer_contract import api
from retrainer_contract import versions as contract_versions
from retrainer_contract.versions import format_ranges

from retrainer_operator import line_status
from retrainer_operator.conditions import is_terminal
from retrainer_operator.ledger import (
    COMPACT_THRESHOLD,
    CONFIGMAP_LIMIT,
    KEEP_RECENT,
    Allocation,
    allocate_in,
    compact_in,
    data_of,
    find_in,
    ledger_size,
    mark_verified_in,
    resolve_base_in,
    seed_in,
    summary_of,
)
from retrainer_operator.line_status import Conflict

__all__ = [
    "Conflict",
    "LedgerClient",
    "RetrainJobLister",
    "allocate",
    "bare_line",
    "ensure",
    "find",
    "mark_verified",
    "resolve_base",
]

logger = logging.getLogger("retrainer.operator")


@runtime_checkable
class RetrainJobLister(Protocol):
    """What compaction asks the cluster, when the client can (kube.Cluster can): which
    RetrainJobs still exist, so that their entries are kept."""

    def list_retrainjobs(self, namespace: str) -> list[dict[str, Any]]: ...


class LedgerClient(line_status.LineStatusClient, Protocol):
    """The ModelLine calls the ledger needs (kube.Cluster implements them): the status write
    path's read and guarded patch, and a create for a line that has none."""

    def create_modelline(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create; raise Conflict when it already exists."""
        ...


def bare_line(namespace: str, model: str) -> dict[str, Any]:
    """The ModelLine the operator creates for a line that has none: no schedule, no trigger,
    only the sequence (a RetrainJob applied alone stays the simplest path)."""
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.LINE_KIND,
        "metadata": {
            "name": model,
            "namespace": namespace,
            "labels": {api.LABEL_MANAGED_BY: api.MANAGED_BY, api.LABEL_MODEL: model},
        },
        "spec": {},
    }


# What recover() returns: (highest version with evidence, version -> (sha256, RetrainJob name)
# of the verified ones[, the champion record rebuilt from its mirrors]).
Recover = Callable[[], tuple[Any, ...]]


def _evidence(found: tuple[Any, ...]) -> tuple[int, Mapping[int, tuple[str, str]], Any]:
    highest, verified, *rest = found
    return int(highest), verified, (rest[0] if rest else None)


def _update(
    client: LedgerClient,
    namespace: str,
    model: str,
    change: Any,
    champion: Callable[[], Mapping[str, Any] | None] | None = None,
) -> Any:
    """Read-modify-write the ledger with `change(data) -> (new_data, result)` until it sticks
    (line_status.update). `champion()`: a record rebuilt from evidence, written in the same
    write when the line has none (a rebuilt sequence never runs without its champion)."""
    live: list[frozenset[str] | None] = []

    def whole(line: dict[str, Any]) -> tuple[dict[str, Any] | None, Any]:
        current = dict(line.get("status") or {})
        data = data_of(line)
        new_data, result = change(data)
        if ledger_size(new_data) > COMPACT_THRESHOLD:
            if not live:
                live.append(_live_uids(client, namespace))
            new_data = compact_in(
                new_data, live[0], threshold=COMPACT_THRESHOLD, keep_recent=KEEP_RECENT
            )
            if ledger_size(new_data) > COMPACT_THRESHOLD:
                logger.warning(
                    "ledger %s/%s holds %d bytes after compaction (limit %d): %s",
                    namespace,
                    model,
                    ledger_size(new_data),
                    CONFIGMAP_LIMIT,
                    "too many unfinished RetrainJobs of one model line"
                    if live[0] is not None
                    else "the client cannot list RetrainJobs, so unverified entries stay",
                )
        rebuilt = champion() if champion is not None and not current.get("champion") else None
        if new_data == data and "ledger" in current and not rebuilt:
            return None, result
        new = {**current, "ledger": new_data, **summary_of(new_data)}
        if rebuilt:
            new["champion"] = dict(rebuilt)
        return new, result

    def create() -> None:
        # Conflict: created meanwhile (by a person or another allocation): read it.
        with contextlib.suppress(Conflict):
            client.create_modelline(namespace, bare_line(namespace, model))

    return line_status.update(client, namespace, model, whole, on_missing=create)


def _live_uids(client: LedgerClient, namespace: str) -> frozenset[str] | None:
    """The uids of the namespace's RetrainJobs that are not finished (None: cannot tell)."""
    if not isinstance(client, RetrainJobLister):
        return None
    return frozenset(
        str(obj["metadata"]["uid"])
        for obj in client.list_retrainjobs(namespace)
        if (obj.get("metadata") or {}).get("uid") and not is_terminal(obj.get("status") or {})
    )


def _has_ledger(line: Mapping[str, Any] | None) -> bool:
    # A ledger has `next`. Entries without it are a late write (a verification recorded after
    # the ModelLine was deleted) on a line whose sequence still has to be rebuilt.
    return "next" in data_of(line)


def find(client: LedgerClient, namespace: str, model: str, uid: str) -> Allocation | None:
    """The allocation already recorded for `uid` (after a restart), or None."""
    return find_in(data_of(client.read_modelline(namespace, model)), uid)


def allocate(
    client: LedgerClient,
    namespace: str,
    model: str,
    uid: str,
    name: str,
    base_version: int | None,
    recover: Recover,
) -> Allocation:
    """Allocate the next version for `uid` (idempotent: the same uid gets the same version).

    A ledger without `next` (the ModelLine was deleted, even between a caller's `ensure` and
    this write) is rebuilt from `recover()` in the same write: numbering never starts over."""
    recovered: list[tuple[int, Mapping[int, tuple[str, str]], Any]] = []
    seeded: list[bool] = []

    def change(data: Mapping[str, str]) -> tuple[dict[str, str], Allocation]:
        seeded.clear()
        if "next" not in data and find_in(data, uid) is None:
            if not recovered:
                recovered.append(_evidence(recover()))
            highest, verified, _ = recovered[0]
            data = seed_in(data, highest, verified)
            seeded.append(True)
        return allocate_in(data, uid, name, base_version)

    def champion() -> Any:
        return recovered[0][2] if recovered and seeded else None

    result: Allocation = _update(client, namespace, model, change, champion)
    return result


def ensure(
    client: LedgerClient,
    namespace: str,
    model: str,
    recover: Recover,
) -> None:
    """Make sure the line has a ledger. A new line, or one whose ModelLine was deleted (or that
    was kept in a ConfigMap before ModelLines), gets one rebuilt from durable evidence:
    `recover()` names the highest version with evidence and the versions known verified, so no
    number is handed out twice and `latest` still resolves."""
    if _has_ledger(client.read_modelline(namespace, model)):
        return
    highest, verified, record = _evidence(recover())
    logger.info(
        "ledger rebuilt line=%s/%s highest=%s verified=%s champion=%s",
        namespace,
        model,
        highest,
        format_ranges(verified),
        (record or {}).get("version"),
    )
    _update(
        client,
        namespace,
        model,
        lambda data: (seed_in(data, highest, verified), None),
        (lambda: record) if record else None,
    )


def mark_verified(
    client: LedgerClient, namespace: str, model: str, version: int, sha256: str
) -> None:
    """Record that `version` succeeded and was verified."""
    _update(client, namespace, model, lambda data: (mark_verified_in(data, version, sha256), None))


def resolve_base(client: LedgerClient, namespace: str, model: str, requested: str) -> int | None:
    """Resolve spec.baseModel.version against the line: `latest`, N, or `champion` (the
    version status.champion names, when it is verified)."""
    line = client.read_modelline(namespace, model)
    data = data_of(line)
    if requested == contract_versions.CHAMPION:
        champion = ((line or {}).get("status") or {}).get("champion") or {}
        number = champion.get("version")
        if not isinstance(number, int):
            return None
        return resolve_base_in(data, str(number))
    return resolve_base_in(data, requested)
