"""The MLflow client (tracking.Tracker) in a process of its own, beside the trainer's.

Why: importing MLflow takes 1.3 to 1.7 s of one core (it brings pandas, pyarrow, FastAPI and
more), the largest part of the trainer's fixed cost over plain Ultralytics. A thread cannot
hide it: imports hold the GIL, and measured beside Ultralytics' import or beside training it
was no faster than in turn. A child process started before the inputs are read imports it on
another core while this process imports Ultralytics, so the run opens in a few requests when
training is about to start.

Every Tracker call is sent to the child and answered when done; calls from several threads run
there at once, as they did here (the uploads beside the logged model). The events the child
raises come back with each answer and are printed by this process (logs.relay), so the pod's
log is one stream in the usual order. The child:

- contacts MLflow only when asked (bad input is still reported before MLflow is contacted);
- ignores SIGTERM and SIGINT: this process ends the run KILLED through it on a preemption;
- exits at once when this process closes the connection, exits or is killed.

A child that dies (the OOM killer, a crash) fails the call waiting on it, and every later one,
with a TrainerError naming its exit code: the Job retries, as for MLflow being down.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.connection import Connection, Pipe
from pathlib import Path
from typing import Any

from retrainer_trainer import heap, logs
from retrainer_trainer.errors import TrainerError
from retrainer_trainer.mlflow_record import DatasetRef, VersionFacts
from retrainer_trainer.tracking import LoggedModelRef, RunRef

__all__ = ["TrackerProcess", "serve"]

# The Tracker methods the child answers (nothing else of it is reachable from here).
METHODS = frozenset(
    {
        "ping",
        "open_run",
        "log_params",
        "log_metrics",
        "epochs_logged_here",
        "log_datasets",
        "logged_steps",
        "upload",
        "upload_many",
        "log_model",
        "score_as",
        "register",
        "finish",
        "end",
    }
)

# Calls the child runs at once: the pipeline's main thread and its two overlapping tasks.
CHILD_THREADS = 4

# How long `close` waits for the child to exit after the connection closed (it exits at once).
EXIT_WAIT_SECONDS = 5.0

_CHILD = "import sys; from retrainer_trainer.tracker_process import serve; serve(int(sys.argv[1]))"


class TrackerProcess:
    """tracking.Tracker's methods, run in a child process started here (see the module)."""

    def __init__(self, tracking_uri: str) -> None:
        ours, theirs = Pipe(duplex=True)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _CHILD, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=2,  # the pod's stdout is this process's event stream
                close_fds=True,
            )
        finally:
            theirs.close()
        self._conn: Connection = ours
        self._lock = threading.Lock()
        self._pending: dict[int, Future[Any]] = {}
        self._next = 0
        self._gone: TrainerError | None = None
        # The URI goes over the connection, not the command line (ps shows that to anyone).
        self._conn.send(tracking_uri)
        self._reader = threading.Thread(
            target=self._read, name="retrainer-mlflow-answers", daemon=True
        )
        self._reader.start()

    @property
    def pid(self) -> int:
        return self._proc.pid

    # ---- the Tracker's methods ----

    def ping(self) -> None:
        self._call("ping")

    def open_run(
        self, experiment: str, uid: str, namespace: str, model: str, version: int, base: str
    ) -> RunRef:
        ref: RunRef = self._call("open_run", experiment, uid, namespace, model, version, base)
        return ref

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        self._call("log_params", run_id, dict(params))

    def log_metrics(self, run_id: str, step: int, metrics: Mapping[str, float]) -> None:
        self._call("log_metrics", run_id, step, dict(metrics))

    def epochs_logged_here(self, run_id: str) -> set[int]:
        epochs: set[int] = self._call("epochs_logged_here", run_id)
        return epochs

    def log_datasets(self, run_id: str, datasets: Sequence[DatasetRef]) -> None:
        self._call("log_datasets", run_id, list(datasets))

    def logged_steps(self, run_id: str, key: str) -> set[int]:
        steps: set[int] = self._call("logged_steps", run_id, key)
        return steps

    def upload(self, run_id: str, local: Path, artifact_path: str) -> None:
        self._call("upload", run_id, local, artifact_path)

    def upload_many(self, run_id: str, files: Sequence[tuple[Path, str]]) -> None:
        self._call("upload_many", run_id, list(files))

    def log_model(self, run: RunRef, weights: Path, facts: VersionFacts) -> LoggedModelRef:
        model: LoggedModelRef = self._call("log_model", run, weights, facts)
        return model

    @contextlib.contextmanager
    def scoring(self, model: LoggedModelRef) -> Iterator[None]:
        """tracking.Tracker.scoring: the metrics logged inside are tied to `model`."""
        self._call("score_as", model)
        try:
            yield
        finally:
            self._call("score_as", None)

    def register(
        self, name: str, run_id: str, model: LoggedModelRef, evaluation: Mapping[str, Any] | None
    ) -> str:
        version: str = self._call("register", name, run_id, model, evaluation)
        return version

    def finish(self, run_id: str, manifest: Path) -> None:
        self._call("finish", run_id, manifest)

    def end(self, run_id: str, status: str) -> None:
        self._call("end", run_id, status)

    # ---- the connection ----

    def close(self) -> None:
        """Tell the child to exit (it does at once; killed if it has not within seconds)."""
        with self._lock:
            if self._gone is None:
                self._gone = TrainerError("the MLflow client process was closed")
            # A close of our end would not do: the reader thread's recv keeps it open.
            with contextlib.suppress(OSError, ValueError):
                self._conn.send(None)
        try:
            self._proc.wait(timeout=EXIT_WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._reader.join(timeout=EXIT_WAIT_SECONDS)  # it sees the end of the connection
        with contextlib.suppress(OSError):
            self._conn.close()

    def __enter__(self) -> TrackerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, *args: Any) -> Any:
        future: Future[Any] = Future()
        with self._lock:
            if self._gone is not None:
                raise self._gone
            self._next += 1
            call = self._next
            self._pending[call] = future
            try:
                self._conn.send((call, method, args))
            except (OSError, ValueError) as error:
                del self._pending[call]
                raise TrainerError(f"the MLflow client process is gone ({error})") from error
        try:
            return future.result()
        finally:
            if threading.current_thread() is threading.main_thread():
                logs.flush()  # the events it raised, printed now as if raised here

    def _read(self) -> None:
        while True:
            try:
                call, ok, value, lines = self._conn.recv()
            except (EOFError, OSError):
                break
            logs.relay(lines)
            with self._lock:
                future = self._pending.pop(call, None)
            if future is None:  # its caller stopped waiting (SIGTERM raised meanwhile)
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        self._fail_all()

    def _fail_all(self) -> None:
        try:
            code: int | None = self._proc.wait(timeout=EXIT_WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            code = None
        with self._lock:
            if self._gone is None:
                self._gone = TrainerError(
                    f"the MLflow client process exited (exit code {code}) before answering; "
                    "the Job retries"
                )
            error = self._gone
            waiting = list(self._pending.values())
            self._pending.clear()
        for future in waiting:
            future.set_exception(error)


def _portable(error: BaseException) -> BaseException:
    """`error` if it survives the trip to the parent as itself, else a TrainerError naming it."""
    try:
        if type(pickle.loads(pickle.dumps(error))) is type(error):
            return error
    except Exception:  # any failure to copy it: sent as text instead
        pass
    return TrainerError(f"MLflow: {type(error).__name__}: {str(error)[:500]}")


def serve(fd: int) -> None:
    """The child: build the Tracker (importing MLflow), then answer calls until the parent
    closes the connection or goes away."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(fd)
    try:
        tracking_uri = conn.recv()
    except (EOFError, OSError):
        os._exit(0)
    tracker: Any = None
    failure: BaseException | None = None
    with heap.paused():  # MLflow's import makes no garbage worth collecting (heap.py)
        try:
            from retrainer_trainer.tracking import Tracker

            tracker = Tracker(tracking_uri)
        except Exception as error:  # answered to every call instead
            failure = error
    sending = threading.Lock()

    def answer(call: int, method: str, args: tuple[Any, ...]) -> None:
        try:
            if failure is not None:
                raise failure
            if method not in METHODS:
                raise TrainerError(f"no such tracker method: {method}")
            data = pickle.dumps((call, True, getattr(tracker, method)(*args), logs.take()))
        except Exception as error:  # raised again in the parent
            data = pickle.dumps((call, False, _portable(error), logs.take()))
        with sending:
            try:
                conn.send_bytes(data)
            except (OSError, ValueError):
                os._exit(0)  # the parent is gone

    pool = ThreadPoolExecutor(CHILD_THREADS, thread_name_prefix="retrainer-mlflow")
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            message = None  # the parent is gone
        if message is None:  # closed, or the parent is gone: calls under way finish first
            pool.shutdown(wait=True)
            sys.stdout.flush()
            os._exit(0)  # no interpreter teardown (a second with MLflow loaded)
        pool.submit(answer, *message)
