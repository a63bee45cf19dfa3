"""What keeps the trainer's fixed costs down without changing what it does: events raised in
another thread printed by the main thread, in order; per-step seconds in one event; the
collector paused over heavy imports and what they made frozen; a file hashed once while it is
unchanged; MLflow work that overlaps a step raising its error where it is joined; the program
(not a test calling `main`) skipping the interpreter's teardown."""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from retrainer_contract import integrity
from retrainer_trainer import __main__ as entry
from retrainer_trainer import heap, logs, mlflow_record, pipeline, store, tracking


def printed(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_an_event_from_another_thread_waits_for_the_main_threads_next_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    worker = threading.Thread(target=lambda: logs.event("upload", artifact="a"))
    worker.start()
    worker.join()
    assert printed(capsys) == []  # a progress bar may be open on stdout: nothing printed yet

    logs.event("epoch", epoch=1)

    assert [e["event"] for e in printed(capsys)] == ["upload", "epoch"]


def test_flush_prints_what_other_threads_raised(capsys: pytest.CaptureFixture[str]) -> None:
    worker = threading.Thread(target=lambda: logs.event("mlflow.datasets", training="x@1"))
    worker.start()
    worker.join()

    logs.flush()

    (event,) = printed(capsys)
    assert event["event"] == "mlflow.datasets" and event["training"] == "x@1"


def test_phases_add_up_and_background_tasks_are_apart(capsys: pytest.CaptureFixture[str]) -> None:
    phases = logs.Phases()
    phases.add("startup", 0.5)
    with phases.phase("train"):
        time.sleep(0.01)
    phases.add("train", 1.0)
    phases.add("uploads", 2.0, background=True)

    phases.emit()

    (event,) = printed(capsys)
    assert event["event"] == "phase.seconds"
    assert event["startup"] == 0.5 and 1.01 <= event["train"] < 1.5
    assert event["total"] == pytest.approx(event["startup"] + event["train"], abs=0.002)
    assert event["background"] == {"uploads": 2.0}


def test_the_process_age_counts_from_its_start() -> None:
    assert 0 < logs.process_seconds() < time.time()


def test_the_collector_is_paused_over_the_block_and_what_it_made_is_frozen() -> None:
    assert gc.isenabled()
    before = gc.get_freeze_count()
    with heap.paused() as resume:
        assert not gc.isenabled()
        made = [object() for _ in range(10)]
        resume()  # early, once Ultralytics set up
        assert gc.isenabled()
        frozen = gc.get_freeze_count()
    assert frozen >= before + len(made)
    assert gc.isenabled() and gc.get_freeze_count() <= frozen  # resumed once: not frozen again
    heap.thaw()
    assert gc.get_freeze_count() == 0


def test_a_pause_inside_a_disabled_collector_leaves_it_disabled() -> None:
    gc.disable()
    try:
        with heap.paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
        heap.thaw()


def test_a_file_is_hashed_once_while_it_is_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[Path] = []
    real = integrity.sha256_file

    def counting(path: Any, on_chunk: Any = None) -> tuple[str, int]:
        reads.append(Path(path))
        return real(path, on_chunk)

    monkeypatch.setattr(integrity, "sha256_file", counting)
    path = tmp_path / "best.pt"
    path.write_bytes(b"weights")

    first = store.digest(path)
    assert store.digest(path) == first and len(reads) == 1
    replaced = tmp_path / ".best.pt.partial"
    replaced.write_bytes(b"weights, retrained")
    os.replace(replaced, path)  # a new inode under the same name: read again

    assert store.digest(path) == real(path) != first and len(reads) == 2
    assert store.artifact("production", "pvc://x", path)["sha256"] == real(path)[0]


def test_an_overlapped_task_raises_where_it_is_joined_and_is_timed() -> None:
    phases = logs.Phases()
    overlap = pipeline._Overlap(phases)
    try:
        overlap.start("runInputs", lambda: (_ for _ in ()).throw(RuntimeError("refused")))
        overlap.start("runInputs", lambda: None)  # started once: the second start is a no-op
        with pytest.raises(RuntimeError, match="refused"):
            overlap.join("runInputs")
        overlap.join("never-started")  # nothing to wait for
        overlap.start("uploads", lambda: time.sleep(0.05))
        overlap.settle()  # waits, raises nothing
    finally:
        overlap.close()
    assert set(phases.background) >= {"runInputs", "uploads"}
    assert phases.seconds == {}  # nothing counted on the main thread's steps


def test_only_the_program_skips_the_interpreters_teardown(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not entry._is_program()  # pytest calling main: a normal return
    monkeypatch.setattr(sys, "argv", ["/opt/venv/bin/retrainer-train"])
    assert entry._is_program()


def test_the_pinned_requirements_satisfy_mlflows_own_check() -> None:
    """The model's requirements are pinned from this environment, so the check MLflow runs on
    them (skipped while the model is saved: it maps every installed package) finds nothing."""
    from mlflow.utils import requirements_utils

    for pin in mlflow_record.requirements():
        assert requirements_utils._check_requirement_satisfied(pin) is None, pin


def test_mlflows_requirement_check_is_left_out_only_while_the_model_is_saved() -> None:
    from mlflow.utils import environment

    check = environment.warn_dependency_requirement_mismatches
    with tracking._pinned_from_here():
        assert environment.warn_dependency_requirement_mismatches is not check
        assert environment.warn_dependency_requirement_mismatches(["torch==0.0.1"]) is None
    assert environment.warn_dependency_requirement_mismatches is check


def test_mlflow_telemetry_is_off_unless_the_pod_asks_for_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RETRAINER_TERMINATION_MESSAGE_PATH", str(tmp_path / "termination"))
    monkeypatch.delenv("RETRAINER_SPEC", raising=False)  # bad input: stops before any import
    monkeypatch.delenv(entry.TELEMETRY_OFF, raising=False)
    handler = signal.getsignal(signal.SIGTERM)  # main installs the trainer's
    monkeypatch.setattr(signal, "signal", lambda *args: handler)
    assert entry.main() == 3
    assert os.environ[entry.TELEMETRY_OFF] == "true"
    monkeypatch.setenv(entry.TELEMETRY_OFF, "false")
    assert entry.main() == 3
    assert os.environ[entry.TELEMETRY_OFF] == "false"
