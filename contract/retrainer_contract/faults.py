"""Named fault points: where a fault test may kill a process dead, between two steps whose
order matters, to prove that every window converges.

`point(name)` kills the process with SIGKILL (no cleanup, like a node crash) when the
environment variable RETRAINER_FAULT_POINT names that point; otherwise it does nothing. No
deployment sets the variable: the chart has no value for it. The operator names its points in
`retrainer_operator.faults`; the trainer's are here, beside the mechanism both share.
"""

from __future__ import annotations

import os
import signal

__all__ = ["ENV", "TRAINER_FINAL_VALIDATION", "TRAINER_POINTS", "point"]

ENV = "RETRAINER_FAULT_POINT"
# Ultralytics' final phase: both weights files stripped in place, the finished run not recorded.
TRAINER_FINAL_VALIDATION = "trainer-final-validation"
TRAINER_POINTS = (TRAINER_FINAL_VALIDATION,)


def point(name: str) -> None:
    """Die here if the fault test asked for this point."""
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
