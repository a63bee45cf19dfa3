"""API identifiers: the RetrainJob's group/version/kind, labels, annotations and object names.

The operator writes these onto the objects it creates; the CLI, the chart's health check and
the tests find objects by them. One definition, so a rename cannot split the programs.
"""

from __future__ import annotations

import re

__all__ = [
    "API_VERSION",
    "ATTEMPTS_ANNOTATION",
    "CONTAINER_NAME",
    "FINALIZER",
    "GPU_RESOURCE",
    "GROUP",
    "KIND",
    "LABEL_MANAGED_BY",
    "LABEL_MODEL",
    "LABEL_NAME",
    "LABEL_RETRAINJOB",
    "LABEL_VERSION",
    "LINE_KIND",
    "LINE_PLURAL",
    "MANAGED_BY",
    "PLURAL",
    "QUEUE_LABEL",
    "TRAINER_NAME",
    "UID_ANNOTATION",
    "VERSION",
    "job_labels",
    "job_name",
    "label_value",
    "shared_ledger_name",
    "versions_configmap_name",
]

GROUP = "retrainer.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "RetrainJob"
PLURAL = "retrainjobs"
# The model line (crds/retrainer.dev_modellines.yaml): same group and version.
LINE_KIND = "ModelLine"
LINE_PLURAL = "modellines"

# The training Job's one container (podFailurePolicy rules name it).
CONTAINER_NAME = "trainer"

LABEL_NAME = "app.kubernetes.io/name"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_MODEL = f"{GROUP}/model"
LABEL_VERSION = f"{GROUP}/version"
LABEL_RETRAINJOB = f"{GROUP}/retrainjob"
MANAGED_BY = "retrainer"
TRAINER_NAME = "retrainer-trainer"

# The uid of the RetrainJob that owns a Job (its version's one owner).
UID_ANNOTATION = f"{GROUP}/uid"
# Pod uids that ever ran for a RetrainJob's Job (evicted pods vanish from the API).
ATTEMPTS_ANNOTATION = f"{GROUP}/attempt-pods"
FINALIZER = f"{GROUP}/finalizer"

QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
GPU_RESOURCE = "nvidia.com/gpu"


def job_name(model: str, version: int) -> str:
    """The training Job of version N of a model line: retrain-<model>-v<N>."""
    return f"retrain-{model}-v{version}"


def versions_configmap_name(model: str) -> str:
    """The per-model ConfigMap recording allocated versions (the ledger)."""
    return f"retrainer-versions-{model}"


def shared_ledger_name(namespace: str, model: str) -> str:
    """The ledger of `namespace`/`model` kept in the operator's own namespace (cluster-wide
    mode). Dots cannot occur in namespace or model names, so no two lines share a name."""
    return f"retrainer-versions.{namespace}.{model}"


def label_value(value: str) -> str:
    """`value` cut to a valid label value (at most 63 characters, ending alphanumeric)."""
    return re.sub(r"[^A-Za-z0-9]+$", "", value[:63])


def job_labels(name: str, model: str, version: int) -> dict[str, str]:
    """Labels on the Job and its pods (selectors use the stable retrainer.dev/* subset)."""
    return {
        LABEL_NAME: TRAINER_NAME,
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_MODEL: model,
        LABEL_VERSION: str(version),
        LABEL_RETRAINJOB: label_value(name),
    }
