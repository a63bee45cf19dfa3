"""Promotion on evidence: the policy, the one decision rule, and the evaluation document.

The trainer scores the new version (the challenger) and the current champion on one pinned
holdout set and decides with `decide`; the operator moves the champion only when that
decision is `Promoted` (or `NoChampion` with `promoteFirstVersion`) and every copy verified.
Both read `spec.promotion` with `Policy.from_spec` and the document with the same keys, so
the number that was compared is the number that is shown (status.evaluation, the metadata
file, `retrainer describe`). Pure functions, standard library only.

The rule: the challenger must reach `minimum` on the policy metric, every per-class floor,
and, when there is a champion, beat it strictly by at least `minImprovement` (absolute) and
`minRelativeImprovement` (a fraction of the champion's value). A tie keeps the champion.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from retrainer_contract import metrics as metric_keys

__all__ = [
    "DECISIONS",
    "DEFAULT_ALIAS",
    "DEFAULT_CONF",
    "DEFAULT_IOU",
    "NO_CHAMPION",
    "PROMOTED",
    "REJECTED",
    "Policy",
    "PolicyError",
    "Scores",
    "Verdict",
    "champion_version",
    "decide",
    "document",
    "required",
    "should_promote",
]

PROMOTED = "Promoted"
REJECTED = "Rejected"
NO_CHAMPION = "NoChampion"
DECISIONS: tuple[str, ...] = (PROMOTED, REJECTED, NO_CHAMPION)

DEFAULT_ALIAS = "champion"
# Ultralytics' own validation thresholds, the same for both versions and recorded with them.
DEFAULT_CONF = 0.001
DEFAULT_IOU = 0.7
# Metrics are rounded to 6 decimals; a difference below this is a tie.
EPSILON = 1e-9


class PolicyError(ValueError):
    """spec.promotion is malformed; the message names the field and the fix."""


@dataclass(frozen=True)
class Policy:
    """spec.promotion, with the CRD's defaults."""

    metric: str
    holdout_uri: str
    minimum: float = 0.0
    min_improvement: float = 0.0
    min_relative_improvement: float = 0.0
    class_floors: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    promote_first_version: bool = True
    alias: str = DEFAULT_ALIAS

    @classmethod
    def from_spec(cls, raw: Mapping[str, Any]) -> Policy:
        """Parse spec.promotion (admission checked it; this guards a skewed apiserver)."""
        metric = raw.get("metric")
        if metric not in metric_keys.KEYS:
            raise PolicyError(f"spec.promotion.metric must be one of {', '.join(metric_keys.KEYS)}")
        holdout = raw.get("holdout") or {}
        uri = holdout.get("uri") if isinstance(holdout, Mapping) else None
        if not isinstance(uri, str) or not uri:
            raise PolicyError(
                "spec.promotion.holdout.uri is required: the pinned set both versions are "
                "scored on (s3://bucket/prefix or datasets/<name>-holdout)"
            )
        floors = raw.get("classFloors") or {}
        if not isinstance(floors, Mapping):
            raise PolicyError("spec.promotion.classFloors must map class names to 0..1")
        numbers = {
            "minimum": raw.get("minimum", 0.0),
            "minImprovement": raw.get("minImprovement", 0.0),
            "minRelativeImprovement": raw.get("minRelativeImprovement", 0.0),
            **{f"classFloors.{k}": v for k, v in floors.items()},
        }
        for name, value in numbers.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise PolicyError(f"spec.promotion.{name} must be a number >= 0, got {value!r}")
        return cls(
            metric=str(metric),
            holdout_uri=uri,
            minimum=float(numbers["minimum"]),
            min_improvement=float(numbers["minImprovement"]),
            min_relative_improvement=float(numbers["minRelativeImprovement"]),
            class_floors=MappingProxyType({str(k): float(v) for k, v in floors.items()}),
            promote_first_version=bool(raw.get("promoteFirstVersion", True)),
            alias=str(raw.get("alias") or DEFAULT_ALIAS),
        )


@dataclass(frozen=True)
class Scores:
    """One version's holdout metrics, overall and per class (class -> metric -> value)."""

    version: int
    metrics: Mapping[str, float]
    per_class: Mapping[str, Mapping[str, float]] = field(
        default_factory=lambda: MappingProxyType({})
    )


@dataclass(frozen=True)
class Verdict:
    decision: str
    reason: str


def _f(value: float) -> str:
    return f"{value:.4f}"


