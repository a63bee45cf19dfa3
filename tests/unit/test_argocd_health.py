"""The Argo CD health Lua for RetrainJobs, run in a real Lua interpreter (Lua 5.1, as Argo CD's).

Argo CD calls the script with the resource as the global ``obj`` and reads ``status`` and
``message`` from the table it returns; these tests do the same with ``lupa``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lupa.lua51 as lua51
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
LUA = ROOT / "examples" / "gitops" / "retrainjob-health.lua"
ARGOCD_CM = ROOT / "examples" / "gitops" / "argocd-cm.yaml"
HEALTH_KEY = "resource.customizations.health.retrainer.dev_RetrainJob"


def health(obj: dict[str, Any]) -> tuple[str, str]:
    """Run the health script on ``obj`` the way Argo CD does; return (status, message)."""
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    runtime.globals().obj = runtime.table_from(obj, recursive=True)
    result = runtime.execute(LUA.read_text(encoding="utf-8"))
    return str(result["status"]), str(result["message"])


def retrainjob(status: dict[str, Any] | None, generation: int = 1) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "retrainer.dev/v1alpha1",
        "kind": "RetrainJob",
        "metadata": {"name": "shapes", "namespace": "ml", "generation": generation},
        "spec": {"model": "shapes"},
    }
    if status is not None:
        obj["status"] = status
    return obj


def condition(type_: str, status: str, message: str = "", reason: str = "") -> dict[str, str]:
    return {"type": type_, "status": status, "message": message, "reason": reason}


def test_retrainjob_without_status_is_progressing() -> None:
    assert health(retrainjob(None))[0] == "Progressing"


@pytest.mark.parametrize("phase", ["Pending", "Running", "Verifying"])
def test_unfinished_phases_are_progressing(phase: str) -> None:
    status, message = health(retrainjob({"observedGeneration": 1, "phase": phase}))
    assert status == "Progressing"
    assert phase in message


def test_running_message_shows_the_epoch_progress() -> None:
    obj = retrainjob({"observedGeneration": 1, "phase": "Running", "progress": {"text": "3/10"}})
    assert health(obj) == ("Progressing", "Training, epoch 3/10")


def test_succeeded_and_verified_is_healthy() -> None:
    obj = retrainjob(
        {
            "observedGeneration": 1,
            "phase": "Succeeded",
            "version": 4,
            "conditions": [
                condition("Complete", "True"),
                condition("Verified", "True", "5 locations verified"),
            ],
        }
    )
    status, message = health(obj)
    assert status == "Healthy"
    assert "Version 4" in message


def test_succeeded_without_verified_condition_is_still_progressing() -> None:
    obj = retrainjob(
        {
            "observedGeneration": 1,
            "phase": "Succeeded",
            "conditions": [condition("Complete", "True")],
        }
    )
    assert health(obj)[0] == "Progressing"


def test_succeeded_with_failed_verification_is_degraded_with_its_message() -> None:
    obj = retrainjob(
        {
            "observedGeneration": 1,
            "phase": "Succeeded",
            "conditions": [condition("Verified", "False", "mlflow: sha256 mismatch")],
        }
    )
    assert health(obj) == ("Degraded", "mlflow: sha256 mismatch")


def test_failed_is_degraded_with_the_failed_condition_message() -> None:
    obj = retrainjob(
        {
            "observedGeneration": 1,
            "phase": "Failed",
            "conditions": [
                condition("Verified", "False", "not verified"),
                condition("Failed", "True", "dataset: labels/7.txt has class 9", "BadInput"),
            ],
        }
    )
    assert health(obj) == ("Degraded", "dataset: labels/7.txt has class 9")


def test_failed_without_a_message_falls_back_to_the_reason() -> None:
    obj = retrainjob(
        {
            "observedGeneration": 1,
            "phase": "Failed",
            "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}],
        }
    )
    assert health(obj) == ("Degraded", "BackoffLimitExceeded")


def test_failed_without_conditions_is_degraded() -> None:
    obj = retrainjob({"observedGeneration": 1, "phase": "Failed"})
    assert health(obj)[0] == "Degraded"


def test_stale_status_is_progressing_even_when_it_says_succeeded() -> None:
    obj = retrainjob(
        {
            "observedGeneration": 1,
            "phase": "Succeeded",
            "conditions": [condition("Verified", "True")],
        },
        generation=2,
    )
    status, message = health(obj)
    assert status == "Progressing"
    assert "generation 2" in message


def test_status_without_observed_generation_is_stale() -> None:
    obj = retrainjob({"phase": "Failed", "conditions": [condition("Failed", "True", "x")]})
    assert health(obj)[0] == "Progressing"


def test_argocd_cm_embeds_the_health_script_verbatim() -> None:
    configmap = yaml.safe_load(ARGOCD_CM.read_text(encoding="utf-8"))
    assert configmap["metadata"]["name"] == "argocd-cm"
    assert configmap["data"][HEALTH_KEY] == LUA.read_text(encoding="utf-8")


LINE_LUA = ROOT / "examples" / "gitops" / "modelline-health.lua"
LINE_KEY = "resource.customizations.health.retrainer.dev_ModelLine"


def line_health(status: dict[str, Any] | None, generation: int = 1) -> tuple[str, str]:
    obj: dict[str, Any] = {
        "apiVersion": "retrainer.dev/v1alpha1",
        "kind": "ModelLine",
        "metadata": {"name": "shapes", "namespace": "ml", "generation": generation},
        "spec": {},
    }
    if status is not None:
        obj["status"] = status
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    runtime.globals().obj = runtime.table_from(obj, recursive=True)
    result = runtime.execute(LINE_LUA.read_text(encoding="utf-8"))
    return str(result["status"]), str(result["message"])


def test_a_line_without_status_or_with_a_stale_one_is_progressing() -> None:
    assert line_health(None)[0] == "Progressing"
    stale = {"observedGeneration": 1, "conditions": [condition("Ready", "True")]}
    assert line_health(stale, generation=2)[0] == "Progressing"


def test_a_ready_line_is_healthy_and_names_its_latest_and_champion() -> None:
    status = {
        "observedGeneration": 1,
        "conditions": [condition("Ready", "True")],
        "latestVerified": 4,
        "champion": {"version": 3},
    }
    assert line_health(status) == ("Healthy", "latest verified v4, champion v3")


@pytest.mark.parametrize("type_", ["Ready", "Scrubbed", "ChampionInSync"])
def test_an_unusable_schedule_a_failed_scrub_or_a_split_champion_is_degraded(type_: str) -> None:
    status = {
        "observedGeneration": 1,
        "conditions": [
            *([condition("Ready", "True")] if type_ != "Ready" else []),
            condition(type_, "False", "v1 best.pt changed"),
        ],
    }
    assert line_health(status) == ("Degraded", "v1 best.pt changed")


def test_argocd_cm_embeds_the_line_health_script_verbatim() -> None:
    configmap = yaml.safe_load(ARGOCD_CM.read_text(encoding="utf-8"))
    assert configmap["data"][LINE_KEY] == LINE_LUA.read_text(encoding="utf-8")
