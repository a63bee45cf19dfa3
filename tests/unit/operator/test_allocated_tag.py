"""The allocated-version record in MLflow never falls below a number that was handed out, even
when allocations are recorded at once (Kopf runs different RetrainJobs' handlers in parallel,
and two operators may run): one tag per version, and a writer removes only lower ones."""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Mapping
from typing import Any

from retrainer_contract import tracking
from retrainer_operator.mlflow_rest import MlflowError, MlflowRest

EXPERIMENT = "retrainer-shapes"


class TagServer(MlflowRest):
    """MlflowRest over an in-memory experiment. `hold` names a version whose writer, once it
    has read the tags, waits at that point for `released` (or `patience` seconds) before it
    writes."""

    def __init__(
        self,
        hold: int | None = None,
        patience: float = 2.0,
        tags: dict[str, str] | None = None,
    ) -> None:
        super().__init__("http://tracking.invalid", None)
        # Pass another TagServer's `tags` for a second writer (another operator process).
        self.tags: dict[str, str] = {} if tags is None else tags
        self.calls: list[str] = []
        self.gone = False  # the experiment was deleted: writes to it fail
        self.hold, self.patience = hold, patience
        self.held, self.released = threading.Event(), threading.Event()
        self._writer = threading.local()

    def _call(
        self, method: str, path: str, payload: Mapping[str, Any] | None = None
    ) -> dict[str, Any] | None:
        self.calls.append(path.split("?")[0].rsplit("/", 1)[-1])
        if self.gone and payload is not None:
            raise MlflowError("MLflow POST: HTTP 400 (the experiment is deleted)")
        if path.startswith("/api/2.0/mlflow/experiments/get-by-name"):
            name = urllib.parse.parse_qs(urllib.parse.urlparse(path).query)["experiment_name"][0]
            assert name == EXPERIMENT
            tags = [{"key": k, "value": v} for k, v in dict(self.tags).items()]
            return {"experiment": {"experiment_id": "1", "tags": tags}}
        assert payload is not None
        if path == "/api/2.0/mlflow/experiments/set-experiment-tag":
            self.tags[str(payload["key"])] = str(payload["value"])
            return {}
        if path == "/api/2.0/mlflow/experiments/delete-experiment-tag":
            if self.tags.pop(str(payload["key"]), None) is None:
                return None  # MLflow: 404 RESOURCE_DOES_NOT_EXIST
            return {}
        raise AssertionError(f"unexpected call {method} {path}")

    def _experiment_tags(self, experiment: str, create: bool = False) -> tuple[str, dict[str, str]]:
        found = super()._experiment_tags(experiment, create)
        if getattr(self._writer, "version", None) == self.hold and not self.held.is_set():
            self.held.set()  # the named point: the tags read, the write not yet made
            self.released.wait(self.patience)
        return found

    def record(self, version: int) -> None:
        self._writer.version = version
        self.record_allocated(EXPERIMENT, "ns", "shapes", version)
        self.settle()  # the lower tag's removal, made off the caller's path

    def allocated(self, *_: str) -> int:
        return super().allocated(EXPERIMENT, "ns", "shapes")


def test_the_record_only_rises_and_keeps_one_tag_per_line() -> None:
    server = TagServer()
    for version in (1, 3, 2):
        server.record(version)
    assert server.allocated() == 3
    assert server.tags == {tracking.allocated_tag("ns", "shapes", 3): "3"}


def test_a_lower_number_recorded_at_the_same_time_never_hides_a_higher_one() -> None:
    # Version 1's writer stops between its read and its write; version 2 is recorded in that
    # window. With one tag for the line, 2 was written first and then 1 over it.
    server = TagServer(hold=1)
    other = TagServer(tags=server.tags)  # a second operator: its own process, its own memory
    first = threading.Thread(target=server.record, args=(1,))
    first.start()
    assert server.held.wait(10)
    other.record(2)
    server.released.set()
    first.join(30)
    assert not first.is_alive()
    assert server.allocated() == 2


def test_the_single_tag_of_older_operators_still_counts_and_is_replaced() -> None:
    server = TagServer()
    server.tags = {tracking.allocated_tag("ns", "shapes"): "7", "unrelated": "x"}
    assert server.allocated() == 7
    server.record(5)  # below: nothing written
    assert server.allocated() == 7
    server.record(8)
    assert server.tags == {tracking.allocated_tag("ns", "shapes", 8): "8", "unrelated": "x"}


def test_lines_sharing_an_experiment_never_count_each_others_tags() -> None:
    tags = {
        tracking.allocated_tag("ns", "shapes", 4): "4",
        tracking.allocated_tag("ns", "shapes-2", 9): "9",
        tracking.allocated_tag("other", "shapes", 6): "6",
    }
    assert tracking.allocated_in(tags, "ns", "shapes") == {
        tracking.allocated_tag("ns", "shapes", 4): 4
    }


def test_the_writers_memory_saves_the_reads_and_still_keeps_one_tag() -> None:
    server = TagServer()
    server.record(1)
    server.calls.clear()
    server.record(2)
    assert server.calls == ["set-experiment-tag", "delete-experiment-tag"]
    assert server.tags == {tracking.allocated_tag("ns", "shapes", 2): "2"}
    server.calls.clear()
    server.record(2)  # recorded already: no call
    assert server.calls == []


def test_a_lost_memory_is_rebuilt_from_the_tags() -> None:
    server = TagServer()
    server.record(3)
    restarted = TagServer(tags=server.tags)  # the operator restarted: nothing in memory
    restarted.record(2)
    assert restarted.allocated() == 3
    restarted.record(4)
    assert server.tags == {tracking.allocated_tag("ns", "shapes", 4): "4"}


def test_a_memory_behind_another_writer_never_lowers_the_record() -> None:
    first = TagServer()
    first.record(3)
    TagServer(tags=first.tags).record(10)  # the other replica went higher meanwhile
    first.record(4)  # remembers 3: writes 4, removes 3, never touches 10
    assert first.allocated() == 10
    first.record(11)
    assert first.allocated() == 11


def test_a_deleted_experiment_sends_the_writer_back_to_mlflow() -> None:
    server = TagServer()
    server.record(1)
    server.gone = True
    try:
        server.record(2)
    except MlflowError:
        pass  # the full path asked MLflow again and could not write either
    else:
        raise AssertionError("a write to a deleted experiment was taken as recorded")
    assert "get-by-name" in server.calls[-2:]


def test_the_lower_tag_is_removed_off_the_callers_path() -> None:
    """A first pass waits for its number's tag, not for the removal of the one below it."""
    server = TagServer()
    server.record(1)
    removing = threading.Event()
    go_on = threading.Event()
    plain = server._call

    def slow(method: str, path: str, payload: Mapping[str, Any] | None = None) -> Any:
        if path.endswith("delete-experiment-tag"):
            removing.set()
            assert go_on.wait(10)
        return plain(method, path, payload)

    server._call = slow  # type: ignore[method-assign]
    server.record_allocated(EXPERIMENT, "ns", "shapes", 2)  # returns while the removal waits
    assert removing.wait(10)
    assert server.allocated() == 2  # the new tag is the highest already; 1's still there
    assert tracking.allocated_tag("ns", "shapes", 1) in server.tags
    go_on.set()
    server.settle()
    assert server.tags == {tracking.allocated_tag("ns", "shapes", 2): "2"}
