"""Namespaces for the operator's benchmarks at scale (test_scale_bench.py,
test_backlog_bench.py): made ready for RetrainJobs (the claim, the trainer's ServiceAccount,
MinIO's Secret), and taken down again with the operator stopped."""

from __future__ import annotations

import contextlib

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from namespace_support import wait_for_namespace_defaults
from operator_support import prepare_namespace
from retrainer_world.world import World

__all__ = ["create_namespace", "release_and_delete"]

G, V = "retrainer.dev", "v1alpha1"


def create_namespace(kube: client.ApiClient, world: World, namespace: str) -> None:
    core = client.CoreV1Api(kube)
    core.create_namespace(
        {"metadata": {"name": namespace, "labels": {"retrainer.dev/test": "true"}}}
    )
    core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "minio-credentials"},
            "stringData": {
                "accessKey": world.minio_access_key,
                "secretKey": world.minio_secret_key,
            },
        },
    )
    prepare_namespace(kube, namespace)  # the claim and the trainer ServiceAccount
    # A fleet makes many at once: the controller manager may take longer than for one.
    wait_for_namespace_defaults(core, namespace, timeout=120)


def release_and_delete(kube: client.ApiClient, namespace: str) -> None:
    """With the operator stopped nothing takes its finalizers off: do it, then delete."""
    batch, custom = client.BatchV1Api(kube), client.CustomObjectsApi(kube)
    with contextlib.suppress(ApiException):
        for job in batch.list_namespaced_job(namespace).items:
            if job.metadata.finalizers:
                with contextlib.suppress(ApiException):
                    batch.patch_namespaced_job(
                        job.metadata.name, namespace, {"metadata": {"finalizers": None}}
                    )
        for line in custom.list_namespaced_custom_object(G, V, namespace, "modellines")["items"]:
            if line["metadata"].get("finalizers"):
                with contextlib.suppress(ApiException):
                    custom.patch_namespaced_custom_object(
                        G,
                        V,
                        namespace,
                        "modellines",
                        line["metadata"]["name"],
                        {"metadata": {"finalizers": None}},
                    )
    with contextlib.suppress(ApiException):
        client.CoreV1Api(kube).delete_namespace(namespace, propagation_policy="Background")
