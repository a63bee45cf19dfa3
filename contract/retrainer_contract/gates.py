"""The promotion gates beyond the holdout's point estimate: confidence, regression sets, classes.

Each gate is a pure function of recorded numbers returning the problems it found, each with
the cause a person filters on (status.evaluation.cause, the Promoted condition's reason). The
trainer computes the numbers (the bootstrap interval from per-image matches, each set scored
with both versions); the operator re-runs the same gates on the recorded numbers before it
moves the champion. Standard library only.

- Confidence: the paired-bootstrap interval of the improvement (challenger - champion) on the
  holdout; its lower bound must clear the margins, else NotSignificant.
- Regression sets: on each extra pinned set, the challenger may not fall below the champion by
  more than the set's tolerance (Regressed); a set that could not be read is never skipped
  (RegressionSetUnavailable).
- Classes: no class's metric may drop below the champion's by more than maxClassRegression,
  on the holdout or on any regression set (ClassRegressed); every such class is listed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CAUSES",
    "CLASS_REGRESSED",
    "NOT_SIGNIFICANT",
    "ORIGIN_PREVIOUS_HOLDOUT",
    "ORIGIN_SPEC",
    "REGRESSED",
    "SET_UNAVAILABLE",
    "Interval",
    "Problem",
    "RegressionSet",
    "SetResult",
    "class_problems",
    "class_regressions",
    "first_cause",
    "inherited_sets",
    "interval_of",
    "set_doc",
    "set_name",
    "set_problems",
    "set_results_of",
    "significance",
]

NOT_SIGNIFICANT = "NotSignificant"
SET_UNAVAILABLE = "RegressionSetUnavailable"
REGRESSED = "Regressed"
CLASS_REGRESSED = "ClassRegressed"
# The one cause a rejection is filed under when several apply: missing evidence first, then
# harm found (forgetting a set, then a class), then a gain too uncertain to act on.
CAUSES: tuple[str, ...] = (SET_UNAVAILABLE, REGRESSED, CLASS_REGRESSED, NOT_SIGNIFICANT)

ORIGIN_SPEC = "spec"  # listed in spec.promotion.regressionSets
ORIGIN_PREVIOUS_HOLDOUT = "previousHoldout"  # a holdout the champion was once judged on
EPSILON = 1e-9


@dataclass(frozen=True)
class RegressionSet:
    """One extra pinned set: its name (shown), URI, tolerance and where it came from."""

    name: str
    uri: str
    tolerance: float
    origin: str = ORIGIN_SPEC

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "uri": self.uri,
            "tolerance": self.tolerance,
            "origin": self.origin,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> RegressionSet:
        return cls(
            str(raw.get("name") or raw.get("uri") or ""),
            str(raw.get("uri") or ""),
            float(raw.get("tolerance") or 0.0),
            str(raw.get("origin") or ORIGIN_SPEC),
        )


@dataclass(frozen=True)
class Interval:
    """The paired-bootstrap interval of challenger - champion on the holdout."""

    metric: str
    confidence: float
    resamples: int
    seed: int
    observed: float
    low: float
    high: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "confidence": self.confidence,
            "resamples": self.resamples,
            "seed": self.seed,
            "observed": self.observed,
            "low": self.low,
            "high": self.high,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Interval:
        return cls(
            str(raw["metric"]),
            float(raw["confidence"]),
            int(raw["resamples"]),
            int(raw["seed"]),
            float(raw["observed"]),
            float(raw["low"]),
            float(raw["high"]),
        )

    def text(self) -> str:
        return (
            f"{self.confidence:.0%} interval of the {self.metric} improvement "
            f"[{self.low:+.4f}, {self.high:+.4f}] (observed {self.observed:+.4f}, "
            f"{self.resamples} paired resamples, seed {self.seed})"
        )


@dataclass(frozen=True)
class SetResult:
    """A regression set scored with both versions (error: why it could not be read)."""

    set: RegressionSet
    challenger: Mapping[str, float]  # metric -> value
    champion: Mapping[str, float]
    challenger_classes: Mapping[str, Mapping[str, float]]  # class -> metric -> value
    champion_classes: Mapping[str, Mapping[str, float]]
    sha256: str = ""
    images: int = 0
    error: str = ""


@dataclass(frozen=True)
class Problem:
    cause: str
    text: str


def _f(value: float) -> str:
    return f"{value:.4f}"


def significance(interval: Interval, margin: float) -> list[Problem]:
    """The interval's lower bound must clear `margin` (the least gain the margins ask for;
    0 means any strict gain), else the improvement is not significant."""
    ok = interval.low > EPSILON if margin <= EPSILON else interval.low + EPSILON >= margin
    if ok:
        return []
    need = "above 0" if margin <= EPSILON else f"at least {_f(margin)}"
    return [
        Problem(
            NOT_SIGNIFICANT,
            f"not significant: the {interval.text()} has its lower bound "
            f"{interval.low:+.4f}, which must be {need}",
        )
    ]


def class_regressions(
    where: str,
    metric: str,
    ours: Mapping[str, Mapping[str, float]],
    theirs: Mapping[str, Mapping[str, float]],
    limit: float,
) -> list[dict[str, Any]]:
    """Every class whose `metric` dropped below the champion's by more than `limit`, with both
    numbers (a class the challenger no longer scores at all counts as 0)."""
    found = []
    for name in sorted(theirs):
        if metric not in theirs[name]:
            continue
        before = float(theirs[name][metric])
        after = float((ours.get(name) or {}).get(metric, 0.0))
        if before - after > limit + EPSILON:
            found.append(
                {
                    "set": where,
                    "class": name,
                    "challenger": round(after, 6),
                    "champion": round(before, 6),
                    "drop": round(before - after, 6),
                }
            )
    return found


def set_problems(metric: str, results: Sequence[SetResult]) -> list[Problem]:
    """Each regression set unreadable, or on which the challenger fell too far behind."""
    problems: list[Problem] = []
    for result in results:
        s = result.set
        if result.error:
            problems.append(
                Problem(
                    SET_UNAVAILABLE,
                    f"regression set {s.name} ({s.uri}) could not be read: {result.error}",
                )
            )
            continue
        ours = float(result.challenger.get(metric, 0.0))
        theirs = float(result.champion.get(metric, 0.0))
        if theirs - ours > s.tolerance + EPSILON:
            problems.append(
                Problem(
                    REGRESSED,
                    f"regression set {s.name}: {metric} {_f(ours)} is below the champion's "
                    f"{_f(theirs)} by {_f(theirs - ours)}, more than its tolerance "
                    f"{_f(s.tolerance)}",
                )
            )
    return problems


def class_problems(
    regressions: Sequence[Mapping[str, Any]], metric: str, limit: float
) -> list[Problem]:
    if not regressions:
        return []
    listed = ", ".join(
        f"{r['class']} on {r['set']} {_f(r['challenger'])} vs {_f(r['champion'])} "
        f"(-{_f(r['drop'])})"
        for r in regressions
    )
    return [
        Problem(
            CLASS_REGRESSED,
            f"{len(regressions)} class(es) dropped more than maxClassRegression {_f(limit)} in "
            f"{metric}: {listed}",
        )
    ]


def first_cause(problems: Sequence[Problem]) -> str:
    """The cause a rejection is filed under ("" when none of the gates' causes applies)."""
    causes = {p.cause for p in problems}
    return next((c for c in CAUSES if c in causes), "")


def set_name(uri: str) -> str:
    """A regression set's default name: the last part of its URI."""
    return uri.rstrip("/").rsplit("/", 1)[-1] or uri


def set_doc(result: SetResult) -> dict[str, Any]:
    out: dict[str, Any] = {**result.set.to_dict(), "sha256": result.sha256, "images": result.images}
    if result.error:
        out["error"] = result.error
        return out
    out["challenger"] = {
        "metrics": dict(result.challenger),
        "perClass": {k: dict(v) for k, v in result.challenger_classes.items()},
    }
    out["champion"] = {
        "metrics": dict(result.champion),
        "perClass": {k: dict(v) for k, v in result.champion_classes.items()},
    }
    return out


def interval_of(doc: Mapping[str, Any]) -> Interval | None:
    """The bootstrap interval an evaluation document recorded (None: none, or malformed)."""
    raw = doc.get("confidence")
    if not isinstance(raw, Mapping):
        return None
    try:
        return Interval.from_dict(raw)
    except (KeyError, TypeError, ValueError):
        return None


def set_results_of(doc: Mapping[str, Any]) -> list[SetResult]:
    """The regression sets an evaluation document recorded, as decide() takes them."""
    out = []
    for raw in doc.get("regressionSets") or []:
        if not isinstance(raw, Mapping):
            continue
        ours = raw.get("challenger") or {}
        theirs = raw.get("champion") or {}
        out.append(
            SetResult(
                RegressionSet.from_dict(raw),
                dict(ours.get("metrics") or {}),
                dict(theirs.get("metrics") or {}),
                dict(ours.get("perClass") or {}),
                dict(theirs.get("perClass") or {}),
                str(raw.get("sha256") or ""),
                int(raw.get("images") or 0),
                str(raw.get("error") or ""),
            )
        )
    return out


def inherited_sets(champion_doc: Mapping[str, Any], tolerance: float) -> list[RegressionSet]:
    """The holdouts a champion was judged on, from its own evaluation document: its holdout
    (tolerance: spec.promotion.previousHoldoutTolerance) and the earlier holdouts it inherited,
    so a line's history of holdouts is carried from champion to champion."""
    out = []
    uri = champion_doc.get("holdoutUri")
    if isinstance(uri, str) and uri:
        out.append(RegressionSet(set_name(uri), uri, tolerance, ORIGIN_PREVIOUS_HOLDOUT))
    for s in set_results_of(champion_doc):
        if s.set.origin == ORIGIN_PREVIOUS_HOLDOUT:
            out.append(s.set)
    return out
