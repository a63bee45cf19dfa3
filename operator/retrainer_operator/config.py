"""Operator settings read once from the environment (the chart's ConfigMap provides them).

One frozen dataclass so every module sees the same values and tests can build their own.
Names and defaults are fixed by the project's configuration brief.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from retrainer_contract import env as trainer_env

__all__ = ["ConfigError", "OperatorConfig"]


class ConfigError(ValueError):
    """An environment variable has a value the operator cannot use."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer; set it to e.g. {default}") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number; set it to e.g. {default}") from None
    if value <= 0:
        raise ConfigError(f"{name}={value} must be positive")
    return value


@dataclasses.dataclass(frozen=True)
class OperatorConfig:
    """Everything the operator reads from its environment."""

    trainer_image: str = "ghcr.io/retrainer/trainer:0.1.0"
    # The same names and defaults as the trainer's environment: one claim, one mount point.
    claim_name: str = trainer_env.DEFAULT_CLAIM_NAME
    storage_root: str = trainer_env.DEFAULT_STORAGE_ROOT
    mlflow_tracking_uri: str = "http://retrainer-mlflow:5000"
    s3_endpoint: str = "http://retrainer-minio:9000"
    s3_secret_name: str = "minio-credentials"
    namespaces: tuple[str, ...] = ()
    trainer_service_account: str = "retrainer-trainer"
    metrics_port: int = 8080
    health_port: int = 8081
    progress_interval: float = 10.0
    log_format: str = "json"
    # The operator's own MinIO credentials (for verification); never logged.
    aws_access_key_id: str = dataclasses.field(default="", repr=False)
    aws_secret_access_key: str = dataclasses.field(default="", repr=False)

    @property
    def clusterwide(self) -> bool:
        """True when no namespace list is configured: watch every namespace."""
        return not self.namespaces

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorConfig:
        """Build the config from `env` (default: os.environ); raises ConfigError on bad values."""
        env = os.environ if env is None else env
        d = cls()
        log_format = env.get("RETRAINER_LOG_FORMAT", "").strip() or d.log_format
        if log_format not in ("json", "plain"):
            raise ConfigError(f"RETRAINER_LOG_FORMAT={log_format!r} must be 'json' or 'plain'")
        namespaces = tuple(
            ns.strip() for ns in env.get("RETRAINER_NAMESPACES", "").split(",") if ns.strip()
        )
        return cls(
            trainer_image=env.get("RETRAINER_TRAINER_IMAGE", "").strip() or d.trainer_image,
            claim_name=env.get(trainer_env.CLAIM_NAME, "").strip() or d.claim_name,
            storage_root=env.get(trainer_env.STORAGE_ROOT, "").strip() or d.storage_root,
            mlflow_tracking_uri=(
                env.get("RETRAINER_MLFLOW_TRACKING_URI", "").strip() or d.mlflow_tracking_uri
            ).rstrip("/"),
            s3_endpoint=(env.get("RETRAINER_S3_ENDPOINT", "").strip() or d.s3_endpoint).rstrip("/"),
            s3_secret_name=env.get("RETRAINER_S3_SECRET_NAME", "").strip() or d.s3_secret_name,
            namespaces=namespaces,
            trainer_service_account=(
                env.get("RETRAINER_TRAINER_SERVICE_ACCOUNT", "").strip()
                or d.trainer_service_account
            ),
            metrics_port=_int(env, "RETRAINER_METRICS_PORT", d.metrics_port),
            health_port=_int(env, "RETRAINER_HEALTH_PORT", d.health_port),
            progress_interval=_float(env, "RETRAINER_PROGRESS_INTERVAL", d.progress_interval),
            log_format=log_format,
            aws_access_key_id=env.get(trainer_env.ACCESS_KEY, ""),
            aws_secret_access_key=env.get(trainer_env.SECRET_KEY, ""),
        )
