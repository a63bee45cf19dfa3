"""Operator settings read once from the environment (the chart's ConfigMap provides them).

One frozen dataclass so every module sees the same values and tests can build their own.
Names and defaults are fixed by the project's configuration brief.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import socket
import uuid
from collections.abc import Mapping
from typing import Any

from retrainer_contract import env as trainer_env

__all__ = [
    "MAX_ACTIVE_DEADLINE_SECONDS",
    "MIN_ACTIVE_DEADLINE_SECONDS",
    "POD_SECURITY_CONTEXT",
    "SECURITY_CONTEXT",
    "TRAINER_UID",
    "ConfigError",
    "OperatorConfig",
    "image_allowed",
    "image_repository",
]

# The same range as the CRD's spec.retry.activeDeadlineSeconds (one minute to 30 days).
MIN_ACTIVE_DEADLINE_SECONDS = 60
MAX_ACTIVE_DEADLINE_SECONDS = 2592000

# A Kubernetes quantity as an emptyDir sizeLimit takes it: a positive number and an optional
# binary (Ki..Ei) or decimal (k..E) suffix, for example 50Gi or 500M.
_QUANTITY = re.compile(r"^(?P<number>[0-9]+(?:\.[0-9]+)?)(?:Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")

# The image reference grammar of the distribution project: [domain/]path[:tag][@digest].
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*(?::[0-9]+)?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME = rf"(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*"
_REFERENCE = re.compile(
    rf"^(?P<name>{_NAME})(?::(?P<tag>[\w][\w.-]{{0,127}}))?"
    r"(?:@(?P<digest>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}))?$",
    re.ASCII,
)
_DOCKER_HUB = "docker.io"


def image_repository(reference: str) -> str | None:
    """The repository of an image reference, without tag or digest and with the registry
    spelled out the way the container runtime resolves it (`python:3.11` ->
    `docker.io/library/python`); None when `reference` is not a valid image reference."""
    match = _REFERENCE.match(reference.strip())
    if match is None:
        return None
    name = match.group("name")
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        domain, path = first.lower(), rest
    else:
        domain, path = _DOCKER_HUB, name
    if domain == "index.docker.io":
        domain = _DOCKER_HUB
    if domain == _DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    return f"{domain}/{path}"


def _allowed_entry(entry: str) -> str | None:
    """An allowlist entry, normalized: a repository, or a prefix ending in `/`; None if bad."""
    if entry.endswith("/"):
        # Normalize the prefix as the folder of a two-level name below it, so `docker.io/`
        # stays the whole registry and `team/` becomes `docker.io/team/`.
        repository = image_repository(f"{entry}x/x")
        return repository.removesuffix("x/x") if repository else None
    repository = image_repository(entry)
    # A repository only: `name:tag` would parse as a reference, but is not a repository.
    if repository is None or ":" in entry.rpartition("/")[2] or "@" in entry:
        return None
    return repository


def image_allowed(reference: str, allowed: tuple[str, ...]) -> bool:
    """True when the repository of `reference` is one of `allowed` or lies under one of its
    prefixes (entries ending in `/`). Repositories match whole: `.../trainer` allows
    `.../trainer:1.0` and `.../trainer@sha256:...`, never `.../trainer-evil`."""
    repository = image_repository(reference)
    if repository is None:
        return False
    for entry in allowed:
        normalized = _allowed_entry(entry)
        if normalized is None:
            continue
        if repository == normalized or (
            normalized.endswith("/") and repository.startswith(normalized)
        ):
            return True
    return False


# The trainer image's fixed non-root user (trainer/Dockerfile: USER 10001:10001).
TRAINER_UID = 10001
# The restricted Pod Security Standard for the training pod: non-root with a fixed uid/gid, the
# claim group-writable through fsGroup (changed only when the root's group differs, so a big
# claim is not walked on every start), the runtime's default seccomp profile.
POD_SECURITY_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": TRAINER_UID,
    "runAsGroup": TRAINER_UID,
    "fsGroup": TRAINER_UID,
    "fsGroupChangePolicy": "OnRootMismatch",
    "seccompProfile": {"type": "RuntimeDefault"},
}
# The trainer container: no privilege escalation, no capabilities, a read-only root
# filesystem (it writes only to the claim and to its scratch emptyDir, RETRAINER_WORKDIR).
SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "readOnlyRootFilesystem": True,
}


class ConfigError(ValueError):
    """An environment variable has a value the operator cannot use."""


def _int(
    env: Mapping[str, str], name: str, default: int, minimum: int = 0, maximum: int | None = None
) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer; set it to e.g. {default}") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}={value} must be at most {maximum}")
    return value


def _quantity(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    match = _QUANTITY.match(raw)
    if match is None or float(match.group("number")) <= 0:
        raise ConfigError(
            f"{name}={raw!r} is not a positive Kubernetes quantity; set it to e.g. {default}"
        )
    return raw


def _allowed_images(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    entries = tuple(item.strip() for item in env.get(name, "").split(",") if item.strip())
    bad = [entry for entry in entries if _allowed_entry(entry) is None]
    if bad:
        raise ConfigError(
            f"{name}: {', '.join(repr(b) for b in bad)} is not an image repository (without tag "
            "or digest) nor a prefix ending in '/'; list e.g. ghcr.io/retrainer/trainer or "
            "registry.example.com/mlops/"
        )
    return entries


def _json_object(env: Mapping[str, str], name: str, default: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON object setting (a securityContext); unset or empty means `default`."""
    raw = env.get(name, "").strip()
    if not raw:
        return copy.deepcopy(dict(default))
    try:
        value = json.loads(raw)
    except ValueError as error:
        raise ConfigError(f"{name} is not valid JSON ({error}); set it to e.g. {{}}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{name} must be a JSON object, got {type(value).__name__}")
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
    # The operator's own image: its `retrainer` command runs the ModelLine upkeep Jobs (scrub,
    # retention) next to the claim (RETRAINER_OPERATOR_IMAGE; the chart sets its image).
    operator_image: str = "ghcr.io/retrainer/operator:0.1.0"
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
    # Seconds between two passes over each ModelLine (schedule, corrections, history).
    line_interval: float = 10.0
    # Seconds between two checks that MLflow's champion alias still names the ModelLine's
    # champion (sooner when the record moved or the last check failed).
    champion_sync_interval: float = 300.0
    log_format: str = "json"
    # Wall-clock limit of a training Job whose spec.retry.activeDeadlineSeconds is unset: Jobs
    # retry disruptions (evictions, preemptions, SIGTERM) without counting them, so this is
    # what ends a Job that is disrupted forever.
    trainer_active_deadline_seconds: int = 86400
    # sizeLimit of the training pod's scratch emptyDir (RETRAINER_WORKDIR), where s3://
    # datasets are downloaded: a pod that writes more is evicted by the kubelet.
    trainer_workdir_size_limit: str = "50Gi"
    # The dataset cache on the claim (docs/datasets.md): its cap, and the objects the trainer
    # fetches at once; passed to the trainer under the same names (retrainer_contract.env).
    dataset_cache_max_size: str = trainer_env.DEFAULT_DATASET_CACHE_MAX_SIZE
    dataset_fetch_concurrency: int = trainer_env.DEFAULT_DATASET_FETCH_CONCURRENCY
    # Image repositories (or prefixes ending in "/") spec.image may name; empty means the
    # repository of trainer_image only.
    allowed_trainer_images: tuple[str, ...] = ()
    # The training pod's and container's securityContext (chart: trainer.podSecurityContext,
    # trainer.securityContext), each replacing the restricted default above as a whole.
    trainer_pod_security_context: dict[str, Any] = dataclasses.field(
        default_factory=lambda: copy.deepcopy(POD_SECURITY_CONTEXT)
    )
    trainer_security_context: dict[str, Any] = dataclasses.field(
        default_factory=lambda: copy.deepcopy(SECURITY_CONTEXT)
    )
    # The operator's own MinIO credentials (for verification); never logged.
    aws_access_key_id: str = dataclasses.field(default="", repr=False)
    aws_secret_access_key: str = dataclasses.field(default="", repr=False)
    # Leader election (docs/operator.md, "Two replicas"): when on, only the holder of the Lease
    # lease_namespace/lease_name reconciles; other replicas wait as standbys. The identity is
    # POD_NAME (else the hostname) plus a random suffix, unique per process.
    leader_election: bool = False
    lease_name: str = "retrainer-operator"
    lease_namespace: str = ""
    leader_identity: str = ""
    # client-go's defaults: a standby takes an unrenewed lease after its duration; the leader
    # exits when it could not renew for the renew deadline; both retry every retry period.
    lease_duration_seconds: int = 15
    lease_renew_deadline_seconds: float = 10.0
    lease_retry_period_seconds: float = 2.0

    def __post_init__(self) -> None:
        if not self.allowed_trainer_images:
            repository = image_repository(self.trainer_image)
            object.__setattr__(self, "allowed_trainer_images", (repository,) if repository else ())

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
        trainer_image = env.get("RETRAINER_TRAINER_IMAGE", "").strip() or d.trainer_image
        if image_repository(trainer_image) is None:
            raise ConfigError(
                f"RETRAINER_TRAINER_IMAGE={trainer_image!r} is not an image reference; set it to "
                f"e.g. {d.trainer_image} (chart values trainer.image.repository and tag)"
            )
        operator_image = env.get("RETRAINER_OPERATOR_IMAGE", "").strip() or d.operator_image
        if image_repository(operator_image) is None:
            raise ConfigError(
                f"RETRAINER_OPERATOR_IMAGE={operator_image!r} is not an image reference; set it "
                f"to e.g. {d.operator_image} (chart values image.repository and tag)"
            )
        namespaces = tuple(
            ns.strip() for ns in env.get("RETRAINER_NAMESPACES", "").split(",") if ns.strip()
        )
        return cls(
            trainer_image=trainer_image,
            operator_image=operator_image,
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
            line_interval=_float(env, "RETRAINER_LINE_INTERVAL", d.line_interval),
            champion_sync_interval=_float(
                env, "RETRAINER_CHAMPION_SYNC_INTERVAL", d.champion_sync_interval
            ),
            log_format=log_format,
            trainer_active_deadline_seconds=_int(
                env,
                "RETRAINER_TRAINER_ACTIVE_DEADLINE_SECONDS",
                d.trainer_active_deadline_seconds,
                MIN_ACTIVE_DEADLINE_SECONDS,
                MAX_ACTIVE_DEADLINE_SECONDS,
            ),
            trainer_workdir_size_limit=_quantity(
                env, "RETRAINER_TRAINER_WORKDIR_SIZE_LIMIT", d.trainer_workdir_size_limit
            ),
            dataset_cache_max_size=_quantity(
                env, trainer_env.DATASET_CACHE_MAX_SIZE, d.dataset_cache_max_size
            ),
            dataset_fetch_concurrency=_int(
                env, trainer_env.DATASET_FETCH_CONCURRENCY, d.dataset_fetch_concurrency, 1, 256
            ),
            allowed_trainer_images=_allowed_images(env, "RETRAINER_ALLOWED_TRAINER_IMAGES"),
            trainer_pod_security_context=_json_object(
                env, "RETRAINER_TRAINER_POD_SECURITY_CONTEXT", POD_SECURITY_CONTEXT
            ),
            trainer_security_context=_json_object(
                env, "RETRAINER_TRAINER_SECURITY_CONTEXT", SECURITY_CONTEXT
            ),
            aws_access_key_id=env.get(trainer_env.ACCESS_KEY, ""),
            aws_secret_access_key=env.get(trainer_env.SECRET_KEY, ""),
            **_leader_election(env, d),
        )


