"""MLflow's view of the champion: the registered-model alias and the runs' champion tags.

The ModelLine's status.champion is the record; MLflow mirrors it, because MLflow is where a
serving system loads `models:/<name>@champion` and where the evidence outlives the ModelLine.
Two mirrors, both converged from the record (`sync`), both read back when the record is lost
(`evidence`):

- the alias on the registered model the versions were registered in. Which one is found from
  the versions' own records (the champion run's registrations) when the line's template names
  none, so a line whose RetrainJobs registered their versions still mirrors;
- the run tag tracking.TAG_CHAMPION ("<since> <reason>") on each version that was champion.
  One tag per run, so concurrent writers of different moves never overwrite each other, and
  the newest names the champion and orders the history.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from retrainer_contract import champion as champion_record
from retrainer_contract import metrics as metric_keys
from retrainer_contract import status as vocabulary
from retrainer_contract import tracking

from retrainer_operator.mlflow_rest import MlflowError, MlflowRest, Run

__all__ = ["Evidence", "Sync", "evidence", "holdout_metrics", "sync"]

logger = logging.getLogger("retrainer.operator")

# How many of the newest runs to ask for a registration when neither the record nor the
# template names a registered model (bounded: one request each).
_DISCOVER_RUNS = 5


@dataclass(frozen=True)
class Sync:
    """The ChampionInSync condition: True/False (None: unknown), reason, message, and the
    registered model and alias found (to keep in the record)."""

    value: bool | None
    reason: str
    message: str
    registered_model: str | None = None
    alias: str | None = None


@dataclass(frozen=True)
class Evidence:
    """What MLflow says of a line whose record was lost: the highest version with a run, the
    verified versions (version -> (sha256, "")) and the champion record rebuilt (None: none)."""

    highest: int
    verified: dict[int, tuple[str, str]]
    champion: dict[str, Any] | None


def holdout_metrics(run: Run) -> dict[str, float]:
    """The run's holdout metrics under their status keys (what the record keeps)."""
    return {
        key: run.metrics[metric_keys.holdout_key(key)]
        for key in metric_keys.KEYS
        if metric_keys.holdout_key(key) in run.metrics
    }


def _version_of(run: Run) -> int | None:
    value = run.tags.get(tracking.TAG_VERSION, "")
    return int(value) if value.isdigit() else None


def _registered(mlflow: MlflowRest, runs: list[Run], hint: str | None) -> str | None:
    """The registered model the line's versions live in: `hint`, else the first registration
    of the given runs (newest first)."""
    if hint:
        return hint
    for run in runs[:_DISCOVER_RUNS]:
        found = mlflow.registrations_of(run.run_id)
        if found:
            return found[0][0]
    return None


def sync(
    mlflow: MlflowRest,
    namespace: str,
    model: str,
    record: Mapping[str, Any],
    experiment: str,
    registered_hint: str | None = None,
    alias_hint: str | None = None,
) -> Sync:
    """Point the alias at the record's version and tag its run, then say whether they agree."""
    version = record.get("version")
    if not isinstance(version, int):
        return Sync(True, vocabulary.Reason.ALIAS_IN_SYNC, "the line has no champion")
    alias = str(record.get("alias") or alias_hint or champion_record.DEFAULT_ALIAS)
    try:
        run = mlflow.version_run(experiment, namespace, model, version)
        if run is None:
            return Sync(
                False,
                vocabulary.Reason.ALIAS_UNAVAILABLE,
                f"champion v{version} has no MLflow run in experiment {experiment!r}",
            )
        _tag(mlflow, run, record)
        name = _registered(mlflow, [run], record.get("registeredModel") or registered_hint)
        if name is None:
            return Sync(
                True,
                vocabulary.Reason.NO_REGISTERED_MODEL,
                f"v{version} is registered in no MLflow model: there is no alias to mirror",
            )
        registered = mlflow.model_version_of(name, run.run_id)
        if registered is None:
            return Sync(
                False,
                vocabulary.Reason.NO_REGISTERED_MODEL,
                f"champion v{version} has no version in registered model {name!r}, so alias "
                f"{alias!r} cannot name it; register it (retrainer promote re-tries)",
                name,
                alias,
            )
        pointed = mlflow.alias_version(name, alias)
        before = str((pointed or {}).get("version") or "")
        if before == registered:
            message = f"{name}@{alias} is version {registered} (v{version}), as the record says"
            return Sync(True, vocabulary.Reason.ALIAS_IN_SYNC, message, name, alias)
        mlflow.set_alias(name, alias, registered)
    except MlflowError as error:
        return Sync(
            False,
            vocabulary.Reason.ALIAS_UNAVAILABLE,
            f"cannot mirror champion v{version} in MLflow (retrying): {error}",
        )
    was = f"version {before}" if before else "nothing"
    logger.info(
        "alias moved line=%s/%s alias=%s@%s version=%s was=%s",
        namespace,
        model,
        name,
        alias,
        registered,
        before or "none",
    )
    return Sync(
        True,
        vocabulary.Reason.ALIAS_MOVED,
        f"{name}@{alias} moved to version {registered} (v{version}) from {was}",
        name,
        alias,
    )


def _tag(mlflow: MlflowRest, run: Run, record: Mapping[str, Any]) -> None:
    """Tag the champion's run, unless its tag is already as new as the record's move."""
    parsed = tracking.parse_champion_tag(run.tags.get(tracking.TAG_CHAMPION, ""))
    since = str(record.get("since") or "")
    if parsed is not None and parsed[0][:19] >= since[:19]:
        return
    reason = str(record.get("reason") or champion_record.PROMOTED)
    value = tracking.champion_tag_value(reason)
    mlflow.set_run_tag(run.run_id, tracking.TAG_CHAMPION, value)


def evidence(
    mlflow: MlflowRest,
    namespace: str,
    model: str,
    experiment: str,
    registered_hint: str | None = None,
    alias_hint: str | None = None,
) -> Evidence:
    """Read the line's runs (one paged search), its registered model's alias, and rebuild.
    MlflowError propagates: rebuilding without MLflow could crown or number wrongly."""
    runs = mlflow.line_runs(experiment, namespace, model)
    by_version = {v: r for r in runs if (v := _version_of(r)) is not None}
    by_run = {r.run_id: v for v, r in by_version.items()}
    tagged: dict[int, tuple[str, str]] = {}
    verified: dict[int, tuple[str, str]] = {}
    for version, run in by_version.items():
        parsed = tracking.parse_champion_tag(run.tags.get(tracking.TAG_CHAMPION, ""))
        if parsed is not None:
            tagged[version] = parsed
        sha256 = run.tags.get(tracking.TAG_VERIFIED, "")
        if sha256:
            verified[version] = (sha256, "")
    newest_first = [by_version[v] for v in sorted(by_version, reverse=True)]
    candidates = [by_version[v] for v in sorted(tagged, key=lambda v: tagged[v], reverse=True)]
    name = _registered(mlflow, candidates + newest_first, registered_hint)
    alias = alias_hint or champion_record.DEFAULT_ALIAS
    aliased = None
    if name is not None:
        pointed = mlflow.alias_version(name, alias)
        aliased = by_run.get(str((pointed or {}).get("run_id") or ""))
    metrics = {v: holdout_metrics(r) for v, r in by_version.items()}
    record = champion_record.rebuild(aliased, tagged, metrics, name, alias)
    return Evidence(max(by_version, default=0), verified, record)
