"""`retrainer verify --in-cluster`: run the verify inside the cluster, next to the claim.

A person's laptop rarely mounts the models volume; a short Job can. It mounts the claim
read-only, runs `retrainer verify --root /data` in the operator image (which installs this
package beside the operator for that purpose) with the MinIO credentials from the namespace's
Secret, and reports back through its termination message (readable without a kubelet log
proxy). The CLI prints it and exits with the pod's exit code. The Job's shape is the
contract's (retrainer_contract.claimjob, shared with the operator's scrub and retention Jobs),
its environment uses the contract's names (retrainer_contract.env), the ones `retrainer
verify` reads. `retrainer promote` and `rollback` run the same Job (verify_in_cluster) before
they move the champion.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import secrets
import time
from typing import Any

from kubernetes import client
from retrainer_contract import claimjob, upkeep
from retrainer_contract import env as trainer_env
from retrainer_contract.api import LABEL_MANAGED_BY, LABEL_MODEL, LABEL_NAME, MANAGED_BY

from retrainer_cli import kube

__all__ = [
    "MOUNT_PATH",
    "JobOutcome",
    "build_verify_job",
    "job_result",
    "run",
    "run_job",
    "s3_endpoint",
    "verify_in_cluster",
]

MOUNT_PATH = claimjob.MOUNT_PATH
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
    all_versions: bool = False,
) -> dict[str, Any]:
    """The verify Job manifest: one pod, never retried, read-only claim, no API token."""
    args = ["verify", model] + ([str(version)] if version is not None else [])
    args += ["--root", MOUNT_PATH] + (["--no-remote"] if no_remote else [])
    args += ["--all"] if all_versions else []
    labels = {
        LABEL_NAME: "retrainer-verify",
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_MODEL: model,
    }
    return claimjob.build(
        name=name,
        namespace=namespace,
        labels=labels,
        image=image,
        args=args,
        claim=claim,
        env=[] if no_remote else claimjob.s3_env(s3_endpoint, s3_secret),
    )


def job_result(job: dict[str, Any]) -> str | None:
    """'Complete' or 'Failed' once the Job has finished, else None."""
    return claimjob.result(job)


@dataclasses.dataclass(frozen=True)
class JobOutcome:
    """What a finished claim Job said: its exit code and termination message (or log)."""

    exit_code: int
    message: str


def _wait(batch: client.BatchV1Api, api: client.ApiClient, ns: str, name: str, timeout: int) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = api.sanitize_for_serialization(batch.read_namespaced_job(name, ns))
        result = job_result(job)
        if result:
            return result
        time.sleep(_POLL_SECONDS)
    raise kube.CliError(
        f"Job {ns}/{name} did not finish within {timeout}s (kubectl describe job -n {ns} {name})",
        exit_code=1,
    )


def _outcome(api: client.ApiClient, ns: str, name: str, result: str) -> JobOutcome:
    core = client.CoreV1Api(api)
    pods = core.list_namespaced_pod(ns, label_selector=f"job-name={name}").items
    state = claimjob.terminated([api.sanitize_for_serialization(p) for p in pods])
    if state is None:
        return JobOutcome(1, f"Job {ns}/{name} ended {result} without a finished pod")
    message = str(state.get("message") or "").rstrip()
    if not message:
        pod = str(api.sanitize_for_serialization(pods[-1])["metadata"]["name"])
        try:
            message = core.read_namespaced_pod_log(pod, ns, container=claimjob.CONTAINER).rstrip()
        except client.ApiException:
            message = f"(no output; kubectl logs -n {ns} {pod})"
    code = state.get("exitCode")
    return JobOutcome(int(code) if isinstance(code, int) else 1, message)


def run_job(
    api: client.ApiClient, namespace: str, manifest: dict[str, Any], timeout: int
) -> JobOutcome:
    """Create a claim Job, wait for it, delete it; its exit code and message."""
    name = str(manifest["metadata"]["name"])
    batch = client.BatchV1Api(api)
    try:
        batch.create_namespaced_job(namespace, manifest)  # type: ignore[arg-type]
    except client.ApiException as exc:
        raise kube.CliError(
            f"cannot create Job {name} in {namespace!r}: {exc.status} {exc.reason}",
            exit_code=1,
        ) from None
    try:
        result = _wait(batch, api, namespace, name, timeout)
        return _outcome(api, namespace, name, result)
    finally:
        # Best effort: ttlSecondsAfterFinished removes it anyway.
        with contextlib.suppress(client.ApiException):
            batch.delete_namespaced_job(name, namespace, propagation_policy="Background")


def s3_endpoint(given: str | None) -> str:
    """--s3-endpoint, else the environment's, else the chart's in-cluster MinIO."""
    return (
        given
        or os.environ.get(trainer_env.S3_ENDPOINT)
        or os.environ.get("RETRAINER_S3_ENDPOINT")
        or "http://retrainer-minio:9000"
    )


def verify_in_cluster(
    api: client.ApiClient,
    args: argparse.Namespace,
    namespace: str,
    version: int | None,
    *,
    claim: str | None = None,
    all_versions: bool = False,
) -> JobOutcome:
    """Run `retrainer verify` for `args.model` (version, or --all) in a Job on the claim."""
    name = f"retrainer-verify-{args.model}"[:52] + f"-{secrets.token_hex(3)}"
    manifest = build_verify_job(
        name=name,
        namespace=namespace,
        model=args.model,
        version=version,
        claim=claim or args.claim,
        image=args.image,
        s3_endpoint=s3_endpoint(args.s3_endpoint),
        s3_secret=args.s3_secret,
        no_remote=args.no_remote,
        all_versions=all_versions,
    )
    return run_job(api, namespace, manifest, args.timeout)


def run(args: argparse.Namespace) -> int:
    """Create the verify Job, wait for it, print its result, return its exit code."""
    api = kube.api_client(args.context)
    namespace = args.namespace or kube.current_namespace(args.context)
    all_versions = bool(getattr(args, "all", False))
    outcome = verify_in_cluster(api, args, namespace, args.version, all_versions=all_versions)
    print(_scrub_text(outcome.message) if all_versions else outcome.message)
    return outcome.exit_code


def _scrub_text(message: str) -> str:
    """The --all report (compact JSON in the termination message) as lines for a person."""
    try:
        report = upkeep.parse_scrub_report(message)
    except ValueError:
        return message
    lines = [f"  {upkeep.problem_text(p)}" for p in report["problems"]]
    if report["omitted"]:
        lines.append(f"  ... and {report['omitted']} more")
    failed = len(report["problems"]) + int(report["omitted"])
    verdict = (
        f"FAILED: {report['model']}: {failed} copies failed in {report['checked']} versions"
        if failed
        else f"OK: {report['model']}: {report['checked']} versions verified"
    )
    return "\n".join([*lines, verdict])
