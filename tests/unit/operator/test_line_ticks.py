"""ModelLines tick from one clock: each tracked line once per interval, never two passes of a
line at once, a pass that raises tried again, a line found gone dropped."""

from __future__ import annotations

import threading
import time

from retrainer_operator.line_ticks import LineTicks
from waiting import wait_for


def test_each_line_ticks_on_its_own_and_a_gone_one_is_dropped() -> None:
    passes: dict[str, int] = {}
    guard = threading.Lock()
    gone = {"deleted"}

    def step(namespace: str, name: str) -> bool:
        with guard:
            passes[name] = passes.get(name, 0) + 1
        if name == "flaky" and passes[name] == 1:
            raise RuntimeError("apiserver down")
        return name not in gone

    ticks = LineTicks(step, interval=0.1, workers=2)
    for name in ("a", "b", "flaky", "deleted"):
        ticks.track("team", name)
    ticks.track("team", "a")  # tracked twice: still one clock entry
    wait_for(lambda: min(passes.get(n, 0) for n in ("a", "b", "flaky")) >= 4)
    assert ticks.tracked() == {("team", "a"), ("team", "b"), ("team", "flaky")}
    assert passes["deleted"] == 1
    ticks.untrack("team", "b")
    seen = passes["b"]
    time.sleep(0.4)
    assert passes["b"] <= seen + 1  # at most a pass that had already started
    ticks.stop()
    assert ticks.tracked() == set()


def test_a_slow_pass_is_never_overlapped_by_the_next_tick() -> None:
    running = {"now": 0, "most": 0, "passes": 0}
    guard = threading.Lock()

    def step(namespace: str, name: str) -> bool:
        with guard:
            running["now"] += 1
            running["most"] = max(running["most"], running["now"])
        time.sleep(0.15)  # longer than the interval
        with guard:
            running["now"] -= 1
            running["passes"] += 1
        return True

    ticks = LineTicks(step, interval=0.05, workers=4)
    ticks.track("team", "slow")
    wait_for(lambda: running["passes"] >= 3)
    ticks.stop()
    assert running["most"] == 1
