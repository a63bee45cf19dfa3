"""Helpers for tests of the Helm chart: reading what it renders, and acting as the chart's
ServiceAccounts.

`service_account_kubeconfig` lets a test (or the operator run locally) talk to the world
with exactly the RBAC the chart grants: it asks the apiserver for a short-lived token with a
TokenRequest (no long-lived token Secret) and writes a kubeconfig around it.
"""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "retrainer"
VALUES_DIR = Path(__file__).resolve().parent / "chart_values"
CHART_NAME = "retrainer"


def fullname(release: str) -> str:
    """The chart's resource name prefix for `release` (mirrors retrainer.fullname)."""
    name = release if CHART_NAME in release else f"{release}-{CHART_NAME}"
    return name[:63].rstrip("-")


def operator_service_account(release: str) -> str:
    """Name of the operator ServiceAccount the chart creates for `release`."""
    return f"{fullname(release)}-operator"


HelmRunner = Callable[..., subprocess.CompletedProcess[str]]


def render(
    helm: HelmRunner,
    *value_args: str,
    release: str = "retrainer",
    namespace: str = "retrainer-system",
) -> list[dict[str, Any]]:
    """The objects `helm template` renders (CRDs included), empty documents dropped.

    `helm` is the integration tier's fixture: `helm(*args, check=True) -> CompletedProcess`.
    """
    out = helm(
        "template", release, str(CHART), "--namespace", namespace, "--include-crds", *value_args
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def values_file_args(name: str | None) -> list[str]:
    """`-f <file>` for a value file in chart_values/ (nothing for the defaults)."""
    return [] if name is None else ["-f", str(VALUES_DIR / f"{name}.yaml")]


def find(objects: Sequence[Mapping[str, Any]], kind: str, **where: str) -> list[Mapping[str, Any]]:
    """The objects of `kind` whose metadata matches `where` (name=..., namespace=...)."""
    return [
        obj
        for obj in objects
        if obj["kind"] == kind
        and all(obj["metadata"].get(key) == value for key, value in where.items())
    ]


def service_account_token(
    kube: client.ApiClient,
    namespace: str,
    service_account: str,
    expiration_seconds: int = 3600,
) -> str:
    """A bound token for the ServiceAccount, from the TokenRequest API."""
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=expiration_seconds)
    )
    response = client.CoreV1Api(kube).create_namespaced_service_account_token(
        service_account, namespace, request
    )
    if response.status is None or not response.status.token:
        raise RuntimeError(f"TokenRequest for {namespace}/{service_account} returned no token")
    return str(response.status.token)


def service_account_kubeconfig(
    kube: client.ApiClient,
    namespace: str,
    service_account: str,
    path: Path,
    expiration_seconds: int = 3600,
) -> Path:
    """Writes (mode 0600) a kubeconfig acting as the ServiceAccount and returns its path.

    The server and CA are the ones `kube` (the world's admin client) uses; the default
    namespace of the context is the ServiceAccount's.
    """
    config = kube.configuration
    token = service_account_token(kube, namespace, service_account, expiration_seconds)
    cluster: dict[str, Any] = {"server": config.host}
    if config.ssl_ca_cert:
        ca = Path(config.ssl_ca_cert).read_bytes()
        cluster["certificate-authority-data"] = base64.b64encode(ca).decode()
    elif not config.verify_ssl:
        cluster["insecure-skip-tls-verify"] = True
    user = f"system:serviceaccount:{namespace}:{service_account}"
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "world", "cluster": cluster}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [
            {
                "name": service_account,
                "context": {"cluster": "world", "user": user, "namespace": namespace},
            }
        ],
        "current-context": service_account,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(yaml.safe_dump(kubeconfig, sort_keys=False))
    return path


def operator_kubeconfig(kube: client.ApiClient, namespace: str, release: str, path: Path) -> Path:
    """A kubeconfig for the operator ServiceAccount of the chart release in `namespace`."""
    return service_account_kubeconfig(kube, namespace, operator_service_account(release), path)
