"""Who the champion of a model line is, behind one small interface.

The operator reads the champion when it starts a training Job (the trainer scores the new
version against it on the holdout) and moves it when the new version is verified and its
evaluation says Promoted (or NoChampion with promoteFirstVersion). Where the champion is kept
is this module's business: here an MLflow registered-model alias (the version the alias points
at, its value read from that run's holdout metric); a ModelLine resource can implement the same
`ChampionStore` and be returned by the factory in `reconcile.Deps.champions`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from retrainer_contract import evaluation, tracking
from retrainer_contract import metrics as metric_keys

from retrainer_operator.mlflow_rest import MlflowError, MlflowRest

__all__ = [
    "AliasChampions",
    "Champion",
    "ChampionError",
    "ChampionFactory",
    "ChampionStore",
    "alias_champions",
]


@dataclass(frozen=True)
class Champion:
    """The version in production for a model line, and its score on the metric it won by.

    `metrics` (all its holdout metrics) and `reason` (Promoted, or NoChampion for a line's
    first champion) are filled by the operator when it promotes; `current()` may leave them
    empty."""

    version: int
    metric: str
    value: float
    metrics: Mapping[str, float] = field(default_factory=dict)
    reason: str = evaluation.PROMOTED


class ChampionError(RuntimeError):
    """The champion cannot be read or moved now (transient: the operator retries)."""


class ChampionStore(Protocol):
    """Where the champion of a model line (namespace, model) is kept."""

    def current(self, namespace: str, model: str) -> Champion | None:
        """The champion, or None when the line has none yet; ChampionError when unknown."""

    def promote(self, namespace: str, model: str, champion: Champion) -> None:
        """Make `champion` the line's champion (idempotent); ChampionError when it failed."""


# Given a RetrainJob (its body), the store of its line's champion; None: no spec.promotion.
ChampionFactory = Callable[[Mapping[str, Any]], ChampionStore | None]


class AliasChampions:
    """The champion as alias `alias` of MLflow registered model `registered_model`.

    The version number N is the `retrainer.version` tag of the run the aliased registered
    version was made from; the value is that run's holdout metric.
    """

    def __init__(
        self, mlflow: MlflowRest, registered_model: str, alias: str, experiment: str, metric: str
    ) -> None:
        self.mlflow = mlflow
        self.registered_model = registered_model
        self.alias = alias
        self.experiment = experiment
        self.metric = metric

    def current(self, namespace: str, model: str) -> Champion | None:
        where = f"alias {self.alias!r} of registered model {self.registered_model!r}"
        try:
            aliased = self.mlflow.alias_version(self.registered_model, self.alias)
            if aliased is None:
                return None
            run = self.mlflow.get_run(str(aliased.get("run_id") or ""))
        except MlflowError as error:
            raise ChampionError(f"cannot read {where}: {error}") from error
        tags = run.tags if run is not None else {}
        line = (tags.get(tracking.TAG_NAMESPACE), tags.get(tracking.TAG_MODEL))
        number = tags.get(tracking.TAG_VERSION, "")
        if line != (namespace, model) or not number.isdigit():
            raise ChampionError(
                f"{where} points at registered version {aliased.get('version')}, which is not "
                f"a version of model line {namespace}/{model}; point the alias at one of its "
                "versions or use another registered model for this line"
            )
        assert run is not None
        scores = {
            key: run.metrics[metric_keys.holdout_key(key)]
            for key in metric_keys.KEYS
            if metric_keys.holdout_key(key) in run.metrics
        }
        return Champion(int(number), self.metric, scores.get(self.metric, 0.0), scores)

    def promote(self, namespace: str, model: str, champion: Champion) -> None:
        try:
            run = self.mlflow.version_run(self.experiment, namespace, model, champion.version)
            registered = (
                self.mlflow.model_version_of(self.registered_model, run.run_id) if run else None
            )
            if registered is None:
                raise ChampionError(
                    f"version {champion.version} of {namespace}/{model} has no version in "
                    f"registered model {self.registered_model!r}"
                )
            self.mlflow.set_alias(self.registered_model, self.alias, registered)
        except MlflowError as error:
            raise ChampionError(f"cannot move alias {self.alias!r}: {error}") from error


def alias_champions(mlflow: MlflowRest) -> ChampionFactory:
    """The factory for MLflow-alias champions (this branch's default)."""

    def factory(body: Mapping[str, Any]) -> ChampionStore | None:
        spec = body.get("spec") or {}
        raw = spec.get("promotion")
        registered = (spec.get("mlflow") or {}).get("registeredModel")
        if not raw or not registered:
            return None
        policy = evaluation.Policy.from_spec(raw)
        return AliasChampions(
            mlflow, registered, policy.alias, tracking.experiment_name(spec), policy.metric
        )

    return factory
