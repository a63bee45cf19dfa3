"""The MLflow client in a process of its own (tracker_process): a real child process, a real
MLflow client in it (a sqlite store, or a server that never answers), and faults injected by
killing or signalling that process."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from retrainer_contract import tracking
from retrainer_trainer import tracker_process
from retrainer_trainer.errors import BadInput, TrainerError
from retrainer_trainer.tracker_process import TrackerProcess


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.chdir(tmp_path)  # the sqlite store's default artifact root is relative
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture
def silent_server() -> Iterator[tuple[str, socket.socket]]:
    """An MLflow URI whose server accepts connections and never answers: a call to it stays
    in flight (until MLflow's 20 s timeout) for as long as a test needs."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}", server
    finally:
        server.close()


def wait_for_a_request(server: socket.socket) -> None:
    """Until the child's request reached the silent server (a connection waits in its backlog)."""
    readable, _, _ = select.select([server], [], [], 60)
    assert readable, "the call never reached the server"


def printed(capsys: pytest.CaptureFixture[str], name: str) -> list[dict[str, object]]:
    lines = capsys.readouterr().out.splitlines()
    return [e for e in map(json.loads, filter(None, lines)) if e.get("event") == name]


def test_calls_run_in_the_child_and_its_events_are_printed_here(
    store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with TrackerProcess(store) as tracker:
        assert tracker.pid != os.getpid()
        tracker.ping()
        run = tracker.open_run("shapes", "u-1", "team-a", "shapes", 3, "yolo11n.yaml")
        tracker.log_metrics(run.run_id, 1, {"mAP50": 0.5, "epoch": 1})
        assert tracker.epochs_logged_here(run.run_id) == {1}
        (opened,) = printed(capsys, "mlflow.run")  # raised in the child, printed by this one
        assert opened["runId"] == run.run_id and opened["reused"] is False

    found = MlflowClient(store).get_run(run.run_id)
    assert found.data.metrics["mAP50"] == 0.5
    assert found.data.tags[tracking.TAG_VERSION] == "3"


def test_an_error_in_the_child_is_raised_here_as_itself(store: str, tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.json"
    manifest.write_text("{}")
    with TrackerProcess(store) as tracker, pytest.raises(TrainerError, match="run nope"):
        tracker.finish("nope", manifest)


def test_an_error_that_cannot_cross_becomes_a_trainer_error_naming_it() -> None:
    class Odd(Exception):
        def __init__(self, message: str, *, code: int) -> None:  # pickle cannot rebuild it
            super().__init__(message)
            self.code = code

    error = tracker_process._portable(Odd("refused", code=7))
    assert type(error) is TrainerError and str(error) == "MLflow: Odd: refused"
    kept = BadInput("spec.dataset.uri: not found")
    assert tracker_process._portable(kept) is kept


def test_a_tracking_uri_not_set_is_reported_by_the_first_call() -> None:
    with TrackerProcess("") as tracker, pytest.raises(TrainerError, match="is not set"):
        tracker.ping()


def test_calls_from_two_threads_are_answered_at_once(
    silent_server: tuple[str, socket.socket],
) -> None:
    uri, server = silent_server
    tracker = TrackerProcess(uri)
    stuck: list[BaseException] = []

    def ping() -> None:
        try:
            tracker.ping()
        except BaseException as error:
            stuck.append(error)

    waiting = threading.Thread(target=ping, daemon=True)
    waiting.start()
    wait_for_a_request(server)
    # The ping is in flight; a call from this thread is answered beside it.
    assert tracker.epochs_logged_here("any") == set()
    assert waiting.is_alive()
    os.kill(tracker.pid, signal.SIGKILL)  # the fault: the child killed with a call under way
    waiting.join(30)
    assert not waiting.is_alive()
    (error,) = stuck
    assert isinstance(error, TrainerError) and "exit code -9" in str(error)
    with pytest.raises(TrainerError, match="exit code -9"):
        tracker.epochs_logged_here("any")  # every later call too
    tracker.close()


def test_the_child_ignores_sigterm_and_exits_when_closed(store: str) -> None:
    tracker = TrackerProcess(store)
    tracker.ping()
    os.kill(tracker.pid, signal.SIGTERM)  # a pod's SIGTERM reaching its whole process group
    run = tracker.open_run("shapes", "u-2", "team-a", "shapes", 1, "yolo11n.yaml")
    tracker.end(run.run_id, "KILLED")  # what the trainer does on SIGTERM, through the child
    assert MlflowClient(store).get_run(run.run_id).info.status == "KILLED"

    started = time.monotonic()
    tracker.close()
    assert tracker._proc.returncode == 0
    assert time.monotonic() - started < tracker_process.EXIT_WAIT_SECONDS  # not killed
    with pytest.raises(TrainerError, match="closed"):
        tracker.ping()
