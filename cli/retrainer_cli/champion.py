"""`retrainer promote MODEL N` and `retrainer rollback MODEL`: move the champion by hand.

The champion (ModelLine status.champion) is the version production should use. Moving it is
a deliberate act, so both commands first re-verify every copy of the target version in a
Job on the claim (verify_job.py, the same check as `retrainer verify --in-cluster`) and refuse
with exit code 1 when one does not verify. Then they write the new record (the contract's
champion.move: previous, history) through the status subresource with optimistic concurrency
(the operator writes other status fields at the same time: a merge patch of `champion` only,
guarded by the resourceVersion read, recomputed on 409), post an Event on the ModelLine and
point the MLflow registered-model alias at the version.
"""

from __future__ import annotations

import argparse
import datetime
import os
from collections.abc import Mapping
from typing import Any

from kubernetes import client
from retrainer_contract import champion, tracking
from retrainer_contract import env as trainer_env

from retrainer_cli import kube, verify_job
from retrainer_cli.mlflow_rest import MlflowError, MlflowRest

__all__ = ["add_parsers", "promote", "record", "rollback", "version_facts"]

_ATTEMPTS = 8


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--namespace", help="namespace of the ModelLine")
    parser.add_argument("--context", help="kubeconfig context to use")
    parser.add_argument(
        "--mlflow-uri",
        default=os.environ.get(trainer_env.TRACKING_URI)
        or os.environ.get("RETRAINER_MLFLOW_TRACKING_URI"),
        help=f"MLflow tracking URI for the alias (default: ${trainer_env.TRACKING_URI})",
    )
    job = parser.add_argument_group("the verify Job (as retrainer verify --in-cluster)")
    job.add_argument(
        "--claim",
        default=os.environ.get(trainer_env.CLAIM_NAME, trainer_env.DEFAULT_CLAIM_NAME),
        help="claim to mount when the line's template names none "
        f"(default: {trainer_env.DEFAULT_CLAIM_NAME})",
    )
    job.add_argument(
        "--image", default="ghcr.io/retrainer/operator:0.1.0", help="image with `retrainer`"
    )
    job.add_argument("--s3-endpoint", help=f"MinIO endpoint (default: ${trainer_env.S3_ENDPOINT})")
    job.add_argument("--s3-secret", default="minio-credentials", help="Secret for MinIO")
    job.add_argument(
        "--no-remote", action="store_true", help="do not check the MLflow copy in MinIO"
    )
    job.add_argument("--timeout", type=int, default=600, help="seconds to wait for the Job")


def add_parsers(subparsers: Any) -> None:
    """Register `promote` and `rollback` on the CLI's subparsers."""
    promote_parser = subparsers.add_parser(
        "promote",
        help="make version N the champion of a model line (after verifying every copy)",
        description="Verify every copy of version N, then make it the line's champion "
        "(status.champion, the MLflow alias). Exit 1 when a copy does not verify.",
    )
    promote_parser.add_argument("model", help="the model line (ModelLine name)")
    promote_parser.add_argument("version", type=int, help="version N")
    _add_common(promote_parser)
    promote_parser.set_defaults(func=promote)
    rollback_parser = subparsers.add_parser(
        "rollback",
        help="make the previous champion the champion again (after verifying every copy)",
        description="Verify every copy of status.champion.previous, then make it the "
        "champion. Exit 1 when there is none or a copy does not verify.",
    )
    rollback_parser.add_argument("model", help="the model line (ModelLine name)")
    _add_common(rollback_parser)
    rollback_parser.set_defaults(func=rollback)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _champion_of(line: Mapping[str, Any]) -> dict[str, Any]:
    return dict((line.get("status") or {}).get("champion") or {})


def _template(line: Mapping[str, Any]) -> dict[str, Any]:
    return dict((line.get("spec") or {}).get("template") or {})


def promote(args: argparse.Namespace) -> int:
    """`retrainer promote MODEL N`."""
    if args.version < 1:
        raise kube.CliError(f"version must be 1 or more, got {args.version}")
    api = kube.api_client(args.context)
    namespace = args.namespace or kube.current_namespace(args.context)
    line = kube.get_modelline(api, namespace, args.model)
    return _move(api, args, namespace, line, args.version, champion.PROMOTED_BY_USER)


def rollback(args: argparse.Namespace) -> int:
    """`retrainer rollback MODEL`: to status.champion.previous."""
    api = kube.api_client(args.context)
    namespace = args.namespace or kube.current_namespace(args.context)
    line = kube.get_modelline(api, namespace, args.model)
    current = _champion_of(line)
    target = champion.rollback_target(current)
    if target is None:
        has = f"champion v{current['version']}" if current.get("version") else "no champion"
        raise kube.CliError(
            f"nothing to roll back to: {args.model} has {has} and no previous champion "
            "(status.champion.previous); use retrainer promote MODEL N",
            exit_code=1,
        )
    return _move(api, args, namespace, line, target, champion.ROLLED_BACK)


