"""Detached world processes: started in their own group, stopped leaving nothing behind, and
failures that name the component and its log. Uses local `sh`/`sleep` processes only."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from retrainer_world import procs


def _members(pgid: int) -> list[int]:
    return [p for p in procs._group_members(pgid) if procs.start_time(p) is not None]


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = procs.free_ports(8)
    assert len(set(ports)) == 8
    assert all(1024 < p < 65536 for p in ports)


def test_a_spawned_component_leads_its_own_process_group(tmp_path: Path) -> None:
    proc = procs.spawn("sleeper", ["sleep", "30"], tmp_path / "sleeper.log")
    try:
        assert proc.alive()
        assert os.getpgid(proc.pid) == proc.pid
        assert os.getsid(proc.pid) == proc.pid
    finally:
        procs.stop_all([proc])


def test_stopping_ends_every_process_of_the_group(tmp_path: Path) -> None:
    proc = procs.spawn(
        "forker", ["sh", "-c", "sleep 30 & sleep 30 & wait"], tmp_path / "forker.log"
    )
    deadline = time.monotonic() + 5
    while len(_members(proc.pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(_members(proc.pid)) == 3
    assert procs.stop_all([proc]) == []
    assert not proc.alive()
    assert _members(proc.pid) == []


def test_a_process_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    log = tmp_path / "stubborn.log"
    proc = procs.spawn(
        "stubborn", ["sh", "-c", "trap '' TERM; echo armed; while :; do sleep 0.1; done"], log
    )
    procs.wait_ready(proc, log, lambda: "armed" in log.read_text(), timeout=5)
    assert procs.stop_all([proc], grace=0.5) == ["stubborn"]
    assert not proc.alive()
    assert _members(proc.pid) == []


def test_a_component_that_dies_is_reported_with_its_log(tmp_path: Path) -> None:
    log = tmp_path / "etcd.log"
    argv = ["sh", "-c", "echo 'bind: address already in use'; exit 3"]
    with pytest.raises(procs.ComponentError) as err:
        # It may die before spawn returns or while waited for: both must name it and its log.
        proc = procs.spawn("etcd", argv, log)
        procs.wait_ready(proc, log, lambda: False, timeout=10)
    message = str(err.value)
    assert "'etcd'" in message
    assert str(log) in message
    assert "address already in use" in message


def test_a_component_that_never_gets_healthy_times_out_naming_it(tmp_path: Path) -> None:
    log = tmp_path / "mlflow.log"
    proc = procs.spawn("mlflow", ["sleep", "30"], log)
    try:
        with pytest.raises(procs.ComponentError, match="'mlflow' was not healthy within"):
            procs.wait_ready(proc, log, lambda: False, timeout=0.3, interval=0.05)
    finally:
        procs.stop_all([proc])


def test_a_missing_executable_is_reported_naming_the_component(tmp_path: Path) -> None:
    with pytest.raises(procs.ComponentError, match="'minio' could not be started"):
        procs.spawn("minio", [str(tmp_path / "no-such-binary")], tmp_path / "minio.log")


def test_a_recycled_pid_is_not_mistaken_for_the_component() -> None:
    me = procs.start_time(os.getpid())
    assert me is not None
    assert procs.Proc("self", os.getpid(), me).alive()
    assert not procs.Proc("impostor", os.getpid(), me + 1).alive()


def test_strays_marked_with_the_state_are_killed_and_others_spared(tmp_path: Path) -> None:
    state = tmp_path / "state"
    marked = subprocess.Popen(
        ["sleep", "30"], env={**os.environ, "MARK": str(state)}, start_new_session=True
    )
    pod = subprocess.Popen(
        ["sleep", "30"], env={"HOME": f"{state}/pods/uid/home"}, start_new_session=True
    )
    other = subprocess.Popen(
        ["sleep", "30"], env={**os.environ, "MARK": f"{state}-other"}, start_new_session=True
    )
    try:
        time.sleep(0.1)  # let exec replace the environment
        procs.kill_strays(state, "MARK", grace=2)
        assert marked.wait(timeout=5) is not None
        assert pod.wait(timeout=5) is not None
        assert other.poll() is None
    finally:
        for p in (marked, pod, other):
            p.kill()
            p.wait()


def test_log_tail_returns_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert procs.log_tail(log, lines=2) == "line 98\nline 99"
    assert procs.log_tail(tmp_path / "missing.log") == ""


def test_spawn_uses_the_given_environment(tmp_path: Path) -> None:
    log = tmp_path / "env.log"
    proc = procs.spawn(
        "env",
        [sys.executable, "-c", "import os; print(os.environ['WORLD_X'])"],
        log,
        env={**os.environ, "WORLD_X": "from-world"},
    )
    deadline = time.monotonic() + 10
    while proc.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
        procs._reap(proc.pid)
    assert log.read_text().strip() == "from-world"
