"""A burst of one line's RetrainJobs allocates from the line as the previous write left it
(one write each, no read), and the memory is never trusted over the apiserver: another writer,
a lost memory, a deleted line and two processes at once still never hand out a number twice.
Verifications are recorded the same way: no read in a burst, none lost to another writer."""

from __future__ import annotations

import concurrent.futures
import json
import threading
from typing import Any

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException
from lines_fake import NO_EVIDENCE, FakeLines
from retrainer_operator import kube, reconcile, versions
from retrainer_operator.ledger import Allocation
from retrainer_operator.line_status import Conflict
from retrainer_operator.onepass import one_pass


class Raw:
    """What the client returns with _preload_content=False."""

    def __init__(self, obj: Any) -> None:
        self.data = json.dumps(obj).encode()


class Custom:
    """The CustomObjectsApi calls Cluster makes for ModelLines, over FakeLines (409 on a stale
    resourceVersion), counting reads and refused writes."""

    def __init__(self, store: FakeLines) -> None:
        self.store = store
        self.reads = 0
        self.conflicts = 0
        self._guard = threading.Lock()  # the apiserver serializes writes of one object

    def get_namespaced_custom_object(
        self, g: str, v: str, ns: str, p: str, name: str, **_: Any
    ) -> Raw:
        self.reads += 1
        found = self.store.read_modelline(ns, name)
        if found is None:
            raise ApiException(status=404, reason="Not Found")
        return Raw(found)

    def create_namespaced_custom_object(
        self, g: str, v: str, ns: str, p: str, body: Any, **_: Any
    ) -> Raw:
        with self._guard:
            try:
                return Raw(self.store.create_modelline(ns, body))
            except Conflict:
                raise ApiException(status=409, reason="AlreadyExists") from None

    def patch_namespaced_custom_object_status(
        self, g: str, v: str, ns: str, p: str, name: str, body: Any, **_: Any
    ) -> Raw:
        with self._guard:
            version = (body.get("metadata") or {}).get("resourceVersion")
            try:
                self.store.patch_modelline_status(ns, name, body["status"], version)
            except KeyError:
                raise ApiException(status=404, reason="Not Found") from None
            except Conflict:
                self.conflicts += 1
                raise ApiException(status=409, reason="Conflict") from None
            return Raw(self.store.read_modelline(ns, name))


def cluster_over(store: FakeLines) -> kube.Cluster:
    found = kube.Cluster(kubernetes.client.ApiClient())
    found.custom = Custom(store)  # type: ignore[assignment]
    return found


def allocate(cluster: kube.Cluster, uid: str) -> Allocation:
    """What reconcile._start asks of the line, in its order, under the line's lock."""
    view = one_pass(cluster)
    with cluster.lines.hold("team", "shapes"):
        versions.ensure(view, "team", "shapes", NO_EVIDENCE)
        assert versions.find(view, "team", "shapes", uid) is None
        return versions.allocate(view, "team", "shapes", uid, f"run-{uid}", None, NO_EVIDENCE)


@pytest.fixture
def store() -> FakeLines:
    return FakeLines()


def test_a_burst_of_one_line_reads_it_once(store: FakeLines) -> None:
    cluster = cluster_over(store)
    custom: Custom = cluster.custom  # type: ignore[assignment]
    assert allocate(cluster, "u1") == Allocation(1, None)  # a new line: created, read
    custom.reads = 0
    for number in range(2, 12):
        assert allocate(cluster, f"u{number}") == Allocation(number, None)
    assert (custom.reads, custom.conflicts) == (0, 0)


def test_another_writer_costs_a_conflict_and_a_read_never_a_number(store: FakeLines) -> None:
    mine, other = cluster_over(store), cluster_over(store)  # two processes: two memories
    assert allocate(mine, "u1") == Allocation(1, None)
    assert allocate(other, "u2") == Allocation(2, None)  # my memory is now behind
    custom: Custom = mine.custom  # type: ignore[assignment]
    custom.reads = 0
    assert allocate(mine, "u3") == Allocation(3, None)
    assert (custom.reads, custom.conflicts) == (1, 1)
    assert versions.find(store, "team", "shapes", "u2") == Allocation(2, None)


