"""Health probes for the world's components: one small HTTP(S) GET each, with short timeouts,
so `up`, `status` and the pytest fixtures agree on what "healthy" means.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path

__all__ = [
    "apiserver_ready",
    "etcd_healthy",
    "get",
    "insecure_healthz",
    "minio_live",
    "mlflow_healthy",
    "tls_client_context",
]

TIMEOUT = 2.0


def get(url: str, context: ssl.SSLContext | None = None, timeout: float = TIMEOUT) -> str:
    """Body of a GET that answered 200; raises on anything else."""
    with urllib.request.urlopen(url, timeout=timeout, context=context) as resp:
        if resp.status != 200:
            raise urllib.error.HTTPError(url, resp.status, "not ok", resp.headers, None)
        body: bytes = resp.read()
    return body.decode("utf-8", "replace")


def _ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        get(url, context)
    except (OSError, ValueError):
        return False
    return True


def tls_client_context(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    """Verifies the apiserver against the world's CA and presents the admin client cert."""
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def etcd_healthy(client_url: str) -> bool:
    try:
        return bool(json.loads(get(f"{client_url}/health")).get("health") == "true")
    except (OSError, ValueError):
        return False


def apiserver_ready(server: str, context: ssl.SSLContext) -> bool:
    try:
        return get(f"{server}/readyz", context).strip() == "ok"
    except (OSError, ValueError):
        return False


def insecure_healthz(port: int) -> bool:
    """/healthz of the controller manager or scheduler: self-signed serving certs, so no verify."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        return get(f"https://127.0.0.1:{port}/healthz", ctx).strip() == "ok"
    except (OSError, ValueError):
        return False


def minio_live(endpoint: str) -> bool:
    return _ok(f"{endpoint}/minio/health/live")


def mlflow_healthy(uri: str) -> bool:
    return _ok(f"{uri}/health")
