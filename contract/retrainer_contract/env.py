"""The trainer's environment: the operator writes it (`container_env`), the trainer reads it
(`read`), both with the defaults below.

The RetrainJob spec travels verbatim as JSON; next to it go what the operator resolved (the
version, the base version, the claim) and where the services are. Credentials travel only as
Secret references, never as values in the Job.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ACCESS_KEY",
    "BASE_VERSION",
    "CHAMPION_VERSION",
    "CLAIM_NAME",
    "DATASET_CACHE_MAX_SIZE",
    "DATASET_FETCH_CONCURRENCY",
    "DEFAULT_CLAIM_NAME",
    "DEFAULT_DATASET_CACHE_MAX_SIZE",
    "DEFAULT_DATASET_FETCH_CONCURRENCY",
    "DEFAULT_STORAGE_ROOT",
    "DEFAULT_TERMINATION_MESSAGE_PATH",
    "DEFAULT_WORKDIR",
    "NAME",
    "NAMES",
    "NAMESPACE",
    "S3_ENDPOINT",
    "SECRET_ACCESS_KEY_FIELD",
    "SECRET_KEY",
    "SECRET_SECRET_KEY_FIELD",
    "SPEC",
    "STORAGE_ROOT",
    "TERMINATION_MESSAGE_PATH",
    "TRACKING_URI",
    "UID",
    "VERSION",
    "WORKDIR",
    "EnvError",
    "TrainerEnv",
    "container_env",
    "quantity_bytes",
    "read",
]

SPEC = "RETRAINER_SPEC"
NAME = "RETRAINER_NAME"
NAMESPACE = "RETRAINER_NAMESPACE"
UID = "RETRAINER_UID"
VERSION = "RETRAINER_VERSION"
BASE_VERSION = "RETRAINER_BASE_VERSION"
# The champion the new version is scored against on the holdout (unset: there is none).
CHAMPION_VERSION = "RETRAINER_CHAMPION_VERSION"
STORAGE_ROOT = "RETRAINER_STORAGE_ROOT"
CLAIM_NAME = "RETRAINER_CLAIM_NAME"
WORKDIR = "RETRAINER_WORKDIR"
TERMINATION_MESSAGE_PATH = "RETRAINER_TERMINATION_MESSAGE_PATH"
# The dataset cache on the claim: its size cap (a Kubernetes quantity), and how many objects
# are fetched at once (chart values trainer.datasetCache.maxSize and .fetchConcurrency).
DATASET_CACHE_MAX_SIZE = "RETRAINER_DATASET_CACHE_MAX_SIZE"
DATASET_FETCH_CONCURRENCY = "RETRAINER_DATASET_FETCH_CONCURRENCY"
# MLflow's and boto3's own names, so their clients pick them up as they are.
TRACKING_URI = "MLFLOW_TRACKING_URI"
S3_ENDPOINT = "MLFLOW_S3_ENDPOINT_URL"
ACCESS_KEY = "AWS_ACCESS_KEY_ID"
SECRET_KEY = "AWS_SECRET_ACCESS_KEY"
# The keys of the MinIO credentials Secret.
SECRET_ACCESS_KEY_FIELD = "accessKey"
SECRET_SECRET_KEY_FIELD = "secretKey"
# Every variable of the trainer's environment.
NAMES: tuple[str, ...] = (
    SPEC, NAME, NAMESPACE, UID, VERSION, BASE_VERSION, CHAMPION_VERSION, STORAGE_ROOT, CLAIM_NAME,
    WORKDIR, TERMINATION_MESSAGE_PATH, DATASET_CACHE_MAX_SIZE, DATASET_FETCH_CONCURRENCY,
    TRACKING_URI, S3_ENDPOINT, ACCESS_KEY, SECRET_KEY,
)  # fmt: skip

# Where the claim is mounted, which claim, the scratch folder, the termination log.
DEFAULT_STORAGE_ROOT = "/var/lib/retrainer"
DEFAULT_CLAIM_NAME = "retrainer-models"
DEFAULT_WORKDIR = "/tmp/retrainer"
DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"
# 100 GiB of cached dataset objects per claim; 16 objects in flight.
DEFAULT_DATASET_CACHE_MAX_SIZE = "100Gi"
DEFAULT_DATASET_FETCH_CONCURRENCY = 16


class EnvError(ValueError):
    """A variable is missing or malformed; the message names it and what it must hold."""


@dataclass(frozen=True)
class TrainerEnv:
    """Everything the trainer is told, as values (credentials kept out of repr)."""

    spec: Mapping[str, Any]
    version: int
    name: str = ""
    namespace: str = ""
    uid: str = ""
    base_version: int | None = None
    champion_version: int | None = None
    storage_root: str = DEFAULT_STORAGE_ROOT
    claim_name: str = DEFAULT_CLAIM_NAME
    workdir: str = DEFAULT_WORKDIR
    termination_message_path: str = DEFAULT_TERMINATION_MESSAGE_PATH
    dataset_cache_max_size: str = DEFAULT_DATASET_CACHE_MAX_SIZE
    dataset_fetch_concurrency: int = DEFAULT_DATASET_FETCH_CONCURRENCY
    tracking_uri: str = ""
    s3_endpoint: str = ""
    access_key: str = field(default="", repr=False)
    secret_key: str = field(default="", repr=False)


def container_env(env: TrainerEnv, secret_name: str) -> list[dict[str, Any]]:
    """The container's `env` list; credentials come from Secret `secret_name` by reference."""
    plain = {
        SPEC: json.dumps(dict(env.spec), sort_keys=True, separators=(",", ":")),
        NAME: env.name,
        NAMESPACE: env.namespace,
        UID: env.uid,
        VERSION: str(env.version),
        STORAGE_ROOT: env.storage_root,
        CLAIM_NAME: env.claim_name,
        WORKDIR: env.workdir,
        TERMINATION_MESSAGE_PATH: env.termination_message_path,
        DATASET_CACHE_MAX_SIZE: env.dataset_cache_max_size,
        DATASET_FETCH_CONCURRENCY: str(env.dataset_fetch_concurrency),
        TRACKING_URI: env.tracking_uri,
        S3_ENDPOINT: env.s3_endpoint,
    }
    if env.base_version is not None:
        plain[BASE_VERSION] = str(env.base_version)
    if env.champion_version is not None:
        plain[CHAMPION_VERSION] = str(env.champion_version)
    out: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in plain.items()]
    for var, key in ((ACCESS_KEY, SECRET_ACCESS_KEY_FIELD), (SECRET_KEY, SECRET_SECRET_KEY_FIELD)):
        out.append({"name": var, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": key}}})
    return out


def _spec(raw: str) -> dict[str, Any]:
    if not raw:
        raise EnvError(f"{SPEC} is not set: it must hold the RetrainJob spec as JSON")
    try:
        spec = json.loads(raw)
    except json.JSONDecodeError as error:
        raise EnvError(f"{SPEC} is not valid JSON: {error}") from error
    if not isinstance(spec, dict):
        raise EnvError(f"{SPEC} must be a JSON object (the RetrainJob spec)")
    return spec


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    """A positive integer variable; unset or empty means `default`."""
    text = env.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise EnvError(f"{name} must be a positive integer, got {text!r}")
    return int(text)


_QUANTITY = re.compile(r"^(?P<number>[0-9]+(?:\.[0-9]+)?)(?P<unit>Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_UNITS = {
    "": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}  # fmt: skip


def quantity_bytes(text: str) -> int:
    """Bytes of a Kubernetes quantity such as 100Gi or 500M; ValueError if it is not one."""
    match = _QUANTITY.match(text.strip())
    if match is None or float(match.group("number")) <= 0:
        raise ValueError(f"{text!r} is not a positive Kubernetes quantity such as 100Gi")
    return int(float(match.group("number")) * _UNITS[match.group("unit") or ""])


def _size(env: Mapping[str, str]) -> str:
    text = env.get(DATASET_CACHE_MAX_SIZE, "").strip() or DEFAULT_DATASET_CACHE_MAX_SIZE
    try:
        quantity_bytes(text)
    except ValueError as error:
        raise EnvError(f"{DATASET_CACHE_MAX_SIZE}: {error}") from error
    return text


def read(env: Mapping[str, str]) -> TrainerEnv:
    """The trainer's environment from `env`; EnvError names the first bad variable."""
    spec = _spec(env.get(SPEC, ""))
    version_text = env.get(VERSION, "")
    if not version_text.isdigit() or int(version_text) < 1:
        raise EnvError(f"{VERSION} must be a positive integer, got {version_text!r}")
    base_text = env.get(BASE_VERSION, "")
    if base_text and not base_text.isdigit():
        raise EnvError(f"{BASE_VERSION} must be an integer, got {base_text!r}")
    champion_text = env.get(CHAMPION_VERSION, "")
    if champion_text and (not champion_text.isdigit() or int(champion_text) < 1):
        raise EnvError(f"{CHAMPION_VERSION} must be a positive integer, got {champion_text!r}")
    return TrainerEnv(
        spec=spec,
        dataset_cache_max_size=_size(env),
        dataset_fetch_concurrency=_count(
            env, DATASET_FETCH_CONCURRENCY, DEFAULT_DATASET_FETCH_CONCURRENCY
        ),
        version=int(version_text),
        name=env.get(NAME, ""),
        namespace=env.get(NAMESPACE, ""),
        uid=env.get(UID, ""),
        base_version=int(base_text) if base_text else None,
        champion_version=int(champion_text) if champion_text else None,
        storage_root=env.get(STORAGE_ROOT) or DEFAULT_STORAGE_ROOT,
        claim_name=env.get(CLAIM_NAME) or DEFAULT_CLAIM_NAME,
        workdir=env.get(WORKDIR) or DEFAULT_WORKDIR,
        termination_message_path=env.get(TERMINATION_MESSAGE_PATH, ""),
        tracking_uri=env.get(TRACKING_URI, ""),
        s3_endpoint=env.get(S3_ENDPOINT, ""),
        access_key=env.get(ACCESS_KEY, ""),
        secret_key=env.get(SECRET_KEY, ""),
    )
