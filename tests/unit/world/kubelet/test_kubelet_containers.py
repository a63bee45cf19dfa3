"""Container mode's launch: the podman command a pod's container becomes, and the
`kubernetes` Service forwarder. No engine runs here: the engine is a stand-in that knows two
images; tests/integration/test_pod_security.py runs the real one."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path
from typing import Any, ClassVar

import pytest
from retrainer_world.kubelet.containers import build_container_launch, service_env
from retrainer_world.kubelet.engine import ImageConfig, container_name
from retrainer_world.kubelet.env import ConfigError
from retrainer_world.kubelet.images import ImageUnknown
from retrainer_world.kubelet.launch import LaunchContext
from retrainer_world.kubelet.quantities import cpus, memory_bytes
from retrainer_world.kubelet.service import ServiceForwarder
from retrainer_world.kubelet.volumes import empty_dir_overuse

IMAGE = "ghcr.io/retrainer/trainer:0.1.0"


class Engine:
    """The engine's face as containers.py sees it: image configs, its own env, a label."""

    label = "world"
    env: ClassVar[dict[str, str]] = {"PATH": "/usr/bin", "CONTAINERS_CONF": "/c.conf"}

    def image(self, image: str) -> ImageConfig | None:
        return {IMAGE: ImageConfig("10001:10001"), "root:1": ImageConfig("")}.get(image)


class Cluster:
    def secret_data(self, namespace: str, name: str) -> dict[str, bytes] | None:
        return {"accessKey": b"AK"} if name == "creds" else None

    def config_map_data(self, namespace: str, name: str) -> dict[str, bytes] | None:
        return None

    def claim_path(self, namespace: str, claim: str) -> Path | None:
        return None

    def token(self, namespace: str, sa: str, pod: Any, audiences: list[str], seconds: int) -> str:
        return "t"


def _ctx(tmp_path: Path) -> LaunchContext:
    return LaunchContext(
        source=Cluster(),
        state=tmp_path,
        node="local-node",
        venv=tmp_path,
        repo=tmp_path,
        server="https://127.0.0.1:6443",
        service_host="127.150.1.2",
        runtime="container",
    )


def _pod(container: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "0123456789abcdef-uid"},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "fsGroup": 10001},
            "containers": [container],
        },
    }


def test_a_container_becomes_one_podman_run_of_its_image(tmp_path: Path) -> None:
    container = {
        "name": "trainer",
        "image": IMAGE,
        "args": ["--epochs", "$(EPOCHS)"],
        "env": [
            {"name": "EPOCHS", "value": "2"},
            {"name": "AK", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "accessKey"}}},
        ],
        "resources": {"limits": {"memory": "3Gi", "cpu": "1500m"}},
        "securityContext": {"readOnlyRootFilesystem": True},
        "volumeMounts": [
            {"name": "models", "mountPath": "/var/lib/retrainer"},
            {"name": "creds", "mountPath": "/etc/creds", "readOnly": True},
        ],
        "terminationMessagePath": "/dev/termination-log",
    }
    folders = {"models": tmp_path / "claim", "creds": tmp_path / "creds"}
    launch = build_container_launch(_ctx(tmp_path), Engine(), _pod(container), container, folders)
    argv = launch.argv

    assert argv[:2] == ["podman", "run"]
    assert argv[-3:] == [IMAGE, "--epochs", "2"]  # args after the image: the image's entrypoint
    assert "--entrypoint" not in argv
    assert (
        argv[argv.index("--name") + 1]
        == launch.engine_name
        == container_name("0123456789abcdef-uid", "trainer", 0)
    )
    assert argv[argv.index("--memory") + 1] == str(3 * 2**30)
    assert argv[argv.index("--cpus") + 1] == "1.5"
    assert f"{tmp_path / 'claim'}:/var/lib/retrainer:rw" in argv
    assert f"{tmp_path / 'creds'}:/etc/creds:ro" in argv
    assert f"{launch.message_file}:/dev/termination-log:rw" in argv
    assert "kubernetes.default.svc:127.150.1.2" in argv
    # Values reach podman through its environment, never its command line.
    assert "AK" in argv and "AK=AK" not in " ".join(argv)
    assert launch.env["AK"] == "AK" and launch.env["CONTAINERS_CONF"] == "/c.conf"
    assert launch.env["KUBERNETES_SERVICE_HOST"] == "127.150.1.2"
    assert launch.env["KUBERNETES_SERVICE_PORT"] == "443"
    assert "--read-only" in argv and argv[argv.index("--group-add") + 1] == "10001"


def test_a_command_replaces_the_entrypoint(tmp_path: Path) -> None:
    container = {"name": "c", "image": IMAGE, "command": ["sh", "-c"], "args": ["echo hi"]}
    launch = build_container_launch(_ctx(tmp_path), Engine(), _pod(container), container, {})
    entry = launch.argv.index("--entrypoint")
    assert json.loads(launch.argv[entry + 1]) == ["sh", "-c"]
    assert launch.argv[-2:] == [IMAGE, "echo hi"]


def test_a_missing_image_is_never_pulled_and_a_root_image_is_refused(tmp_path: Path) -> None:
    missing = {"name": "c", "image": "ghcr.io/elsewhere/x:1"}
    with pytest.raises(ImageUnknown, match="pull policy of Never"):
        build_container_launch(_ctx(tmp_path), Engine(), _pod(missing), missing, {})
    root = {"name": "c", "image": "root:1"}
    with pytest.raises(ConfigError, match="will run as root"):
        build_container_launch(_ctx(tmp_path), Engine(), _pod(root), root, {})


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [("256Mi", 256 * 2**20), ("1G", 10**9), ("3Gi", 3 * 2**30), ("1000", 1000)],
)
def test_memory_quantities(quantity: str, expected: int) -> None:
    assert memory_bytes(quantity) == expected


def test_cpu_quantities_and_service_env() -> None:
    assert (cpus("500m"), cpus("2")) == ("0.5", "2")
    env = service_env("https://127.0.0.1:6443")
    assert (env["KUBERNETES_SERVICE_HOST"], env["KUBERNETES_SERVICE_PORT"]) == ("127.0.0.1", "6443")


def test_the_service_forwarder_pipes_bytes_both_ways() -> None:
    upstream = socket.create_server(("127.0.0.1", 0))
    port = upstream.getsockname()[1]

    def echo() -> None:
        conn, _ = upstream.accept()
        conn.sendall(conn.recv(100).upper())
        conn.close()

    threading.Thread(target=echo, daemon=True).start()
    stop = threading.Event()
    forwarder = ServiceForwarder("127.0.0.1", ("127.0.0.1", port), stop, listen_port=0)
    forwarder.start()
    with socket.create_connection(("127.0.0.1", forwarder.port), timeout=5) as conn:
        conn.sendall(b"hello")
        assert conn.recv(100) == b"HELLO"
    stop.set()
    upstream.close()


def test_an_empty_dir_over_its_size_limit_is_named_in_the_kubelets_words(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "big").write_bytes(b"x" * 300_000)
    pod = {"spec": {"volumes": [{"name": "workdir", "emptyDir": {"sizeLimit": "1Mi"}}]}}
    assert empty_dir_overuse(pod, {"workdir": scratch}) is None
    (scratch / "bigger").write_bytes(b"x" * 900_000)
    message = empty_dir_overuse(pod, {"workdir": scratch})
    assert message == 'Usage of EmptyDir volume "workdir" exceeds the limit "1Mi". '
