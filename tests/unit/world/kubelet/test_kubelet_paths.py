"""Container paths map to the local folders behind volumes; messages are truncated."""

from __future__ import annotations

from pathlib import Path

import pytest
from retrainer_world.kubelet.launch import container_paths, working_dir
from retrainer_world.kubelet.paths import PathMap, log_tail, read_message, termination_message


def test_paths_under_a_mount_are_rewritten_inside_arguments() -> None:
    pm = PathMap()
    pm.add("/var/lib/retrainer", "/s/volumes/ns/models")
    assert pm.rewrite("--data=/var/lib/retrainer/shapes/data.yaml") == (
        "--data=/s/volumes/ns/models/shapes/data.yaml"
    )
    assert pm.rewrite("/var/lib/retrainer") == "/s/volumes/ns/models"
    assert pm.rewrite("a:/var/lib/retrainer/x b") == "a:/s/volumes/ns/models/x b"


def test_similar_names_and_uris_are_left_alone() -> None:
    pm = PathMap()
    pm.add("/data", "/local/data")
    assert pm.rewrite("/database /data.bak") == "/database /data.bak"
    assert pm.rewrite("pvc://models/data/x s3://b/data http://h:9000/data") == (
        "pvc://models/data/x s3://b/data http://h:9000/data"
    )


def test_the_longest_mount_wins() -> None:
    pm = PathMap()
    pm.add("/data", "/A")
    pm.add("/data/cache/", "/B")
    assert pm.rewrite("/data/cache/f /data/f") == "/B/f /A/f"
    assert pm.local("/data/cache/x/y") == "/B/x/y"
    assert pm.local("/elsewhere") is None


def test_root_mount_is_refused() -> None:
    with pytest.raises(ValueError, match="mountPath"):
        PathMap().add("/", "/x")


def test_sub_path_and_termination_message_path_are_mapped(tmp_path: Path) -> None:
    container = {
        "volumeMounts": [{"name": "models", "mountPath": "/mnt/m", "subPath": "shapes"}],
        "terminationMessagePath": "/tmp/msg",
    }
    msg = tmp_path / "c.termination-log"
    pm = container_paths(container, {"models": tmp_path / "vol"}, msg, {})
    assert pm.rewrite("/mnt/m/w.pt") == f"{tmp_path}/vol/shapes/w.pt"
    assert (tmp_path / "vol" / "shapes").is_dir()
    assert pm.rewrite("/tmp/msg") == str(msg)


def test_default_termination_path_is_dev_termination_log(tmp_path: Path) -> None:
    pm = container_paths({}, {}, tmp_path / "m", {})
    assert pm.rewrite("/dev/termination-log") == str(tmp_path / "m")


def test_mount_of_unknown_volume_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="names no volume"):
        container_paths({"volumeMounts": [{"name": "x", "mountPath": "/x"}]}, {}, tmp_path, {})


def test_working_dir_is_mapped_created_or_per_pod(tmp_path: Path) -> None:
    pm = PathMap()
    pm.add("/work", tmp_path / "vol")
    assert working_dir({"workingDir": "/work/sub"}, pm, tmp_path / "pod") == tmp_path / "vol/sub"
    assert (tmp_path / "vol/sub").is_dir()
    assert working_dir({}, pm, tmp_path / "pod") == tmp_path / "pod/work"
    assert working_dir({"workingDir": "/app"}, pm, tmp_path / "pod") == tmp_path / "pod/rootfs/app"
    assert working_dir({"workingDir": str(tmp_path)}, pm, tmp_path / "pod") == tmp_path


def test_termination_message_is_cut_at_4096_bytes(tmp_path: Path) -> None:
    f = tmp_path / "m"
    f.write_text("x" * 5000)
    assert len(read_message(f)) == 4096
    assert read_message(tmp_path / "absent") == ""


def test_log_tail_keeps_80_lines_and_2048_bytes(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_text("".join(f"line {i}\n" for i in range(200)))
    tail = log_tail(log)
    assert tail.splitlines()[-1] == "line 199"
    assert len(tail.splitlines()) == 80
    log.write_text("y" * 3000 + "\n")
    assert len(log_tail(log).encode()) <= 2048


def test_log_tail_reads_only_after_the_offset(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_text("old run\nnew run\n")
    assert log_tail(log, offset=len("old run\n")) == "new run\n"


def test_fallback_to_logs_only_on_error_without_message(tmp_path: Path) -> None:
    msg, log = tmp_path / "m", tmp_path / "log"
    msg.write_text("")
    log.write_text("Traceback: boom\n")
    assert termination_message(msg, "FallbackToLogsOnError", 1, log, 0) == "Traceback: boom\n"
    assert termination_message(msg, "FallbackToLogsOnError", 0, log, 0) == ""
    assert termination_message(msg, "File", 1, log, 0) == ""
    msg.write_text('{"version": 1}')
    assert termination_message(msg, "FallbackToLogsOnError", 1, log, 0) == '{"version": 1}'
