"""A namespace labelled for containers never runs a pod as a host process.

The pod runner's fault point `RETRAINER_WORLD_FAULT_NO_ENGINE=1` makes it believe podman is
absent. Each test runs one `PodWorker` of the runner in this process, against the real world's
apiserver, for a pod bound to a node of its own that no other runner watches (so the world's
runner never sees it, and nothing of the shared world is touched): without an engine the pod
fails with reason `ContainerRuntimeUnavailable` and its command never runs; an engine that
appears after the runner started (`make engine` into a running world) runs the next pod as a
container.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import Any

import pytest
from container_support import RUNTIME_LABEL, container_namespace, image
from kubernetes import client
from retrainer_world.kubelet import images
from retrainer_world.kubelet.engine import NO_ENGINE_FAULT, RUNTIME_UNAVAILABLE, EngineFinder
from retrainer_world.kubelet.kube import Kube
from retrainer_world.kubelet.launch import LaunchContext, base_env
from retrainer_world.kubelet.runner import ClusterSource
from retrainer_world.kubelet.worker import PodWorker
from retrainer_world.world import World

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
WORKER_SECONDS = 120


def _context(kube: Kube, state: Path, node: str, finder: EngineFinder) -> LaunchContext:
    """What the runner's main() builds, with the finder's engine (None while it has none)."""
    ca_file = str(kube.api.configuration.ssl_ca_cert or "")
    venv = Path(sys.prefix)
    return LaunchContext(
        source=ClusterSource(kube, ca_file),
        state=state,
        node=node,
        venv=venv,
        repo=REPO,
        server=kube.server,
        ca_file=ca_file,
        base=base_env(venv, os.environ),
        images=images.load_images(),
        engine=finder.engine,
        service_host=finder.service_host,
        engines=finder,
    )


def _run_pod(
    world: World, kube: Any, namespace: str, container: dict[str, Any], finder: EngineFinder
) -> dict[str, Any]:
    """Create a one-container pod bound to a node of its own, run it to its end in a worker of
    this process (its files under the finder's state folder), and return the pod as the API
    has it then."""
    node = f"refusal-{secrets.token_hex(3)}"
    manifest = {
        "metadata": {"name": "probe"},
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "containers": [{"name": "main", **container}],
        },
    }
    client.CoreV1Api(kube).create_namespaced_pod(namespace, manifest)
    runner_kube = Kube(str(world.kubeconfig))
    pod = runner_kube.get_optional(runner_kube.core.read_namespaced_pod, "probe", namespace)
    assert pod is not None
    ctx = _context(runner_kube, finder.state, node, finder)
    worker = PodWorker(runner_kube, ctx, pod, adopt=False)
    worker.start()
    worker.join(WORKER_SECONDS)
    assert not worker.is_alive(), f"the pod's worker did not finish in {WORKER_SECONDS}s"
    done = runner_kube.get_optional(runner_kube.core.read_namespaced_pod, "probe", namespace)
    assert done is not None
    return done


def test_a_container_namespace_pod_fails_without_an_engine_and_never_runs_on_the_host(
    world: World,
    kube: Any,
    namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client.CoreV1Api(kube).patch_namespace(
        namespace, {"metadata": {"labels": {RUNTIME_LABEL: "container"}}}
    )
    monkeypatch.setenv(NO_ENGINE_FAULT, "1")
    finder = EngineFinder(tmp_path / "state")
    assert finder.find() is None
    marker = tmp_path / "ran-on-the-host"

    touch = {"image": "busybox", "command": ["sh", "-c", f"touch {marker}"]}
    pod = _run_pod(world, kube, namespace, touch, finder)

    status = pod["status"]
    assert not marker.exists(), "the container namespace's pod ran as a host process"
    assert status["phase"] == "Failed", status
    assert status["reason"] == RUNTIME_UNAVAILABLE
    assert "make engine" in status["message"] and NO_ENGINE_FAULT in status["message"]
    waiting = status["containerStatuses"][0]["state"]["waiting"]
    assert waiting["reason"] == RUNTIME_UNAVAILABLE


def test_an_engine_that_appears_after_the_runner_started_runs_the_next_container_pod(
    world: World,
    kube: Any,
    namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    container_namespace(kube, namespace, restricted=False)
    monkeypatch.setenv(NO_ENGINE_FAULT, "1")
    # Its own state folder: the finder removes its world's leftover containers when it finds
    # the engine, and must never touch the shared world's.
    finder = EngineFinder(tmp_path / "state")
    assert finder.find() is None  # the runner started before `make engine`
    monkeypatch.delenv(NO_ENGINE_FAULT)  # ... which has run since

    # podman creates /run/.containerenv in every container; a host process finds none.
    probe = {"image": image("operator"), "command": ["sh", "-c", "test -e /run/.containerenv"]}
    pod = _run_pod(world, kube, namespace, probe, finder)

    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    assert finder.engine is not None and finder.missing == ""
