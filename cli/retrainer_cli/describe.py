"""`retrainer describe`: everything known about one RetrainJob, readable at a glance.

`kubectl describe` prints the status as a YAML dump; this lays out what an on-call person asks
first: phase and why (conditions), where the weights are (artifacts), whether every copy was
checked (verification), and what happened (Events).
"""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from retrainer_contract import evidence
from retrainer_contract import metrics as metric_keys
from retrainer_contract import status as vocabulary

from retrainer_cli import kube, table

__all__ = ["add_parser", "render_describe", "run"]


def _value(value: Any) -> str:
    if value is None or value == "":
        return table.NONE
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _fields(pairs: list[tuple[str, Any]], indent: str = "") -> list[str]:
    width = max(len(k) for k, _ in pairs) + 1
    return [f"{indent}{(k + ':').ljust(width)}  {_value(v)}" for k, v in pairs]


def _message(obj: dict[str, Any]) -> str:
    # Multi-line messages (tracebacks, kubelet output) would break a table row apart.
    return " ".join(str(obj.get("message", "")).split())


def _base_model(spec: dict[str, Any]) -> str:
    base = spec.get("baseModel") or {}
    for key in ("version", "uri", "architecture"):
        if base.get(key):
            return f"{key} {base[key]}"
    return table.NONE


def _section(title: str, lines: list[str]) -> list[str]:
    return ["", f"{title}:"] + [f"  {line}" if line else "" for line in lines]


def _table_lines(headers: tuple[str, ...], rows: list[list[Any]]) -> list[str]:
    if not rows:
        return [table.NONE]
    return table.render_table(headers, rows).splitlines()


def _events(events: list[dict[str, Any]], now: dt.datetime) -> list[list[Any]]:
    rows = []
    for event in events:
        when = (
            event.get("lastTimestamp")
            or event.get("eventTime")
            or event.get("firstTimestamp")
            or event.get("metadata", {}).get("creationTimestamp")
        )
        source = event.get("reportingComponent") or (event.get("source") or {}).get("component", "")
        count = event.get("count") or 1
        age = table.format_age(when, now) + (f" (x{count})" if count > 1 else "")
        rows.append(
            [
                event.get("type", ""),
                event.get("reason", ""),
                age,
                source or table.NONE,
                _message(event),
            ]
        )
    return rows


def _evaluation(evaluation: dict[str, Any]) -> list[str]:
    """The holdout comparison: decision, reason, both versions side by side, per class."""
    challenger = evaluation.get("challenger") or {}
    champion = evaluation.get("champion") or {}
    metric = evaluation.get("metric")
    lines = _fields(
        [
            ("Decision", evaluation.get("decision")),
            ("Cause", evaluation.get("cause")),
            ("Reason", " ".join(str(evaluation.get("reason") or "").split())),
            ("Interval", evidence.interval_line(evaluation) or None),
            ("Metric", metric),
            ("Holdout", evaluation.get("holdoutUri")),
            ("Holdout sha256", table.short_sha(evaluation.get("holdoutSha256"))),
            ("Holdout images", evaluation.get("holdoutImages")),
            ("Holdout changed", evaluation.get("holdoutChanged")),
            ("Image size", evaluation.get("imgsz")),
        ]
    )
    roles = [("challenger", challenger), ("champion", champion)]
    rows = [
        [f"{role} v{scored['version']}"]
        + [table.format_metric((scored.get("metrics") or {}).get(k)) for k in metric_keys.KEYS]
        for role, scored in roles
        if scored
    ]
    previous = champion.get("previous") or {}
    if previous:
        old = previous.get("metrics") or {}
        was = table.short_sha(previous.get("holdoutSha256"))
        label = f"champion v{champion.get('version')} (holdout {was})"
        rows.append([label, *(table.format_metric(old.get(k)) for k in metric_keys.KEYS)])
    lines += ["", *_table_lines(("VERSION", *metric_keys.KEYS), rows)]
    names = sorted(set(challenger.get("perClass") or {}) | set(champion.get("perClass") or {}))
    per_class = [
        [name]
        + [
            table.format_metric(((s.get("perClass") or {}).get(name) or {}).get(metric))
            for _, s in roles
            if s
        ]
        for name in names
    ]
    headers = tuple(f"{role.upper()} {metric}" for role, s in roles if s)
    if per_class:
        lines += ["", *_table_lines(("CLASS", *headers), per_class)]
    # One line per regression set and per class compared, when a gate asked for them.
    if evaluation.get("regressionSets") or "maxClassRegression" in evaluation:
        checks = evidence.lines(evaluation)[1 if evaluation.get("confidence") else 0 :]
        lines += ["", "Checks:", *(f"  {line}" for line in checks)]
    return lines


