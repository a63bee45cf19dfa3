"""The shape of a short Job that runs `retrainer ...` next to a claim.

Three such Jobs exist: `retrainer verify --in-cluster` (the CLI creates it), the scrub and the
retention Job (the operator creates them). All three run the `retrainer` command of the
operator image with the claim mounted at MOUNT_PATH and report through their termination
message, which the creator reads back. The CLI and the operator must not import each other,
so the one manifest shape lives here, and each program adds only what is its own (labels,
owner, security context, which arguments).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from retrainer_contract import env as trainer_env

__all__ = [
    "COMMAND",
    "CONTAINER",
    "MOUNT_PATH",
    "SECURITY_CONTEXT",
    "TERMINATION_LOG",
    "UPKEEP_SERVICE_ACCOUNT",
    "build",
    "result",
    "s3_env",
    "terminated",
]

# Where the claim is mounted in the Job's pod (`--root` of the command).
MOUNT_PATH = "/data"
CONTAINER = "retrainer"
COMMAND = "retrainer"
TERMINATION_LOG = trainer_env.DEFAULT_TERMINATION_MESSAGE_PATH
# The identity of the one claim Job that reads the API: retention re-reads its ModelLine's
# champion right before removing anything. The chart binds it `get` on ModelLines, nothing else.
UPKEEP_SERVICE_ACCOUNT = "retrainer-upkeep"
# Restricted by default: nothing but reading (or, for retention, writing) the claim.
SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def s3_env(endpoint: str, secret: str) -> list[dict[str, Any]]:
    """The MinIO endpoint and credentials (from `secret`) as the verify command reads them."""

    def from_secret(name: str, key: str) -> dict[str, Any]:
        return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}

    return [
        {"name": trainer_env.S3_ENDPOINT, "value": endpoint},
        from_secret(trainer_env.ACCESS_KEY, trainer_env.SECRET_ACCESS_KEY_FIELD),
        from_secret(trainer_env.SECRET_KEY, trainer_env.SECRET_SECRET_KEY_FIELD),
    ]


def build(
    *,
    name: str,
    namespace: str,
    labels: Mapping[str, str],
    image: str,
    args: Sequence[str],
    claim: str,
    read_only: bool = True,
    env: Sequence[Mapping[str, Any]] = (),
    ttl_seconds: int = 600,
    active_deadline_seconds: int | None = None,
    security_context: Mapping[str, Any] | None = None,
    pod_security_context: Mapping[str, Any] | None = None,
    service_account: str | None = None,
) -> dict[str, Any]:
    """The Job: one pod, never retried, the claim at MOUNT_PATH; no API token unless it runs
    as `service_account` (a Job that must read the API)."""
    container_env = [
        {"name": trainer_env.TERMINATION_MESSAGE_PATH, "value": TERMINATION_LOG},
        *(dict(e) for e in env),
    ]
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "containers": [
            {
                "name": CONTAINER,
                "image": image,
                "command": [COMMAND],
                "args": list(args),
                "env": container_env,
                "terminationMessagePath": TERMINATION_LOG,
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "volumeMounts": [
                    {"name": "models", "mountPath": MOUNT_PATH, "readOnly": read_only}
                ],
                "resources": {
                    "requests": {"cpu": "100m", "memory": "256Mi"},
                    "limits": {"memory": "1Gi"},
                },
                "securityContext": copy.deepcopy(dict(security_context or SECURITY_CONTEXT)),
            }
        ],
        "volumes": [
            {
                "name": "models",
                "persistentVolumeClaim": {"claimName": claim, "readOnly": read_only},
            }
        ],
    }
    if pod_security_context:
        pod_spec["securityContext"] = copy.deepcopy(dict(pod_security_context))
    if service_account:
        pod_spec["serviceAccountName"] = service_account
        pod_spec["automountServiceAccountToken"] = True
    spec: dict[str, Any] = {
        "backoffLimit": 0,
        "ttlSecondsAfterFinished": ttl_seconds,
        "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
    }
    if active_deadline_seconds is not None:
        spec["activeDeadlineSeconds"] = active_deadline_seconds
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": spec,
    }


def result(job: Mapping[str, Any]) -> str | None:
    """'Complete' or 'Failed' once the Job has finished, else None."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return str(cond["type"])
    return None


def terminated(pods: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The terminated state (exitCode, message) of the last finished container, or None."""
    found: dict[str, Any] | None = None
    for pod in pods:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            state = (status.get("state") or {}).get("terminated")
            if state:
                found = dict(state)
    return found
