"""The allocated-version tag in MLflow never falls below a number that was handed out, even when
two allocations are recorded at once (Kopf runs different RetrainJobs' handlers in parallel)."""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Mapping
from typing import Any

from retrainer_contract import tracking
from retrainer_operator.mlflow_rest import MlflowRest

EXPERIMENT = "retrainer-shapes"
KEY = tracking.allocated_tag("ns", "shapes")


class TagServer(MlflowRest):
    """MlflowRest over an in-memory experiment. `hold` names a version whose writer, once it
    has read the tag, waits at that point for `released` (or `patience` seconds) before writing.
    """

    def __init__(self, hold: int | None = None, patience: float = 2.0) -> None:
        super().__init__("http://tracking.invalid", None)
        self.tags: dict[str, str] = {}
        self.hold, self.patience = hold, patience
        self.held, self.released = threading.Event(), threading.Event()
        self._reader = threading.local()

    def _call(
        self, method: str, path: str, payload: Mapping[str, Any] | None = None
    ) -> dict[str, Any] | None:
        if path.startswith("/api/2.0/mlflow/experiments/get-by-name"):
            name = urllib.parse.parse_qs(urllib.parse.urlparse(path).query)["experiment_name"][0]
            assert name == EXPERIMENT
            return {
                "experiment": {
                    "experiment_id": "1",
                    "tags": [{"key": k, "value": v} for k, v in self.tags.items()],
                }
            }
        if path == "/api/2.0/mlflow/experiments/set-experiment-tag":
            assert payload is not None
            self.tags[str(payload["key"])] = str(payload["value"])
            return {}
        raise AssertionError(f"unexpected call {method} {path}")

    def allocated(self, experiment: str, namespace: str, model: str) -> int:
        value = super().allocated(experiment, namespace, model)
        if getattr(self._reader, "version", None) == self.hold and not self.held.is_set():
            self.held.set()  # the named point: the tag read, the write not yet made
            self.released.wait(self.patience)
        return value

    def record(self, version: int) -> None:
        self._reader.version = version
        self.record_allocated(EXPERIMENT, "ns", "shapes", version)


def test_the_tag_only_rises() -> None:
    server = TagServer()
    for version in (1, 3, 2):
        server.record(version)
    assert server.tags[KEY] == "3"
    assert server.allocated(EXPERIMENT, "ns", "shapes") == 3


def test_a_lower_number_recorded_at_the_same_time_never_overwrites_a_higher_one() -> None:
    # Version 1's writer stops between its read and its write; version 2 is recorded in that
    # window. Without one lock per tag, 2 is written first and then 1 over it.
    server = TagServer(hold=1)
    first = threading.Thread(target=server.record, args=(1,))
    first.start()
    assert server.held.wait(10)

    def second() -> None:
        server.record(2)
        server.released.set()

    other = threading.Thread(target=second)
    other.start()
    first.join(30)
    other.join(30)
    assert not first.is_alive() and not other.is_alive()
    assert server.tags[KEY] == "2"
