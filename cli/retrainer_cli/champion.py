"""`retrainer promote MODEL N` and `retrainer rollback MODEL`: move the champion by hand.

The champion (ModelLine status.champion) is the version production should use. Moving it is
a deliberate act, so both commands first re-verify every copy of the target version in a
Job on the claim (verify_job.py, the same check as `retrainer verify --in-cluster`) and refuse
with exit code 1 when one does not verify. Then they write the new record (the contract's
champion.compare_and_move: refused when the champion changed since it was read, before the
verify Job) through the status subresource with optimistic concurrency (the operator writes
other status fields at the same time: a merge patch of `champion` only, guarded by the
resourceVersion read, recomputed on 409), post an Event on the ModelLine, and then, in the
operator's order, mirror it in MLflow: the champion tag on the version's run and the alias on
the registered model its own records name. Exit 1 whenever the alias is not set.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
from collections.abc import Mapping
from typing import Any

from kubernetes import client
from retrainer_contract import champion, tracking
from retrainer_contract import env as trainer_env

from retrainer_cli import kube, verify_job
from retrainer_cli.mlflow_rest import MlflowError, MlflowRest

__all__ = ["Facts", "add_parsers", "promote", "record", "rollback", "version_facts"]

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


@dataclasses.dataclass
class Facts:
    """What the champion record and its MLflow mirror need of version N: its metrics, its
    run, and the registered model (and version) it was registered as."""

    metrics: dict[str, float]
    run_id: str = ""
    registered_model: str | None = None
    registered_version: str | None = None
    # Why MLflow could not be read ("" when it was): the mirror is then unknown, never skipped.
    error: str = ""


def version_facts(
    api: client.ApiClient,
    namespace: str,
    model: str,
    version: int,
    template: Mapping[str, Any],
    mlflow: MlflowRest | None,
) -> Facts:
    """Version N's metrics and registration, from the versions' own records: the RetrainJob
    that made it, else its MLflow run and that run's registrations (so a line whose template
    names no registered model still finds the one its RetrainJobs registered in)."""
    facts = Facts({}, registered_model=champion.registered_model(template))
    spec: Mapping[str, Any] = {**template, "model": model}
    for job in kube.list_retrainjobs(api, namespace):
        status = job.get("status") or {}
        if (job.get("spec") or {}).get("model") == model and status.get("version") == version:
            spec = job.get("spec") or spec
            facts.metrics = {str(k): float(v) for k, v in (status.get("metrics") or {}).items()}
            recorded = status.get("mlflow") or {}
            facts.registered_version = recorded.get("registeredModelVersion") or None
            facts.run_id = str(recorded.get("runId") or "")
            facts.registered_model = (spec.get("mlflow") or {}).get(
                "registeredModel"
            ) or facts.registered_model
            break
    if mlflow is None:
        return facts
    if not facts.run_id or not facts.metrics:
        run = mlflow.find_run(tracking.experiment_name(spec), namespace, model, version)
        if run is not None:
            facts.metrics = facts.metrics or mlflow.run_metrics(run)
            facts.run_id = facts.run_id or str((run.get("info") or {}).get("run_id") or "")
    if facts.run_id and not facts.registered_version:
        found = mlflow.registrations_of(facts.run_id)
        named = [v for n, v in found if n == facts.registered_model]
        if named:
            facts.registered_version = named[0]
        elif found and facts.registered_model is None:
            facts.registered_model, facts.registered_version = found[0]
    return facts


def record(
    api: client.ApiClient,
    namespace: str,
    model: str,
    version: int,
    reason: str,
    metrics: Mapping[str, float],
    expected: int | None,
    registered_model: str | None = None,
    alias: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write the new champion if the champion is still `expected` (the one read before the
    copies were verified), re-reading on 409: (line, old champion). A champion moved by
    someone else meanwhile refuses the move (exit 1): decide again on the new one."""
    for _ in range(_ATTEMPTS):
        line = kube.get_modelline(api, namespace, model)
        old = _champion_of(line)
        try:
            new = champion.compare_and_move(
                old,
                expected,
                version,
                reason=reason,
                since=_now(),
                metrics=metrics,
                registered_model=registered_model,
                alias=alias,
            )
        except champion.ChampionChanged as error:
            raise kube.CliError(
                f"the champion of {model} changed while v{version} was verified ({error}); "
                "nothing moved: run the command again to decide on the new champion",
                exit_code=1,
            ) from error
        if new is None:
            return line, old
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


def _mirror(
    mlflow: MlflowRest | None,
    template: Mapping[str, Any],
    model: str,
    version: int,
    facts: Facts,
    reason: str,
) -> int:
    """Point the alias at version N and tag its run as champion, after the record (the
    operator's order); the exit code of this part: 1 whenever the alias is not set, 0 only
    when it is, or when no version of the line is registered anywhere (no alias to set)."""
    alias = champion.alias(template)
    if mlflow is None:
        print(f"MLflow alias {alias!r} NOT set: no --mlflow-uri (${trainer_env.TRACKING_URI})")
        return 1
    name = facts.registered_model
    if facts.error:
        print(f"MLflow alias {alias!r} NOT set: MLflow could not be read ({facts.error})")
        return 1
    try:
        if facts.run_id:
            value = tracking.champion_tag_value(reason)
            mlflow.set_run_tag(facts.run_id, tracking.TAG_CHAMPION, value)
        if name is None:
            print(f"no MLflow alias to set: no version of {model} is registered in MLflow")
            return 0
        if facts.registered_version is None:
            print(f"MLflow alias {alias!r} NOT set: {model} v{version} has no version in {name!r}")
            return 1
        mlflow.set_alias(name, alias, facts.registered_version)
    except MlflowError as error:
        print(f"MLflow alias {alias!r} NOT set: {error}")
        return 1
    print(f"MLflow: {name} @{alias} -> version {facts.registered_version}")
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
        facts = version_facts(api, namespace, model, target, template, mlflow)
    except MlflowError as error:
        print(f"warning: MLflow not read ({error})")
        facts = Facts({}, error=str(error))
    updated, old = record(
        api,
        namespace,
        model,
        target,
        reason,
        facts.metrics,
        current if isinstance(current, int) else None,
        facts.registered_model,
        champion.alias(template),
    )
    if old.get("version") == target:
        print(f"{model} v{target} is already the champion")
    else:
        before = f"v{old['version']}" if old.get("version") else "none"
        message = f"champion of {model}: v{target} (was {before}), by {reason}"
        kube.post_line_event(api, updated, reason, message)
        print(message)
    return _mirror(mlflow, template, model, target, facts, reason)
