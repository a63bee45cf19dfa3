"""Shared use of one world by several test sessions at once.

Each user (a pytest session) holds a lease file while it uses the world. A world started by a
session is stopped by the last session leaving it; a world started by `up` is never stopped
by tests. RETRAINER_KEEP_WORLD=1 keeps any world running after the tests.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from retrainer_world import procs, world
from retrainer_world.components import Layout

__all__ = ["SESSION_OWNER", "live_leases", "use"]

SESSION_OWNER = "session"


def _lease_name(proc: procs.Proc) -> str:
    return f"{proc.pid}-{proc.started}"


def _me() -> procs.Proc:
    pid = os.getpid()
    started = procs.start_time(pid)
    assert started is not None  # our own process is alive by definition
    return procs.Proc("session", pid, started)


def live_leases(layout: Layout) -> list[Path]:
    """Lease files whose process still runs; stale ones (crashed sessions) are removed."""
    if not layout.sessions.is_dir():
        return []
    live = []
    for lease in layout.sessions.iterdir():
        try:
            pid, started = (int(x) for x in lease.name.split("-", 1))
        except ValueError:
            lease.unlink(missing_ok=True)
            continue
        if procs.Proc("lease", pid, started).alive():
            live.append(lease)
        else:
            lease.unlink(missing_ok=True)
    return live


@contextlib.contextmanager
def use(state: Path | str | None = None) -> Iterator[world.World]:
    """Use the world in `state` for the duration of the block: reuse a healthy one or start
    one; on exit, stop it only when a session started it and no other session still uses it."""
    layout = Layout(world.state_path(state))
    layout.sessions.mkdir(parents=True, exist_ok=True)
    lease = layout.sessions / _lease_name(_me())
    lease.touch()
    try:
        yield world.start(layout.state, owner=SESSION_OWNER)
    finally:
        lease.unlink(missing_ok=True)
        if os.environ.get("RETRAINER_KEEP_WORLD", "") not in ("1", "true", "yes"):
            with world.locked(layout):
                _stop_if_last(layout)


def _stop_if_last(layout: Layout) -> None:
    # Read world.json as is: a session-started world with a dead component is stopped too.
    try:
        owner = json.loads(layout.world_json.read_text()).get("owner")
    except (OSError, ValueError):
        return
    if owner == SESSION_OWNER and not live_leases(layout):
        world.stop_locked(layout)
