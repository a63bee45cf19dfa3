"""MLflow mirrors the champion record (alias, run tags), and a lost record is rebuilt from it."""

from __future__ import annotations

from typing import Any

from retrainer_contract import tracking
from retrainer_operator import champion_mirror
from retrainer_operator.conditions import Reason
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
    """The REST calls the mirror makes, over dicts; `down` fails them all."""

    def __init__(self, runs: list[Run], registered: str | None = "reg", down: bool = False):
        self.runs = {r.run_id: r for r in runs}
        # registered model -> run id -> registered version
        self.registered: dict[str, dict[str, str]] = {}
        if registered:
            self.registered[registered] = {r.run_id: str(i + 1) for i, r in enumerate(runs)}
        self.aliases: dict[tuple[str, str], str] = {}
        self.down = down
        self.calls = 0

    def _check(self) -> None:
        self.calls += 1
        if self.down:
            raise MlflowError("MLflow GET ...: connection refused")

    def line_runs(self, experiment: str, namespace: str, model: str) -> list[Run]:
        self._check()
        return [
            r
            for r in self.runs.values()
            if (r.tags["retrainer.namespace"], r.tags["retrainer.model"]) == (namespace, model)
        ]

    def version_run(self, experiment: str, namespace: str, model: str, version: int) -> Run | None:
        found = [
            r
            for r in self.line_runs(experiment, namespace, model)
            if r.tags["retrainer.version"] == str(version)
        ]
        return found[0] if found else None

    def registrations_of(self, run_id: str) -> list[tuple[str, str]]:
        self._check()
        return [(n, vs[run_id]) for n, vs in self.registered.items() if run_id in vs]

    def model_version_of(self, name: str, run_id: str) -> str | None:
        self._check()
        return self.registered.get(name, {}).get(run_id)

    def alias_version(self, name: str, alias: str) -> dict[str, Any] | None:
        self._check()
        version = self.aliases.get((name, alias))
        if version is None:
            return None
        run_id = next(r for r, v in self.registered[name].items() if v == version)
        return {"version": version, "run_id": run_id}

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self._check()
        self.aliases[(name, alias)] = version

    def set_run_tag(self, run_id: str, key: str, value: str) -> None:
        self._check()
        self.runs[run_id].tags[key] = value


RECORD = {"version": 2, "since": "2026-12-01T10:00:00Z", "reason": "Promoted"}


def runs() -> list[Run]:
    return [
        run("r1", "team-a", "shapes", 1, holdout_dot_mAP50_95=0.4),
        run("r2", "team-a", "shapes", 2, holdout_dot_mAP50_95=0.6, holdout_dot_mAP50=0.8),
        run("rx", "team-b", "shapes", 7),
    ]


def sync(mlflow: FakeMlflow, record: dict[str, Any] = RECORD, **kw: Any) -> Any:
    return champion_mirror.sync(mlflow, "team-a", "shapes", record, "shapes", **kw)  # type: ignore[arg-type]


def test_the_alias_is_moved_to_the_records_version_then_reads_in_sync() -> None:
    mlflow = FakeMlflow(runs())
    mlflow.aliases[("reg", "champion")] = "1"  # rolled back in the record, not in MLflow
    first = sync(mlflow)
    assert (first.value, first.reason) == (True, Reason.ALIAS_MOVED)
    assert mlflow.aliases[("reg", "champion")] == "2"
    assert (first.registered_model, first.alias) == ("reg", "champion")
    assert tracking.parse_champion_tag(mlflow.runs["r2"].tags[tracking.TAG_CHAMPION]) is not None
    second = sync(mlflow)
    assert (second.value, second.reason) == (True, Reason.ALIAS_IN_SYNC)


def test_the_registered_model_is_found_from_the_versions_own_registration() -> None:
    # The template names no registered model; the RetrainJobs registered under "reg".
    mlflow = FakeMlflow(runs())
    outcome = sync(mlflow, registered_hint=None)
    assert outcome.registered_model == "reg" and mlflow.aliases == {("reg", "champion"): "2"}


def test_an_unregistered_champion_in_a_known_model_is_out_of_sync_and_says_so() -> None:
    mlflow = FakeMlflow(runs())
    del mlflow.registered["reg"]["r2"]
    outcome = sync(mlflow, {**RECORD, "registeredModel": "reg"})
    assert (outcome.value, outcome.reason) == (False, Reason.NO_REGISTERED_MODEL)
    assert "no version in registered model 'reg'" in outcome.message