_SWITCH = {"true": True, "on": True, "1": True, "false": False, "off": False, "0": False}


def _leader_election(env: Mapping[str, str], d: OperatorConfig) -> dict[str, Any]:
    """The leader election fields of OperatorConfig (RETRAINER_LEADER_ELECTION, RETRAINER_LEASE_*;
    the chart passes POD_NAME and POD_NAMESPACE through the downward API)."""
    raw = env.get("RETRAINER_LEADER_ELECTION", "").strip().lower()
    if raw and raw not in _SWITCH:
        raise ConfigError(f"RETRAINER_LEADER_ELECTION={raw!r} must be 'true' or 'false'")
    enabled = _SWITCH.get(raw, d.leader_election)
    namespace = (
        env.get("RETRAINER_LEASE_NAMESPACE", "").strip() or env.get("POD_NAMESPACE", "").strip()
    )
    if enabled and not namespace:
        raise ConfigError(
            "RETRAINER_LEADER_ELECTION is on but neither RETRAINER_LEASE_NAMESPACE nor "
            "POD_NAMESPACE names the Lease's namespace"
        )
    duration = _int(env, "RETRAINER_LEASE_DURATION_SECONDS", d.lease_duration_seconds, 1)
    renew = _float(env, "RETRAINER_LEASE_RENEW_DEADLINE_SECONDS", d.lease_renew_deadline_seconds)
    retry = _float(env, "RETRAINER_LEASE_RETRY_PERIOD_SECONDS", d.lease_retry_period_seconds)
    if not retry < renew < duration:
        raise ConfigError(
            f"need RETRAINER_LEASE_RETRY_PERIOD_SECONDS ({retry}) < "
            f"RETRAINER_LEASE_RENEW_DEADLINE_SECONDS ({renew}) < "
            f"RETRAINER_LEASE_DURATION_SECONDS ({duration}): the leader must give up before a "
            "standby may take over"
        )
    identity = env.get("RETRAINER_LEADER_IDENTITY", "").strip() or (
        f"{env.get('POD_NAME', '').strip() or socket.gethostname()}_{uuid.uuid4().hex[:8]}"
    )
    return {
        "leader_election": enabled,
        "lease_name": env.get("RETRAINER_LEASE_NAME", "").strip() or d.lease_name,
        "lease_namespace": namespace,
        "leader_identity": identity,
        "lease_duration_seconds": duration,
        "lease_renew_deadline_seconds": renew,
        "lease_retry_period_seconds": retry,
    }
