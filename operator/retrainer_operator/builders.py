"""Pure builders of the manifests the operator creates (the training Job, Events).

No cluster access here: each function maps a RetrainJob (plus what the operator resolved) to
a dict, so the whole shape is unit-testable and identical on every (re)run.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from retrainer_contract import api, exits
from retrainer_contract import env as trainer_env

from retrainer_operator.config import OperatorConfig, image_allowed

__all__ = ["ImageNotAllowed", "build_job_spec"]


class ImageNotAllowed(ValueError):
    """spec.image is outside the operator's allowlist: no Job is ever built with it.

    checks.preflight reports it as a Failed condition before a version is allocated; this is
    the last line, for a RetrainJob that reaches the builder without that check (a ledger entry
    written by hand)."""


def _image(spec: Mapping[str, Any], config: OperatorConfig) -> str:
    image = spec.get("image")
    if not image:
        return config.trainer_image
    if not image_allowed(str(image), config.allowed_trainer_images):
        raise ImageNotAllowed(
            f"spec.image {image!r} is not an allowed trainer image (allowed repositories: "
            f"{', '.join(config.allowed_trainer_images)}); no Job is created. Add the repository "
            "to the chart value trainer.allowedImages (RETRAINER_ALLOWED_TRAINER_IMAGES)"
        )
    return str(image)


def _env(
    body: Mapping[str, Any],
    version: int,
    base_version: int | None,
    claim: str,
    config: OperatorConfig,
    champion_version: int | None = None,
) -> list[dict[str, Any]]:
    meta = body["metadata"]
    told = trainer_env.TrainerEnv(
        spec=body.get("spec", {}),
        version=version,
        name=meta["name"],
        namespace=meta["namespace"],
        uid=meta["uid"],
        base_version=base_version,
        champion_version=champion_version,
        storage_root=config.storage_root,
        claim_name=claim,
        dataset_cache_max_size=config.dataset_cache_max_size,
        dataset_fetch_concurrency=config.dataset_fetch_concurrency,
        tracking_uri=config.mlflow_tracking_uri,
        s3_endpoint=config.s3_endpoint,
    )
    return trainer_env.container_env(told, config.s3_secret_name)


def _resources(spec: Mapping[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    res = spec.get("resources") or {}
    cpu, memory = str(res.get("cpu", "1")), str(res.get("memory", "4Gi"))
    requests: dict[str, str] = {"cpu": cpu, "memory": memory}
    limits: dict[str, str] = {"cpu": cpu, "memory": memory}
    tolerations: list[dict[str, Any]] = []
    gpus = int(res.get("gpus", 0) or 0)
    if gpus > 0:
        limits[api.GPU_RESOURCE] = str(gpus)
        tolerations.append({"key": api.GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
    return {"requests": requests, "limits": limits}, tolerations


def build_job_spec(
    body: Mapping[str, Any],
    version: int,
    base_version: int | None,
    config: OperatorConfig,
    champion_version: int | None = None,
) -> dict[str, Any]:
    """The batch/v1 Job that trains version `version` of the RetrainJob `body`; under
    spec.promotion, `champion_version` is the version it is scored against on the holdout."""
    meta, spec = body["metadata"], body.get("spec") or {}
    model = spec["model"]
    name = api.job_name(model, version)
    claim = (spec.get("storage") or {}).get("claimName") or config.claim_name
    labels = api.job_labels(meta["name"], model, version)
    scheduling = spec.get("scheduling") or {}
    retry = spec.get("retry") or {}
    resources, gpu_tolerations = _resources(spec)

    job_meta_labels = dict(labels)
    if scheduling.get("queueName"):
        job_meta_labels[api.QUEUE_LABEL] = scheduling["queueName"]

    container: dict[str, Any] = {
        "name": api.CONTAINER_NAME,
        "image": _image(spec, config),
        "env": _env(body, version, base_version, claim, config, champion_version),
        "resources": resources,
        "volumeMounts": [
            {"name": "models", "mountPath": config.storage_root},
            {"name": "workdir", "mountPath": trainer_env.DEFAULT_WORKDIR},
        ],
        "terminationMessagePath": trainer_env.DEFAULT_TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": copy.deepcopy(config.trainer_security_context),
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "securityContext": copy.deepcopy(config.trainer_pod_security_context),
        "serviceAccountName": config.trainer_service_account,
        "containers": [container],
        "volumes": [
            {"name": "models", "persistentVolumeClaim": {"claimName": claim}},
            # Scratch space, s3:// datasets included: bounded, so a huge download evicts this
            # pod instead of filling the node's disk.
            {"name": "workdir", "emptyDir": {"sizeLimit": config.trainer_workdir_size_limit}},
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
                        "containerName": api.CONTAINER_NAME,
                        "operator": "In",
                        "values": [exits.BAD_INPUT],
                    },
                },
                # SIGTERM (exit 143): the trainer was stopped (evicted, preempted, node drained)
                # before the pod got a DisruptionTarget condition, if it gets one at all. A
                # disruption too: retry without counting; activeDeadlineSeconds bounds it.
                {
                    "action": "Ignore",
                    "onExitCodes": {
                        "containerName": api.CONTAINER_NAME,
                        "operator": "In",
                        "values": [exits.PREEMPTED],
                    },
                },
            ]
        },
        "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
    }
    # Always bounded: disruptions are retried without counting against backoffLimit.
    job_spec["activeDeadlineSeconds"] = int(
        retry.get("activeDeadlineSeconds") or config.trainer_active_deadline_seconds
    )
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
            "annotations": {api.UID_ANNOTATION: meta["uid"]},
            # Removed once the Job's outcome is in the RetrainJob's status (job_outcome.py).
            "finalizers": [api.JOB_FINALIZER],
            "ownerReferences": [
                {
                    "apiVersion": api.API_VERSION,
                    "kind": api.KIND,
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": job_spec,
    }
