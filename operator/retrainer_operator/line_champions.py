"""The champion kept where the model line is: the ModelLine's status.champion.

The ModelLine is the record people read (`kubectl get modellines`: CHAMPION, mAP50-95), the
one `retrainer promote` / `rollback` move by hand, and the one `baseModel.version: champion`
resolves against; so the operator's automatic promotion (promotion.settle) moves the same
record, through the contract's one rule for it (retrainer_contract.champion: previous, history).
When the line registers its versions in MLflow, the registered-model alias moves too, first,
so that a retry after a failed status write finds the alias already right (setting it is
idempotent).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException
from retrainer_contract import champion as champion_record
from retrainer_contract import evaluation, tracking

from retrainer_operator.champion import (
    AliasChampions,
    Champion,
    ChampionError,
    ChampionFactory,
    ChampionStore,
)
from retrainer_operator.conditions import now_iso
from retrainer_operator.kube import Cluster
from retrainer_operator.mlflow_rest import MlflowRest
from retrainer_operator.versions import Conflict

__all__ = ["LineChampions", "line_champions"]

_ATTEMPTS = 8


class LineChampions:
    """status.champion of the ModelLine named after the line, plus the MLflow alias."""

    def __init__(self, cluster: Cluster, metric: str, alias: AliasChampions | None) -> None:
        self.cluster = cluster
        self.metric = metric
        self.alias = alias

    def _line(self, namespace: str, model: str) -> dict[str, Any] | None:
        try:
            return self.cluster.read_modelline(namespace, model)
        except ApiException as error:
            raise ChampionError(f"cannot read ModelLine {namespace}/{model}: {error}") from error

    def current(self, namespace: str, model: str) -> Champion | None:
        line = self._line(namespace, model)
        record = ((line or {}).get("status") or {}).get("champion") or {}
        version = record.get("version")
        if not isinstance(version, int) or version < 1:
            return None
        metrics = {str(k): float(v) for k, v in (record.get("metrics") or {}).items()}
        reason = str(record.get("reason") or evaluation.PROMOTED)
        return Champion(version, self.metric, metrics.get(self.metric, 0.0), metrics, reason)

    def promote(self, namespace: str, model: str, champion: Champion) -> None:
        if self.alias is not None:
            self.alias.promote(namespace, model, champion)
        reason = (
            champion.reason
            if champion.reason in champion_record.REASONS
            else champion_record.PROMOTED
        )
        for _ in range(_ATTEMPTS):
            line = self._line(namespace, model)
            if line is None:
                raise ChampionError(f"ModelLine {namespace}/{model} not found")
            old = (line.get("status") or {}).get("champion") or {}
            if old.get("version") == champion.version:
                return  # already (a retry after a crash)
            new = champion_record.move(
                old, champion.version, reason=reason, since=now_iso(), metrics=champion.metrics
            )
            rv = str(line["metadata"]["resourceVersion"])
            try:
                self.cluster.patch_modelline_status(
                    namespace, model, {"champion": champion_record.patch(old, new)}, rv
                )
            except Conflict:
                continue
            except ApiException as error:
                raise ChampionError(f"cannot write the champion: {error}") from error
            before = f" (was v{old['version']})" if old.get("version") else ""
            with contextlib.suppress(Exception):
                self.cluster.emit_event(
                    line,
                    champion_record.PROMOTED,
                    f"v{champion.version} is the champion{before}: {champion.reason}",
                )
            return
        raise ChampionError(f"ModelLine {namespace}/{model} kept changing; retrying")


def line_champions(cluster: Cluster, mlflow: MlflowRest) -> ChampionFactory:
    """The operator's champion stores: the ModelLine of the RetrainJob's line (None without
    spec.promotion: only an evaluated version moves the champion)."""

    def factory(body: Mapping[str, Any]) -> ChampionStore | None:
        spec = body.get("spec") or {}
        raw = spec.get("promotion")
        if not raw:
            return None
        policy = evaluation.Policy.from_spec(raw)
        registered = (spec.get("mlflow") or {}).get("registeredModel")
        alias = (
            AliasChampions(
                mlflow, registered, policy.alias, tracking.experiment_name(spec), policy.metric
            )
            if registered
            else None
        )
        return LineChampions(cluster, policy.metric, alias)

    return factory
