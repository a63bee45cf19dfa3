"""What a thousand model lines cost the apiserver and MLflow (issue 22): shared listings, one
alarm thread for every schedule, reads of what never changes made once, ticks that skip what
an event just did."""

from __future__ import annotations

import concurrent.futures
import datetime
import threading
import time
from typing import Any

import pytest
from retrainer_operator import clock, triggers
from retrainer_operator.ticker import Ticker


def test_a_shared_reading_is_fetched_once_for_every_caller_until_it_is_old() -> None:
    shared: clock.Shared[int] = clock.Shared()
    fetched: list[int] = []

    def fetch() -> int:
        time.sleep(0.05)  # callers arriving meanwhile wait for this one fetch
        fetched.append(1)
        return len(fetched)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        values = list(pool.map(lambda _: shared.get("ns", 60, fetch), range(8)))
    assert values == [1] * 8 and len(fetched) == 1
    shared.forget("ns")  # the caller changed what it reads
    assert shared.get("ns", 60, fetch) == 2
    assert shared.get("ns", 0, fetch) == 3  # too old


def test_while_one_caller_refreshes_a_reading_the_others_get_the_last_one() -> None:
    shared: clock.Shared[str] = clock.Shared()
    assert shared.get("ns", 60, lambda: "old") == "old"
    fetching, release = threading.Event(), threading.Event()

    def slow() -> str:
        fetching.set()
        release.wait(5)
        return "new"

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        refresh = pool.submit(shared.get, "ns", 0, slow)
        assert fetching.wait(5)
        assert shared.get("ns", 0, lambda: "never") == "old"  # no second fetch, no wait
        release.set()
        assert refresh.result() == "new"


def test_the_alarm_calls_back_at_each_moment_once_and_a_key_holds_one_moment() -> None:
    alarm = clock.Alarm(workers=2)
    calls: list[str] = []
    done = threading.Event()
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=0.2)
    alarm.set("a", soon + datetime.timedelta(hours=1), lambda: calls.append("a-late"))
    alarm.set("a", soon, lambda: calls.append("a"))  # moved: only the new moment counts
    alarm.set("b", soon + datetime.timedelta(seconds=0.1), lambda: (calls.append("b"), done.set()))
    alarm.set("c", soon, lambda: calls.append("c"))
    alarm.cancel("c")
    assert done.wait(5)
    time.sleep(0.1)
    assert calls == ["a", "b"]
    assert alarm.pending() == {}


def test_the_ticker_leaves_what_an_event_just_reconciled_for_its_next_round() -> None:
    calls: list[str] = []
    ticker = Ticker(lambda ns, name: calls.append(name) or "Running", interval=60)
    ticker.track("ns", "new")  # first seen: due at the next round
    ticker.track("ns", "busy")
    ticker.track("ns", "busy")  # an event stepped it again just now
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        ticker.tick(pool)
    assert calls == ["new"]
    assert ticker.tracked() == {("ns", "new"), ("ns", "busy")}


class _Mlflow:
    base = "http://mlflow"

    def __init__(self, run: Any) -> None:
        self.run, self.finds = run, 0

    def find_run(self, experiment: str, uid: str, version: int) -> Any:
        self.finds += 1
        return self.run

    def read_artifact(self, run: Any, path: str) -> bytes:
        return b'{"applied": [{"image": "train/a.jpg", "action": "replace"}]}'


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    triggers._applied.clear()


def test_what_a_verified_version_applied_is_read_from_mlflow_once() -> None:
    mlflow = _Mlflow(run=object())
    entry = {"uid": "u1"}
    for _ in range(3):
        assert triggers._applied_of(mlflow, "shapes", entry, 4) == {"train/a"}  # type: ignore[arg-type]
    assert mlflow.finds == 1


def test_a_version_without_a_run_is_asked_again_only_after_a_while(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mlflow = _Mlflow(run=None)
    entry = {"uid": "u2"}
    assert triggers._applied_of(mlflow, "shapes", entry, 1) == set()  # type: ignore[arg-type]
    assert triggers._applied_of(mlflow, "shapes", entry, 1) == set()  # type: ignore[arg-type]
    assert mlflow.finds == 1
    monkeypatch.setattr(triggers, "NOT_FOUND_SECONDS", 0.0)
    triggers._applied_of(mlflow, "shapes", entry, 1)  # type: ignore[arg-type]
    assert mlflow.finds == 2


def test_the_sweep_lists_a_namespace_once_and_reads_no_retrainjob_the_line_listed() -> None:
    from retrainer_contract import api
    from retrainer_operator import job_outcome

    def training_job(name: str, model: str, owner: str, uid: str) -> dict[str, Any]:
        return {
            "metadata": {
                "name": name,
                "namespace": "team",
                "resourceVersion": "3",
                "labels": {api.LABEL_MODEL: model},
                "finalizers": [api.JOB_FINALIZER],
                "ownerReferences": [
                    {"apiVersion": api.API_VERSION, "kind": api.KIND, "name": owner, "uid": uid}
                ],
            },
            "status": {"conditions": [{"type": "Complete", "status": "True"}]},
        }

    done = {"type": "Complete", "status": "True"}

    class Batch:
        def __init__(self) -> None:
            self.patched: list[str] = []

        def patch_namespaced_job(self, name: str, namespace: str, body: Any, **_: Any) -> None:
            self.patched.append(name)

    class Cluster:
        def __init__(self) -> None:
            self.batch = Batch()
            self.lists = 0
            self.reads: list[str] = []
            self.jobs = [
                training_job("retrain-a-v1", "a", "a-1", "u1"),
                training_job("retrain-a-v2", "a", "a-2", "u2-new"),  # re-created since listed
                training_job("retrain-b-v1", "b", "b-1", "u3"),
            ]

        def list_jobs(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
            self.lists += 1
            return self.jobs

        def read_job(self, namespace: str, name: str) -> dict[str, Any] | None:
            return None

        def read_retrainjob(self, namespace: str, name: str) -> dict[str, Any] | None:
            self.reads.append(name)
            return {"metadata": {"name": name, "uid": "u2-new"}, "status": {}}

    cluster = Cluster()
    listed = {
        "a-1": {"metadata": {"name": "a-1", "uid": "u1"}, "status": {"conditions": [done]}},
        "a-2": {"metadata": {"name": "a-2", "uid": "u2-old"}, "status": {"conditions": [done]}},
    }
    assert job_outcome.sweep(cluster, "team", "a", listed) == ["retrain-a-v1"]  # type: ignore[arg-type]
    assert cluster.reads == ["a-2"]  # the listing showed an older a-2: read, still running
    assert job_outcome.sweep(cluster, "team", "b") == ["retrain-b-v1"]  # type: ignore[arg-type]
    assert cluster.lists == 2  # the first release dropped the shared listing
