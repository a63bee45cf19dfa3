"""Named fault points: where a fault test may kill a process dead, between two steps whose
order matters, to prove that every window converges.

`point(name)` kills the process with SIGKILL (no cleanup, like a node crash) when the
environment variable RETRAINER_FAULT_POINT names that point; otherwise it does nothing. No
deployment sets the variable: the chart has no value for it. `active(name)` is the same
switch for a fault that is a condition rather than a death (a claim refusing hardlinks). The
operator names its points in `retrainer_operator.faults`; the trainer's are here, beside the
mechanism both share.
"""

from __future__ import annotations

import os
import signal

__all__ = [
    "ENV",
    "TRAINER_FINAL_VALIDATION",
    "TRAINER_MANIFEST_WRITTEN",
    "TRAINER_NO_HARDLINKS",
    "TRAINER_POINTS",
    "active",
    "point",
]

ENV = "RETRAINER_FAULT_POINT"
# Ultralytics' final phase: both weights files stripped in place, the finished run not recorded.
TRAINER_FINAL_VALIDATION = "trainer-final-validation"
# The manifest is on the claim; it is neither in the MLflow run yet nor is that run ended.
TRAINER_MANIFEST_WRITTEN = "trainer-manifest-written"
TRAINER_POINTS = (TRAINER_FINAL_VALIDATION, TRAINER_MANIFEST_WRITTEN)
# Not a point to die at, a condition (`active`): the claim refuses hardlinks (EXDEV), as some
# network filesystems do, so working trees are built from symlinks into the dataset cache.
TRAINER_NO_HARDLINKS = "trainer-no-hardlinks"


def point(name: str) -> None:
    """Die here if the fault test asked for this point."""
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def active(name: str) -> bool:
    """Whether the fault test asked for this condition (a fault that is not a kill)."""
    return os.environ.get(ENV) == name
