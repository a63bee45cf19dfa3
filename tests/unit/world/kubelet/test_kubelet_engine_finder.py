"""The pod runner without a container engine: it looks again when a container pod needs one,
and a pod it still cannot run as a container fails with a reason instead of running as a host
process. No engine and no cluster here: stand-ins for podman's presence and for the API;
tests/integration/test_world_container_refusal.py runs the same against the real world."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from retrainer_world.kubelet import engine, worker
from retrainer_world.kubelet.engine import NO_ENGINE_FAULT, RUNTIME_UNAVAILABLE, EngineFinder
from retrainer_world.kubelet.launch import RUNTIME_LABEL, LaunchContext


class FoundEngine:
    """What detect() builds once podman is there: it only removes leftovers here."""

    def __init__(self, state: Path) -> None:
        self.state = state

    def remove_all(self) -> int:
        return 0


class Core:
    def __init__(self, labels: dict[str, str]) -> None:
        self.labels = labels

    def read_namespace(self, name: str) -> dict[str, Any]:
        return {"metadata": {"name": name, "labels": self.labels}}


class Api:
    """The runner's Kube as a worker uses it: read the namespace, post statuses."""

    def __init__(self, labels: dict[str, str]) -> None:
        self.core = Core(labels)
        self.statuses: list[dict[str, Any]] = []

    def get_optional(self, fn: Any, *args: Any) -> dict[str, Any]:
        return dict(fn(*args))

    def patch_pod_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.statuses.append(status)


def _no_podman(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(NO_ENGINE_FAULT, raising=False)
    monkeypatch.setattr(engine.shutil, "which", lambda name: None)


def _podman_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(engine, "Engine", FoundEngine)


def test_the_fault_point_makes_the_runner_believe_podman_is_absent(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _podman_installed(monkeypatch)
    monkeypatch.setenv(NO_ENGINE_FAULT, "1")
    finder = EngineFinder(tmp_path)

    assert finder.find() is None
    assert NO_ENGINE_FAULT in finder.missing


def test_an_engine_installed_after_the_runner_started_is_found_at_the_next_look(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _no_podman(monkeypatch)
    started: list[str] = []

    def start_service() -> str:
        started.append("service")
        return "127.150.1.2"

    finder = EngineFinder(tmp_path, on_found=start_service)
    assert finder.find() is None
    assert "not on the pod runner's PATH" in finder.missing

    _podman_installed(monkeypatch)  # `make engine` ran while the world was up
    found = finder.find()

    assert isinstance(found, FoundEngine) and finder.missing == ""
    assert finder.service_host == "127.150.1.2" and started == ["service"]
    assert finder.find() is found and started == ["service"]  # kept: no second look


def _worker(api: Api, tmp_path: Path, finder: EngineFinder) -> worker.PodWorker:
    ctx = LaunchContext(
        source=object(),  # type: ignore[arg-type]  # never reached: no volume is prepared
        state=tmp_path,
        node="local-node",
        venv=tmp_path,
        repo=tmp_path,
        engine=finder.engine,
        engines=finder,
    )
    pod = {
        "metadata": {"name": "p", "namespace": "ns", "uid": "uid-1"},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]},
    }
    return worker.PodWorker(api, ctx, pod, adopt=False)  # type: ignore[arg-type]


def test_a_container_namespace_pod_without_an_engine_fails_and_never_launches(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _no_podman(monkeypatch)
    monkeypatch.setattr(worker, "build_launch", lambda *a: pytest.fail("ran as a host process"))
    api = Api({RUNTIME_LABEL: "container"})

    _worker(api, tmp_path, EngineFinder(tmp_path)).lifecycle()

    final = api.statuses[-1]
    assert final["phase"] == "Failed" and final["reason"] == RUNTIME_UNAVAILABLE
    assert "make engine" in final["message"]
    assert final["containerStatuses"][0]["state"]["waiting"]["reason"] == RUNTIME_UNAVAILABLE
    assert [s["phase"] for s in api.statuses] == ["Failed"]  # not even Pending before


def test_a_pod_of_an_unlabelled_namespace_still_runs_as_a_process_without_an_engine(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _no_podman(monkeypatch)
    pod_worker = _worker(Api({}), tmp_path, EngineFinder(tmp_path))

    assert pod_worker.choose_runtime() == "process"
    assert pod_worker.has_engine() is False
