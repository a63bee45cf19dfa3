"""The promotion evidence people read: one table (MLflow) and one line per check (describe).

Both are views of the evaluation document (evaluation.document): the holdout comparison with
its bootstrap interval, every regression set, every class compared. The trainer uploads the
table as evaluation/promotion_evidence.json (MLflow's table format: columns and data); the
CLI's `retrainer describe` and the demo print the lines. Standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["COLUMNS", "TABLE_NAME", "interval_line", "lines", "table"]

TABLE_NAME = "promotion_evidence.json"
COLUMNS = (
    "check",
    "set",
    "class",
    "metric",
    "challenger",
    "champion",
    "difference",
    "limit",
    "low",
    "high",
    "passed",
    "note",
)


def _metric(scored: Mapping[str, Any] | None, metric: str) -> float | None:
    if not isinstance(scored, Mapping):
        return None
    value = (scored.get("metrics") or {}).get(metric)
    return float(value) if value is not None else None


def _diff(ours: float | None, theirs: float | None) -> float | None:
    return round(ours - theirs, 6) if ours is not None and theirs is not None else None


def _row(check: str, where: str, metric: str, **values: Any) -> list[Any]:
    """One table row: the columns not given are empty (None, or "" for class and note)."""
    given = {"check": check, "set": where, "metric": metric, "class": "", "note": "", **values}
    return [given.get(column) for column in COLUMNS]


def _class_rows(
    where: str, metric: str, ours: Mapping[str, Any], theirs: Mapping[str, Any], doc: Mapping
) -> list[list[Any]]:
    limit = doc.get("maxClassRegression")
    flagged = {(r.get("set"), r.get("class")) for r in doc.get("classRegressions") or []}
    rows = []
    for name in sorted(set(ours) | set(theirs)):
        a = (ours.get(name) or {}).get(metric)
        b = (theirs.get(name) or {}).get(metric)
        rows.append(
            _row(
                "class",
                where,
                metric,
                **{"class": name},
                challenger=a,
                champion=b,
                difference=_diff(a, b),
                limit=-float(limit) if limit is not None else None,
                passed=None if limit is None else (where, name) not in flagged,
            )
        )
    return rows


def table(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Every check of an evaluation as rows of one table (MLflow's columns/data format)."""
    metric = str(doc.get("metric") or "")
    ours, theirs = doc.get("challenger") or {}, doc.get("champion")
    interval = doc.get("confidence") or {}
    a, b = _metric(ours, metric), _metric(theirs, metric)
    rows = [
        _row(
            "holdout",
            "holdout",
            metric,
            challenger=a,
            champion=b,
            difference=_diff(a, b),
            low=interval.get("low"),
            high=interval.get("high"),
            passed=doc.get("decision") != "Rejected",
            note=f"{doc.get('decision')}: {doc.get('reason', '')}"[:500],
        )
    ]
    if isinstance(theirs, Mapping):
        rows += _class_rows(
            "holdout", metric, ours.get("perClass") or {}, theirs.get("perClass") or {}, doc
        )
    for entry in doc.get("regressionSets") or []:
        name, tolerance = str(entry.get("name")), float(entry.get("tolerance") or 0.0)
        if entry.get("error"):
            note = f"unavailable: {entry['error']}"[:500]
            rows.append(_row("regression", name, metric, limit=-tolerance, passed=False, note=note))
            continue
        a, b = _metric(entry.get("challenger"), metric), _metric(entry.get("champion"), metric)
        ok = a is not None and b is not None and b - a <= tolerance + 1e-9
        rows.append(
            _row(
                "regression",
                name,
                metric,
                challenger=a,
                champion=b,
                difference=_diff(a, b),
                limit=-tolerance,
                passed=ok,
                note=str(entry.get("uri") or ""),
            )
        )
        rows += _class_rows(
            name,
            metric,
            (entry.get("challenger") or {}).get("perClass") or {},
            (entry.get("champion") or {}).get("perClass") or {},
            doc,
        )
    return {"columns": list(COLUMNS), "data": rows}


def interval_line(doc: Mapping[str, Any]) -> str:
    """The interval as one line ("" without one)."""
    raw = doc.get("confidence")
    if not isinstance(raw, Mapping):
        return ""
    return (
        f"{float(raw['confidence']):.0%} interval of the {raw['metric']} improvement: "
        f"[{float(raw['low']):+.4f}, {float(raw['high']):+.4f}] (observed "
        f"{float(raw['observed']):+.4f}; {raw['resamples']} resamples, seed {raw['seed']})"
    )


def _num(value: Any) -> str:
    return "-" if value is None else f"{float(value):.4f}"


def lines(doc: Mapping[str, Any]) -> list[str]:
    """One line for the interval, per regression set and per class compared."""
    out = [interval_line(doc)] if doc.get("confidence") else []
    for row in table(doc)["data"][1:]:
        check, where, name, _, a, b, diff, limit, _, _, ok, note = row
        mark = "" if ok is None else (" ok" if ok else " FAILED")
        if check == "regression" and a is None:
            out.append(f"regression set {where}: {note}{mark}")
        elif check == "regression":
            out.append(
                f"regression set {where}: {_num(a)} vs champion {_num(b)} "
                f"({_num(diff)}, tolerance {_num(-limit if limit is not None else None)}){mark}"
            )
        else:
            out.append(
                f"class {name} on {where}: {_num(a)} vs champion {_num(b)} ({_num(diff)}){mark}"
            )
    return out
