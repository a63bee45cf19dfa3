"""After verification: does the new version become its line's champion?

The trainer scored the new version and the champion on the pinned holdout and wrote the
evidence and its decision into the manifest (`status.evaluation`). Here the operator checks
that the decision follows from those numbers under the RetrainJob's policy, and moves the
champion only if the champion it was compared with is still the champion at the write (a
compare-and-set: a check now and a write later could be interleaved by another move). Called
only for a version whose every copy verified; a plain function of its inputs and the store.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from retrainer_contract import evaluation, gates

from retrainer_operator.champion import Champion, ChampionError, ChampionMoved, ChampionStore
from retrainer_operator.conditions import Reason

__all__ = ["Outcome", "champion_version", "policy_of", "settle"]


@dataclass(frozen=True)
class Outcome:
    """The Promoted condition to set (value None: Unknown, retry) and whether it moved."""

    value: bool | None
    reason: str
    message: str
    promoted: bool = False


def policy_of(spec: Mapping[str, Any]) -> evaluation.Policy | None:
    """spec.promotion as a Policy (None: no promotion); PolicyError when malformed."""
    raw = spec.get("promotion")
    return evaluation.Policy.from_spec(raw) if raw else None


def champion_version(store: ChampionStore | None, namespace: str, model: str) -> int | None:
    """The version the trainer must score against (None: no store, or no champion yet)."""
    if store is None:
        return None
    current = store.current(namespace, model)
    return current.version if current is not None else None


def _scores(raw: Mapping[str, Any]) -> evaluation.Scores:
    return evaluation.Scores(
        int(raw.get("version") or 0),
        dict(raw.get("metrics") or {}),
        dict(raw.get("perClass") or {}),
    )


def _recheck(policy: evaluation.Policy, doc: Mapping[str, Any]) -> str:
    """ "" when the recorded decision follows from the recorded numbers, else why not."""
    if not isinstance(doc.get("challenger"), Mapping):
        return "the manifest has no holdout evaluation (was the trainer image older?)"
    champion = doc.get("champion")
    # The gates' evidence as recorded: the interval cannot be recomputed here (the per-image
    # matches stay in the pod), but whether it clears the margins can.
    verdict = evaluation.decide(
        policy,
        _scores(doc["challenger"]),
        _scores(champion) if isinstance(champion, Mapping) else None,
        gates.interval_of(doc),
        gates.set_results_of(doc),
    )
    recorded = (doc.get("decision"), doc.get("cause") or "")
    if (verdict.decision, verdict.cause) != recorded:
        return (
            f"the trainer recorded {'/'.join(filter(None, recorded))!r} but its numbers under "
            f"spec.promotion give {'/'.join(filter(None, (verdict.decision, verdict.cause)))!r} "
            f"({verdict.reason})"
        )
    return ""


def settle(
    store: ChampionStore,
    policy: evaluation.Policy,
    doc: Mapping[str, Any],
    namespace: str,
    model: str,
    version: int,
    registered_model: str | None = None,
) -> Outcome:
    """Decide the Promoted condition of verified version `version` from its evaluation `doc`,
    moving the champion when the decision allows it, as a compare-and-set on the champion the
    evaluation was compared with: a version is never crowned uncompared."""
    problem = _recheck(policy, doc)
    if problem:
        return Outcome(False, Reason.NOT_EVALUATED, f"v{version} not promoted: {problem}")
    decision, why = str(doc["decision"]), str(doc.get("reason") or "")
    if not evaluation.should_promote(policy, decision):
        if decision == evaluation.NO_CHAMPION:
            why += "; spec.promotion.promoteFirstVersion is false, so it stays unpromoted"
        # A gate's rejection is filed under its cause (NotSignificant, Regressed, ...).
        cause = str(doc.get("cause") or "")
        head = f"v{version}: {decision}/{cause}:" if cause else f"v{version}:"
        return Outcome(False, cause or decision, f"{head} {why}")
    compared = evaluation.champion_version(doc)
    scores = dict(doc["challenger"]["metrics"])
    value = float(scores.get(policy.metric, 0.0))
    new = Champion(version, policy.metric, value, scores, decision, registered_model, policy.alias)
    try:
        store.promote(namespace, model, new, compared)
    except ChampionMoved as moved:
        before = f"v{compared}" if compared else "no champion"
        now = f"v{moved.current}" if moved.current else "none"
        return Outcome(
            False,
            Reason.CHAMPION_CHANGED,
            f"v{version} was compared with {before}, but the champion is now {now}; "
            "train again (or re-run) to compare with the champion in force",
        )
    except ChampionError as error:
        return Outcome(None, Reason.CHAMPION_UNAVAILABLE, f"v{version}: {error} (retrying)")
    suffix = f"; v{version} is now the champion (alias {policy.alias!r})"
    return Outcome(True, decision, f"v{version}: {why}{suffix}", promoted=True)
