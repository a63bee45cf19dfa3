"""The champion kept where the model line is: the ModelLine's status.champion.

The ModelLine is the record people read (`kubectl get modellines`: CHAMPION, mAP50-95), the
one `retrainer promote` / `rollback` move by hand, and the one `baseModel.version: champion`
resolves against; so the operator's automatic promotion (promotion.settle) moves the same
record, through the contract's one rule for it (retrainer_contract.champion). The move is a
compare-and-set on the champion the evaluation was compared with, written through the line's
one status write path (line_status.update: guarded by the resourceVersion read). The record is
written first and MLflow (alias, run tag) mirrors it after, in the same order as the CLI; a
mirror that fails here is converged by the line reconciler (ChampionInSync).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException
from retrainer_contract import champion as champion_record
from retrainer_contract import evaluation, tracking

from retrainer_operator import champion_mirror, line_status
from retrainer_operator.champion import (
    Champion,
    ChampionError,
    ChampionFactory,
    ChampionMoved,
    ChampionStore,
)
from retrainer_operator.conditions import now_iso
from retrainer_operator.kube import Cluster
from retrainer_operator.mlflow_rest import MlflowRest

__all__ = ["LineChampions", "line_champions"]

logger = logging.getLogger("retrainer.operator")


class LineChampions:
    """status.champion of the ModelLine named after the line, mirrored in MLflow."""

    def __init__(
        self,
        cluster: Cluster,
        metric: str,
        mlflow: MlflowRest | None = None,
        experiment: str = "",
    ) -> None:
        self.cluster = cluster
        self.metric = metric
        self.mlflow = mlflow
        self.experiment = experiment

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

    def promote(self, namespace: str, model: str, champion: Champion, expected: int | None) -> None:
        reason = (
            champion.reason
            if champion.reason in champion_record.REASONS
            else champion_record.PROMOTED
        )
        moved: list[tuple[dict[str, Any], dict[str, Any]]] = []

        def change(line: dict[str, Any]) -> tuple[dict[str, Any] | None, None]:
            moved.clear()
            status = dict(line.get("status") or {})
            old = status.get("champion") or {}
            try:
                new = champion_record.compare_and_move(
                    old,
                    expected,
                    champion.version,
                    reason=reason,
                    since=now_iso(),
                    metrics=champion.metrics,
                    registered_model=champion.registered_model,
                    alias=champion.alias,
                )
            except champion_record.ChampionChanged as error:
                raise ChampionMoved(error.expected, error.current) from error
            if new is None:
                return None, None  # already (a retry after a crash)
            moved.append((line, old))
            return {**status, "champion": new}, None

        try:
            line_status.update(self.cluster, namespace, model, change)
        except line_status.LineGone as error:
            raise ChampionError(str(error)) from error
        except line_status.Conflict as error:
            raise ChampionError(f"{error}; retrying") from error
        except ApiException as error:
            raise ChampionError(f"cannot write the champion: {error}") from error
        if moved:
            line, old = moved[0]
            before = f" (was v{old['version']})" if old.get("version") else ""
            with contextlib.suppress(Exception):
                self.cluster.emit_event(
                    line,
                    champion_record.PROMOTED,
                    f"v{champion.version} is the champion{before}: {champion.reason}",
                )
        self._mirror(namespace, model, champion)

    def _mirror(self, namespace: str, model: str, champion: Champion) -> None:
        """MLflow follows the record now (best effort: the line reconciler converges it)."""
        if self.mlflow is None:
            return
        line = self._line(namespace, model)
        record = ((line or {}).get("status") or {}).get("champion") or {}
        if record.get("version") != champion.version:
            return  # moved on already: the line reconciler mirrors the newer record
        outcome = champion_mirror.sync(
            self.mlflow,
            namespace,
            model,
            record,
            self.experiment,
            champion.registered_model,
            champion.alias,
        )
        logger.info(
            "champion mirrored line=%s/%s version=%s in_sync=%s reason=%s",
            namespace,
            model,
            champion.version,
            outcome.value,
            outcome.reason,
        )


def line_champions(cluster: Cluster, mlflow: MlflowRest | None) -> ChampionFactory:
    """The operator's champion stores: the ModelLine of the RetrainJob's line (None without
    spec.promotion: only an evaluated version moves the champion)."""

    def factory(body: Mapping[str, Any]) -> ChampionStore | None:
        spec = body.get("spec") or {}
        raw = spec.get("promotion")
        if not raw:
            return None
        policy = evaluation.Policy.from_spec(raw)
        return LineChampions(cluster, policy.metric, mlflow, tracking.experiment_name(spec))

    return factory
