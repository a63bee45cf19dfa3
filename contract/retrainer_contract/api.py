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
    "LABEL_TRIGGER",
    "LABEL_VERSION",
    "LINE_KIND",
    "LINE_PLURAL",
    "MANAGED_BY",
    "PLURAL",
    "QUEUE_LABEL",
    "SCHEDULED_TIME_ANNOTATION",
    "TRAINER_NAME",
    "UID_ANNOTATION",
    "VERSION",
    "job_labels",
    "job_name",
    "label_value",
    "run_name",
]

GROUP = "retrainer.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "RetrainJob"
PLURAL = "retrainjobs"
# The model line as a resource: named after the line, one per namespace and line.
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
# On a RetrainJob a ModelLine started: what started it (schedule or corrections), and the
# schedule slot it is the run of.
LABEL_TRIGGER = f"{GROUP}/trigger"
SCHEDULED_TIME_ANNOTATION = f"{GROUP}/scheduled-time"

QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
GPU_RESOURCE = "nvidia.com/gpu"


def job_name(model: str, version: int) -> str:
    """The training Job of version N of a model line: retrain-<model>-v<N>."""
    return f"retrain-{model}-v{version}"


def run_name(line: str, trigger: str, key: str) -> str:
    """The RetrainJob a ModelLine starts for one trigger event: deterministic, so an operator
    restarted between creating it and recording it never starts the same slot twice.
    `key` is the slot (UTC, yyyymmddhhmm) or the corrections count's fingerprint."""
    return f"{line}-{trigger}-{key}"[:63].rstrip("-")


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


# On every training Job the operator creates: the Job stays (with a deletionTimestamp) after a
# delete, by its TTL, by hand or with its RetrainJob, until the operator has recorded how it
# ended in the RetrainJob's status. Without it, a Job that failed while the operator was down
# and was then removed by ttlSecondsAfterFinished left no trace, and the version trained again.
JOB_FINALIZER = f"{GROUP}/job-outcome"
__all__ += ["JOB_FINALIZER"]
