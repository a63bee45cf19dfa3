"""Job events go through a work queue: repeats of a waiting key are one pass, a key is never
worked on by two threads at once, a key added while its pass runs gets one more pass, and
each pass gets the newest body an event added for it."""

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

    def work(key: Hashable, seen: object) -> None:
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

    def work(key: Hashable, seen: object) -> None:
        if key == "bad":
            raise RuntimeError("apiserver down")
        done.append(str(key))

    queue = WorkQueue(work, workers=1)
    queue.add("bad")
    queue.add("good")
    wait_for(lambda: done == ["good"])
    queue.stop()


def test_each_pass_gets_the_newest_body_added_since_the_last_one_took_its_key() -> None:
    gate = threading.Event()
    entered = threading.Event()
    seen_by_pass: list[object] = []

    def work(key: Hashable, seen: object) -> None:
        seen_by_pass.append(seen)
        if len(seen_by_pass) == 1:
            entered.set()
            gate.wait(10)  # the named point: the first pass holds here

    queue = WorkQueue(work, workers=2)
    queue.add("job", {"rv": "1"})
    assert entered.wait(10)
    queue.add("job", {"rv": "2"})  # while the first pass runs: the second pass's body...
    queue.add("job", {"rv": "3"})  # ...is the newest of them
    queue.add("job")  # an add without a body keeps the newest one
    gate.set()
    wait_for(lambda: len(seen_by_pass) == 2)
    queue.add("other")  # no body ever added: the pass reads for itself
    wait_for(lambda: len(seen_by_pass) == 3)
    queue.stop()
    assert seen_by_pass == [{"rv": "1"}, {"rv": "3"}, None]


def test_an_add_whose_state_was_the_last_added_brings_no_pass_until_forgotten() -> None:
    passes: list[object] = []
    queue = WorkQueue(lambda key, seen: passes.append(seen), workers=1)
    queue.add("job", {"n": 1}, state="active")
    wait_for(lambda: len(passes) == 1)
    queue.add("job", {"n": 2}, state="active")  # the finalizer released: same state
    queue.add("job", {"n": 3}, state="complete")
    wait_for(lambda: len(passes) == 2)
    queue.forget("job")  # deleted, then created again: its first event is news
    queue.add("job", {"n": 4}, state="complete")
    wait_for(lambda: len(passes) == 3)
    time.sleep(0.2)
    queue.stop()
    assert passes == [{"n": 1}, {"n": 3}, {"n": 4}]


def test_keys_added_first_are_taken_before_the_rest_in_their_order_and_once() -> None:
    gate = threading.Event()
    entered = threading.Event()
    order: list[Hashable] = []

    def work(key: Hashable, seen: object) -> None:
        order.append(key)
        if key == "busy":
            entered.set()
            gate.wait(10)  # the named point: the only worker holds here

    queue = WorkQueue(work, workers=1)
    queue.add("busy")
    assert entered.wait(10)
    for key in ("a", "b", "c"):
        queue.add(key)
    queue.add("ended", first=True)  # a Job that completed, behind three still starting
    queue.add("b", first=True)  # already waiting: moved ahead, behind "ended", not twice
    queue.add("later", first=True)
    gate.set()
    wait_for(lambda: len(order) == 6)
    time.sleep(0.2)
    queue.stop()
    assert order == ["busy", "ended", "b", "later", "a", "c"]
