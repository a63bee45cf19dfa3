"""A RetrainJob's first pass reads its ModelLine once.

Making sure the line has a ledger, finding an allocation already made, resolving the base
version and allocating read the same ModelLine, each for itself: four GETs within a few
milliseconds, the largest share of a first pass's requests. `OnePass` wraps the cluster for
that pass and keeps the first reading of each line until the pass writes it (a status patch,
successful or refused with 409, or a create): the allocation's compare-and-set is guarded by
the resourceVersion read, so a reading made stale by another writer costs a 409 and a fresh
read, never a lost update. Everything else goes straight to the cluster.

The first reading comes from the client's memory of the line where it has one
(`remembered_modelline`, line_memory.py): the line as this process's last write left it, so a
burst of RetrainJobs of one line reads it once, not once each. Not for a pass that resolves a
base version against the line (`remembered=False`): the memory may lag another writer (a
person's promote, the other replica), and a write refused for that is retried with the base
already chosen.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from retrainer_operator import versions

__all__ = ["OnePass", "one_pass"]


class OnePass:
    """`client`'s calls, with `read_modelline` answered from this pass's first reading."""

    def __init__(self, client: versions.LedgerClient, remembered: bool = True) -> None:
        self._client = client
        self._remembered = remembered
        self._lines: dict[tuple[str, str], dict[str, Any] | None] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def read_modelline(self, namespace: str, name: str) -> dict[str, Any] | None:
        key = (namespace, name)
        if key not in self._lines:
            read = self._client.read_modelline
            if self._remembered:
                read = getattr(self._client, "remembered_modelline", read)
            self._lines[key] = read(namespace, name)
        return self._lines[key]

    def patch_modelline_status(
        self,
        namespace: str,
        name: str,
        status: Mapping[str, Any],
        resource_version: str | None = None,
    ) -> None:
        self._lines.pop((namespace, name), None)  # written or refused: read again
        self._client.patch_modelline_status(namespace, name, status, resource_version)

    def create_modelline(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self._lines.pop((namespace, str(body["metadata"]["name"])), None)
        return self._client.create_modelline(namespace, body)


class _ListingOnePass(OnePass):
    """A OnePass over a client that can list RetrainJobs (ledger compaction asks; explicit,
    because a runtime-checkable Protocol may look only at the class's own attributes)."""

    def list_retrainjobs(self, namespace: str) -> list[dict[str, Any]]:
        lister: versions.RetrainJobLister = self._client  # type: ignore[assignment]
        return lister.list_retrainjobs(namespace)


def one_pass(client: versions.LedgerClient, remembered: bool = True) -> OnePass:
    """The view for one pass over `client` (`remembered`: its first reading may come from the
    client's memory)."""
    if isinstance(client, versions.RetrainJobLister):
        return _ListingOnePass(client, remembered)
    return OnePass(client, remembered)
