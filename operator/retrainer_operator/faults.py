"""The operator's named fault points (the mechanism, `point`, is the contract's): where a
fault test may kill the operator dead, between two steps whose order matters."""

from __future__ import annotations

from retrainer_contract.faults import ENV, point

__all__ = [
    "AFTER_ALLOCATION",
    "AFTER_JOB_CREATE",
    "AFTER_RUN_CREATE",
    "BEFORE_STATUS_PATCH",
    "ENV",
    "POINTS",
    "point",
]

AFTER_ALLOCATION = "after-allocation"  # version N in the ledger, no Job yet
AFTER_JOB_CREATE = "after-job-create"  # Job created, the status does not name it yet
BEFORE_STATUS_PATCH = "before-status-patch"  # a whole new status computed, not yet written
# A ModelLine's run (a RetrainJob) created, the line's status does not record its slot yet.
AFTER_RUN_CREATE = "after-run-create"
POINTS = (AFTER_ALLOCATION, AFTER_JOB_CREATE, BEFORE_STATUS_PATCH, AFTER_RUN_CREATE)