def test_a_line_that_registers_nothing_has_nothing_to_mirror() -> None:
    outcome = sync(FakeMlflow(runs(), registered=None))
    assert (outcome.value, outcome.reason) == (True, Reason.NO_REGISTERED_MODEL)


def test_mlflow_down_is_out_of_sync_with_the_error() -> None:
    outcome = sync(FakeMlflow(runs(), down=True))
    assert (outcome.value, outcome.reason) == (False, Reason.ALIAS_UNAVAILABLE)
    assert "connection refused" in outcome.message


def test_a_lost_record_is_rebuilt_from_the_alias_tags_and_verified_tags() -> None:
    mlflow = FakeMlflow(runs())
    mlflow.runs["r1"].tags[tracking.TAG_CHAMPION] = "2026-12-01T09:00:00.000001Z Promoted"
    mlflow.runs["r2"].tags[tracking.TAG_CHAMPION] = "2026-12-01T10:00:00.000001Z Promoted"
    mlflow.runs["r1"].tags[tracking.TAG_VERIFIED] = "a" * 64
    mlflow.runs["r2"].tags[tracking.TAG_VERIFIED] = "b" * 64
    mlflow.aliases[("reg", "champion")] = "2"
    found = champion_mirror.evidence(mlflow, "team-a", "shapes", "shapes")  # type: ignore[arg-type]
    assert found.highest == 2
    assert found.verified == {1: ("a" * 64, ""), 2: ("b" * 64, "")}
    record = found.champion
    assert record is not None
    assert (record["version"], record["previous"], record["history"]) == (2, 1, [1])
    assert record["metrics"] == {"mAP50_95": 0.6, "mAP50": 0.8}
    assert (record["registeredModel"], record["since"]) == ("reg", "2026-12-01T10:00:00Z")


def test_the_alias_wins_over_a_newer_tag_and_tags_alone_name_the_newest() -> None:
    mlflow = FakeMlflow(runs())
    mlflow.runs["r1"].tags[tracking.TAG_CHAMPION] = "2026-12-01T11:00:00.000001Z RolledBack"
    mlflow.runs["r2"].tags[tracking.TAG_CHAMPION] = "2026-12-01T10:00:00.000001Z Promoted"
    mlflow.aliases[("reg", "champion")] = "2"
    aliased = champion_mirror.evidence(mlflow, "team-a", "shapes", "shapes")  # type: ignore[arg-type]
    assert aliased.champion is not None and aliased.champion["version"] == 2
    mlflow.aliases.clear()
    tagged = champion_mirror.evidence(mlflow, "team-a", "shapes", "shapes")  # type: ignore[arg-type]
    assert tagged.champion is not None
    assert (tagged.champion["version"], tagged.champion["reason"]) == (1, "RolledBack")


def test_no_evidence_rebuilds_no_champion() -> None:
    found = champion_mirror.evidence(FakeMlflow([]), "team-a", "shapes", "shapes")  # type: ignore[arg-type]
    assert (found.highest, found.verified, found.champion) == (0, {}, None)


def test_an_idle_line_asks_mlflow_once_per_interval_and_at_once_after_a_move() -> None:
    from types import SimpleNamespace

    from retrainer_operator import champion_sync

    mlflow = FakeMlflow(runs())
    deps = SimpleNamespace(mlflow=mlflow, config=SimpleNamespace(champion_sync_interval=300))
    line: dict[str, Any] = {
        "metadata": {"namespace": "team-a", "name": "shapes"},
        "spec": {"template": {"mlflow": {"experiment": "shapes"}}},
        "status": {"champion": dict(RECORD)},
    }
    champion_sync.forget("team-a", "shapes")
    first = champion_sync.step(deps, line, [], now=0.0)
    assert first is not None and first.reason == Reason.ALIAS_MOVED
    calls = mlflow.calls
    assert champion_sync.step(deps, line, [], now=100.0) is None
    assert mlflow.calls == calls  # idle: no MLflow request within the interval
    line["status"]["champion"] = {**RECORD, "version": 1, "since": "2026-12-01T11:00:00Z"}
    moved = champion_sync.step(deps, line, [], now=101.0)
    assert moved is not None and mlflow.aliases[("reg", "champion")] == "1"
    assert champion_sync.step(deps, line, [], now=450.0) is not None  # the interval passed
    mlflow.down = True
    down = champion_sync.step(deps, line, [], now=460.0)
    assert down is None  # in sync at 450: not asked again before the interval
    failing = champion_sync.step(deps, line, [], now=800.0)
    assert failing is not None and failing.value is False
    mlflow.down = False
    assert champion_sync.step(deps, line, [], now=801.0) is not None  # retried at once
    champion_sync.forget("team-a", "shapes")
