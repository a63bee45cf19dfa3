"""The champion is one truth: ModelLine status.champion is the record, MLflow's alias and the
runs' champion tags mirror it, and a lost record comes back whole from those mirrors.

Versions here are stored, registered and tagged the way training leaves them
(champion_support), against the real apiserver, operator, MLflow and MinIO, so each scenario
runs in seconds; test_champion_training.py runs the same story with real training.
"""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from champion_support import (
    alias_version,
    registered_versions,
    retrainer,
    run_tags,
    set_alias,
    tag,
    tag_champion,
)
from kubernetes import client
from operator_support import frozen, running_operator, wait_for
from retrainer_contract import layout, tracking
from retrainer_world.world import World
from upkeep_support import claim_root, create_line, experiment, get_line, patch_line_status

pytestmark = pytest.mark.integration

MODEL = "shapes"
FAST = {"RETRAINER_LINE_INTERVAL": "1", "RETRAINER_CHAMPION_SYNC_INTERVAL": "1"}


def template(experiment: str, registered: str | None = None) -> dict[str, Any]:
    """A line's template; `registered` None: the versions' own registrations name the model."""
    mlflow = {"experiment": experiment, **({"registeredModel": registered} if registered else {})}
    return {
        "baseModel": {"architecture": "yolo11n.yaml"},
        "dataset": {"uri": "datasets/shapes"},
        "mlflow": mlflow,
    }


def condition(line: dict[str, Any], type_: str) -> dict[str, Any]:
    found = [c for c in (line.get("status") or {}).get("conditions") or [] if c["type"] == type_]
    return dict(found[0]) if found else {}


def stored_line(
    world: World, kube: client.ApiClient, namespace: str, count: int
) -> tuple[Path, str, str, dict[int, dict[str, Any]]]:
    """Versions 1..count of the line stored and registered: (claim root, experiment name,
    registered model, version -> its run facts and registered version)."""
    root = claim_root(kube, namespace)
    name = f"champion-{namespace}"
    experiment_id = experiment(world, name)
    registered = f"reg-{namespace}"
    versions = registered_versions(world, root, namespace, MODEL, experiment_id, registered, count)
    return root, name, registered, versions


def production_sha(root: Path, version: int) -> str:
    path = layout.VersionPaths.for_version(root, MODEL, version).production
    return hashlib.sha256(path.read_bytes()).hexdigest()


