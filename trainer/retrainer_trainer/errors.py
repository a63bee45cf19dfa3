"""The exceptions that choose the trainer's exit code (retrainer_contract.exits).

The Job's podFailurePolicy reads only the exit code: 3 means the input is wrong and retrying
cannot help (FailJob); anything else is an infrastructure failure the Job retries. Every
failure in the pipeline is raised as one of these so `__main__` can pick the code in one place.

    BaseException
     ├── Preempted            SIGTERM: the pod is being evicted; exits 143, resumes on restart
     └── Exception
          └── TrainerError    exit 1 (infrastructure: MinIO/MLflow unreachable, crash)
               └── BadInput   exit 3 (dataset, base model, corrections, spec): never retried
                    ├── VersionConflict   exit 3: version N on the claim belongs to another
                    │                     RetrainJob; never adopted, never overwritten
                    └── CorruptedWeights  exit 3: a finished version's best.pt no longer matches
                                          its record and no copy does; never published
"""

from __future__ import annotations

from collections.abc import Sequence

from retrainer_contract import documents, exits

__all__ = ["BadInput", "CorruptedWeights", "Preempted", "TrainerError", "VersionConflict"]


class TrainerError(Exception):
    """An infrastructure failure: the Job retries it (exit 1)."""

    exit_code = exits.INFRA
    reason = "InfrastructureError"


class BadInput(TrainerError):
    """Wrong input: permanent, the Job fails at once (exit 3).

    `problems` lists every problem found (file and line where known), so a user fixes them all
    in one go instead of one per run.
    """

    exit_code = exits.BAD_INPUT
    reason = "BadInput"

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        self.problems = list(problems)
        shown = self.problems[:20]
        more = len(self.problems) - len(shown)
        detail = "".join(f"\n  - {p}" for p in shown) + (f"\n  ... and {more} more" if more else "")
        super().__init__(message + detail)
        self.summary = message


class Preempted(BaseException):  # a signal, not an error
    """SIGTERM arrived: stop now; the next pod resumes from weights/last.pt."""


class VersionConflict(BadInput):
    """Version N's run folder belongs to another RetrainJob: stop before touching it."""

    reason = documents.VERSION_CONFLICT


class CorruptedWeights(BadInput):
    """best.pt of a finished version differs from its record and no copy matches the record.

    Not the user's input, but permanent all the same: a retried pod would hash the same bytes
    against the same record and fail the same way, so the Job should stop at once (exit 3)
    rather than spend its backoffLimit. Publishing those bytes, or retraining under a number
    whose weights were already published, would make "verified" a lie; what to do (restore a
    copy, or delete the version and train it again) is a person's decision.
    """

    reason = documents.CORRUPTED_WEIGHTS
