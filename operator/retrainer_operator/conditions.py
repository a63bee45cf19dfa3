"""Writing status: set a condition, stamp the phase; the vocabulary itself is the contract's.

The condition types, phases, CamelCase reasons and the phase rule live in
`retrainer_contract.status`, which the CLI reads too; they are re-exported here so operator
code keeps importing them from one place. The status is always computed whole from the
previous one (pure functions here) and patched once per transition, so a restart or a
repeated event never produces a different status.
"""

from __future__ import annotations

import copy
import datetime
from collections.abc import Mapping
from typing import Any

from retrainer_contract.status import (
    ACCEPTED,
    CHAMPION_IN_SYNC,
    COMPLETE,
    CONDITION_TYPES,
    FAILED,
    FALSE,
    LINE_CONDITION_TYPES,
    PENDING,
    PHASE_FAILED,
    PHASE_RUNNING,
    PHASES,
    PROMOTED,
    READY,
    REASONS,
    RUNNING,
    SCRUBBED,
    SUCCEEDED,
    TERMINAL_PHASES,
    TRUE,
    UNKNOWN,
    VERIFIED,
    VERIFYING,
    VERSION_ALLOCATED,
    VERSION_STATES,
    VERSION_VERIFIED,
    Reason,
    condition_status,
    derive_phase,
    get_condition,
    is_terminal,
    is_true,
)

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
    "now_iso",
    "set_condition",
    "with_phase",
]

# The order a RetrainJob's conditions are listed in (other types keep their own, last).
_ORDER = {t: i for i, t in enumerate(CONDITION_TYPES)}


def now_iso() -> str:
    """The current UTC time as the RFC 3339 string Kubernetes uses (second precision)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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

    `value` None means Unknown. Conditions keep a stable order (CONDITION_TYPES; any other
    type, a ModelLine's, after them in the order it was first set).
    """
    new = copy.deepcopy(dict(status))
    text = UNKNOWN if value is None else (TRUE if value else FALSE)
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
    conds = [*others, cond]
    conds.sort(key=lambda c: _ORDER.get(c.get("type", ""), len(_ORDER)))
    new["conditions"] = conds
    return new


def with_phase(status: Mapping[str, Any], generation: int | None) -> dict[str, Any]:
    """A copy of `status` with phase and observedGeneration brought in line with conditions."""
    new = copy.deepcopy(dict(status))
    new["phase"] = derive_phase(new)
    if generation is not None:
        new["observedGeneration"] = generation
    return new
