"""The line reconciler's champion step: MLflow's alias converges to status.champion.

Each pass over a ModelLine (lines.reconcile_line) asks `step` for the ChampionInSync
condition. It mirrors the record in MLflow (champion_mirror.sync) when the record moved since
the last check, when the last check was not in sync, or every
`config.champion_sync_interval` seconds otherwise (someone may have moved the alias by hand);
in between it keeps the condition as it is, so an idle line costs MLflow nothing. The last
check is kept in memory only: a restarted operator checks every line once, which rebuilds it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from retrainer_contract import status as vocabulary
from retrainer_contract import tracking

from retrainer_operator import champion_mirror

__all__ = ["Check", "checked", "forget", "next_check", "step"]


@dataclass(frozen=True)
class Check:
    """The outcome of the last mirror check of a line, and of which record."""

    key: tuple[Any, Any]
    at: float
    sync: champion_mirror.Sync


_lock = threading.Lock()
_last: dict[tuple[str, str], Check] = {}


def checked(namespace: str, name: str) -> Check | None:
    """The last check of ModelLine namespace/name in this process (None: none yet)."""
    with _lock:
        return _last.get((namespace, name))


def forget(namespace: str, name: str) -> None:
    with _lock:
        _last.pop((namespace, name), None)


def _left(last: Check | None, now: float, interval: float) -> float:
    """Seconds until the last check of a line goes stale (0: check at the next pass, as when
    there was none yet or it found the alias out of sync)."""
    if last is None or not last.sync.value:
        return 0.0
    return max(0.0, last.at + interval - now)


def next_check(namespace: str, name: str, interval: float) -> float:
    """Seconds until `step` checks ModelLine namespace/name again while its record stays as
    it is (0: at its next pass)."""
    return _left(checked(namespace, name), time.monotonic(), interval)


def _spec_of(line: Mapping[str, Any], runs: list[Mapping[str, Any]], version: int) -> Any:
    """The spec the champion's runs were made with: its RetrainJob's, else the template."""
    for run in runs:
        if (run.get("status") or {}).get("version") == version:
            return run.get("spec") or {}
    template = dict((line.get("spec") or {}).get("template") or {})
    return {**template, "model": line["metadata"]["name"]}


def step(
    deps: Any,
    line: Mapping[str, Any],
    runs: list[Mapping[str, Any]],
    now: float | None = None,
) -> champion_mirror.Sync | None:
    """The ChampionInSync outcome of this pass (None: not checked now, keep the condition)."""
    namespace, name = line["metadata"]["namespace"], line["metadata"]["name"]
    record = dict((line.get("status") or {}).get("champion") or {})
    key = (record.get("version"), record.get("since"))
    now = time.monotonic() if now is None else now
    last = checked(namespace, name)
    interval = deps.config.champion_sync_interval
    if last is not None and last.key == key and _left(last, now, interval) > 0:
        return None
    if not isinstance(record.get("version"), int):
        outcome = champion_mirror.Sync(
            True, vocabulary.Reason.ALIAS_IN_SYNC, "the line has no champion"
        )
    else:
        spec = _spec_of(line, runs, int(record["version"]))
        outcome = champion_mirror.sync(
            deps.mlflow,
            namespace,
            name,
            record,
            tracking.experiment_name({**spec, "model": name}),
            (spec.get("mlflow") or {}).get("registeredModel"),
            (spec.get("promotion") or {}).get("alias"),
        )
    with _lock:
        _last[(namespace, name)] = Check(key, now, outcome)
    return outcome
