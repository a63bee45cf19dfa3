"""Structured logging for the trainer: one JSON object per line on stdout.

The pod's log is what a user reads with `kubectl logs` and what the operator may scan, so each
line is an event with fields, never free text with secrets in it.

Only the main thread prints. An event raised in another thread (MLflow work that overlaps
training) is kept and printed by the main thread's next event, or by `flush`: Ultralytics draws
its progress bars on stdout without a newline until they close, and a line printed from
another thread could land inside one (and no longer start a line of its own).

`Phases` times the pipeline's steps; their sum is the `phase.seconds` event.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["Phases", "event", "flush", "process_seconds", "relay", "take"]

_held: list[str] = []  # lines raised outside the main thread, not printed yet
_lock = threading.Lock()
_IMPORTED = time.monotonic()


def _line(name: str, fields: dict[str, Any]) -> str:
    record = {"ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "event": name, **fields}
    return json.dumps(record, default=str, sort_keys=False) + "\n"


def event(name: str, /, **fields: Any) -> None:
    """Print `{"ts": ..., "event": name, **fields}` as one line and flush (from the main thread;
    from any other thread the line waits for the main thread's next event)."""
    line = _line(name, fields)
    if threading.current_thread() is not threading.main_thread():
        with _lock:
            _held.append(line)
        return
    flush(line)


def flush(line: str = "") -> None:
    """Print the lines other threads raised (in the order they were raised), then `line`."""
    with _lock:
        text = "".join(_held) + line
        _held.clear()
    if text:
        sys.stdout.write(text)
        sys.stdout.flush()


def take() -> list[str]:
    """The lines other threads raised and not printed yet, taken (the MLflow client process
    sends them to the trainer with each answer: tracker_process)."""
    with _lock:
        lines = list(_held)
        _held.clear()
    return lines


def relay(lines: list[str]) -> None:
    """Lines another process raised, printed as if raised by this thread."""
    if not lines:
        return
    if threading.current_thread() is threading.main_thread():
        flush("".join(lines))
        return
    with _lock:
        _held.extend(lines)


def process_seconds() -> float:
    """Seconds since this process started (interpreter start-up and imports included), from
    /proc where there is one, else since this module was imported."""
    try:
        with open("/proc/self/stat", encoding="ascii") as handle:
            started_ticks = int(handle.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime", encoding="ascii") as handle:
            uptime = float(handle.read().split()[0])
        return max(0.0, uptime - started_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.monotonic() - _IMPORTED


class Phases:
    """Wall seconds per pipeline step on the main thread (they add up to the run's time), and
    per task that overlapped them in the background."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.background: dict[str, float] = {}
        self._lock = threading.Lock()

    def add(self, name: str, seconds: float, *, background: bool = False) -> None:
        with self._lock:
            table = self.background if background else self.seconds
            table[name] = table.get(name, 0.0) + seconds

    @contextlib.contextmanager
    def phase(self, name: str, *, background: bool = False) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.add(name, time.monotonic() - started, background=background)

    def emit(self) -> None:
        """The `phase.seconds` event: each step's seconds, their total, the background tasks."""
        with self._lock:
            steps = {name: round(value, 3) for name, value in self.seconds.items()}
            background = {name: round(value, 3) for name, value in self.background.items()}
        event(
            "phase.seconds",
            **steps,
            total=round(sum(steps.values()), 3),
            background=background,
        )
