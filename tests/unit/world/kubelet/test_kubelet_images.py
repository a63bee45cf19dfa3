"""Which command a container runs: its own command, else its image via images.yaml."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from retrainer_world.kubelet.images import (
    ImageEntry,
    ImageUnknown,
    container_argv,
    image_candidates,
    load_images,
    lookup_image,
    resolve_executable,
)

VENV, REPO = Path("/v"), Path("/r")


def test_image_names_drop_tag_digest_and_registry() -> None:
    assert image_candidates("ghcr.io/retrainer/trainer:0.1.0") == [
        "ghcr.io/retrainer/trainer",
        "retrainer/trainer",
        "trainer",
    ]
    assert image_candidates("localhost:5000/retrainer-trainer@sha256:ab") == [
        "localhost:5000/retrainer-trainer",
        "retrainer-trainer",
    ]
    assert image_candidates("python") == ["python"]


def test_the_shipped_table_maps_the_trainer_image_to_the_venv_command() -> None:
    images = load_images()
    argv = container_argv({"image": "ghcr.io/retrainer/trainer:0.1.0"}, images, VENV, REPO)
    assert argv == ["/v/bin/retrainer-train"]
    assert container_argv({"image": "retrainer-trainer"}, images, VENV, REPO) == argv


def test_a_command_runs_as_given_whatever_the_image() -> None:
    container = {"image": "nowhere/unknown", "command": ["python", "-c"], "args": ["print(1)"]}
    assert container_argv(container, {}, VENV, REPO) == ["python", "-c", "print(1)"]


def test_args_replace_the_image_cmd_but_keep_its_entrypoint() -> None:
    images = {"tool": ImageEntry(entrypoint=("{venv}/bin/tool",), cmd=("--help",))}
    assert container_argv({"image": "tool"}, images, VENV, REPO) == ["/v/bin/tool", "--help"]
    assert container_argv({"image": "tool", "args": ["run"]}, images, VENV, REPO) == [
        "/v/bin/tool",
        "run",
    ]


def test_unknown_image_without_command_cannot_be_pulled() -> None:
    with pytest.raises(ImageUnknown, match=r"not in images\.yaml"):
        container_argv({"image": "example.com/nothing:1"}, {}, VENV, REPO)


def test_lookup_falls_back_to_the_last_path_component() -> None:
    images = {"python": ImageEntry(cmd=("python",))}
    assert lookup_image(images, "docker.io/library/python:3.11") == images["python"]


def test_bad_table_entries_are_rejected_with_the_image_name(tmp_path: Path) -> None:
    table = tmp_path / "images.yaml"
    table.write_text("images:\n  foo:\n    command: [x]\n")
    with pytest.raises(ValueError, match=r"images\.foo"):
        load_images(table)


def test_executables_are_found_on_the_pod_path(tmp_path: Path) -> None:
    bin_dir = str(Path(sys.executable).parent)
    assert resolve_executable(Path(sys.executable).name, bin_dir, tmp_path) == sys.executable
    assert resolve_executable("./run.sh", "", tmp_path) == str(tmp_path / "run.sh")
    with pytest.raises(FileNotFoundError, match="executable file not found"):
        resolve_executable("no-such-binary-here", bin_dir, tmp_path)
