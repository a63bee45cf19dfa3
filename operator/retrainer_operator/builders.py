"""Pure builders of the manifests the operator creates (the training Job, Events).

No cluster access here: each function maps a RetrainJob (plus what the operator resolved) to
a dict, so the whole shape is unit-testable and identical on every (re)run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from retrainer_operator.config import OperatorConfig

__all__ = [
    "API_VERSION",
    "CONTAINER_NAME",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "build_job_spec",
    "job_labels",
    "job_name",
    "versions_configmap_name",
]

GROUP = "retrainer.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "RetrainJob"
PLURAL = "retrainjobs"
CONTAINER_NAME = "trainer"
WORKDIR = "/tmp/retrainer"
TERMINATION_MESSAGE_PATH = "/dev/termination-log"
BAD_INPUT_EXIT_CODE = 3
GPU_RESOURCE = "nvidia.com/gpu"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"

LABEL_NAME = "app.kubernetes.io/name"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_MODEL = f"{GROUP}/model"
LABEL_VERSION = f"{GROUP}/version"
LABEL_RETRAINJOB = f"{GROUP}/retrainjob"
MANAGED_BY = "retrainer"
TRAINER_NAME = "retrainer-trainer"


def job_name(model: str, version: int) -> str:
    """The strict training Job name: retrain-<model>-v<N>."""
    return f"retrain-{model}-v{version}"


def versions_configmap_name(model: str) -> str:
    """The per-model ConfigMap recording allocated versions."""
    return f"retrainer-versions-{model}"


def _label_value(value: str) -> str:
    # Label values are at most 63 characters and must end alphanumeric.
    return re.sub(r"[^A-Za-z0-9]+$", "", value[:63])


def job_labels(name: str, model: str, version: int) -> dict[str, str]:
    """Labels on the Job and its pods (selectors use the stable retrainer.dev/* subset)."""
    return {
        LABEL_NAME: TRAINER_NAME,
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_MODEL: model,
        LABEL_VERSION: str(version),
        LABEL_RETRAINJOB: _label_value(name),
    }


def _env(
    body: Mapping[str, Any],
    version: int,
    base_version: int | None,
    claim: str,
    config: OperatorConfig,
) -> list[dict[str, Any]]:
    meta = body["metadata"]
    plain = {
        "RETRAINER_SPEC": json.dumps(body.get("spec", {}), sort_keys=True, separators=(",", ":")),
        "RETRAINER_NAME": meta["name"],
        "RETRAINER_NAMESPACE": meta["namespace"],
        "RETRAINER_UID": meta["uid"],
        "RETRAINER_VERSION": str(version),
        "RETRAINER_STORAGE_ROOT": config.storage_root,
        "RETRAINER_CLAIM_NAME": claim,
        "RETRAINER_WORKDIR": WORKDIR,
        "RETRAINER_TERMINATION_MESSAGE_PATH": TERMINATION_MESSAGE_PATH,
        "MLFLOW_TRACKING_URI": config.mlflow_tracking_uri,
        "MLFLOW_S3_ENDPOINT_URL": config.s3_endpoint,
    }
    if base_version is not None:
        plain["RETRAINER_BASE_VERSION"] = str(base_version)
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in plain.items()]
    # Credentials only by reference: never as plain values in the Job.
    for var, key in (("AWS_ACCESS_KEY_ID", "accessKey"), ("AWS_SECRET_ACCESS_KEY", "secretKey")):
        env.append(
            {
                "name": var,
                "valueFrom": {"secretKeyRef": {"name": config.s3_secret_name, "key": key}},
            }
        )
    return env


def _resources(spec: Mapping[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    res = spec.get("resources") or {}
    cpu, memory = str(res.get("cpu", "1")), str(res.get("memory", "4Gi"))
    requests: dict[str, str] = {"cpu": cpu, "memory": memory}
    limits: dict[str, str] = {"cpu": cpu, "memory": memory}
    tolerations: list[dict[str, Any]] = []
    gpus = int(res.get("gpus", 0) or 0)
    if gpus > 0:
        limits[GPU_RESOURCE] = str(gpus)
        tolerations.append({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
    return {"requests": requests, "limits": limits}, tolerations


def build_job_spec(
    body: Mapping[str, Any],
    version: int,
    base_version: int | None,
    config: OperatorConfig,
) -> dict[str, Any]:
    """The batch/v1 Job that trains version `version` of the RetrainJob `body`."""
    meta, spec = body["metadata"], body.get("spec") or {}
    model = spec["model"]
    name = job_name(model, version)
    claim = (spec.get("storage") or {}).get("claimName") or config.claim_name
    labels = job_labels(meta["name"], model, version)
    scheduling = spec.get("scheduling") or {}
    retry = spec.get("retry") or {}
    resources, gpu_tolerations = _resources(spec)

    job_meta_labels = dict(labels)
    if scheduling.get("queueName"):
        job_meta_labels[QUEUE_LABEL] = scheduling["queueName"]

    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": spec.get("image") or config.trainer_image,
        "env": _env(body, version, base_version, claim, config),
        "resources": resources,
        "volumeMounts": [
            {"name": "models", "mountPath": config.storage_root},
            {"name": "workdir", "mountPath": WORKDIR},
        ],
        "terminationMessagePath": TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": config.trainer_service_account,
        "containers": [container],
        "volumes": [
            {"name": "models", "persistentVolumeClaim": {"claimName": claim}},
            {"name": "workdir", "emptyDir": {}},
        ],
    }
    tolerations = gpu_tolerations + list(scheduling.get("tolerations") or [])
    if tolerations:
        pod_spec["tolerations"] = tolerations
    if scheduling.get("nodeSelector"):
        pod_spec["nodeSelector"] = dict(scheduling["nodeSelector"])
    if scheduling.get("priorityClassName"):
        pod_spec["priorityClassName"] = scheduling["priorityClassName"]

    job_spec: dict[str, Any] = {
        "backoffLimit": int(retry.get("backoffLimit", 2)),
        "podFailurePolicy": {
            "rules": [
                # Preemption/eviction: retry without counting against backoffLimit.
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
                # Bad input (exit 3) is permanent: fail the Job at once.
                {
                    "action": "FailJob",
                    "onExitCodes": {
                        "containerName": CONTAINER_NAME,
                        "operator": "In",
                        "values": [BAD_INPUT_EXIT_CODE],
                    },
                },
            ]
        },
        "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
    }
    if retry.get("activeDeadlineSeconds"):
        job_spec["activeDeadlineSeconds"] = int(retry["activeDeadlineSeconds"])
    if spec.get("ttlSecondsAfterFinished") is not None:
        job_spec["ttlSecondsAfterFinished"] = int(spec["ttlSecondsAfterFinished"])
    if scheduling.get("queueName"):
        # Kueue admits (unsuspends) the Job when its LocalQueue has quota.
        job_spec["suspend"] = True

    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": job_meta_labels,
            "annotations": {f"{GROUP}/uid": meta["uid"]},
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": KIND,
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": job_spec,
    }
