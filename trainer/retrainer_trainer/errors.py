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
                    ├── StorageFull       exit 3: the claim has no space left
                    └── CorruptedWeights  exit 3: a finished version's best.pt no longer matches
                                          its record and no copy does; never published
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Sequence
from pathlib import Path

from retrainer_contract import documents, exits

__all__ = [
    "BadInput",
    "CorruptedWeights",
    "Preempted",
    "StorageFull",
    "TrainerError",
    "VersionConflict",
    "storage_full",
]


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


class StorageFull(BadInput):
    """The claim has no space left for version N.

    Permanent until a person frees space or grows the claim: retrying at once would fail the
    same way after minutes of training, so the Job stops (exit 3) with a message that says so.
    """

    reason = documents.STORAGE_FULL


class HoldoutTouched(BadInput):
    """A corrections file changes an image of the pinned holdout: refused (exit 3).

    The holdout is what two versions are compared on; a label correction there would make the
    champion's and the challenger's numbers incomparable, and training on it leaks the test.
    """

    reason = documents.HOLDOUT_TOUCHED


# Below this many free bytes on the claim, a failed write is taken for a full claim (torch's
# writer reports ENOSPC as a RuntimeError without the errno).
FULL_BELOW = 1024 * 1024


def _causes(error: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def storage_full(error: BaseException, storage_root: Path) -> StorageFull | None:
    """`error` as StorageFull when the claim at `storage_root` is what ran out of space."""
    enospc = any(isinstance(e, OSError) and e.errno == errno.ENOSPC for e in _causes(error))
    try:
        free = shutil.disk_usage(storage_root).free
    except OSError:
        return None
    if not enospc and free >= FULL_BELOW:
        return None
    return StorageFull(
        f"the claim mounted at {storage_root} is full ({free} bytes free) while writing "
        f"version files: {type(error).__name__}: {str(error)[:300]}; free space on the claim "
        "or grow it (storage.size in the chart, or the PVC), then apply the RetrainJob again"
    )
