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
With a champion, the gates of gates.py apply too: the lower bound of the improvement's
bootstrap interval (`confidence`), the regression sets and `maxClassRegression`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from retrainer_contract import gates
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
# spec.promotion's bootstrap defaults and bounds (the CRD has the same).
DEFAULT_RESAMPLES = 1000
MAX_REGRESSION_SETS = 8


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
    confidence: float | None = None  # None: compare point estimates only
    resamples: int = DEFAULT_RESAMPLES
    seed: int = 0
    regression_sets: tuple[gates.RegressionSet, ...] = ()
    keep_previous_holdouts: bool = True
    previous_holdout_tolerance: float = 0.0
    max_class_regression: float | None = None

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
            _check_number(name, value)
        return cls(
            metric=str(metric),
            holdout_uri=uri,
            minimum=float(numbers["minimum"]),
            min_improvement=float(numbers["minImprovement"]),
            min_relative_improvement=float(numbers["minRelativeImprovement"]),
            class_floors=MappingProxyType({str(k): float(v) for k, v in floors.items()}),
            promote_first_version=bool(raw.get("promoteFirstVersion", True)),
            alias=str(raw.get("alias") or DEFAULT_ALIAS),
            **_gate_fields(raw),
        )

    def effective_sets(
        self, inherited: Sequence[gates.RegressionSet] = ()
    ) -> tuple[gates.RegressionSet, ...]:
        """The regression sets a version is judged on: the spec's, then (unless
        keepPreviousHoldouts is false) the holdouts the champion was judged on before, never
        the current holdout, each URI once."""
        out: dict[str, gates.RegressionSet] = {}
        extra = inherited if self.keep_previous_holdouts else ()
        for s in (*self.regression_sets, *extra):
            if s.uri != self.holdout_uri and s.uri not in out:
                out[s.uri] = s
        return tuple(out.values())