def version_facts(
    api: client.ApiClient,
    namespace: str,
    model: str,
    version: int,
    template: Mapping[str, Any],
    mlflow: MlflowRest | None,
) -> tuple[dict[str, float], str | None]:
    """Version N's metrics and its registered-model version: from the RetrainJob that made it,
    else from its MLflow run."""
    metrics: dict[str, float] = {}
    registered_version: str | None = None
    run_id = ""
    for job in kube.list_retrainjobs(api, namespace):
        status = job.get("status") or {}
        if (job.get("spec") or {}).get("model") == model and status.get("version") == version:
            metrics = {str(k): float(v) for k, v in (status.get("metrics") or {}).items()}
            recorded = status.get("mlflow") or {}
            registered_version = recorded.get("registeredModelVersion") or None
            run_id = str(recorded.get("runId") or "")
            break
    registered = champion.registered_model(template)
    if mlflow is not None and (not metrics or (registered and not registered_version)):
        spec = {**template, "model": model}
        run = mlflow.find_run(tracking.experiment_name(spec), namespace, model, version)
        if run is not None:
            metrics = metrics or mlflow.run_metrics(run)
            run_id = run_id or str((run.get("info") or {}).get("run_id") or "")
        if registered and not registered_version and run_id:
            registered_version = mlflow.model_version(registered, run_id)
    return metrics, (str(registered_version) if registered_version else None)


def record(
    api: client.ApiClient,
    namespace: str,
    model: str,
    version: int,
    reason: str,
    metrics: Mapping[str, float],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write the new champion, re-reading and recomputing on 409: (line, old champion)."""
    for _ in range(_ATTEMPTS):
        line = kube.get_modelline(api, namespace, model)
        old = _champion_of(line)
        new = champion.move(old, version, reason=reason, since=_now(), metrics=metrics)
        try:
            rv = str(line["metadata"]["resourceVersion"])
            change = {"champion": champion.patch(old, new)}
            updated = kube.patch_modelline_status(api, namespace, model, change, rv)
            return updated, old
        except kube.Conflict:
            continue
    raise kube.CliError(
        f"the ModelLine {model!r} kept changing ({_ATTEMPTS} conflicts); try again", exit_code=1
    )


def _set_alias(
    mlflow: MlflowRest | None, template: Mapping[str, Any], model: str, registered: str | None
) -> int:
    """Point the alias at the registered model version; the exit code of this part."""
    name = champion.registered_model(template)
    alias = champion.alias(template)
    if name is None:
        print(f"no MLflow alias set: {model} has no spec.template.mlflow.registeredModel")
        return 0
    if registered is None:
        print(f"MLflow alias {alias!r} NOT set: no version of {name!r} found for this version")
        return 1
    if mlflow is None:
        print(f"MLflow alias {alias!r} NOT set: no --mlflow-uri (${trainer_env.TRACKING_URI})")
        return 1
    try:
        mlflow.set_alias(name, alias, registered)
    except MlflowError as error:
        print(f"MLflow alias {alias!r} NOT set: {error}")
        return 1
    print(f"MLflow: {name} @{alias} -> version {registered}")
    return 0


def _move(
    api: client.ApiClient,
    args: argparse.Namespace,
    namespace: str,
    line: Mapping[str, Any],
    target: int,
    reason: str,
) -> int:
    model, template = args.model, _template(line)
    current = _champion_of(line).get("version")
    verb = "promote" if reason == champion.PROMOTED_BY_USER else "roll back to"
    claim = (template.get("storage") or {}).get("claimName") or args.claim
    outcome = verify_job.verify_in_cluster(api, args, namespace, target, claim=claim)
    print(outcome.message)
    if outcome.exit_code != 0:
        stays = f"v{current}" if current else "none"
        raise kube.CliError(
            f"refusing to {verb} {model} v{target}: its copies do not verify (see above); "
            f"the champion stays {stays}",
            exit_code=1,
        )
    mlflow = MlflowRest(args.mlflow_uri) if args.mlflow_uri else None
    try:
        metrics, registered = version_facts(api, namespace, model, target, template, mlflow)
    except MlflowError as error:
        print(f"warning: MLflow not read ({error})")
        metrics, registered = {}, None
    if current == target:
        print(f"{model} v{target} is already the champion")
    else:
        updated, old = record(api, namespace, model, target, reason, metrics)
        before = f"v{old['version']}" if old.get("version") else "none"
        message = f"champion of {model}: v{target} (was {before}), by {reason}"
        kube.post_line_event(api, updated, reason, message)
        print(message)
    return _set_alias(mlflow, template, model, registered)
