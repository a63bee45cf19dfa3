"""`retrainer verify --in-cluster`: run the verify inside the cluster, next to the claim.

A person's laptop rarely mounts the models volume; a short Job can. It mounts the claim
read-only, runs `retrainer verify --root /data` in the operator image (which installs this
package beside the operator for that purpose) with the MinIO credentials from the namespace's
Secret, and reports back through its termination message (readable without a kubelet log
proxy). The CLI prints it and exits with the pod's exit code. The Job's environment uses the
contract's names (retrainer_contract.env), the ones `retrainer verify` reads.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import time
from typing import Any

from kubernetes import client
from retrainer_contract import env as trainer_env
from retrainer_contract.api import LABEL_MANAGED_BY, LABEL_MODEL, LABEL_NAME, MANAGED_BY

from retrainer_cli import kube

__all__ = ["MOUNT_PATH", "build_verify_job", "job_result", "run"]

MOUNT_PATH = "/data"
TERMINATION_LOG = trainer_env.DEFAULT_TERMINATION_MESSAGE_PATH
_POLL_SECONDS = 1.0


def build_verify_job(
    *,
    name: str,
    namespace: str,
    model: str,
    version: int | None,
    claim: str,
    image: str,
    s3_endpoint: str,
    s3_secret: str,
    no_remote: bool,
) -> dict[str, Any]:
    """The verify Job manifest: one pod, never retried, read-only claim, no API token."""
    args = ["verify", model] + ([str(version)] if version is not None else [])
    args += ["--root", MOUNT_PATH] + (["--no-remote"] if no_remote else [])
    env: list[dict[str, Any]] = [
        {"name": trainer_env.TERMINATION_MESSAGE_PATH, "value": TERMINATION_LOG},
    ]
    if not no_remote:
        env += [
            {"name": trainer_env.S3_ENDPOINT, "value": s3_endpoint},
            _secret_env(trainer_env.ACCESS_KEY, s3_secret, trainer_env.SECRET_ACCESS_KEY_FIELD),
            _secret_env(trainer_env.SECRET_KEY, s3_secret, trainer_env.SECRET_SECRET_KEY_FIELD),
        ]
    labels = {
        LABEL_NAME: "retrainer-verify",
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_MODEL: model,
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": 600,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "containers": [
                        {
                            "name": "verify",
                            "image": image,
                            "command": ["retrainer"],
                            "args": args,
                            "env": env,
                            "terminationMessagePath": TERMINATION_LOG,
                            "terminationMessagePolicy": "FallbackToLogsOnError",
                            "volumeMounts": [
                                {"name": "models", "mountPath": MOUNT_PATH, "readOnly": True}
                            ],
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "256Mi"},
                                "limits": {"memory": "1Gi"},
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }
                    ],
                    "volumes": [
                        {
                            "name": "models",
                            "persistentVolumeClaim": {"claimName": claim, "readOnly": True},
                        }
                    ],
                },
            },
        },
    }


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def job_result(job: dict[str, Any]) -> str | None:
    """'Complete' or 'Failed' once the Job has finished, else None."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return str(cond["type"])
    return None


def _terminated(pod: dict[str, Any]) -> dict[str, Any] | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        state = (status.get("state") or {}).get("terminated")
        if state:
            return dict(state)
    return None


def _wait(batch: client.BatchV1Api, api: client.ApiClient, ns: str, name: str, timeout: int) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = api.sanitize_for_serialization(batch.read_namespaced_job(name, ns))
        result = job_result(job)
        if result:
            return result
        time.sleep(_POLL_SECONDS)
    raise kube.CliError(
        f"verify Job {ns}/{name} did not finish within {timeout}s "
        f"(kubectl describe job -n {ns} {name})",
        exit_code=1,
    )


def _report(api: client.ApiClient, ns: str, name: str, result: str) -> int:
    core = client.CoreV1Api(api)
    pods = core.list_namespaced_pod(ns, label_selector=f"job-name={name}").items
    states = [s for p in pods if (s := _terminated(api.sanitize_for_serialization(p))) is not None]
    if not states:
        print(f"verify Job {ns}/{name} ended {result} without a finished pod")
        return 1
    state = states[-1]
    message = str(state.get("message") or "").rstrip()
    if not message:
        pod = str(api.sanitize_for_serialization(pods[-1])["metadata"]["name"])
        try:
            message = core.read_namespaced_pod_log(pod, ns, container="verify").rstrip()
        except client.ApiException:
            message = f"(no output; kubectl logs -n {ns} {pod})"
    print(message)
    code = state.get("exitCode")
    return int(code) if isinstance(code, int) else 1


def run(args: argparse.Namespace) -> int:
    """Create the verify Job, wait for it, print its result, return its exit code."""
    api = kube.api_client(args.context)
    namespace = args.namespace or kube.current_namespace(args.context)
    endpoint = (
        args.s3_endpoint
        or os.environ.get(trainer_env.S3_ENDPOINT)
        or os.environ.get("RETRAINER_S3_ENDPOINT")
        or "http://retrainer-minio:9000"
    )
    name = f"retrainer-verify-{args.model}"[:52] + f"-{secrets.token_hex(3)}"
    manifest = build_verify_job(
        name=name,
        namespace=namespace,
        model=args.model,
        version=args.version,
        claim=args.claim,
        image=args.image,
        s3_endpoint=endpoint,
        s3_secret=args.s3_secret,
        no_remote=args.no_remote,
    )
    batch = client.BatchV1Api(api)
    try:
        batch.create_namespaced_job(namespace, manifest)  # type: ignore[arg-type]
    except client.ApiException as exc:
        raise kube.CliError(
            f"cannot create the verify Job in {namespace!r}: {exc.status} {exc.reason}",
            exit_code=1,
        ) from None
    try:
        result = _wait(batch, api, namespace, name, args.timeout)
        return _report(api, namespace, name, result)
    finally:
        # Best effort: ttlSecondsAfterFinished removes it anyway.
        with contextlib.suppress(client.ApiException):
            batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
