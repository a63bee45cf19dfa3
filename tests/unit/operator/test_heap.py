"""The operator hands a burst's freed heap memory back to the system (glibc's malloc_trim)."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
from retrainer_operator import heap

# A burst in a child process: a million small and mid-sized objects, most freed, every
# hundredth kept (so glibc cannot give the arenas back from their top alone); RSS read after
# the frees, then after one trim.
BURST = """
import sys
from retrainer_operator import heap

def rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

kept, burst = [], []
for i in range(400_000):
    burst.append(bytes(600 + i % 400))
    if i % 100 == 0:
        kept.append(bytes(600))
del burst
before = rss_mib()
trim = heap.glibc_trim()
assert trim is not None, "no glibc malloc_trim"
trim()
print(before, rss_mib(), len(kept))
"""


def test_a_trim_hands_back_what_a_burst_freed() -> None:
    out = subprocess.run(
        [sys.executable, "-c", BURST],
        capture_output=True,
        text=True,
        check=True,
        env={"MALLOC_ARENA_MAX": "2"},  # as the operator image
    ).stdout.split()
    before, after = float(out[0]), float(out[1])
    assert before - after > 100, (before, after)  # ~300 MiB freed, most of it given back


def test_the_trim_runs_every_interval_until_stopped_and_not_without_glibc() -> None:
    calls: list[int] = []
    stop = threading.Event()
    called = threading.Event()

    def trim() -> int:
        calls.append(1)
        if len(calls) == 3:
            called.set()
        return 1

    thread = heap.start(trim, interval=0.01, stop=stop)
    assert thread is not None and thread.daemon
    assert called.wait(5)
    stop.set()
    thread.join(5)
    assert not thread.is_alive()
    count = len(calls)
    assert count >= 3
    assert len(calls) == count  # stopped: no more calls


def test_without_glibc_nothing_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap, "glibc_trim", lambda: None)
    assert heap.start() is None
