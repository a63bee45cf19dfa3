"""Detached child processes for the local world: free ports, spawning each component in its
own process group with its log file, readiness waits that name the failing component, and
a stop that leaves no process behind.

A process is identified by (pid, start time) so a recycled pid is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ComponentError",
    "Proc",
    "free_ports",
    "kill_strays",
    "log_tail",
    "spawn",
    "start_time",
    "stop_all",
    "wait_ready",
]


class ComponentError(RuntimeError):
    """A world component did not start or become healthy; names it and its log file."""

    def __init__(self, component: str, log: Path | None, reason: str) -> None:
        self.component = component
        self.log = log
        where = f"; see {log}" if log else ""
        tail = log_tail(log) if log else ""
        detail = f"\n--- last lines of {log} ---\n{tail}" if tail else ""
        super().__init__(f"world component {component!r} {reason}{where}{detail}")


@dataclass(frozen=True)
class Proc:
    """A started component: its name, pid (= its process group id) and kernel start time."""

    name: str
    pid: int
    started: int

    def alive(self) -> bool:
        return start_time(self.pid) == self.started

    def to_json(self) -> dict[str, int]:
        return {"pid": self.pid, "started": self.started}

    @classmethod
    def from_json(cls, name: str, data: Mapping[str, int]) -> Proc:
        return cls(name, int(data["pid"]), int(data["started"]))


def free_ports(count: int) -> list[int]:
    """Distinct free TCP ports on 127.0.0.1 (all sockets held open until every port is known)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def spawn(
    name: str,
    argv: Sequence[str],
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Proc:
    """Start `argv` detached (own session and process group) with output appended to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        try:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise ComponentError(name, log, f"could not be started: {exc}") from exc
    # The Popen object is dropped on purpose: `up` returns while the child keeps running.
    # Mark it as reaped so Python's finalizer does not warn about a still-running child.
    popen.returncode = 0
    started = start_time(popen.pid)
    if started is None:
        _reap(popen.pid)
        raise ComponentError(name, log, "exited immediately")
    return Proc(name, popen.pid, started)


def wait_ready(
    proc: Proc,
    log: Path,
    check: Callable[[], bool],
    timeout: float,
    interval: float = 0.2,
) -> float:
    """Poll `check` until it is true; fail fast when the process dies. Returns seconds waited."""
    t0 = time.monotonic()
    while True:
        _reap(proc.pid)
        if not proc.alive():
            raise ComponentError(proc.name, log, "exited before becoming healthy")
        with contextlib.suppress(Exception):
            if check():
                return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise ComponentError(proc.name, log, f"was not healthy within {timeout:.0f}s")
        time.sleep(interval)


def stop_all(procs: Iterable[Proc], grace: float = 5.0) -> list[str]:
    """SIGTERM each live process group, SIGKILL what is left after `grace` seconds.

    Returns the names of the components that needed SIGKILL.
    """
    live = [p for p in procs if p.alive()]
    for p in live:
        _signal_group(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        for p in live:
            _reap(p.pid)
        if not any(p.alive() or _group_exists(p.pid) for p in live):
            return []
        time.sleep(0.1)
    killed = []
    for p in live:
        if p.alive() or _group_exists(p.pid):
            killed.append(p.name)
            _signal_group(p.pid, signal.SIGKILL)
    for _ in range(50):
        for p in live:
            _reap(p.pid)
        if not any(p.alive() or _group_exists(p.pid) for p in live):
            break
        time.sleep(0.1)
    return killed


def kill_strays(state: Path, marker: str, grace: float = 3.0) -> list[str]:
    """Kill leftovers of a world that escaped their process group (e.g. pods of a pod runner
    that was SIGKILLed): processes whose environment carries `marker=<state>` or whose HOME
    lies inside the state folder. Never the caller or its ancestors."""
    spared = _ancestors(os.getpid())
    tags = (f"{marker}={state}".encode(), f"HOME={state}/".encode())
    strays = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in spared:
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(v == tags[0] or v.startswith(tags[1]) for v in environ):
            started = start_time(int(entry.name))
            if started is not None:
                strays.append(Proc(f"stray-{entry.name}", int(entry.name), started))
    for p in strays:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(p.alive() for p in strays):
        for p in strays:
            _reap(p.pid)
        time.sleep(0.1)
    killed = []
    for p in strays:
        if p.alive():
            killed.append(p.name)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(p.pid, signal.SIGKILL)
            _reap(p.pid)
    return killed


def _ancestors(pid: int) -> set[int]:
    seen = set()
    while pid > 1 and pid not in seen:
        seen.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat[stat.rindex(")") + 2 :].split()[1])
    return seen


def log_tail(log: Path, lines: int = 15, max_bytes: int = 4096) -> str:
    """The last lines of a log file (empty when unreadable), for error messages."""
    try:
        with open(log, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None when it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces or parentheses: fields start after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Only zombies left in the group count as gone.
    return any(start_time(pid) is not None for pid in _group_members(pgid))


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _reap(pid: int) -> None:
    """Collect the exit status when `pid` is our own child (a no-op for detached ones)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