def test_a_lost_memory_is_read_again(store: FakeLines) -> None:
    cluster = cluster_over(store)
    allocate(cluster, "u1")
    cluster.lines.forget("team", "shapes")  # a restart
    custom: Custom = cluster.custom  # type: ignore[assignment]
    custom.reads = 0
    assert allocate(cluster, "u2") == Allocation(2, None)
    assert custom.reads == 1


def test_a_deleted_line_is_rebuilt_from_evidence_not_from_memory(store: FakeLines) -> None:
    cluster = cluster_over(store)
    allocate(cluster, "u1")
    allocate(cluster, "u2")
    del store.lines[("team", "shapes")]  # deleted by hand; the memory still shows it

    def evidence() -> tuple[int, dict[int, tuple[str, str]]]:
        return 2, {}  # the allocated tag in MLflow

    # The remembered reading's write finds no object: read again, missing, rebuilt.
    view = one_pass(cluster)
    versions.ensure(view, "team", "shapes", evidence)  # the memory says it has a ledger
    assert versions.allocate(view, "team", "shapes", "u3", "run-u3", None, evidence) == Allocation(
        3, None
    )
    assert versions.find(store, "team", "shapes", "u3") == Allocation(3, None)


def test_two_threads_and_two_processes_at_once_never_share_a_number(store: FakeLines) -> None:
    processes = [cluster_over(store), cluster_over(store)]
    allocate(processes[0], "seed")

    def one(i: int) -> int:
        return allocate(processes[i % 2], f"u{i}").version

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        numbers = list(pool.map(one, range(40)))
    assert sorted(numbers) == list(range(2, 42))
    ledger = versions.data_of(store.read_modelline("team", "shapes") or {})
    assert all(versions.find_in(ledger, f"u{i}") is not None for i in range(40))


def test_a_pass_resolving_its_base_against_the_line_reads_it_fresh(store: FakeLines) -> None:
    """A champion moved by another writer (`retrainer promote`) is what `baseModel.version:
    champion` resolves to, whatever this process remembers."""
    cluster = cluster_over(store)
    allocate(cluster, "u1")
    store.lines[("team", "shapes")]["status"]["champion"] = {"version": 1}  # another writer
    stale = one_pass(cluster).read_modelline("team", "shapes") or {}
    assert "champion" not in stale["status"]  # what the memory holds
    fresh = one_pass(cluster, remembered=False).read_modelline("team", "shapes") or {}
    assert fresh["status"]["champion"] == {"version": 1}


def test_a_burst_of_verifications_reads_the_line_never_and_loses_no_mark(store: FakeLines) -> None:
    mine, other = cluster_over(store), cluster_over(store)
    for number in range(1, 9):
        allocate(mine, f"u{number}")
    custom: Custom = mine.custom  # type: ignore[assignment]
    custom.reads = 0
    for number in (1, 2, 3):
        reconcile.record_verified(mine, "team", "shapes", number, f"sha{number}", NO_EVIDENCE)
    assert (custom.reads, custom.conflicts) == (0, 0)
    reconcile.record_verified(other, "team", "shapes", 4, "sha4", NO_EVIDENCE)  # the other replica

    def mark(number: int) -> None:
        cluster = (mine, other)[number % 2]
        reconcile.record_verified(cluster, "team", "shapes", number, f"sha{number}", NO_EVIDENCE)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(mark, range(5, 9)))
    assert custom.conflicts >= 1 and custom.reads >= 1  # my memory was behind: read again
    ledger = versions.data_of(store.read_modelline("team", "shapes") or {})
    assert versions.summary_of(ledger)["verifiedVersions"] == "1-8"
