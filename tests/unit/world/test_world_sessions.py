"""Sharing one world between test sessions and the shell: leases of dead sessions are
dropped, and the CLI answers clearly when no world is running."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from retrainer_world import __main__ as cli
from retrainer_world import procs, sessions
from retrainer_world.components import Layout


def test_leases_of_finished_sessions_are_dropped_and_live_ones_kept(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    layout.sessions.mkdir()
    started = procs.start_time(os.getpid())
    mine = layout.sessions / f"{os.getpid()}-{started}"
    gone = layout.sessions / f"{os.getpid()}-{started + 1 if started else 1}"
    junk = layout.sessions / "not-a-lease"
    for lease in (mine, gone, junk):
        lease.touch()
    assert sessions.live_leases(layout) == [mine]
    assert sorted(p.name for p in layout.sessions.iterdir()) == [mine.name]


def test_status_without_a_world_says_it_is_down(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["status", "--state", str(tmp_path)]) == 1
    assert capsys.readouterr().out.startswith("status=down")


def test_env_without_a_world_fails_naming_the_command_that_starts_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["env", "--state", str(tmp_path)]) == 1
    assert "python -m retrainer_world up" in capsys.readouterr().err


def test_down_without_a_world_is_a_no_op(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["down", "--state", str(tmp_path / "never-started")]) == 0
    assert cli.main(["down", "--state", str(tmp_path / "never-started")]) == 0
    assert "world stopped" in capsys.readouterr().out
