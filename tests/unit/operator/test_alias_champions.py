"""The MLflow-alias champion: the alias names a registered version, its run names version N."""

from __future__ import annotations

from typing import Any

import pytest
from retrainer_operator.champion import AliasChampions, Champion, ChampionError, alias_champions
from retrainer_operator.mlflow_rest import MlflowError, Run


def run(run_id: str, namespace: str, model: str, version: int, **metrics: float) -> Run:
    return Run(
        {
            "info": {"run_id": run_id, "experiment_id": "1"},
            "data": {
                "tags": [
                    {"key": "retrainer.namespace", "value": namespace},
                    {"key": "retrainer.model", "value": model},
                    {"key": "retrainer.version", "value": str(version)},
                ],
                "metrics": [
                    {"key": k.replace("_dot_", "."), "value": v} for k, v in metrics.items()
                ],
            },
        }
    )


class FakeMlflow:
    """The five REST calls AliasChampions makes, over dicts; `down` fails them all."""

    def __init__(self, runs: list[Run], down: bool = False) -> None:
        self.runs = {r.run_id: r for r in runs}
        self.registered = {r.run_id: str(i + 1) for i, r in enumerate(runs)}
        self.aliases: dict[str, str] = {}
        self.down = down

    def _check(self) -> None:
        if self.down:
            raise MlflowError("MLflow GET ...: connection refused")

    def alias_version(self, name: str, alias: str) -> dict[str, Any] | None:
        self._check()
        version = self.aliases.get(alias)
        run_id = next((r for r, v in self.registered.items() if v == version), None)
        return {"version": version, "run_id": run_id} if version else None

    def get_run(self, run_id: str) -> Run | None:
        self._check()
        return self.runs.get(run_id)

    def version_run(self, experiment: str, namespace: str, model: str, version: int) -> Run | None:
        self._check()
        return next(
            (
                r
                for r in self.runs.values()
                if (r.tags["retrainer.namespace"], r.tags["retrainer.model"]) == (namespace, model)
                and r.tags["retrainer.version"] == str(version)
            ),
            None,
        )

    def model_version_of(self, name: str, run_id: str) -> str | None:
        self._check()
        return self.registered.get(run_id)

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self._check()
        self.aliases[alias] = version


def store(mlflow: FakeMlflow) -> AliasChampions:
    return AliasChampions(mlflow, "shapes", "champion", "shapes", "mAP50_95")  # type: ignore[arg-type]


RUNS = [
    run("r1", "team-a", "shapes", 1, holdout_dot_mAP50_95=0.4),
    run("r2", "team-a", "shapes", 2, holdout_dot_mAP50_95=0.6, holdout_dot_mAP50=0.8),
    run("rx", "team-b", "shapes", 7),
]


def test_a_line_without_the_alias_has_no_champion() -> None:
    assert store(FakeMlflow(RUNS)).current("team-a", "shapes") is None


def test_promote_moves_the_alias_to_the_versions_registered_version() -> None:
    mlflow = FakeMlflow(RUNS)
    champions = store(mlflow)
    champions.promote("team-a", "shapes", Champion(2, "mAP50_95", 0.6))
    assert mlflow.aliases == {"champion": "2"}
    current = champions.current("team-a", "shapes")
    assert current == Champion(2, "mAP50_95", 0.6, {"mAP50_95": 0.6, "mAP50": 0.8})


def test_an_alias_on_another_lines_version_is_an_error_naming_it() -> None:
    mlflow = FakeMlflow(RUNS)
    mlflow.aliases["champion"] = "3"
    with pytest.raises(ChampionError, match="not a version of model line team-a/shapes"):
        store(mlflow).current("team-a", "shapes")


def test_a_version_never_registered_cannot_be_promoted() -> None:
    with pytest.raises(ChampionError, match="version 9 of team-a/shapes has no version"):
        store(FakeMlflow(RUNS)).promote("team-a", "shapes", Champion(9, "mAP50_95", 0.1))


def test_an_outage_is_a_champion_error() -> None:
    with pytest.raises(ChampionError, match="connection refused"):
        store(FakeMlflow(RUNS, down=True)).current("team-a", "shapes")


def test_the_factory_gives_a_store_only_under_spec_promotion() -> None:
    factory = alias_champions(FakeMlflow(RUNS))  # type: ignore[arg-type]
    spec: dict[str, Any] = {"model": "shapes", "mlflow": {"registeredModel": "shapes"}}
    assert factory({"spec": spec}) is None
    promoted = {**spec, "promotion": {"metric": "mAP50", "holdout": {"uri": "h"}, "alias": "prod"}}
    made = factory({"spec": promoted})
    assert isinstance(made, AliasChampions) and (made.alias, made.metric) == ("prod", "mAP50")
