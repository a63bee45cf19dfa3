"""The status vocabulary: condition types, phases, CamelCase reasons and "is terminal".

The operator writes the status of RetrainJobs and ModelLines; the CLI, the demo, dashboards
and the docs read it. A word the writer spells one way and a reader another is a status that
reads as "unknown" (a phase that never ends, a version never shown as verified), so every
word is written once, here, and both sides import it (docs/contract.md). The functions are
the readers' rules: which condition, whether it holds, the phase the conditions give and
whether it is final. Writing (set_condition, the whole status) stays with the operator.
Standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from retrainer_contract import documents, evaluation

__all__ = [
    "ACCEPTED",
    "CHAMPION_IN_SYNC",
    "COMPLETE",
    "CONDITION_TYPES",
    "FAILED",
    "FALSE",
    "LINE_CONDITION_TYPES",
    "PENDING",
    "PHASES",
    "PHASE_FAILED",
    "PHASE_RUNNING",
    "PROMOTED",
    "READY",
    "REASONS",
    "RUNNING",
    "SCRUBBED",
    "SUCCEEDED",
    "TERMINAL_PHASES",
    "TRUE",
    "UNKNOWN",
    "VERIFIED",
    "VERIFYING",
    "VERSION_ALLOCATED",
    "VERSION_STATES",
    "VERSION_VERIFIED",
    "Reason",
    "condition_status",
    "derive_phase",
    "get_condition",
    "is_terminal",
    "is_true",
]

# A condition's status (Kubernetes' three values).
TRUE = "True"
FALSE = "False"
UNKNOWN = "Unknown"

# RetrainJob condition types, in the order the status lists them.
ACCEPTED = "Accepted"
RUNNING = "Running"
COMPLETE = "Complete"
VERIFIED = "Verified"
# Whether the verified version became its line's champion (only under spec.promotion).
PROMOTED = "Promoted"
FAILED = "Failed"
CONDITION_TYPES: tuple[str, ...] = (ACCEPTED, RUNNING, COMPLETE, VERIFIED, PROMOTED, FAILED)

# ModelLine condition types.
# Whether the spec is usable (a schedule that parses).
READY = "Ready"
# Whether every kept copy of the line's versions verified at the last scrub.
SCRUBBED = "Scrubbed"
# Whether the MLflow alias points at status.champion (Reason.ALIAS_*, NO_REGISTERED_MODEL).
CHAMPION_IN_SYNC = "ChampionInSync"
LINE_CONDITION_TYPES: tuple[str, ...] = (READY, SCRUBBED, CHAMPION_IN_SYNC)

# RetrainJob phases (the CRD's enum), derived from the conditions (derive_phase).
PENDING = "Pending"
PHASE_RUNNING = "Running"
VERIFYING = "Verifying"
SUCCEEDED = "Succeeded"
PHASE_FAILED = "Failed"
PHASES: tuple[str, ...] = (PENDING, PHASE_RUNNING, VERIFYING, SUCCEEDED, PHASE_FAILED)
# Nothing changes any more once a RetrainJob reaches one of these.
TERMINAL_PHASES = frozenset({SUCCEEDED, PHASE_FAILED})

# The state of a version in the ModelLine's ledger and status.versions[].state.
VERSION_ALLOCATED = "allocated"
VERSION_VERIFIED = "verified"
VERSION_STATES: tuple[str, ...] = (VERSION_ALLOCATED, VERSION_VERIFIED)


class Reason:
    """CamelCase reasons, one per transition the operator reports (conditions and Events)."""

    # ModelLine (Ready condition).
    LINE_READY = "LineReady"
    INVALID_SCHEDULE = "InvalidSchedule"
    # ModelLine (ChampionInSync condition): the alias already named the champion (or there is
    # none), was moved to it, could not be read or moved (MLflow down: retried), or the
    # champion is in no registered model that could hold an alias.
    ALIAS_IN_SYNC = "AliasInSync"
    ALIAS_MOVED = "AliasMoved"
    ALIAS_UNAVAILABLE = "AliasUnavailable"
    NO_REGISTERED_MODEL = "NoRegisteredModel"
    # ModelLine upkeep (the Scrubbed condition and the scrub and retention Events).
    SCRUB_STARTED = "ScrubStarted"
    COPIES_INTACT = "CopiesIntact"
    COPY_CHANGED = "CopyChanged"
    COPY_MISSING = "CopyMissing"
    COPY_UNREADABLE = "CopyUnreadable"
    SCRUB_FAILED = "ScrubFailed"
    RETENTION_STARTED = "RetentionStarted"
    CLAIM_COPIES_REMOVED = "ClaimCopiesRemoved"
    RETENTION_FAILED = "RetentionFailed"
    # RetrainJob.
    ACCEPTED = "Accepted"
    JOB_CREATED = "JobCreated"
    JOB_SUSPENDED = "JobSuspended"
    POD_RUNNING = "PodRunning"
    TRAINING_COMPLETE = "TrainingComplete"
    VERIFIED = "AllLocationsVerified"
    VERIFYING = "Verifying"
    # Failures.
    BASE_MODEL_NOT_FOUND = "BaseModelNotFound"
    CLAIM_NOT_FOUND = "ClaimNotFound"
    SECRET_NOT_FOUND = "SecretNotFound"
    BAD_INPUT = "BadInput"
    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    JOB_FAILED = "JobFailed"
    VERIFICATION_FAILED = "VerificationFailed"
    MANIFEST_NOT_FOUND = "ManifestNotFound"
    # Version N already belongs to another RetrainJob (its Job, claim folder or run).
    VERSION_CONFLICT = documents.VERSION_CONFLICT
    # The trainer found version N's weights changed and no copy with the recorded hash.
    CORRUPTED_WEIGHTS = documents.CORRUPTED_WEIGHTS
    # The claim has no space left for version N.
    STORAGE_FULL = documents.STORAGE_FULL
    # spec.image is outside the operator's allowlist (RETRAINER_ALLOWED_TRAINER_IMAGES).
    IMAGE_NOT_ALLOWED = "ImageNotAllowed"
    # A toleration of every taint (operator Exists, no key) that admission did not stop.
    TOLERATION_NOT_ALLOWED = "TolerationNotAllowed"
    # Stuck, not failed (phase stays Pending/Running; each names the underlying message).
    POD_CREATION_FAILED = "PodCreationFailed"
    POD_UNSCHEDULABLE = "PodUnschedulable"
    IMAGE_PULL_FAILED = "ImagePullFailed"
    ORPHANED_POD_RUNNING = "OrphanedPodRunning"
    # Transient outages while verifying: retried, never terminal while the copies exist.
    MANIFEST_UNAVAILABLE = "ManifestUnavailable"
    OBJECT_STORE_UNAVAILABLE = "ObjectStoreUnavailable"
    # The durable evidence of a lost line (its MLflow record) cannot be read, e.g. MLflow is
    # down: nothing is allocated until it can be; retried (also the ModelLine's Ready).
    EVIDENCE_UNAVAILABLE = "EvidenceUnavailable"
    # Version N is allocated but its MLflow backup tag could not be written: the Job is not
    # started yet; retried.
    ALLOCATION_UNRECORDED = "AllocationUnrecorded"
    # Promotion on evidence (the Promoted condition; status.evaluation holds the numbers).
    PROMOTED = evaluation.PROMOTED
    REJECTED = evaluation.REJECTED
    NO_CHAMPION = evaluation.NO_CHAMPION
    # The champion moved while this version was evaluated against the one before.
    CHAMPION_CHANGED = "ChampionChanged"
    # The champion could not be read or moved (MLflow down): retried, phase stays Verifying.
    CHAMPION_UNAVAILABLE = "ChampionUnavailable"
    # Under spec.promotion, the manifest carries no evaluation, or one its numbers contradict.
    NOT_EVALUATED = "NotEvaluated"
    # A corrections file changes an image of the pinned holdout.
    HOLDOUT_TOUCHED = documents.HOLDOUT_TOUCHED


# Every reason above (a reader can tell a reason it does not know from a typo).
REASONS = frozenset(
    value for name, value in vars(Reason).items() if name.isupper() and isinstance(value, str)
)


def get_condition(status: Mapping[str, Any], type_: str) -> dict[str, Any] | None:
    """A copy of the condition of `type_` in `status`, or None."""
    for cond in status.get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return None


def condition_status(status: Mapping[str, Any], type_: str) -> str | None:
    """TRUE, FALSE or UNKNOWN for the condition of `type_` (UNKNOWN when it has none), or
    None when `status` has no such condition."""
    cond = get_condition(status, type_)
    return None if cond is None else str(cond.get("status") or UNKNOWN)


def is_true(status: Mapping[str, Any], type_: str) -> bool:
    """True when the condition of `type_` is there and its status is TRUE."""
    return condition_status(status, type_) == TRUE


def derive_phase(status: Mapping[str, Any]) -> str:
    """The printable phase, a pure summary of the conditions.

    Failed > Succeeded (Complete, Verified and no promotion still undecided) > Verifying
    (Complete) > Running > Pending.
    """
    if is_true(status, FAILED):
        return PHASE_FAILED
    if is_true(status, COMPLETE):
        # A verified version whose promotion is still undecided (Unknown) is not finished.
        promoting = (get_condition(status, PROMOTED) or {}).get("status") == UNKNOWN
        return SUCCEEDED if is_true(status, VERIFIED) and not promoting else VERIFYING
    if is_true(status, RUNNING):
        return PHASE_RUNNING
    return PENDING


def is_terminal(status: Mapping[str, Any]) -> bool:
    """True once the RetrainJob reached Succeeded or Failed: nothing more will change."""
    return derive_phase(status) in TERMINAL_PHASES and bool(status.get("conditions"))
