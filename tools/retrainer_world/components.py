"""Pure builders for the world's components: the command line of each server, the admin
kubeconfig, and the on-disk layout of the state folder. No process is started here, so the
flags can be read and tested on their own.
"""

from __future__ import annotations

import base64
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from retrainer_world.certs import Pki

__all__ = [
    "COMPONENTS",
    "CONTROLLERS",
    "NODE_NAME",
    "SERVICE_ACCOUNT_ISSUER",
    "SERVICE_CIDR",
    "STOP_TIERS",
    "Layout",
    "Ports",
    "apiserver_argv",
    "controller_manager_argv",
    "etcd_argv",
    "kubeconfig_yaml",
    "minio_argv",
    "mlflow_argv",
    "podrunner_argv",
    "scheduler_argv",
]

NODE_NAME = "local-node"
# The kubelet stand-in (the "podrunner" component), started as `python -m` this module.
KUBELET_MODULE = "retrainer_world.kubelet"
SERVICE_CIDR = "10.0.0.0/24"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
MLFLOW_BUCKET = "mlflow"
DATASETS_BUCKET = "datasets"

COMPONENTS = (
    "etcd",
    "minio",
    "mlflow",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "podrunner",
)
# `down` stops them in tiers, clients before servers, each with its SIGTERM grace in seconds:
# the pod runner first so it ends its pods while the apiserver can still record it; MLflow's
# uvicorn would otherwise wait out idle keep-alive connections; etcd last because it waits for
# its clients' watch streams.
STOP_TIERS: tuple[tuple[tuple[str, ...], float], ...] = (
    (("podrunner",), 8.0),
    (("kube-controller-manager", "kube-scheduler", "mlflow", "minio"), 3.0),
    (("kube-apiserver",), 5.0),
    (("etcd",), 5.0),
)

# Every default controller except node IPAM: there are no pod CIDRs, the pod runner gives
# every pod 127.0.0.1. (The cloud controllers are no longer part of kube-controller-manager.)
CONTROLLERS = "*,-node-ipam-controller"


@dataclass(frozen=True)
class Ports:
    """Every TCP port the world listens on, all on 127.0.0.1."""

    etcd: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    minio: int
    minio_console: int
    mlflow: int

    @classmethod
    def from_list(cls, ports: list[int]) -> Ports:
        return cls(*ports)

    @classmethod
    def count(cls) -> int:
        return len(cls.__dataclass_fields__)


