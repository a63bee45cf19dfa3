"""One fresh start of the world: resolves the binaries, wipes the previous run's data, makes
the PKI, credentials and kubeconfig, then spawns each component in dependency order and waits
for its health check, recording every pid in world.json as soon as it exists.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from retrainer_world import certs, components, health, procs
from retrainer_world.components import Layout, Ports
from retrainer_world.record import World, WorldError, node_ready

__all__ = ["BINARIES", "MARKER", "TIMEOUTS", "resolve_bin_dir", "run"]

log = logging.getLogger("retrainer_world")

REPO_ROOT = Path(__file__).resolve().parents[2]
BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "helm",
    "minio",
)
TIMEOUTS = {
    "etcd": 30.0,
    "kube-apiserver": 90.0,
    "kube-controller-manager": 60.0,
    "kube-scheduler": 60.0,
    "minio": 30.0,
    "mlflow": 90.0,
    "podrunner": 60.0,
}
# Set only in the components' own environment: lets `down` find their stray descendants.
MARKER = "RETRAINER_WORLD_MEMBER"


def resolve_bin_dir() -> Path:
    """Where the built binaries are: $RETRAINER_BIN_DIR, else the cache tools/build-tools.sh
    fills. Never builds: a missing binary is an error telling how to build it."""
    override = os.environ.get("RETRAINER_BIN_DIR")
    bin_dir = Path(override) if override else _build_tools_cache_dir()
    missing = [b for b in BINARIES if not os.access(bin_dir / b, os.X_OK)]
    if missing:
        raise WorldError(
            f"binaries {', '.join(missing)} are missing from {bin_dir}; build them with "
            "`make tools` (tools/build-tools.sh) or point RETRAINER_BIN_DIR at a folder "
            "holding them"
        )
    return bin_dir


def _build_tools_cache_dir() -> Path:
    """The cache folder of tools/build-tools.sh, as the script itself names it (`--print-dir`
    never builds), so the cache key can never drift between the script and the world."""
    script = REPO_ROOT / "tools" / "build-tools.sh"
    try:
        out = subprocess.run(
            ["bash", str(script), "--print-dir"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
            env={**os.environ, "RETRAINER_BIN_DIR": ""},
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise WorldError(
            f"cannot read the binary cache folder from {script} ({exc}); "
            "set RETRAINER_BIN_DIR to the folder holding the binaries"
        ) from exc
    return Path(out.stdout.strip())


def _credentials(layout: Layout) -> dict[str, str]:
    try:
        creds = json.loads(layout.credentials.read_text())
        if creds.get("accessKey") and creds.get("secretKey"):
            return {"accessKey": str(creds["accessKey"]), "secretKey": str(creds["secretKey"])}
    except (OSError, ValueError):
        pass
    creds = {"accessKey": f"retrainer-{secrets.token_hex(4)}", "secretKey": secrets.token_hex(24)}
    certs.write_private(layout.credentials, json.dumps(creds, indent=2) + "\n")
    return creds


class _Starter:
    """One fresh start: spawns components in dependency order, recording each pid at once
    so a failure half-way (or a crash of the caller) still lets `down` find them."""

    def __init__(self, layout: Layout, owner: str) -> None:
        self.layout = layout
        self.bin_dir = resolve_bin_dir()
        self.t0 = time.monotonic()
        for path in layout.fresh_data():
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        # Containers reach the apiserver at the world's `kubernetes` Service address too.
        certs.ensure_pki(layout.pki.dir, extra_ips=(components.service_address(layout.state),))
        creds = _credentials(layout)
        self.ports = Ports.from_list(procs.free_ports(Ports.count()))
        server = f"https://127.0.0.1:{self.ports.apiserver}"
        certs.write_private(layout.kubeconfig, components.kubeconfig_yaml(server, layout.pki))
        self.data: dict[str, Any] = {
            "kubeconfig": str(layout.kubeconfig),
            "server": server,
            "minio": {
                "endpoint": f"http://127.0.0.1:{self.ports.minio}",
                "accessKey": creds["accessKey"],
                "secretKey": creds["secretKey"],
            },
            "mlflow": {"uri": f"http://127.0.0.1:{self.ports.mlflow}"},
            "bin_dir": str(self.bin_dir),
            "state": str(layout.state),
            "node": components.NODE_NAME,
            "owner": owner,
            "ports": {k: getattr(self.ports, k) for k in Ports.__dataclass_fields__},
            "pids": {},
            "ready": False,
        }
        self.env = {**os.environ, **World(self.data).env(), MARKER: str(layout.state)}
        self.env.update(
            MINIO_ROOT_USER=creds["accessKey"],
            MINIO_ROOT_PASSWORD=creds["secretKey"],
            MINIO_BROWSER="off",
            MINIO_UPDATE="off",
            # The server's background job runner (7 worker processes) serves GenAI features we
            # never use; without it MLflow starts much faster on a 2-core machine.
            MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
        )
        self.procs: dict[str, procs.Proc] = {}

    def spawn(self, name: str, argv: list[str]) -> procs.Proc:
        proc = procs.spawn(name, argv, self.layout.log(name), self.env, cwd=self.layout.state)
        self.procs[name] = proc
        self.data["pids"][name] = proc.to_json()
        self._save()
        log.info("event=spawned component=%s pid=%d", name, proc.pid)
        return proc

    def wait(self, name: str, check: Any) -> None:
        waited = procs.wait_ready(
            self.procs[name], self.layout.log(name), check, TIMEOUTS[name], interval=0.25
        )
        log.info(
            "event=ready component=%s waited=%.1fs elapsed=%.1fs",
            name,
            waited,
            time.monotonic() - self.t0,
        )

    def _save(self) -> None:
        certs.write_private(self.layout.world_json, json.dumps(self.data, indent=2) + "\n")

    def run(self) -> World:
        lay, ports, bins = self.layout, self.ports, self.bin_dir
        world = World(self.data)
        pki = lay.pki
        ctx = health.tls_client_context(pki.ca_cert, pki.admin_cert, pki.admin_key)
        # Independent servers start together; the control plane follows its dependencies.
        self.spawn("etcd", components.etcd_argv(bins, lay, ports))
        self.spawn("minio", components.minio_argv(bins, lay, ports))
        self.spawn("mlflow", components.mlflow_argv(lay, ports))
        self.wait("etcd", lambda: health.etcd_healthy(f"http://127.0.0.1:{ports.etcd}"))
        self.spawn("kube-apiserver", components.apiserver_argv(bins, lay, ports))
        # MinIO answers "live" a moment before it accepts S3 calls: buckets are the real check.
        self.wait("minio", lambda: health.minio_live(world.minio_endpoint) and _buckets(world))
        self.wait("kube-apiserver", lambda: health.apiserver_ready(world.server, ctx))
        self.spawn("kube-controller-manager", components.controller_manager_argv(bins, lay, ports))
        self.spawn("kube-scheduler", components.scheduler_argv(bins, lay, ports))
        podrunner = _podrunner_available()
        if podrunner:
            self.spawn("podrunner", components.podrunner_argv(lay))
        else:
            log.warning("event=skipped component=podrunner reason=module-missing")
        self.wait(
            "kube-controller-manager", lambda: health.insecure_healthz(ports.controller_manager)
        )
        self.wait("kube-scheduler", lambda: health.insecure_healthz(ports.scheduler))
        self.wait("mlflow", lambda: health.mlflow_healthy(world.mlflow_uri))
        if podrunner:
            self.wait("podrunner", lambda: node_ready(world.server, ctx, world.node))
        self.data["ready"] = True
        self._save()
        log.info("event=up state=%s elapsed=%.1fs", lay.state, time.monotonic() - self.t0)
        return World(dict(self.data))


def _buckets(world: World) -> bool:
    """Create the buckets MLflow and datasets use (idempotent); true once both exist."""
    client = world.minio_client()
    for bucket in (components.MLFLOW_BUCKET, components.DATASETS_BUCKET):
        if not client.bucket_exists(bucket):
            client.make_bucket(bucket)
    return True


def _podrunner_available() -> bool:
    return importlib.util.find_spec(f"{components.KUBELET_MODULE}.__main__") is not None


def run(layout: Layout, owner: str) -> World:
    """Start a fresh world in `layout` (the caller holds the lock and cleans up on failure)."""
    layout.state.mkdir(parents=True, exist_ok=True)
    os.chmod(layout.state, 0o700)
    return _Starter(layout, owner).run()
