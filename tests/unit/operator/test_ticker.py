"""The ticker keeps polling unfinished RetrainJobs and drops finished or deleted ones."""

from __future__ import annotations

import concurrent.futures

from retrainer_operator.ticker import Ticker


def test_finished_and_deleted_retrainjobs_stop_being_polled() -> None:
    phases = {"running": "Running", "done": "Succeeded", "bad": "Failed", "gone": None}
    calls: list[str] = []

    def step(namespace: str, name: str) -> str | None:
        calls.append(name)
        return phases[name]

    ticker = Ticker(step, interval=60)
    for name in phases:
        ticker.track("ns", name)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        ticker.tick(pool)
        assert ticker.tracked() == {("ns", "running")}
        ticker.tick(pool)
    assert sorted(calls) == ["bad", "done", "gone", "running", "running"]


def test_a_failing_reconcile_is_retried_on_the_next_tick() -> None:
    attempts = []

    def step(namespace: str, name: str) -> str | None:
        attempts.append(name)
        if len(attempts) == 1:
            raise ConnectionError("apiserver restarting")
        return "Succeeded"

    ticker = Ticker(step, interval=60)
    ticker.track("ns", "job")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        ticker.tick(pool)
        assert ticker.tracked() == {("ns", "job")}
        ticker.tick(pool)
    assert ticker.tracked() == set()
    assert attempts == ["job", "job"]
