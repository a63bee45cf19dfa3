"""The local world as a Python API: start it (etcd, kube-apiserver, controller manager,
scheduler, pod runner, MinIO, MLflow) into one state folder, load and health-check a running
one, hand out the environment a client needs, and stop it leaving no process.

`<state>/world.json` is the single record of a running world; `start` and `stop` hold a file
lock so concurrent test sessions never start two worlds in one state folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
from collections.abc import Iterator
from pathlib import Path

from retrainer_world import components, procs, startup
from retrainer_world.components import Layout
from retrainer_world.record import (
    World,
    WorldError,
    WorldNotRunning,
    default_state,
    state_path,
)
from retrainer_world.startup import resolve_bin_dir

__all__ = [
    "World",
    "WorldError",
    "WorldNotRunning",
    "default_state",
    "locked",
    "resolve_bin_dir",
    "start",
    "state_path",
    "stop",
    "stop_locked",
]

log = logging.getLogger("retrainer_world")


@contextlib.contextmanager
def locked(layout: Layout) -> Iterator[None]:
    layout.state.mkdir(parents=True, exist_ok=True)
    with open(layout.lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def start(state: Path | str | None = None, owner: str = "cli") -> World:
    """Reuse the healthy world in `state`, or start a fresh one (stopping any leftovers).

    `owner` is recorded so a test session only stops a world that a test session started.
    """
    layout = Layout(state_path(state))
    with locked(layout):
        try:
            world = World.load(layout.state)
        except WorldNotRunning:
            pass
        else:
            if world.is_healthy():
                log.info("event=reuse state=%s", layout.state)
                return world
        stop_locked(layout)
        try:
            return startup.run(layout, owner)
        except BaseException:
            # Leave nothing half-started behind; the error names the failing component.
            stop_locked(layout)
            raise


def stop(state: Path | str | None = None) -> list[str]:
    """Stop every process of the world in `state`; idempotent. Returns what needed SIGKILL."""
    layout = Layout(state_path(state))
    if not layout.state.exists():
        return []
    with locked(layout):
        return stop_locked(layout)


def stop_locked(layout: Layout) -> list[str]:
    killed: list[str] = []
    try:
        data = json.loads(layout.world_json.read_text())
    except (OSError, ValueError):
        data = {}
    recorded = {n: procs.Proc.from_json(n, p) for n, p in data.get("pids", {}).items()}
    unknown = (tuple(set(recorded) - set(components.COMPONENTS)), 5.0)
    for tier, grace in (*components.STOP_TIERS, unknown):
        killed += procs.stop_all([recorded[n] for n in tier if n in recorded], grace)
    killed += procs.kill_strays(layout.state, startup.MARKER)
    layout.world_json.unlink(missing_ok=True)
    if data:
        log.info("event=stopped state=%s sigkill=%s", layout.state, ",".join(killed) or "none")
    return killed
