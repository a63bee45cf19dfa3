"""A RetrainJob's first pass reads its ModelLine once, and a second writer between that
reading and the allocation still never makes a number be handed out twice."""

from __future__ import annotations

from typing import Any

from lines_fake import NO_EVIDENCE, FakeLines
from retrainer_operator import versions
from retrainer_operator.ledger import Allocation
from retrainer_operator.onepass import one_pass


class CountingLines(FakeLines):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def read_modelline(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads += 1
        return super().read_modelline(namespace, name)


def first_pass(client: Any, uid: str) -> Allocation:
    """What reconcile._start asks of the line, in its order."""
    versions.ensure(client, "team", "shapes", NO_EVIDENCE)
    found = versions.find(client, "team", "shapes", uid)
    assert found is None
    return versions.allocate(client, "team", "shapes", uid, f"run-{uid}", None, NO_EVIDENCE)


def test_the_line_is_read_once_for_ensure_find_and_allocate() -> None:
    store = CountingLines()
    first_pass(one_pass(store), "u1")  # a new line: created, then read again
    store.reads = 0
    assert first_pass(one_pass(store), "u2") == Allocation(2, None)
    assert store.reads == 1
    store.reads = 0
    assert first_pass(store, "u3") == Allocation(3, None)
    assert store.reads == 3  # without the view


def test_a_writer_between_the_reading_and_the_allocation_costs_a_reread_not_a_number() -> None:
    store = CountingLines()
    first_pass(store, "u1")
    mine = one_pass(store)
    versions.ensure(mine, "team", "shapes", NO_EVIDENCE)
    assert versions.find(mine, "team", "shapes", "u3") is None  # the reading is kept now
    # Another pass (another RetrainJob, or the other replica) allocates meanwhile.
    assert first_pass(one_pass(store), "u2") == Allocation(2, None)
    ours = versions.allocate(mine, "team", "shapes", "u3", "run-u3", None, NO_EVIDENCE)
    assert ours == Allocation(3, None)
    assert versions.find(store, "team", "shapes", "u2") == Allocation(2, None)
    assert versions.find(store, "team", "shapes", "u3") == Allocation(3, None)


def test_the_view_keeps_the_listing_compaction_asks_for() -> None:
    store = CountingLines()
    assert isinstance(one_pass(store), versions.RetrainJobLister)
    assert one_pass(store).list_retrainjobs("team") == []
    assert store.lists == 1
