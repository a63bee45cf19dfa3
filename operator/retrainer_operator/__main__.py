"""`retrainer-operator`: read the config, wire the parts together, run Kopf.

Kept free of kopf imports (handlers.py owns those) so the wiring stays readable.
"""

from __future__ import annotations

import logging
import sys

from retrainer_contract.objectstore import minio_client

from retrainer_operator import handlers, kube, logs, metrics, reconcile
from retrainer_operator.config import ConfigError, OperatorConfig
from retrainer_operator.line_champions import line_champions
from retrainer_operator.mlflow_rest import MlflowRest
from retrainer_operator.ticker import Ticker

__all__ = ["build_deps", "main"]

logger = logging.getLogger("retrainer.operator")
OBJECT_STORE_TIMEOUT = 10.0


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
    cluster = kube.Cluster(kube.load_api_client())
    mlflow = MlflowRest(config.mlflow_tracking_uri, store)
    # The champion lives in the line's ModelLine (and its MLflow alias, when registered).
    champions = line_champions(cluster, mlflow)
    return reconcile.Deps(config, cluster, mlflow, store, champions=champions)


def main(argv: list[str] | None = None) -> int:
    try:
        config = OperatorConfig.from_env()
    except ConfigError as error:
        print(f"retrainer-operator: bad configuration: {error}", file=sys.stderr)
        return 2
    logs.setup(config.log_format)
    deps = build_deps(config)
    ticker = Ticker(lambda ns, name: reconcile.reconcile(deps, ns, name), config.progress_interval)
    metrics.serve(config.metrics_port)
    logger.info(
        "starting namespaces=%s image=%s claim=%s mlflow=%s s3=%s interval=%s",
        ",".join(config.namespaces) or "*",
        config.trainer_image,
        config.claim_name,
        config.mlflow_tracking_uri,
        config.s3_endpoint,
        config.progress_interval,
    )
    handlers.run(deps, ticker, config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