def render_describe(
    obj: dict[str, Any], events: list[dict[str, Any]], now: dt.datetime | None = None
) -> str:
    """The whole description of `obj` (a RetrainJob as a dict) and its `events`."""
    now = now or dt.datetime.now(dt.UTC)
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    progress = status.get("progress") or {}
    stale = (status.get("observedGeneration") or 0) < (meta.get("generation") or 0)
    lines = _fields(
        [
            ("Name", meta.get("name")),
            ("Namespace", meta.get("namespace")),
            ("Model", spec.get("model")),
            ("Version", status.get("version")),
            ("Phase", (status.get("phase") or vocabulary.PENDING) + (" (stale)" if stale else "")),
            ("Job", status.get("jobName")),
            ("Attempts", status.get("attempts")),
            ("Progress", progress.get("text")),
            ("Created", meta.get("creationTimestamp")),
            ("Started", status.get("startTime")),
            ("Completed", status.get("completionTime")),
        ]
    )
    training = spec.get("training") or {}
    lines += _section(
        "Spec",
        _fields(
            [
                ("Base model", _base_model(spec)),
                ("Dataset", (spec.get("dataset") or {}).get("uri")),
                ("Corrections", (spec.get("corrections") or {}).get("uri")),
                ("Epochs", training.get("epochs")),
                ("Image size", training.get("imgsz")),
                ("GPUs", (spec.get("resources") or {}).get("gpus")),
                ("Claim", (spec.get("storage") or {}).get("claimName")),
            ]
        ),
    )
    conditions = [
        [
            c.get("type", ""),
            c.get("status", ""),
            c.get("reason") or table.NONE,
            table.format_age(c.get("lastTransitionTime"), now),
            _message(c),
        ]
        for c in status.get("conditions") or []
    ]
    lines += _section(
        "Conditions", _table_lines(("TYPE", "STATUS", "REASON", "AGE", "MESSAGE"), conditions)
    )
    metrics = status.get("metrics") or {}
    if metrics:
        lines += _section(
            "Metrics",
            _fields([(n, table.format_metric(metrics.get(n))) for n in metric_keys.KEYS]),
        )
    artifacts = [
        [
            a.get("name", ""),
            table.short_sha(a.get("sha256")),
            table.format_size(a.get("size")),
            a.get("uri") or table.NONE,
        ]
        for a in status.get("artifacts") or []
    ]
    lines += _section("Artifacts", _table_lines(("NAME", "SHA256", "SIZE", "URI"), artifacts))
    verification = status.get("verification") or {}
    checks = [
        [
            c.get("name", ""),
            "ok" if c.get("ok") else "FAILED",
            c.get("by") or table.NONE,
            _message(c),
        ]
        for c in verification.get("checks") or []
    ]
    verified = verification.get("verified")
    lines += _section(
        "Verification",
        # verification.verified is what the Verified condition reports: shown under its name.
        _fields([(vocabulary.VERIFIED, verified), ("Checked at", verification.get("checkedAt"))])
        + _table_lines(("CHECK", "RESULT", "BY", "MESSAGE"), checks),
    )
    mlflow = status.get("mlflow") or {}
    if mlflow:
        lines += _section(
            "MLflow",
            _fields(
                [
                    ("Experiment", mlflow.get("experimentId")),
                    ("Run", mlflow.get("runId")),
                    ("Run URL", mlflow.get("runUrl")),
                    ("Registered version", mlflow.get("registeredModelVersion")),
                    (vocabulary.PROMOTED, mlflow.get("promoted")),
                ]
            ),
        )
    evaluation = status.get("evaluation") or {}
    if evaluation:
        lines += _section("Evaluation (holdout)", _evaluation(evaluation))
    lineage = status.get("lineage") or {}
    if lineage:
        lines += _section("Lineage", _fields(sorted(lineage.items())))
    lines += _section(
        "Events", _table_lines(("TYPE", "REASON", "AGE", "FROM", "MESSAGE"), _events(events, now))
    )
    return "\n".join(lines)


def add_parser(subparsers: Any) -> None:
    """Register `describe` on the CLI's subparsers."""
    parser = subparsers.add_parser(
        "describe",
        help="show status, conditions, artifacts, checks and events of one RetrainJob",
        description="Describe one RetrainJob: status, conditions, artifacts, checks, Events.",
    )
    parser.add_argument("name", help="the RetrainJob's name")
    parser.add_argument("-n", "--namespace", help="namespace (default: the kubeconfig's)")
    parser.add_argument("--context", help="kubeconfig context to use")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the description; exit 1 when the RetrainJob does not exist."""
    api = kube.api_client(args.context)
    namespace = args.namespace or kube.current_namespace(args.context)
    obj = kube.get_retrainjob(api, namespace, args.name)
    uid = str((obj.get("metadata") or {}).get("uid", ""))
    events = kube.list_events(api, namespace, uid) if uid else []
    print(render_describe(obj, events))
    return 0