def line_where(
    kube: client.ApiClient, namespace: str, what: str, test: Any, operator: Any, timeout: float = 90
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        line = get_line(kube, namespace, MODEL)
        return line if test(line) else None

    found: dict[str, Any] = wait_for(what, probe, timeout, operator)
    return found


def test_a_reapplied_modelline_gets_back_its_versions_and_champion_and_waits_while_mlflow_is_down(
    world: World, kube: client.ApiClient, namespace: str, crd: str, tmp_path: Path
) -> None:
    root, name, registered, versions = stored_line(world, kube, namespace, 3)
    for version, run in versions.items():
        tag(world, run["run_id"], tracking.TAG_VERIFIED, production_sha(root, version))
    # v1 was champion, then v2: the history a lost ModelLine had, in MLflow's mirrors.
    tag_champion(world, versions[1]["run_id"], "2026-12-01T09:00:00.000001Z")
    tag_champion(world, versions[2]["run_id"], "2026-12-01T10:00:00.000001Z")
    set_alias(world, registered, "champion", versions[2]["model_version"])

    with running_operator(world, namespace, tmp_path, **FAST) as operator:
        with frozen(world, "mlflow"):  # fault point: the evidence cannot be read
            create_line(kube, namespace, MODEL, {"template": template(name, registered)})
            waiting = line_where(
                kube,
                namespace,
                "Ready=False EvidenceUnavailable",
                lambda line: condition(line, "Ready").get("reason") == "EvidenceUnavailable",
                operator,
            )
        assert condition(waiting, "Ready")["status"] == "False"
        assert "MLflow cannot be read" in condition(waiting, "Ready")["message"]
        assert "ledger" not in waiting["status"] and "champion" not in waiting["status"]

        line = line_where(
            kube,
            namespace,
            "the line rebuilt and in sync",
            lambda line: (
                (line.get("status") or {}).get("latestVerified") == 3
                and condition(line, "ChampionInSync").get("status") == "True"
            ),
            operator,
        )
    status = line["status"]
    record = status["champion"]
    assert (record["version"], record["previous"], record["history"]) == (2, 1, [1])
    assert record["metrics"]["mAP50_95"] == pytest.approx(0.2)
    assert record["registeredModel"] == registered
    assert status["verifiedVersions"] == "1-3" and status["ledger"]["next"] == "4"
    assert condition(line, "Ready")["status"] == "True"
    assert condition(line, "ChampionInSync")["reason"] == "AliasInSync"
    assert alias_version(world, registered) == versions[2]["model_version"]


def test_the_alias_follows_the_record_and_a_hand_moved_alias_is_converged_back(
    world: World, kube: client.ApiClient, namespace: str, crd: str, tmp_path: Path
) -> None:
    _root, name, registered, versions = stored_line(world, kube, namespace, 2)
    set_alias(world, registered, "champion", versions[1]["model_version"])
    # The template names no registered model: the versions' own registrations do.

    with running_operator(world, namespace, tmp_path, **FAST) as operator:
        create_line(kube, namespace, MODEL, {"template": template(name)})
        line_where(
            kube,
            namespace,
            "champion v1 rebuilt from the alias",
            lambda line: ((line.get("status") or {}).get("champion") or {}).get("version") == 1,
            operator,
        )
        # The record moves (as `retrainer promote` writes it): the alias follows.
        record = get_line(kube, namespace, MODEL)["status"]["champion"]
        moved = {**record, "version": 2, "previous": 1, "history": [1], "reason": "PromotedByUser"}
        patch_line_status(kube, namespace, MODEL, {"champion": moved})
        followed = line_where(
            kube,
            namespace,
            "alias on v2",
            lambda line: condition(line, "ChampionInSync").get("reason") == "AliasMoved",
            operator,
        )
        assert alias_version(world, registered) == versions[2]["model_version"]
        assert followed["status"]["champion"]["registeredModel"] == registered
        tags = run_tags(world, versions[2]["run_id"])
        assert tracking.parse_champion_tag(tags[tracking.TAG_CHAMPION]) is not None

        # Someone moves the alias by hand in MLflow: converged back, and said so.
        set_alias(world, registered, "champion", versions[1]["model_version"])
        wait_for(
            "the alias converged back to v2",
            lambda: alias_version(world, registered) == versions[2]["model_version"] or None,
            60,
            operator,
        )
    assert get_line(kube, namespace, MODEL)["status"]["champion"]["version"] == 2


def test_rollback_finds_the_registered_model_from_the_versions_and_fails_when_mlflow_is_down(
    world: World, kube: client.ApiClient, namespace: str, crd: str
) -> None:
    _root, name, registered, versions = stored_line(world, kube, namespace, 2)
    set_alias(world, registered, "champion", versions[2]["model_version"])
    create_line(kube, namespace, MODEL, {"template": template(name)})
    champion = {"version": 2, "previous": 1, "history": [1], "reason": "Promoted"}
    patch_line_status(kube, namespace, MODEL, {"champion": champion})

    back = retrainer(world, namespace, "rollback", MODEL)
    assert back.returncode == 0, back.stdout + back.stderr
    assert get_line(kube, namespace, MODEL)["status"]["champion"]["version"] == 1
    assert alias_version(world, registered) == versions[1]["model_version"]
    assert f"MLflow: {registered} @champion" in back.stdout

    with frozen(world, "mlflow"):  # fault point: the alias cannot be moved
        forward = retrainer(world, namespace, "promote", MODEL, "2")
    assert forward.returncode == 1, forward.stdout + forward.stderr
    assert "NOT set" in forward.stdout
    # The record moved (it is the truth); the alias did not, and the exit code says so.
    assert get_line(kube, namespace, MODEL)["status"]["champion"]["version"] == 2
    assert alias_version(world, registered) == versions[1]["model_version"]


def test_a_promote_whose_champion_moves_while_it_verifies_is_refused(
    world: World, kube: client.ApiClient, namespace: str, crd: str
) -> None:
    _root, name, _registered, _versions = stored_line(world, kube, namespace, 3)
    create_line(kube, namespace, MODEL, {"template": template(name)})
    patch_line_status(kube, namespace, MODEL, {"champion": {"version": 1, "reason": "Promoted"}})
    batch = client.BatchV1Api(kube)
    moved = threading.Event()

    def move_while_verifying() -> None:
        # Named point: the CLI's verify Job exists (the champion was read before it).
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if batch.list_namespaced_job(namespace).items:
                patch_line_status(
                    kube, namespace, MODEL, {"champion": {"version": 2, "reason": "Promoted"}}
                )
                moved.set()
                return
            time.sleep(0.05)

    mover = threading.Thread(target=move_while_verifying)
    mover.start()
    promote = retrainer(world, namespace, "promote", MODEL, "3")
    mover.join()
    assert moved.is_set()
    assert promote.returncode == 1, promote.stdout + promote.stderr
    assert "compared with v1, but the champion is now v2" in promote.stderr
    assert get_line(kube, namespace, MODEL)["status"]["champion"]["version"] == 2
