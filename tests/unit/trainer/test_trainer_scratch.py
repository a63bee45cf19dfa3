"""On a read-only root filesystem every scratch write lands in the workdir emptyDir."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from retrainer_trainer import scratch


def test_places_that_cannot_be_written_move_into_the_workdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    read_only = tmp_path / "root"
    read_only.mkdir()
    read_only.chmod(0o555)
    workdir = tmp_path / "work"
    # Fault point: what a read-only root filesystem looks like to the trainer.
    monkeypatch.setenv("MPLCONFIGDIR", str(read_only / "matplotlib"))
    monkeypatch.setenv("TMPDIR", str(read_only))
    monkeypatch.setattr(scratch, "_writable", lambda p: not p.startswith(str(read_only)))
    moved = scratch.redirect(workdir)
    assert moved["MPLCONFIGDIR"] == str(workdir / "matplotlib") == os.environ["MPLCONFIGDIR"]
    assert moved["TMPDIR"] == str(workdir / "tmp")
    assert Path(tempfile.gettempdir()) == workdir / "tmp"
    assert all(Path(path).is_dir() for path in moved.values())


def test_writable_places_are_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "yolo"))
    assert scratch.redirect(tmp_path / "work") == {}
    assert os.environ["MPLCONFIGDIR"] == str(tmp_path / "mpl")


def test_a_path_under_a_missing_folder_is_judged_by_its_nearest_parent(tmp_path: Path) -> None:
    assert scratch._writable(str(tmp_path / "a" / "b" / "c"))
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    # root may write anywhere; the rule is os.access on the nearest existing folder.
    assert scratch._writable(str(locked / "x")) == os.access(locked, os.W_OK)
