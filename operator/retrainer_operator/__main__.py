"""`retrainer-operator`: read the config, wire the parts together, run Kopf (when leader
election is on, only once this replica holds the Lease: leader.py).

Kept free of kopf imports (handlers.py owns those) so the wiring stays readable.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

from retrainer_contract.objectstore import minio_client

from retrainer_operator import handlers, heap, kube, leader, logs, metrics, reconcile
from retrainer_operator.config import ConfigError, OperatorConfig
from retrainer_operator.line_champions import line_champions
from retrainer_operator.mlflow_rest import MlflowRest
from retrainer_operator.ticker import Ticker

__all__ = ["EXIT_LEADERSHIP_LOST", "build_deps", "leader_elector", "main", "run", "wait_to_lead"]

logger = logging.getLogger("retrainer.operator")
OBJECT_STORE_TIMEOUT = 10.0
# The exit status when the leader Lease could not be renewed: the Deployment restarts the
# process, which then stands by for the lease like any other replica.
EXIT_LEADERSHIP_LOST = 4


def build_deps(config: OperatorConfig) -> reconcile.Deps:
    """The reconciler's dependencies: cluster, MinIO and MLflow clients."""
    # Short timeouts: a stopped MinIO must become a retried condition in seconds, not block a
    # reconcile thread for minutes.
    store = minio_client(
        config.s3_endpoint,
        config.aws_access_key_id or None,
        config.aws_secret_access_key or None,
        timeout=OBJECT_STORE_TIMEOUT,
    )
    cluster = kube.Cluster(kube.load_api_client(handlers.THREADS))
    mlflow = MlflowRest(config.mlflow_tracking_uri, store)
    # The champion lives in the line's ModelLine (and its MLflow alias, when registered).
    champions = line_champions(cluster, mlflow)
    return reconcile.Deps(config, cluster, mlflow, store, champions=champions)


def leader_elector(config: OperatorConfig, cluster: kube.Cluster) -> leader.Elector:
    """The Lease elector the config describes (docs/operator.md, "Two replicas")."""
    store = leader.KubeLeaseStore(cluster.api_client, config.lease_namespace, config.lease_name)
    return leader.Elector(
        store,
        config.leader_identity,
        duration=config.lease_duration_seconds,
        renew_deadline=config.lease_renew_deadline_seconds,
        retry_period=config.lease_retry_period_seconds,
    )


def wait_to_lead(elector: leader.Elector, health_port: int) -> bool:
    """Stand by until `elector` holds the lease, answering liveness probes meanwhile; False
    when SIGTERM came first (a standby has nothing to finish: it just exits)."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with leader.standby_health(health_port):
            return elector.acquire(stop) is not None
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(config: OperatorConfig, deps: reconcile.Deps, ticker: Ticker) -> int:
    """Run Kopf and the ticker; with leader election on, only while holding the Lease."""
    if not config.leader_election:
        handlers.run(deps, ticker, config)
        return 0
    elector = leader_elector(config, deps.cluster)
    if not wait_to_lead(elector, config.health_port):
        return 0  # stopped while standing by: nothing was started, nothing to release
    # A lost lease ends the process at once, mid-reconcile or not: another replica may take
    # over a moment later, and everything it resumes is idempotent.
    elector.keep(on_lost=lambda: os._exit(EXIT_LEADERSHIP_LOST))
    try:
        handlers.run(deps, ticker, config)
    finally:
        elector.release()  # the next replica takes over at its next retry, not after expiry
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        config = OperatorConfig.from_env()
    except ConfigError as error:
        print(f"retrainer-operator: bad configuration: {error}", file=sys.stderr)
        return 2
    logs.setup(config.log_format, quiet=handlers.EVENT_HANDLERS)
    deps = build_deps(config)
    ticker = Ticker(lambda ns, name: reconcile.reconcile(deps, ns, name), config.progress_interval)
    metrics.serve(config.metrics_port)
    heap.start()  # a burst's freed memory back to the system (heap.py)
    logger.info(
        "starting namespaces=%s image=%s claim=%s mlflow=%s s3=%s interval=%s leader_election=%s",
        ",".join(config.namespaces) or "*",
        config.trainer_image,
        config.claim_name,
        config.mlflow_tracking_uri,
        config.s3_endpoint,
        config.progress_interval,
        config.leader_election,
    )
    return run(config, deps, ticker)


if __name__ == "__main__":
    sys.exit(main())
