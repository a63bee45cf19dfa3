"""Helpers for tests of the Helm chart: reading what it renders, and acting as the chart's
ServiceAccounts.

`service_account_kubeconfig` lets a test (or the operator run locally) talk to the world
with exactly the RBAC the chart grants: it asks the apiserver for a short-lived token with a
TokenRequest (no long-lived token Secret) and writes a kubeconfig around it.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

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


# ---- the chart's operator Deployment running in the world: rolls and its Lease ----------------
# (tests/integration/test_chart_upgrade.py, tests/bench/test_takeover_bench.py)

OPERATOR_LABELS = "app.kubernetes.io/component=operator"


def operator_deployment_name(release: str) -> str:
    """The operator Deployment's name, which is also its leader Lease's default name."""
    return f"{fullname(release)}-operator"


def world_post_renderer(
    path: Path, env: Mapping[str, str] | None = None, pod_spec: Mapping[str, Any] | None = None
) -> Path:
    """Writes (executable) a helm post-renderer for the operator Deployment in the world and
    returns its path: its container gets RETRAINER_METRICS_PORT=0 and RETRAINER_HEALTH_PORT=0
    (plus `env`, over envFrom as on any kubelet), its pod spec the keys of `pod_spec`.

    Why: the world's pod runner runs every pod on the host network, so replicas of one
    Deployment (three during a roll) would all bind the chart's metrics and health ports and
    all but one would crash; on a cluster each pod has its own network. The world runs no
    probes, so turning both servers off changes nothing else. `pod_spec` is for fault points.
    """
    extra = {"RETRAINER_METRICS_PORT": "0", "RETRAINER_HEALTH_PORT": "0", **(env or {})}
    script = f"""#!{sys.executable}
import json, sys, yaml
ENV = json.loads({json.dumps(json.dumps(extra))})
POD = json.loads({json.dumps(json.dumps(dict(pod_spec or {})))})
docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
for d in docs:
    if d.get("kind") == "Deployment" and d["metadata"]["name"].endswith("-operator"):
        spec = d["spec"]["template"]["spec"]
        spec.update(POD)
        for container in spec["containers"]:
            if container["name"] == "operator":
                kept = [e for e in container.get("env") or [] if e["name"] not in ENV]
                container["env"] = kept + [{{"name": k, "value": v}} for k, v in ENV.items()]
sys.stdout.write(yaml.safe_dump_all(docs, sort_keys=False))
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(script)
    path.chmod(0o755)
    return path


def operator_pods(kube: client.ApiClient, namespace: str, release: str) -> list[Any]:
    """The release's operator pods (terminating ones included)."""
    selector = f"app.kubernetes.io/instance={release},{OPERATOR_LABELS}"
    return list(
        client.CoreV1Api(kube).list_namespaced_pod(namespace, label_selector=selector).items
    )


def rollout_state(kube: client.ApiClient, namespace: str, release: str) -> dict[str, Any]:
    """The operator Deployment's rollout as plain data: generation, observed generation,
    replica counts, its ReplicaSets (name -> (pod-template-hash, replicas)), the newest one
    (highest revision) and its pods (name -> (pod-template-hash, terminating))."""
    name = operator_deployment_name(release)
    deployment = client.AppsV1Api(kube).read_namespaced_deployment(name, namespace)
    sets = client.AppsV1Api(kube).list_namespaced_replica_set(
        namespace, label_selector=f"app.kubernetes.io/instance={release},{OPERATOR_LABELS}"
    )
    revision = "deployment.kubernetes.io/revision"
    by_revision = sorted(
        sets.items, key=lambda rs: int((rs.metadata.annotations or {}).get(revision, "0"))
    )
    status = deployment.status
    return {
        "generation": deployment.metadata.generation,
        "observed": status.observed_generation,
        "replicas": status.replicas or 0,
        "updated": status.updated_replicas or 0,
        "available": status.available_replicas or 0,
        "want": deployment.spec.replicas,
        "replica_sets": {
            rs.metadata.name: (rs.metadata.labels["pod-template-hash"], rs.spec.replicas)
            for rs in by_revision
        },
        "newest": by_revision[-1].metadata.name if by_revision else "",
        "pods": {
            pod.metadata.name: (
                (pod.metadata.labels or {}).get("pod-template-hash", ""),
                pod.metadata.deletion_timestamp is not None,
            )
            for pod in operator_pods(kube, namespace, release)
        },
    }


def rolled_out(state: Mapping[str, Any]) -> bool:
    """True once the newest ReplicaSet has every replica, available, and no other pod is left
    (not even terminating): `kubectl rollout status`, plus the old pods gone."""
    newest = state["replica_sets"].get(state["newest"])
    return (
        newest is not None
        and state["observed"] >= state["generation"]
        and state["updated"] == state["available"] == state["replicas"] == state["want"]
        and all(
            replicas == 0
            for name, (_, replicas) in state["replica_sets"].items()
            if name != state["newest"]
        )
        and len(state["pods"]) == state["want"]
        and all(h == newest[0] and not gone for h, gone in state["pods"].values())
    )


