"""What a running world is: the record in <state>/world.json as a `World` object with its
endpoints, credentials, the environment a client needs and each component's health.

Kept apart from starting and stopping so clients (tests, the demo, the CLI's `env`) only
read; `retrainer_world.world` is the public entry point that re-exports it.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrainer_world import health, procs
from retrainer_world.components import Layout

__all__ = [
    "World",
    "WorldError",
    "WorldNotRunning",
    "default_state",
    "node_ready",
    "state_path",
]


class WorldError(RuntimeError):
    """The world could not be started, loaded or used; the message says what to do."""


class WorldNotRunning(WorldError):
    """No running world in this state folder (or one of its processes died)."""


def default_state() -> Path:
    """$RETRAINER_STATE, else ~/.cache/retrainer/world."""
    env = os.environ.get("RETRAINER_STATE")
    return Path(env) if env else Path.home() / ".cache" / "retrainer" / "world"


def state_path(state: Path | str | None) -> Path:
    return Path(state).expanduser().resolve() if state is not None else default_state().resolve()


@dataclass(frozen=True)
class World:
    """A running world, as recorded in <state>/world.json."""

    data: dict[str, Any]

    @classmethod
    def load(cls, state: Path | str | None = None) -> World:
        """The world running in `state`; raises WorldNotRunning when there is none."""
        layout = Layout(state_path(state))
        try:
            data = json.loads(layout.world_json.read_text())
        except (OSError, ValueError) as exc:
            raise WorldNotRunning(
                f"no world is running in {layout.state} (no readable world.json); "
                "start one with `python -m retrainer_world up`"
            ) from exc
        world = cls(data)
        if not data.get("ready"):
            raise WorldNotRunning(f"the world in {layout.state} did not finish starting")
        dead = [p.name for p in world.procs() if not p.alive()]
        if dead:
            raise WorldNotRunning(
                f"world components {', '.join(dead)} in {layout.state} are not running; "
                f"see {layout.logs}/<component>.log and restart with `python -m retrainer_world up`"
            )
        return world

    @property
    def state(self) -> Path:
        return Path(self.data["state"])

    @property
    def layout(self) -> Layout:
        return Layout(self.state)

    @property
    def kubeconfig(self) -> Path:
        return Path(self.data["kubeconfig"])

    @property
    def server(self) -> str:
        return str(self.data["server"])

    @property
    def minio_endpoint(self) -> str:
        return str(self.data["minio"]["endpoint"])

    @property
    def minio_access_key(self) -> str:
        return str(self.data["minio"]["accessKey"])

    @property
    def minio_secret_key(self) -> str:
        return str(self.data["minio"]["secretKey"])

    @property
    def mlflow_uri(self) -> str:
        return str(self.data["mlflow"]["uri"])

    @property
    def bin_dir(self) -> Path:
        return Path(self.data["bin_dir"])

    @property
    def node(self) -> str:
        return str(self.data["node"])

    @property
    def owner(self) -> str:
        return str(self.data.get("owner", "cli"))

    @property
    def pids(self) -> dict[str, int]:
        return {name: int(p["pid"]) for name, p in self.data.get("pids", {}).items()}

    @property
    def ca_cert(self) -> Path:
        return self.layout.pki.ca_cert

    def procs(self) -> list[procs.Proc]:
        return [procs.Proc.from_json(n, p) for n, p in self.data.get("pids", {}).items()]

    def env(self) -> dict[str, str]:
        """Environment variables a child process needs to use this world."""
        venv_bin = str(Path(sys.executable).parent)
        path = os.pathsep.join([str(self.bin_dir), venv_bin, os.environ.get("PATH", "")])
        return {
            "KUBECONFIG": str(self.kubeconfig),
            "MLFLOW_TRACKING_URI": self.mlflow_uri,
            "MLFLOW_S3_ENDPOINT_URL": self.minio_endpoint,
            "AWS_ACCESS_KEY_ID": self.minio_access_key,
            "AWS_SECRET_ACCESS_KEY": self.minio_secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            # No internet here: MLflow's telemetry would only add timeouts.
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
            "RETRAINER_STATE": str(self.state),
            "PATH": path,
        }

    def health(self) -> dict[str, bool]:
        """Each component's health right now (process alive and its probe answering)."""
        ports = self.data["ports"]
        pki = self.layout.pki
        ctx = health.tls_client_context(pki.ca_cert, pki.admin_cert, pki.admin_key)
        alive = {p.name: p.alive() for p in self.procs()}
        checks = {
            "etcd": lambda: health.etcd_healthy(f"http://127.0.0.1:{ports['etcd']}"),
            "kube-apiserver": lambda: health.apiserver_ready(self.server, ctx),
            "kube-controller-manager": lambda: health.insecure_healthz(ports["controller_manager"]),
            "kube-scheduler": lambda: health.insecure_healthz(ports["scheduler"]),
            "minio": lambda: health.minio_live(self.minio_endpoint),
            "mlflow": lambda: health.mlflow_healthy(self.mlflow_uri),
            "podrunner": lambda: node_ready(self.server, ctx, self.node),
        }
        return {name: alive[name] and checks[name]() for name in alive}

    def is_healthy(self) -> bool:
        return bool(self.data.get("ready")) and all(self.health().values())

    def minio_client(self) -> Any:
        """A `minio.Minio` client for this world's MinIO (imported lazily)."""
        from minio import Minio

        host = self.minio_endpoint.removeprefix("http://")
        return Minio(host, self.minio_access_key, self.minio_secret_key, secure=False)


def node_ready(server: str, ctx: Any, node: str) -> bool:
    status = json.loads(health.get(f"{server}/api/v1/nodes/{node}", ctx)).get("status", {})
    return any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", [])
    )