@dataclass(frozen=True)
class Layout:
    """Where everything lives in the state folder."""

    state: Path

    @property
    def pki(self) -> Pki:
        return Pki(self.state / "pki")

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    @property
    def world_json(self) -> Path:
        return self.state / "world.json"

    @property
    def credentials(self) -> Path:
        return self.state / "minio-credentials.json"

    @property
    def lock(self) -> Path:
        return self.state / ".lock"

    @property
    def sessions(self) -> Path:
        return self.state / "sessions"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    def log(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    @property
    def etcd_data(self) -> Path:
        return self.state / "etcd"

    @property
    def minio_data(self) -> Path:
        return self.state / "minio"

    @property
    def mlflow_db(self) -> Path:
        return self.state / "mlflow.db"

    @property
    def serving_certs(self) -> Path:
        """Self-signed serving certs the controller manager and scheduler generate."""
        return self.state / "serving-certs"

    def fresh_data(self) -> tuple[Path, ...]:
        """What a fresh start wipes: cluster, object store and tracking data, pod leftovers."""
        return (
            self.etcd_data,
            self.minio_data,
            self.mlflow_db,
            self.serving_certs,
            self.logs,
            self.state / "pods",
            self.state / "volumes",
        )


def etcd_argv(bin_dir: Path, layout: Layout, ports: Ports) -> list[str]:
    client = f"http://127.0.0.1:{ports.etcd}"
    peer = f"http://127.0.0.1:{ports.etcd_peer}"
    return [
        str(bin_dir / "etcd"),
        "--name=default",
        f"--data-dir={layout.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=default={peer}",
        # A throwaway test cluster: durability is not worth the fsync latency on CI disks.
        "--unsafe-no-fsync=true",
        "--log-level=warn",
    ]


def apiserver_argv(bin_dir: Path, layout: Layout, ports: Ports) -> list[str]:
    pki = layout.pki
    return [
        str(bin_dir / "kube-apiserver"),
        f"--etcd-servers=http://127.0.0.1:{ports.etcd}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        # A loopback address cannot back the `kubernetes` Service's endpoints; pods reach the
        # apiserver through the pod runner's environment instead.
        "--endpoint-reconciler-type=none",
        f"--secure-port={ports.apiserver}",
        f"--cert-dir={layout.serving_certs / 'apiserver'}",
        f"--tls-cert-file={pki.apiserver_cert}",
        f"--tls-private-key-file={pki.apiserver_key}",
        f"--client-ca-file={pki.ca_cert}",
        "--authorization-mode=Node,RBAC",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={pki.sa_pub}",
        f"--service-account-signing-key-file={pki.sa_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--allow-privileged=true",
        "--profiling=false",
    ]


def _control_plane_argv(bin_dir: Path, layout: Layout, name: str, port: int) -> list[str]:
    """The controller manager's and scheduler's shared start: the admin kubeconfig for the
    apiserver and for delegated authn/authz, and a loopback serving port with its own certs."""
    kubeconfig = str(layout.kubeconfig)
    return [
        str(bin_dir / name),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        # No front proxy here: looking up its CA bundle only logs an error every minute.
        "--authentication-skip-lookup=true",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--cert-dir={layout.serving_certs / name}",
    ]


def controller_manager_argv(bin_dir: Path, layout: Layout, ports: Ports) -> list[str]:
    pki = layout.pki
    return [
        *_control_plane_argv(bin_dir, layout, "kube-controller-manager", ports.controller_manager),
        f"--controllers={CONTROLLERS}",
        f"--service-account-private-key-file={pki.sa_key}",
        f"--root-ca-file={pki.ca_cert}",
        f"--cluster-signing-cert-file={pki.ca_cert}",
        f"--cluster-signing-key-file={pki.ca_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--leader-elect=false",
        "--use-service-account-credentials=false",
        "--profiling=false",
    ]


def scheduler_argv(bin_dir: Path, layout: Layout, ports: Ports) -> list[str]:
    return [
        *_control_plane_argv(bin_dir, layout, "kube-scheduler", ports.scheduler),
        "--leader-elect=false",
        "--profiling=false",
    ]


def minio_argv(bin_dir: Path, layout: Layout, ports: Ports) -> list[str]:
    return [
        str(bin_dir / "minio"),
        "server",
        "--quiet",
        f"--address=127.0.0.1:{ports.minio}",
        f"--console-address=127.0.0.1:{ports.minio_console}",
        str(layout.minio_data),
    ]


def mlflow_argv(layout: Layout, ports: Ports, python: str = sys.executable) -> list[str]:
    # The venv's own `mlflow` script sits beside its python.
    return [
        str(Path(python).parent / "mlflow"),
        "server",
        f"--backend-store-uri=sqlite:///{layout.mlflow_db}",
        f"--default-artifact-root=s3://{MLFLOW_BUCKET}/",
        "--no-serve-artifacts",
        "--host=127.0.0.1",
        f"--port={ports.mlflow}",
        # One worker: the world runs on 2-core CI machines.
        "--workers=1",
    ]


def service_address(state: Path) -> str:
    """The world's `kubernetes` Service address (containers reach the apiserver at it, port
    443): a loopback address of its own, never 127.0.0.x, so two worlds never collide."""
    digest = hashlib.sha256(str(state).encode()).digest()
    return f"127.{100 + digest[0] % 150}.{digest[1]}.{1 + digest[2] % 254}"


def podrunner_argv(layout: Layout, python: str = sys.executable) -> list[str]:
    return [
        python,
        "-m",
        KUBELET_MODULE,
        "--kubeconfig",
        str(layout.kubeconfig),
        "--state",
        str(layout.state),
        "--node",
        NODE_NAME,
        "--service-address",
        service_address(layout.state),
    ]


def kubeconfig_yaml(server: str, pki: Pki, user: str = "admin") -> str:
    """An admin kubeconfig with the certs embedded, so it works from any folder."""

    def b64(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode("ascii")

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "retrainer-world",
                "cluster": {"server": server, "certificate-authority-data": b64(pki.ca_cert)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": b64(pki.admin_cert),
                    "client-key-data": b64(pki.admin_key),
                },
            }
        ],
        "contexts": [
            {
                "name": "retrainer-world",
                "context": {"cluster": "retrainer-world", "user": user, "namespace": "default"},
            }
        ],
        "current-context": "retrainer-world",
        "preferences": {},
    }
    return yaml.safe_dump(config, sort_keys=False)