class WorldWatch:
    """Background watches of one namespace, each event stamped on this process's monotonic
    clock: every write of every Lease (`leases`: (t, name, holder, transitions)) and when each
    RetrainJob's training Job first appeared (`jobs`: RetrainJob name -> t).

    Each watch resumes from the last resourceVersion it saw, so no Lease write is missed
    between two watch calls. Use as a context manager; `kubeconfig` is the world's.
    """

    def __init__(self, kubeconfig: Path | str, namespace: str) -> None:
        self.kubeconfig = str(kubeconfig)
        self.namespace = namespace
        self.leases: list[tuple[float, str, str, int]] = []
        self.jobs: dict[str, float] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._ready = [threading.Event(), threading.Event()]
        self._threads = [
            threading.Thread(target=self._run, args=(self._lease, 0), daemon=True),
            threading.Thread(target=self._run, args=(self._job, 1), daemon=True),
        ]

    def __enter__(self) -> WorldWatch:
        for thread in self._threads:
            thread.start()
        for ready in self._ready:
            ready.wait(30)
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def _lease(self, obj: Any, now: float) -> None:
        spec = obj.spec
        self.leases.append(
            (now, obj.metadata.name, spec.holder_identity or "", spec.lease_transitions or 0)
        )

    def _job(self, obj: Any, now: float) -> None:
        owner = (obj.metadata.labels or {}).get("retrainer.dev/retrainjob", "")
        if owner:
            self.jobs.setdefault(owner, now)

    def _run(self, record: Callable[[Any, float], None], which: int) -> None:
        api = config.new_client_from_config(config_file=self.kubeconfig)
        lister = (
            client.CoordinationV1Api(api).list_namespaced_lease
            if which == 0
            else client.BatchV1Api(api).list_namespaced_job
        )
        version = ""
        try:
            while not self._stop.is_set():
                try:
                    if not version:  # the state now, then every change after it
                        listed = lister(self.namespace)
                        now = time.monotonic()
                        for obj in listed.items:
                            record(obj, now)
                        version = listed.metadata.resource_version
                        self._ready[which].set()
                    stream = watch.Watch().stream(
                        lister, self.namespace, resource_version=version, timeout_seconds=2
                    )
                    for event in stream:
                        obj = event["object"]
                        if event["type"] in ("ADDED", "MODIFIED"):
                            record(obj, time.monotonic())
                        version = obj.metadata.resource_version
                except Exception as error:  # 410 Gone and friends: list again
                    self.errors.append(repr(error))
                    version = ""
                    time.sleep(0.2)
        finally:
            with contextlib.suppress(Exception):
                api.close()


class RetrainJobStream:
    """Creates RetrainJobs `<prefix>000`, `<prefix>001`, ... every `interval` seconds in a
    thread, each from `body(name)`; `applied` holds name -> monotonic time just before its
    create call (a create the apiserver refused is noted in `errors` and not retried)."""

    def __init__(
        self,
        kubeconfig: Path | str,
        namespace: str,
        body: Callable[[str], dict[str, Any]],
        interval: float,
        prefix: str = "rj-",
    ) -> None:
        self.kubeconfig, self.namespace, self.interval = str(kubeconfig), namespace, interval
        self.body, self.prefix = body, prefix
        self.applied: dict[str, float] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RetrainJobStream:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        api = config.new_client_from_config(config_file=self.kubeconfig)
        custom = client.CustomObjectsApi(api)
        try:
            for i in range(100_000):
                if self._stop.is_set():
                    return
                name = f"{self.prefix}{i:03d}"
                started = time.monotonic()
                try:
                    custom.create_namespaced_custom_object(
                        "retrainer.dev", "v1alpha1", self.namespace, "retrainjobs", self.body(name)
                    )
                    self.applied[name] = started
                except ApiException as error:
                    self.errors.append(f"{name}: {error.status} {error.reason}")
                self._stop.wait(self.interval)
        finally:
            api.close()


def lease_changes(
    leases: Sequence[tuple[float, str, str, int]], lease: str
) -> list[tuple[float, str]]:
    """A watched Lease's holder changes, (t, holder) with '' for free, repeats dropped."""
    changes: list[tuple[float, str]] = []
    for t, name, holder, _ in leases:
        if name == lease and (not changes or changes[-1][1] != holder):
            changes.append((t, holder))
    return changes


def lease_free_spans(changes: Sequence[tuple[float, str]]) -> list[float]:
    """How long the Lease stood free (released, not yet taken) each time it was."""
    return [t_next - t for (t, holder), (t_next, _) in itertools.pairwise(changes) if not holder]


def release_operator_finalizers(kube: client.ApiClient, namespace: str) -> None:
    """After an uninstall no operator is left to take its finalizers off the training Jobs
    and the ModelLines of `namespace`; drop them so the namespace can be deleted."""
    batch, custom = client.BatchV1Api(kube), client.CustomObjectsApi(kube)
    drop = {"metadata": {"finalizers": None}}
    with contextlib.suppress(ApiException):
        for job in batch.list_namespaced_job(namespace).items:
            if job.metadata.finalizers:
                batch.patch_namespaced_job(job.metadata.name, namespace, drop)
    with contextlib.suppress(ApiException):
        lines = custom.list_namespaced_custom_object(
            "retrainer.dev", "v1alpha1", namespace, "modellines"
        )
        for line in lines["items"]:
            custom.patch_namespaced_custom_object(
                "retrainer.dev", "v1alpha1", namespace, "modellines", line["metadata"]["name"], drop
            )
