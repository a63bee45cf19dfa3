"""The champion of a model line: which version production should use, and how it moves.

Two programs move it: the CLI (`retrainer promote`, `retrainer rollback`) and the operator
(automatic promotion when a verified version passes spec.promotion). Both write the same
ModelLine `status.champion` record, so the rule for the new record (previous, history) is
written once, here, as a pure function of the old record and the target; neither program
imports the other. Standard library only.

Every move is a compare-and-set (`compare_and_move`): the writer names the champion its
decision was compared with, and the move is refused (`ChampionChanged`) when the record names
another one by the time of the write. The record is the truth; the registered-model alias and
the runs' champion tags (tracking.TAG_CHAMPION) mirror it, and `rebuild` makes the record again
from them when the ModelLine is lost.

History is "earlier champions, newest first" without the current one; `previous` is the
target of the next rollback. A promotion makes the old champion the previous one; a rollback
walks back: the new previous is the champion that came before the target, so rollbacks from
5 (history 4, 3, 2) go to 4, then 3, then 2, and then there is nothing to roll back to.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "DEFAULT_ALIAS",
    "HISTORY_LIMIT",
    "PROMOTED",
    "PROMOTED_BY_USER",
    "REASONS",
    "ROLLED_BACK",
    "ChampionChanged",
    "alias",
    "compare_and_move",
    "move",
    "patch",
    "rebuild",
    "registered_model",
    "rollback_target",
]

# status.champion.reason: why the version became champion.
PROMOTED = "Promoted"
PROMOTED_BY_USER = "PromotedByUser"
ROLLED_BACK = "RolledBack"
REASONS: tuple[str, ...] = (PROMOTED, PROMOTED_BY_USER, ROLLED_BACK)

# The CRD's status.champion.history holds at most this many versions.
HISTORY_LIMIT = 20
# The MLflow registered-model alias of the champion (spec.template.promotion.alias default).
DEFAULT_ALIAS = "champion"


class ChampionChanged(Exception):
    """The record names another champion than the one the move was compared with."""

    def __init__(self, expected: int | None, current: int | None) -> None:
        self.expected = expected
        self.current = current
        was = f"v{expected}" if expected else "no champion"
        now = f"v{current}" if current else "no champion"
        super().__init__(f"compared with {was}, but the champion is now {now}")


def _version(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _history(old: Mapping[str, Any]) -> list[int]:
    return [v for v in (_version(x) for x in old.get("history") or []) if v is not None]


def rollback_target(champion: Mapping[str, Any] | None) -> int | None:
    """The version a rollback returns to (status.champion.previous), or None."""
    return _version((champion or {}).get("previous"))


def _before(version: int, history: list[int]) -> int | None:
    """The champion that came before `version` in `history` (newest first), else None."""
    if version not in history:
        return None
    index = history.index(version)
    return history[index + 1] if index + 1 < len(history) else None


def move(
    old: Mapping[str, Any] | None,
    version: int,
    *,
    reason: str,
    since: str,
    metrics: Mapping[str, float] | None = None,
    registered_model: str | None = None,
    alias: str | None = None,
) -> dict[str, Any]:
    """The new status.champion when `version` becomes champion for `reason` at `since`.

    `old` is the current status.champion (None or {} when there is none yet). The result is
    the whole record, `previous` set to None when there is none, so that a merge patch
    removes a stale one. Raises ValueError for a bad version or reason.
    """
    if _version(version) is None:
        raise ValueError(f"a champion is a version of 1 or more, got {version!r}")
    if reason not in REASONS:
        raise ValueError(f"reason must be one of {', '.join(REASONS)}, got {reason!r}")
    old = old or {}
    current = _version(old.get("version"))
    history = _history(old)
    if reason == ROLLED_BACK:
        previous = _before(version, history)
    else:
        previous = current if current != version else _version(old.get("previous"))
    earlier = ([current] if current is not None else []) + history
    new_history = list(dict.fromkeys(v for v in earlier if v != version))[:HISTORY_LIMIT]
    record: dict[str, Any] = {
        "version": version,
        "metrics": {str(k): float(v) for k, v in (metrics or {}).items()},
        "since": since,
        "reason": reason,
        "previous": previous,
        "history": new_history,
    }
    # Where the mirror (the alias) lives: kept from the old record unless given.
    registered = registered_model or old.get("registeredModel")
    if registered:
        record["registeredModel"] = str(registered)
        record["alias"] = str(alias or old.get("alias") or DEFAULT_ALIAS)
    return record


def compare_and_move(
    old: Mapping[str, Any] | None,
    expected: int | None,
    version: int,
    **kwargs: Any,
) -> dict[str, Any] | None:
    """`move`, only if the record still names `expected` (the champion the decision was
    compared with; None: no champion). None when `version` already is the champion (a retry:
    nothing to write). Raises ChampionChanged when another version took it meanwhile."""
    current = _version((old or {}).get("version"))
    if current == version:
        return None
    if current != expected:
        raise ChampionChanged(expected, current)
    return move(old, version, **kwargs)


def rebuild(
    aliased: int | None,
    tagged: Mapping[int, tuple[str, str]],
    metrics: Mapping[int, Mapping[str, float]],
    registered_model: str | None = None,
    alias: str | None = None,
) -> dict[str, Any] | None:
    """status.champion rebuilt from its mirrors when the ModelLine was lost: the version the
    registered-model alias names (`aliased`), else the newest champion tag; history from the
    other tagged versions (version -> (since, reason)), newest first. None: no evidence."""
    order = sorted(tagged, key=lambda v: (tagged[v][0], v), reverse=True)
    current = _version(aliased) or (order[0] if order else None)
    if current is None:
        return None
    since, reason = tagged.get(current, ("", PROMOTED))
    history = [v for v in order if v != current][:HISTORY_LIMIT]
    record: dict[str, Any] = {
        "version": current,
        "metrics": {str(k): float(v) for k, v in (metrics.get(current) or {}).items()},
        "since": since[:19] + "Z" if since else since,
        "reason": reason if reason in REASONS else PROMOTED,
        "previous": history[0] if history else None,
        "history": history,
    }
    if registered_model:
        record["registeredModel"] = registered_model
        record["alias"] = alias or DEFAULT_ALIAS
    if not record["since"]:
        del record["since"]
    return record


def patch(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch of status.champion that turns `old` into `new` exactly: keys of
    `old` (and of its metrics) that `new` lacks become None, so none survives the merge."""
    old = old or {}
    result: dict[str, Any] = {key: None for key in old}
    result.update(new)
    old_metrics = old.get("metrics")
    if isinstance(new.get("metrics"), Mapping) and isinstance(old_metrics, Mapping):
        result["metrics"] = {**{k: None for k in old_metrics}, **new["metrics"]}
    return result


def registered_model(template: Mapping[str, Any] | None) -> str | None:
    """spec.template.mlflow.registeredModel of a ModelLine, or None (no alias to set)."""
    name = ((template or {}).get("mlflow") or {}).get("registeredModel")
    return str(name) if name else None


def alias(template: Mapping[str, Any] | None) -> str:
    """The alias the champion carries: spec.template.promotion.alias, else `champion`."""
    return str(((template or {}).get("promotion") or {}).get("alias") or DEFAULT_ALIAS)