def _check_number(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise PolicyError(f"spec.promotion.{name} must be a number >= 0, got {value!r}")


def _gate_fields(raw: Mapping[str, Any]) -> dict[str, Any]:
    """spec.promotion's confidence, bootstrap, regression-set and class-regression fields."""
    out: dict[str, Any] = {}
    confidence = raw.get("confidence")
    if confidence is not None:
        if isinstance(confidence, bool) or not isinstance(confidence, int | float):
            raise PolicyError(f"spec.promotion.confidence must be a number, got {confidence!r}")
        if not 0.5 < confidence < 0.999:
            raise PolicyError(
                f"spec.promotion.confidence must be between 0.5 and 0.999 (exclusive), got "
                f"{confidence}; for example 0.95"
            )
        out["confidence"] = float(confidence)
    for key, field_name, low in (("resamples", "resamples", 100), ("seed", "seed", 0)):
        value = raw.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise PolicyError(f"spec.promotion.{key} must be an integer >= {low}, got {value!r}")
        out[field_name] = int(value)
    sets = raw.get("regressionSets") or []
    if not isinstance(sets, Sequence) or isinstance(sets, str):
        raise PolicyError("spec.promotion.regressionSets must be a list of {uri, tolerance}")
    if len(sets) > MAX_REGRESSION_SETS:
        raise PolicyError(
            f"spec.promotion.regressionSets has {len(sets)} sets; at most "
            f"{MAX_REGRESSION_SETS}: merge sets or drop the least useful"
        )
    parsed = []
    for i, item in enumerate(sets):
        uri = item.get("uri") if isinstance(item, Mapping) else None
        if not isinstance(uri, str) or not uri:
            raise PolicyError(f"spec.promotion.regressionSets[{i}].uri is required")
        tolerance = item.get("tolerance", 0.0)
        _check_number(f"regressionSets[{i}].tolerance", tolerance)
        name = str(item.get("name") or gates.set_name(uri))
        parsed.append(gates.RegressionSet(name, uri, float(tolerance)))
    out["regression_sets"] = tuple(parsed)
    out["keep_previous_holdouts"] = bool(raw.get("keepPreviousHoldouts", True))
    previous = raw.get("previousHoldoutTolerance", 0.0)
    _check_number("previousHoldoutTolerance", previous)
    out["previous_holdout_tolerance"] = float(previous)
    limit = raw.get("maxClassRegression")
    if limit is not None:
        _check_number("maxClassRegression", limit)
        out["max_class_regression"] = float(limit)
    return out


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
    cause: str = ""  # for Rejected: the gate's cause (gates.CAUSES), "" for the plain rule
    class_regressions: tuple[Mapping[str, Any], ...] = ()


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


def decide(
    policy: Policy,
    challenger: Scores,
    champion: Scores | None,
    interval: gates.Interval | None = None,
    sets: Sequence[gates.SetResult] = (),
) -> Verdict:
    """Promoted, Rejected (every number that fell short, and by how much, filed under the most
    specific cause) or NoChampion. `interval` and `sets` are the gates' evidence (ignored
    without a champion: there is nothing to compare with)."""
    m = policy.metric
    value = float(challenger.metrics.get(m, 0.0))
    plain = _floor_shortfalls(policy, challenger)
    if champion is None:
        if plain:
            return Verdict(REJECTED, "; ".join(plain))
        return Verdict(
            NO_CHAMPION,
            f"no champion yet: v{challenger.version} scores {m} {_f(value)} on the holdout",
        )
    theirs = float(champion.metrics.get(m, 0.0))
    need = required(policy, theirs)
    against = f"champion v{champion.version}"
    if value <= theirs + EPSILON:
        word = "ties" if abs(value - theirs) <= EPSILON else "is worse than"
        plain.append(
            f"{m} {_f(value)} {word} {against} {_f(theirs)}"
            + (f" by {_f(theirs - value)}" if word != "ties" else "")
            + f"; needs at least {_f(need)}"
        )
    elif value + EPSILON < need:
        plain.append(
            f"{m} {_f(value)} beats {against} {_f(theirs)} by only {_f(value - theirs)}; "
            f"needs at least {_f(need)}, short by {_f(need - value)}"
        )
    problems, regressions = _gate_problems(
        policy, challenger, champion, need - theirs, interval, sets
    )
    if plain or problems:
        texts = [p.text for p in problems] + plain
        return Verdict(REJECTED, "; ".join(texts), gates.first_cause(problems), regressions)
    shown = f" ({interval.text()})" if interval is not None and policy.confidence else ""
    return Verdict(
        PROMOTED,
        f"{m} {_f(value)} beats {against} {_f(theirs)} by {_f(value - theirs)} "
        f"(needed at least {_f(need)}){shown}",
        class_regressions=regressions,
    )


def _gate_problems(
    policy: Policy,
    challenger: Scores,
    champion: Scores,
    margin: float,
    interval: gates.Interval | None,
    sets: Sequence[gates.SetResult],
) -> tuple[list[gates.Problem], tuple[Mapping[str, Any], ...]]:
    m = policy.metric
    problems: list[gates.Problem] = []
    if policy.confidence is not None:
        if interval is None:
            problems.append(
                gates.Problem(gates.NOT_SIGNIFICANT, "no bootstrap interval was recorded")
            )
        else:
            problems += gates.significance(interval, margin)
    problems += gates.set_problems(m, sets)
    regressions: list[Mapping[str, Any]] = []
    if policy.max_class_regression is not None:
        limit = policy.max_class_regression
        regressions += gates.class_regressions(
            "holdout", m, challenger.per_class, champion.per_class, limit
        )
        for r in sets:
            if not r.error:
                regressions += gates.class_regressions(
                    r.set.name, m, r.challenger_classes, r.champion_classes, limit
                )
        problems += gates.class_problems(regressions, m, limit)
    return problems, tuple(regressions)


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
    interval: gates.Interval | None = None,
    sets: Sequence[gates.SetResult] = (),
) -> dict[str, Any]:
    """status.evaluation and `evaluation` in the metadata file and the manifest.

    `champion_recorded`: the champion's own last evaluation (holdoutSha256, metrics) when it
    was scored on another holdout; both are kept and `holdoutChanged` says so. The gates'
    evidence (`confidence`, `regressionSets`, `classRegressions`) is kept whole, so the
    operator re-decides from it and the next version inherits the sets its champion was
    judged on.
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
    if verdict.cause:
        out["cause"] = verdict.cause
    if interval is not None:
        out["confidence"] = interval.to_dict()
    if sets:
        out["regressionSets"] = [gates.set_doc(r) for r in sets]
    if policy.max_class_regression is not None:
        out["maxClassRegression"] = policy.max_class_regression
        out["classRegressions"] = [dict(r) for r in verdict.class_regressions]
    return out


def champion_version(evaluation: Mapping[str, Any]) -> int | None:
    """The champion version an evaluation compared against (None: there was none)."""
    champion = evaluation.get("champion")
    if isinstance(champion, Mapping) and isinstance(champion.get("version"), int):
        return int(champion["version"])
    return None
