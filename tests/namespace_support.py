"""A new namespace made ready for pods, shared by the test session's `namespace` fixture
(conftest.py) and the benchmarks' fleets (bench/fleet_support.py)."""

from __future__ import annotations

import time

from kubernetes import client
from kubernetes.client.exceptions import ApiException

__all__ = ["wait_for_namespace_defaults"]


def wait_for_namespace_defaults(
    core: client.CoreV1Api, namespace: str, timeout: float = 60.0
) -> None:
    """Pods are rejected until the controller manager has created the `default` SA, and their
    service-account token volumes need the `kube-root-ca.crt` ConfigMap it publishes."""
    deadline = time.monotonic() + timeout
    reads = (
        lambda: core.read_namespaced_service_account("default", namespace),
        lambda: core.read_namespaced_config_map("kube-root-ca.crt", namespace),
    )
    for read in reads:
        while True:
            try:
                read()
                break
            except ApiException as exc:
                if exc.status != 404 or time.monotonic() > deadline:
                    raise
            time.sleep(0.2)
