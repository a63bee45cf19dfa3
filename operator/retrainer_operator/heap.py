"""Freed heap memory handed back to the system every few seconds (glibc's `malloc_trim`).

glibc keeps what Python frees in its arenas, and gives back only what is at an arena's top.
A burst (a start or takeover listing thousands of RetrainJobs, their first passes, the line
ticks' shared listings) leaves tens of MiB free inside the arenas that the process's RSS
still counts: 50 of 92 MiB of the arenas 90 s into a backlog of 5,000 (docs/operator.md, "A
backlog taken over"). `malloc_trim(0)` hands back every whole free page wherever it is; run
every 5 s beside that backlog, the operator's idle RSS was 120 MiB instead of 175 and its
peak 218 MiB instead of 248. Each call walks the arenas under their locks for a few
milliseconds. Where the C library is not glibc there is no `malloc_trim`, and nothing runs.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Callable

__all__ = ["TRIM_SECONDS", "glibc_trim", "start"]

logger = logging.getLogger("retrainer.operator")

TRIM_SECONDS = 5.0


def glibc_trim() -> Callable[[], int] | None:
    """glibc's `malloc_trim(0)` (1: memory was handed back), or None without glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: int(trim(0))


def start(
    trim: Callable[[], int] | None = None,
    interval: float = TRIM_SECONDS,
    stop: threading.Event | None = None,
) -> threading.Thread | None:
    """Call `trim` (glibc's, by default) every `interval` seconds on a daemon thread until
    `stop` is set; None when there is nothing to call."""
    trim = trim or glibc_trim()
    if trim is None:
        logger.info("heap trim off: no glibc malloc_trim")
        return None
    stopped = stop or threading.Event()

    def loop() -> None:
        while not stopped.wait(interval):
            trim()

    thread = threading.Thread(target=loop, name="retrainer-heap-trim", daemon=True)
    thread.start()
    return thread
