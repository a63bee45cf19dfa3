"""Named fault points: where a fault test may kill the operator dead, between two steps whose
order matters, to prove that every window converges.

`point(name)` kills the process with SIGKILL (no cleanup, like a node crash) when the
environment variable RETRAINER_FAULT_POINT names that point; otherwise it does nothing. No
deployment sets the variable: the chart has no value for it.
"""

from __future__ import annotations

import os
import signal

__all__ = [
    "AFTER_ALLOCATION",
    "AFTER_JOB_CREATE",
    "AFTER_RUN_CREATE",
    "BEFORE_STATUS_PATCH",
    "ENV",
    "POINTS",
    "point",
]

ENV = "RETRAINER_FAULT_POINT"
AFTER_ALLOCATION = "after-allocation"  # version N in the ledger, no Job yet
AFTER_JOB_CREATE = "after-job-create"  # Job created, the status does not name it yet
BEFORE_STATUS_PATCH = "before-status-patch"  # a whole new status computed, not yet written
# A ModelLine's run (a RetrainJob) created, the line's status does not record its slot yet.
AFTER_RUN_CREATE = "after-run-create"
POINTS = (AFTER_ALLOCATION, AFTER_JOB_CREATE, BEFORE_STATUS_PATCH, AFTER_RUN_CREATE)


def point(name: str) -> None:
    """Die here if the fault test asked for this point."""
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
