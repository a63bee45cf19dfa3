"""Job events go through a work queue: repeats of a waiting key are one pass, a key is never
worked on by two threads at once, and a key added while its pass runs gets one more pass."""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable

from retrainer_operator.workqueue import WorkQueue
from waiting import wait_for


def test_repeats_of_a_waiting_key_are_one_pass_and_a_busy_key_runs_once_more() -> None:
    gate = threading.Event()
    entered = threading.Event()
    passes: list[Hashable] = []
    running: dict[Hashable, int] = {}
    overlap: list[Hashable] = []
    guard = threading.Lock()

    def work(key: Hashable) -> None:
        with guard:
            running[key] = running.get(key, 0) + 1
            if running[key] > 1:
                overlap.append(key)
        if key == "a":
            entered.set()
            gate.wait(10)  # the named point: a's first pass holds here
        with guard:
            running[key] -= 1
            passes.append(key)

    queue = WorkQueue(work, workers=4)
    queue.add("a")
    assert entered.wait(10)
    for _ in range(5):  # five Job events of `a` while its pass runs: one more pass
        queue.add("a")
    for _ in range(5):  # five of `b`: `b` waits at most once
        queue.add("b")
    wait_for(lambda: passes.count("b") >= 1)
    gate.set()
    wait_for(lambda: passes.count("a") == 2)
    time.sleep(0.2)  # nothing else is queued: no third pass turns up
    queue.stop()
    assert passes.count("a") == 2
    # `b`'s passes are instant: an add after one ended starts another (a loaded machine
    # interleaves them), so only "at least once, never more than added" holds for it.
    assert 1 <= passes.count("b") <= 5
    assert overlap == []


def test_a_pass_that_raises_does_not_stop_the_queue() -> None:
    done: list[str] = []

    def work(key: Hashable) -> None:
        if key == "bad":
            raise RuntimeError("apiserver down")
        done.append(str(key))

    queue = WorkQueue(work, workers=1)
    queue.add("bad")
    queue.add("good")
    wait_for(lambda: done == ["good"])
    queue.stop()