def _floor_shortfalls(policy: Policy, challenger: Scores) -> list[str]:
    problems: list[str] = []
    m = policy.metric
    value = float(challenger.metrics.get(m, 0.0))
    if value + EPSILON < policy.minimum:
        problems.append(
            f"{m} {_f(value)} is below the minimum {_f(policy.minimum)} "
            f"by {_f(policy.minimum - value)}"
        )
    for name, floor in sorted(policy.class_floors.items()):
        scores = challenger.per_class.get(name)
        if scores is None or m not in scores:
            problems.append(
                f"class {name!r} has no labelled instance in the holdout, so its floor "
                f"{_f(floor)} cannot be met"
            )
            continue
        got = float(scores[m])
        if got + EPSILON < floor:
            problems.append(
                f"class {name!r} {m} {_f(got)} is below its floor {_f(floor)} by {_f(floor - got)}"
            )
    return problems


def required(policy: Policy, champion_value: float) -> float:
    """The least value that beats `champion_value` under `policy` (ties excluded separately)."""
    return max(
        champion_value + policy.min_improvement,
        champion_value * (1.0 + policy.min_relative_improvement),
    )


def decide(policy: Policy, challenger: Scores, champion: Scores | None) -> Verdict:
    """Promoted, Rejected (every number that fell short, and by how much) or NoChampion."""
    m = policy.metric
    value = float(challenger.metrics.get(m, 0.0))
    problems = _floor_shortfalls(policy, challenger)
    if champion is None:
        if problems:
            return Verdict(REJECTED, "; ".join(problems))
        return Verdict(
            NO_CHAMPION,
            f"no champion yet: v{challenger.version} scores {m} {_f(value)} on the holdout",
        )
    theirs = float(champion.metrics.get(m, 0.0))
    need = required(policy, theirs)
    against = f"champion v{champion.version}"
    if value <= theirs + EPSILON:
        word = "ties" if abs(value - theirs) <= EPSILON else "is worse than"
        problems.append(
            f"{m} {_f(value)} {word} {against} {_f(theirs)}"
            + (f" by {_f(theirs - value)}" if word != "ties" else "")
            + f"; needs at least {_f(need)}"
        )
    elif value + EPSILON < need:
        problems.append(
            f"{m} {_f(value)} beats {against} {_f(theirs)} by only {_f(value - theirs)}; "
            f"needs at least {_f(need)}, short by {_f(need - value)}"
        )
    if problems:
        return Verdict(REJECTED, "; ".join(problems))
    return Verdict(
        PROMOTED,
        f"{m} {_f(value)} beats {against} {_f(theirs)} by {_f(value - theirs)} "
        f"(needed at least {_f(need)})",
    )


def should_promote(policy: Policy, decision: str) -> bool:
    """Whether `decision` moves the champion (the caller also needs every copy verified)."""
    return decision == PROMOTED or (decision == NO_CHAMPION and policy.promote_first_version)


def _scores(scores: Scores) -> dict[str, Any]:
    return {
        "version": scores.version,
        "metrics": dict(scores.metrics),
        "perClass": {k: dict(v) for k, v in scores.per_class.items()},
    }


def document(
    *,
    policy: Policy,
    holdout_sha256: str,
    holdout_images: int,
    imgsz: int,
    challenger: Scores,
    champion: Scores | None,
    champion_sha256: str = "",
    champion_recorded: Mapping[str, Any] | None = None,
    verdict: Verdict,
    evaluated_at: str,
    conf: float = DEFAULT_CONF,
    iou: float = DEFAULT_IOU,
) -> dict[str, Any]:
    """status.evaluation and `evaluation` in the metadata file and the manifest.

    `champion_recorded`: the champion's own last evaluation (holdoutSha256, metrics) when it
    was scored on another holdout; both are kept and `holdoutChanged` says so.
    """
    out: dict[str, Any] = {
        "holdoutUri": policy.holdout_uri,
        "holdoutSha256": holdout_sha256,
        "holdoutImages": holdout_images,
        "imgsz": imgsz,
        "conf": conf,
        "iou": iou,
        "metric": policy.metric,
        "decision": verdict.decision,
        "reason": verdict.reason,
        "challenger": _scores(challenger),
        "holdoutChanged": False,
        "evaluatedAt": evaluated_at,
    }
    if champion is not None:
        out["champion"] = {**_scores(champion), "sha256": champion_sha256}
        recorded = dict(champion_recorded or {})
        if recorded.get("holdoutSha256") and recorded["holdoutSha256"] != holdout_sha256:
            out["holdoutChanged"] = True
            out["champion"]["previous"] = {
                "holdoutSha256": str(recorded["holdoutSha256"]),
                "metrics": dict(recorded.get("metrics") or {}),
            }
    return out


def champion_version(evaluation: Mapping[str, Any]) -> int | None:
    """The champion version an evaluation compared against (None: there was none)."""
    champion = evaluation.get("champion")
    if isinstance(champion, Mapping) and isinstance(champion.get("version"), int):
        return int(champion["version"])
    return None
