"""`retrainer-train`: the training Job's entry point.

Reads the environment into a Config, runs the pipeline, and turns the outcome into the exit
code and termination message of the contract (retrainer_contract.exits, docs/contract.md).

Run as the program (`retrainer-train`, `python -m retrainer_trainer`), it ends the process as
soon as its outcome is written: other threads joined and the exit handlers run as at any exit,
streams flushed, but the interpreter's teardown of every module and object (seconds, with
torch, Ultralytics and MLflow loaded, that change nothing) is skipped.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import NoReturn

from retrainer_contract import documents, exits
from retrainer_contract import env as trainer_env

from retrainer_trainer import config as config_module
from retrainer_trainer import heap, logs, manifest, preemption, scratch
from retrainer_trainer.errors import Preempted, StorageFull, TrainerError, storage_full

__all__ = ["TELEMETRY_OFF", "main"]

TELEMETRY_OFF = "MLFLOW_DISABLE_TELEMETRY"  # set to "false" to let MLflow report usage


def _full(error: Exception, config: config_module.Config | None) -> StorageFull | None:
    """A failure that a full claim caused, as StorageFull (never re-labels bad input)."""
    if config is None or (isinstance(error, TrainerError) and error.exit_code != exits.INFRA):
        return None
    return storage_full(error, config.storage_root)


def _is_program() -> bool:
    """Whether this process runs the trainer and nothing after it: the `retrainer-train`
    script or `python -m retrainer_trainer` (not a test calling `main`)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name in ("retrainer_trainer", "retrainer_trainer.__main__"):
        return True
    return os.path.basename(sys.argv[0] if sys.argv else "") == "retrainer-train"


def _exit_now(code: int) -> NoReturn:
    """Exit with `code` as the interpreter would, less its teardown: threads joined (the
    interpreter's own shutdown step), exit handlers run (MLflow's, logging's, temporary
    folders'), streams flushed; then the process ends without freeing module by module."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the outcome is written: nothing to stop
    logs.flush()
    shutdown = getattr(threading, "_shutdown", None)  # joins non-daemon threads, as at exit
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed: nothing more can be written
            stream.flush()
    os._exit(code)


def main() -> int:
    code = _run()
    if _is_program():
        _exit_now(code)
    return code


def _run() -> int:
    preemption.install()
    # MLflow 3 reports usage to its makers from every process that imports it, unless told
    # not to: a training pod talks to its own tracking server and object store only.
    os.environ.setdefault(TELEMETRY_OFF, "true")
    env = dict(os.environ)
    termination = env.get(trainer_env.TERMINATION_MESSAGE_PATH) or None
    termination_path = Path(termination) if termination else None
    config: config_module.Config | None = None
    try:
        try:
            config = config_module.from_env(env)
            # Before any library that writes scratch files is imported (read-only root).
            moved = scratch.redirect(config.workdir)
            if moved:
                logs.event("scratch.redirected", **moved)
            with heap.paused():  # heavy imports only once the input is sane (heap.py)
                from retrainer_trainer import pipeline

            document = pipeline.run(config)
        except Exception as error:
            full = _full(error, config)
            if full is None:
                raise
            raise full from error
    except Preempted:
        logs.event("preempted", message="SIGTERM: stopping; a new pod resumes from last.pt")
        manifest.write_termination(
            termination_path, documents.failure("Preempted", "SIGTERM received", exits.PREEMPTED)
        )
        return exits.PREEMPTED
    except TrainerError as error:
        logs.event("failed", reason=error.reason, exitCode=error.exit_code, message=str(error))
        manifest.write_termination(
            termination_path, documents.failure(error.reason, str(error), error.exit_code)
        )
        return error.exit_code
    except Exception as error:  # a crash is infrastructure until proven otherwise: retry
        logs.event("crashed", error=f"{type(error).__name__}: {error}")
        traceback.print_exc(file=sys.stderr)
        manifest.write_termination(
            termination_path,
            documents.failure("Crashed", f"{type(error).__name__}: {error}", exits.INFRA),
        )
        return exits.INFRA
    manifest.write_termination(termination_path, document)
    return exits.OK


if __name__ == "__main__":
    sys.exit(main())
