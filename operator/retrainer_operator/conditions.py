"""Status vocabulary: condition types, CamelCase reasons, and the phase derived from them.

The status is always computed whole from the previous one (pure functions here) and patched
once per transition, so a restart or a repeated event never produces a different status.
"""

from __future__ import annotations

import copy
import datetime
from collections.abc import Mapping
from typing import Any

from retrainer_contract import documents, evaluation

__all__ = [
    "ACCEPTED",
    "COMPLETE",
    "FAILED",
    "PROMOTED",
    "RUNNING",
    "TERMINAL_PHASES",
    "VERIFIED",
    "Reason",
    "derive_phase",
    "get_condition",
    "is_terminal",
    "now_iso",
    "set_condition",
]

# Condition types.
ACCEPTED = "Accepted"
RUNNING = "Running"
COMPLETE = "Complete"
VERIFIED = "Verified"
FAILED = "Failed"
# Whether the verified version became its line's champion (only under spec.promotion).
PROMOTED = "Promoted"
CONDITION_TYPES = (ACCEPTED, RUNNING, COMPLETE, VERIFIED, PROMOTED, FAILED)

# Phases (the CRD's enum).
PENDING = "Pending"
PHASE_RUNNING = "Running"
VERIFYING = "Verifying"
SUCCEEDED = "Succeeded"
PHASE_FAILED = "Failed"
TERMINAL_PHASES = frozenset({SUCCEEDED, PHASE_FAILED})


class Reason:
    """CamelCase reasons, one per transition the operator reports."""

    ACCEPTED = "Accepted"
    # ModelLine (Ready condition).
    LINE_READY = "LineReady"
    INVALID_SCHEDULE = "InvalidSchedule"
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


def now_iso() -> str:
    """The current UTC time as the RFC 3339 string Kubernetes uses (second precision)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def get_condition(status: Mapping[str, Any], type_: str) -> dict[str, Any] | None:
    """The condition of `type_` in `status`, or None."""
    for cond in status.get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return None


def _is_true(status: Mapping[str, Any], type_: str) -> bool:
    cond = get_condition(status, type_)
    return bool(cond and cond.get("status") == "True")


def set_condition(
    status: Mapping[str, Any],
    type_: str,
    value: bool | None,
    reason: str,
    message: str,
    generation: int | None,
    now: str | None = None,
) -> dict[str, Any]:
    """A copy of `status` with condition `type_` set; lastTransitionTime moves only on change.

    `value` None means Unknown. Conditions keep a stable order (CONDITION_TYPES).
    """
    new = copy.deepcopy(dict(status))
    text = "Unknown" if value is None else ("True" if value else "False")
    old = get_condition(new, type_)
    changed = old is None or old.get("status") != text
    cond: dict[str, Any] = {
        "type": type_,
        "status": text,
        "reason": reason,
        "message": message,
        "lastTransitionTime": (now or now_iso())
        if changed
        else (old or {}).get("lastTransitionTime") or (now or now_iso()),
    }
    if generation is not None:
        cond["observedGeneration"] = generation
    others = [c for c in new.get("conditions") or [] if c.get("type") != type_]
    order = {t: i for i, t in enumerate(CONDITION_TYPES)}
    conds = [*others, cond]
    conds.sort(key=lambda c: order.get(c.get("type", ""), len(order)))
    new["conditions"] = conds
    return new


def derive_phase(status: Mapping[str, Any]) -> str:
    """The printable phase, a pure summary of the conditions."""
    if _is_true(status, FAILED):
        return PHASE_FAILED
    if _is_true(status, COMPLETE):
        # A verified version whose promotion is still undecided (Unknown) is not finished.
        promoting = (get_condition(status, PROMOTED) or {}).get("status") == "Unknown"
        return SUCCEEDED if _is_true(status, VERIFIED) and not promoting else VERIFYING
    if _is_true(status, RUNNING):
        return PHASE_RUNNING
    return PENDING


def is_terminal(status: Mapping[str, Any]) -> bool:
    """True once the RetrainJob reached Succeeded or Failed: nothing more will change."""
    return derive_phase(status) in TERMINAL_PHASES and bool(status.get("conditions"))


def with_phase(status: Mapping[str, Any], generation: int | None) -> dict[str, Any]:
    """A copy of `status` with phase and observedGeneration brought in line with conditions."""
    new = copy.deepcopy(dict(status))
    new["phase"] = derive_phase(new)
    if generation is not None:
        new["observedGeneration"] = generation
    return new
