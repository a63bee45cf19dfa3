"""MinIO, the object store behind MLflow's artifacts and s3:// datasets.

The checks need two calls of `minio.Minio`; `ObjectStore` names them so a caller can pass any
client that has them. `minio` itself is imported only when a client is made.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import urlparse

from retrainer_contract import env as trainer_env

__all__ = ["ObjectStore", "minio_client"]


class ObjectStore(Protocol):
    """The part of `minio.Minio` the checks use (kept narrow so tests can pass a real one)."""

    def get_object(self, bucket_name: str, object_name: str) -> Any: ...

    def stat_object(self, bucket_name: str, object_name: str) -> Any: ...


def minio_client(
    endpoint_url: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
    environ: Mapping[str, str] | None = None,
    timeout: float | None = None,
    max_connections: int | None = None,
) -> Any:
    """A `minio.Minio` for `http(s)://host:port`; unset values come from the contract's
    environment names (MLFLOW_S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).

    `timeout` (seconds to connect, and between two reads) with few retries makes an
    unreachable or stopped server an error in seconds; without it minio's defaults apply
    (minutes), which suit a trainer's big transfers but not an operator's reconcile thread.
    `max_connections` sizes the connection pool for that many threads at once (default 10).
    """
    from minio import Minio  # optional dependency: only the callers that touch MinIO need it

    environ = os.environ if environ is None else environ
    endpoint = endpoint_url or environ.get(trainer_env.S3_ENDPOINT, "")
    if not endpoint:
        raise ValueError(f"{trainer_env.S3_ENDPOINT} is not set: the MinIO endpoint is unknown")
    parsed = urlparse(endpoint if "://" in endpoint else f"http://{endpoint}")
    http_client = None
    if timeout is None and max_connections is not None:
        import urllib3

        http_client = urllib3.PoolManager(
            maxsize=max_connections,
            retries=urllib3.Retry(
                total=5, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]
            ),
        )
    if timeout is not None:
        import urllib3

        http_client = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            retries=urllib3.Retry(
                total=2, backoff_factor=0.5, status_forcelist=[500, 502, 503, 504]
            ),
            maxsize=max(32, max_connections or 0),
        )
    return Minio(
        parsed.netloc,
        access_key=access_key or environ.get(trainer_env.ACCESS_KEY),
        secret_key=secret_key or environ.get(trainer_env.SECRET_KEY),
        secure=parsed.scheme == "https",
        http_client=http_client,
    )
